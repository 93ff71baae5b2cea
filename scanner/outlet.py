"""The fMRI LSL outlet of the scanner side, laid out as the replay's (:mod:`core.layouts`).

pylsl is imported when the outlet is created, after the caller has set the LSL
configuration (:func:`core.lsl_safety.use_project_lsl_config`).
"""

from __future__ import annotations

import numpy as np

from core.layouts import StreamIdentity, fmri_stream_info, new_identity
from scanner.region_layout import RegionLayout


def make_identity(prefix: str = "scanner", source_id: str | None = None) -> StreamIdentity:
    """Name, type and source_id of the fMRI stream, as the replay names them.

    Parameters
    ----------
    prefix : str
        Name prefix: the stream is ``<prefix>-fMRI``.
    source_id : str | None
        Fixed source_id; by default ``<prefix>-fMRI-<8 random hex digits>``, new at every start.

    Returns
    -------
    identity : StreamIdentity
    """
    identity = new_identity(prefix, "fMRI")
    return identity if source_id is None else StreamIdentity(identity.name, identity.stype, source_id)


class FmriOutlet:
    """The fMRI LSL outlet: volume index then one region mean per channel, nominal rate 1/TR.

    Parameters
    ----------
    identity : StreamIdentity
        Name, type and source_id.
    layout : RegionLayout
        Regions (channel labels ``volume``, then the region names).
    tr : float
        Repetition time in seconds.
    metadata : dict of str to str
        Further entries of the description's ``session`` child.
    """

    def __init__(
        self,
        identity: StreamIdentity,
        layout: RegionLayout,
        tr: float,
        metadata: dict[str, str] | None = None,
    ) -> None:
        import pylsl

        self.identity = identity
        self.tr = tr
        self.metadata = dict(metadata or {})
        self.n_regions = layout.n_regions
        info = fmri_stream_info(
            identity,
            layout.parcellation.names,
            tr,
            {"regions": layout.parcellation.description, **self.metadata},
        )
        self._outlet = pylsl.StreamOutlet(info, max_buffered=360)

    def push(self, index: int, means: np.ndarray, stamp: float) -> None:
        """Publish one volume's sample with its timestamp (LSL clock)."""
        if self._outlet is None:
            raise RuntimeError("the fMRI outlet is closed")
        sample = np.concatenate([[index], np.asarray(means, dtype=np.float64)]).astype(np.float32)
        self._outlet.push_sample(sample, stamp)

    def has_consumers(self) -> bool:
        """Whether an inlet is connected."""
        return self._outlet is not None and bool(self._outlet.have_consumers())

    def close(self) -> None:
        """Unregister the stream (idempotent)."""
        self._outlet = None
