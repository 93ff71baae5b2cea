"""EDF, EDF+ and BDF recordings (polysomnography), with their hypnogram."""

from __future__ import annotations

from pathlib import Path

from recordings.assemble import assemble
from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram
from recordings.montage import channel_type_from_name
from recordings.recording import Recording

EDF_SUFFIXES = (".edf", ".bdf")


def read_edf(
    path: str | Path,
    *,
    hypnogram: str | Path | Hypnogram | None = None,
    eeg_unit: str | None = None,
    subject: str | None = None,
) -> Recording:
    """Read an EDF/EDF+ (``.edf``) or BDF (``.bdf``) recording.

    Channel types come from the channel names (``"EEG Fpz-Cz"`` is EEG, ``"EOG horizontal"``
    EOG, ``"EMG submental"`` EMG, respiration, temperature and event channels misc). The
    hypnogram's time 0 is the recording's start, unless both headers give a start time: then
    their difference places it (Sleep-EDF hypnograms start with their PSG).

    Parameters
    ----------
    path : path-like
        The recording.
    hypnogram : path-like | Hypnogram | None
        Its hypnogram; by default a file beside it by naming convention
        (:func:`recordings.companions.hypnogram_candidates`), or none.
    eeg_unit : str | None
        The true unit of the voltage channels (``"V"``, ``"mV"``, ``"uV"``) when the header is wrong.
    subject : str | None
        Subject label; by default the file's stem.

    Returns
    -------
    recording : Recording
        Without fMRI.

    Raises
    ------
    DatasetFormatError
        If the file cannot be read, holds no signal, is sampled below 50 Hz, or its
        amplitudes are implausible; the message names the file.
    """
    import mne

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "recording not found")
    bdf = path.suffix.lower() == ".bdf"
    reader = mne.io.read_raw_bdf if bdf else mne.io.read_raw_edf
    try:
        raw = reader(path, preload=False, verbose="error")
    except Exception as err:  # mne raises many kinds of error on a damaged file
        raise DatasetFormatError(path, f"cannot be read as {'BDF' if bdf else 'EDF'}: {err}") from None
    ch_types = [channel_type_from_name(name) for name in raw.ch_names]
    declared = getattr(raw, "_orig_units", {}) or {}
    return assemble(
        path,
        raw,
        ch_types,
        "bdf" if bdf else "edf",
        declared_units=[declared.get(name) for name in raw.ch_names],
        hypnogram=hypnogram,
        eeg_unit=eeg_unit,
        subject=subject,
    )
