"""The scanner side of live fMRI: a folder of volumes in, the fMRI LSL stream out.

A scanner's real-time export writes one file per volume (NIfTI ``.nii`` /
``.nii.gz``, or DICOM read through pydicom) into a folder. :class:`FmriSource`

- watches the folder (:class:`scanner.folder_watcher.VolumeFolderWatcher`): every
  volume file once, in natural order of the names, only once it is complete;
- reads each volume (:func:`scanner.volume_files.read_volume`) and reduces it to
  region means with the very code of the simulators (:mod:`recordings.regions`), on a
  region layout fixed for the whole session (:class:`scanner.region_layout.RegionLayout`);
- publishes them (:class:`scanner.outlet.FmriOutlet`) as the replay does: type ``fMRI``,
  channel 0 the volume index, then one channel per region, nominal rate 1/TR,
  the TR and the region description in the ``session`` child of the stream's
  description, so that :mod:`stream.acquisition` consumes it like a replay.

Its settings are :class:`scanner.config.SourceConfig`.

Timing. A sample's timestamp is the LSL clock (``pylsl.local_clock()``) when
the volume's file was first seen in the folder, minus ``delay``: the export
latency from acquisition to the file's appearance, which the lab measures once
(for example R128 trigger to file). Detection, not the end of reading, is used
because reading waits for the file to be complete; the poll interval bounds
the detection error. When the acquisition also receives the R128 triggers it
places each volume on its trigger and only needs these stamps to be within
TR/2 of the trigger. A file already in the folder at start (``existing =
"process"``) was not seen arrive: its stamp is its modification time mapped
onto the LSL clock.

Volume index. Channel 0 is the position of the file in the folder's sequence
(0 for the first volume file watched): a file that cannot be read, or has the
wrong grid, keeps its number, so a gap in the index shows a lost volume and
later volumes keep their pairing with the scanner's triggers.

This module does not import pylsl at import time; callers set the LSL
configuration first (:func:`core.lsl_safety.use_project_lsl_config`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scanner.config import SourceConfig
from scanner.errors import FmriSourceError, IncompleteVolumeError, VolumeShapeError
from scanner.folder_watcher import VolumeFile, VolumeFolderWatcher
from scanner.outlet import FmriOutlet, make_identity
from scanner.region_layout import RegionLayout
from scanner.volume_files import GIVEN_TR_ORIGIN, Volume, read_volume, resolve_tr

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedVolume:
    """What was published for one volume (for progress lines and tests)."""

    index: int
    path: Path
    stamp: float
    detected: float
    published: float
    means: np.ndarray = field(repr=False)


class FmriSource:
    """Watch a folder, reduce each new volume to region means, publish it on LSL.

    The region layout and the TR are fixed by the first readable volume (or at
    once, from the configured mask and TR); the outlet is created as soon as both
    are known. Nothing in a volume file stops the source: an incomplete file is
    retried for ``retry_for`` seconds then flagged and skipped, a volume of
    another grid is skipped, each with a log line naming the file.

    Parameters
    ----------
    folder : path-like
        The folder the scanner's real-time export writes volumes into.
    config : SourceConfig | None
        Stream name, layout files, timing (default: ``SourceConfig()``).
    on_volume : callable | None
        Called with a :class:`PublishedVolume` after each push.
    on_stream : callable | None
        Called with the :class:`FmriOutlet` once it exists.
    clock : callable | None
        The LSL clock (default ``pylsl.local_clock``).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        config: SourceConfig | None = None,
        *,
        on_volume: Callable[[PublishedVolume], None] | None = None,
        on_stream: Callable[[FmriOutlet], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if clock is None:
            import pylsl

            clock = pylsl.local_clock
        config = SourceConfig() if config is None else config
        self.folder = Path(folder)
        self.config = config
        self.clock = clock
        self.identity = make_identity(config.prefix, config.source_id)
        self.watcher = VolumeFolderWatcher(
            self.folder, existing=config.existing, settle=config.settle, clock=clock
        )
        self.on_volume = on_volume
        self.on_stream = on_stream
        self.layout = (
            RegionLayout.build(mask_file=config.mask, atlas_file=config.atlas) if config.mask else None
        )
        self.tr: float | None = config.tr
        self.tr_origin = GIVEN_TR_ORIGIN if config.tr is not None else ""
        self.outlet: FmriOutlet | None = None
        self.published = 0
        self.skipped = 0
        self._ready: deque[VolumeFile] = deque()
        self._first_failure: dict[Path, float] = {}
        self._stop = threading.Event()
        self._outlet_created = 0.0
        if self.layout is not None and self.tr is not None:
            self._open_outlet(self.layout, self.tr)

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Poll and publish every ``interval`` seconds until ``stop`` is set."""
        self._stop = stop
        while not stop.is_set():
            self.step()
            stop.wait(self.config.interval)

    def close(self) -> None:
        """Close the outlet (idempotent)."""
        if self.outlet is not None:
            self.outlet.close()

    def __enter__(self) -> FmriSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one look at the folder ------------------------------------------------------------------
    def step(self) -> int:
        """Look at the folder once and publish every volume that is ready.

        Returns
        -------
        n : int
            Volumes published.

        Raises
        ------
        FmriSourceError
            If the session cannot be set up (no TR, no usable mask, DICOM without pydicom).
        """
        self._ready.extend(self.watcher.poll())
        count = 0
        while self._ready:
            item = self._ready[0]
            volume = self._read(item)
            if isinstance(volume, _Retry):
                break
            self._ready.popleft()
            if volume is not None and self._publish(item, volume):
                count += 1
        return count

    def _read(self, item: VolumeFile) -> Volume | _Retry | None:
        """The volume, None if the file is to be skipped, or ``_RETRY``."""
        try:
            volume = read_volume(item.path)
        except FmriSourceError:
            raise
        except FileNotFoundError:
            self._skip(item, "the file disappeared before it could be read")
            return None
        except (IncompleteVolumeError, OSError) as err:
            first = self._first_failure.setdefault(item.path, self.clock())
            if self.clock() - first < self.config.retry_for:
                return _RETRY
            self._skip(item, f"still incomplete after {self.config.retry_for:g} s of retries: {err}")
            return None
        except ValueError as err:
            self._skip(item, str(err))
            return None
        self._first_failure.pop(item.path, None)
        return volume

    def _publish(self, item: VolumeFile, volume: Volume) -> bool:
        if self.layout is None:
            self.layout = RegionLayout.build(
                first_volume=volume, mask_file=self.config.mask, atlas_file=self.config.atlas
            )
        if self.tr is None:
            self.tr, self.tr_origin = resolve_tr(None, volume)
        outlet = self._open_outlet(self.layout, self.tr)
        try:
            means = self.layout.means(volume)
        except VolumeShapeError as err:
            self._skip(item, str(err))
            return False
        if self.published == 0:
            self._wait_for_consumer(outlet)
        stamp = item.detected - self.config.delay
        outlet.push(item.ordinal, means, stamp)
        self.published += 1
        if self.on_volume is not None:
            self.on_volume(
                PublishedVolume(item.ordinal, item.path, stamp, item.detected, self.clock(), means)
            )
        return True

    def _wait_for_consumer(self, outlet: FmriOutlet) -> None:
        deadline = self._outlet_created + self.config.wait_for_consumers
        while not outlet.has_consumers() and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.02)

    def _skip(self, item: VolumeFile, reason: str) -> None:
        self._first_failure.pop(item.path, None)
        self.skipped += 1
        logger.error("volume %d (%s) skipped: %s", item.ordinal, item.path.name, reason)

    def _open_outlet(self, layout: RegionLayout, tr: float) -> FmriOutlet:
        """The outlet, created at the first call: once the layout and the TR are known."""
        if self.outlet is None:
            metadata = {
                "source": "fmri-source: a scanner's real-time export folder",
                "tr_origin": self.tr_origin,
                "regions_origin": layout.origin,
                "stamp": "LSL clock when the volume file was detected, minus export_delay",
                "export_delay": f"{self.config.delay:g}",
            }
            self.outlet = FmriOutlet(self.identity, layout, tr, metadata)
            self._outlet_created = time.monotonic()
            if self.on_stream is not None:
                self.on_stream(self.outlet)
        return self.outlet


class _Retry:
    """Marks a volume file to read again at the next look (it reads incomplete)."""


_RETRY = _Retry()
