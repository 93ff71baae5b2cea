"""What every plain-file reader does once it has the signals: identity, rate, hypnogram, units."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recordings.companions import find_hypnogram, hypnogram_origin, load_hypnogram
from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram
from recordings.recording import Recording, identity_from_path, looks_in_scanner
from recordings.units import check_amplitudes, voltage_scales

if TYPE_CHECKING:
    import mne

MIN_SFREQ = 50.0
"""Lowest EEG rate accepted (Hz): below it not even the sigma band (11-16 Hz) of spindles is resolved."""


def check_rate(sfreq: float, path: Path) -> None:
    """Refuse an EEG rate below :data:`MIN_SFREQ` with an error naming the file."""
    if not sfreq >= MIN_SFREQ:
        raise DatasetFormatError(
            path, f"EEG sampled at {sfreq:g} Hz: at least {MIN_SFREQ:g} Hz is needed for sleep EEG features"
        )


def assemble(
    path: Path,
    raw: mne.io.BaseRaw,
    ch_types: Sequence[str],
    source_format: str,
    *,
    declared_units: Sequence[str | None] | None = None,
    hypnogram: str | Path | Hypnogram | None = None,
    eeg_unit: str | None = None,
    subject: str | None = None,
    volume_times: np.ndarray | None = None,
    origin: float | None = None,
) -> Recording:
    """A checked :class:`Recording` of a plain file.

    Parameters
    ----------
    path : Path
        The recording file.
    raw : mne.io.BaseRaw
        Its signals, voltage channels in volts as the file declares them.
    ch_types : sequence of str
        Channel types.
    source_format : str
        ``"edf"``, ``"bdf"``, ``"brainvision"`` or ``"xdf"``.
    declared_units : sequence of str | None
        The unit the file declares per channel (for the ``eeg_unit`` override); volts if None.
    hypnogram : path-like | Hypnogram | None
        The hypnogram (a file, or one already read); by default a file beside the recording
        (:func:`recordings.companions.find_hypnogram`), or none.
    eeg_unit : str | None
        Override of the voltage channels' unit (``"V"``, ``"mV"``, ``"uV"``).
    subject : str | None
        Override of the subject taken from the file name.
    volume_times : np.ndarray | None
        Volume-trigger times in seconds from the first sample.
    origin : float | None
        Time of the hypnogram's time 0 when the caller knows it (else from the file headers).
    """
    check_rate(float(raw.info["sfreq"]), path)
    if len(raw.ch_names) == 0:
        raise DatasetFormatError(path, "holds no signal channel (an annotation-only file, e.g. a hypnogram?)")
    subject_name, task, run = identity_from_path(path, subject)
    if hypnogram is None:
        hypnogram = find_hypnogram(path)
    scored = (
        hypnogram
        if hypnogram is None or isinstance(hypnogram, Hypnogram)
        else load_hypnogram(hypnogram, task, run)
    )
    duration = raw.n_times / float(raw.info["sfreq"])
    if scored is not None and origin is None:
        origin = hypnogram_origin(scored, raw.info.get("meas_date"), duration, path)
    units = declared_units if declared_units is not None else [None] * len(ch_types)
    triggers = np.empty(0) if volume_times is None else np.asarray(volume_times, dtype=float)
    recording = Recording(
        subject=subject_name,
        task=task,
        run=run,
        raw=raw,
        ch_types=tuple(ch_types),
        source_format=source_format,
        source=path,
        volume_times=triggers,
        tr=float(np.median(np.diff(triggers))) if triggers.size > 1 else None,
        hypnogram=scored,
        origin=origin or 0.0,
        unit_scale=voltage_scales(ch_types, units, eeg_unit),
        in_scanner=looks_in_scanner(float(raw.info["sfreq"]), triggers.size),
    )
    check_amplitudes(recording, path, eeg_unit)
    return recording
