"""BrainVision recordings (``.vhdr``) outside the ds003768 layout: EEG, volume triggers, hypnogram."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.layouts import VOLUME_TRIGGER
from recordings.assemble import assemble
from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram
from recordings.montage import channel_type_from_name
from recordings.recording import CHANNEL_TYPES, Recording

if TYPE_CHECKING:
    import mne


def open_brainvision(header: Path) -> mne.io.BaseRaw:
    """The recording of a ``.vhdr`` header, read lazily (DatasetFormatError naming the file if unreadable)."""
    import mne

    if not header.is_file():
        raise DatasetFormatError(header, "EEG header (.vhdr) not found")
    try:
        return mne.io.read_raw_brainvision(header, preload=False, verbose="error")
    except Exception as err:  # MNE raises many types for broken BrainVision files
        raise DatasetFormatError(header, f"cannot be read as BrainVision: {err}") from None


def volume_trigger_times(raw: mne.io.BaseRaw) -> np.ndarray:
    """Times of the ``R128`` volume-trigger markers, seconds from the first sample, sorted (maybe none)."""
    annotations = raw.annotations
    onsets = [
        onset - raw.first_time
        for onset, description in zip(annotations.onset, annotations.description, strict=True)
        if description.split("/")[-1].replace(" ", "") == VOLUME_TRIGGER
    ]
    return np.sort(np.array(onsets, dtype=float))


def channels_table(header: Path) -> Path:
    """The BIDS ``*_channels.tsv`` beside a ``*_eeg.vhdr`` (it may not exist)."""
    return header.with_name(header.stem.removesuffix("_eeg") + "_channels.tsv")


def table_channel_types(table: Path, ch_names: list[str]) -> tuple[str, ...]:
    """Channel types from a BIDS channels table, else from the names."""
    if not table.is_file():
        return tuple(channel_type_from_name(name) for name in ch_names)
    with table.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "name" not in rows[0] or "type" not in rows[0]:
        raise DatasetFormatError(table, "expected columns 'name' and 'type'", line=1)
    by_name = {row["name"]: row["type"].strip().lower() for row in rows}
    types = (by_name.get(name, channel_type_from_name(name)) for name in ch_names)
    return tuple(t if t in CHANNEL_TYPES else "misc" for t in types)


def read_brainvision(
    path: str | Path,
    *,
    hypnogram: str | Path | Hypnogram | None = None,
    eeg_unit: str | None = None,
    subject: str | None = None,
) -> Recording:
    """Read a BrainVision recording (``.vhdr``, ``.vmrk``, ``.eeg``) on its own.

    ``R128`` markers become volume triggers; there is no BOLD (fMRI region means come only
    with the ds003768 layout, :func:`recordings.session.read_session`), so no fMRI features.

    Parameters
    ----------
    path : path-like
        The ``.vhdr`` header.
    hypnogram : path-like | Hypnogram | None
        Its hypnogram; by default a file beside it by naming convention, or none.
    eeg_unit : str | None
        The true unit of the voltage channels (``"V"``, ``"mV"``, ``"uV"``) when the header is wrong.
    subject : str | None
        Subject label; by default from the file name.

    Returns
    -------
    recording : Recording

    Raises
    ------
    DatasetFormatError
        If the file cannot be read, is sampled below 50 Hz or its amplitudes are implausible.
    """
    path = Path(path)
    raw = open_brainvision(path)
    triggers = volume_trigger_times(raw)
    if np.any(np.diff(triggers) <= 0):
        raise DatasetFormatError(path.with_suffix(".vmrk"), "two volume triggers at the same time")
    declared = getattr(raw, "_orig_units", {}) or {}
    return assemble(
        path,
        raw,
        table_channel_types(channels_table(path), raw.ch_names),
        "brainvision",
        declared_units=[declared.get(name) for name in raw.ch_names],
        hypnogram=hypnogram,
        eeg_unit=eeg_unit,
        subject=subject,
        volume_times=triggers,
    )
