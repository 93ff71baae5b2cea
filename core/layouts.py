"""The LSL stream layouts: what the replay and the scanner-side source publish and the acquisition reads.

A session is four streams named ``<prefix>-<kind>``:

- ``EEG`` (type ``EEG``): float32, one channel per recorded channel, labels, types and
  units in the XML description (as mne-lsl and LabRecorder read them).
- ``fMRI`` (type ``fMRI``): float32, one sample per volume, the volume index
  (channel ``volume``) then one mean per region; nominal rate 1/TR, and the TR and
  region description in the ``session`` child of the description.
- ``Triggers`` (type ``Markers``): :data:`VOLUME_TRIGGER` at each volume's acquisition.
- ``Truth`` (type ``Markers``, optional): the scored stage at each epoch start.

This module imports pylsl only inside the function that builds a stream description,
so that importing it never loads liblsl before :mod:`core.lsl_safety` has chosen its
configuration.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pylsl

VOLUME_TRIGGER = "R128"
"""Marker of an fMRI volume's acquisition (the scanner's trigger, as BrainVision Recorder writes it)."""

FMRI_INDEX_CHANNEL = "volume"
"""Label of the fMRI stream's first channel, the volume index."""

STREAM_TYPES: dict[str, str] = {"EEG": "EEG", "fMRI": "fMRI", "Triggers": "Markers", "Truth": "Markers"}
"""LSL type of each stream kind."""


@dataclass(frozen=True)
class StreamIdentity:
    """Name, type and source_id of one published stream."""

    name: str
    stype: str
    source_id: str


def stream_name(prefix: str, kind: str) -> str:
    """Name of a session's stream of ``kind`` (one of :data:`STREAM_TYPES`)."""
    if kind not in STREAM_TYPES:
        raise ValueError(f"unknown stream kind {kind!r}: one of {list(STREAM_TYPES)}")
    return f"{prefix}-{kind}"


def new_identity(prefix: str, kind: str, token: str | None = None) -> StreamIdentity:
    """A stream's identity; the source_id ends in ``token`` (8 random hex digits by default)."""
    name = stream_name(prefix, kind)
    return StreamIdentity(name, STREAM_TYPES[kind], f"{name}-{token or uuid.uuid4().hex[:8]}")


def fmri_stream_info(
    identity: StreamIdentity, region_names: Sequence[str], tr: float, description: Mapping[str, str]
) -> pylsl.StreamInfo:
    """The ``pylsl.StreamInfo`` of an fMRI stream.

    Parameters
    ----------
    identity : StreamIdentity
        Name, type and source_id.
    region_names : sequence of str
        One channel per region, after the volume index.
    tr : float
        Repetition time in seconds (nominal rate 1/TR; also written as ``tr``).
    description : mapping of str to str
        Further entries of the description's ``session`` child (``regions`` at least).

    Returns
    -------
    info : pylsl.StreamInfo
    """
    import pylsl

    n_regions = len(region_names)
    info = pylsl.StreamInfo(
        identity.name, identity.stype, 1 + n_regions, 1.0 / tr, "float32", identity.source_id
    )
    info.set_channel_labels([FMRI_INDEX_CHANNEL, *region_names])
    info.set_channel_types(["index"] + ["bold"] * n_regions)
    info.set_channel_units(["none"] + ["a.u."] * n_regions)
    desc = info.desc().append_child("session")
    for key, value in {"tr": f"{tr:g}", **description}.items():
        desc.append_child_value(key, value)
    return info


def fmri_layout(info: pylsl.StreamInfo) -> tuple[list[str], float]:
    """Region names and TR of an fMRI stream, from its ``pylsl.StreamInfo``.

    Streams from other software may lack labels (regions are then ``region1``...) or the
    declared TR (1 / nominal rate is used).
    """
    labels = info.get_channel_labels() or [FMRI_INDEX_CHANNEL] + [
        f"region{i}" for i in range(1, info.channel_count())
    ]
    tr = 1.0 / info.nominal_srate()
    declared = info.desc().child("session").child_value("tr")
    if declared:
        tr = float(declared)
    return list(labels[1:]), tr
