"""One entry point for recordings of any format, and the recordings of a folder.

:func:`read_recording` tells the format from the file name; :func:`find_recordings` lists a
folder's recordings.
"""

from __future__ import annotations

import re
from pathlib import Path

from recordings.brainvision import read_brainvision
from recordings.edf import EDF_SUFFIXES, read_edf
from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram
from recordings.recording import Recording
from recordings.session import read_session
from recordings.units import check_amplitudes, check_eeg_unit, voltage_scales
from recordings.xdf import XDF_SUFFIXES, read_xdf

RECORDING_SUFFIXES: tuple[str, ...] = (*EDF_SUFFIXES, ".vhdr", *XDF_SUFFIXES)
"""File types :func:`read_recording` reads."""

_DS003768 = re.compile(r"^sub-(?P<sub>[^_]+)_task-(?P<task>[^_]+)_run-(?P<run>\d+)_eeg\.vhdr$")
_EDF_HEADER = 256
_EDF_SIGNAL_LABEL = 16


def read_recording(
    path: str | Path,
    hypnogram: str | Path | Hypnogram | None = None,
    eeg_unit: str | None = None,
    subject: str | None = None,
) -> Recording:
    """Read a recording of any supported format, told from its file name.

    - ``.edf`` / ``.bdf``: EDF, EDF+ or BDF (:func:`recordings.edf.read_edf`);
    - ``.vhdr``: BrainVision. In the ds003768 layout (``<root>/sub-XX/eeg/sub-XX_task-T_run-N_eeg.vhdr``
      with the run's BOLD in ``<root>/sub-XX/func/``) the whole run with its fMRI and scoring
      (:func:`recordings.session.read_session`); otherwise the EEG and its volume triggers
      (:func:`recordings.brainvision.read_brainvision`);
    - ``.xdf`` / ``.xdfz``: LabRecorder's XDF (:func:`recordings.xdf.read_xdf`).

    Parameters
    ----------
    path : path-like
        The recording file.
    hypnogram : path-like | Hypnogram | None
        Its hypnogram (EDF+ annotations, YASA-style text/CSV or ds003768 TSV); by default a
        file beside it by naming convention (``<stem>-Hypnogram.edf``, ``<stem>.hypno.txt``,
        ``<stem>_hypnogram.txt/.csv/.tsv``, Sleep-EDF's ``SC4001E0-PSG.edf`` ->
        ``SC4001EC-Hypnogram.edf``), or none. Ignored for a ds003768 run, whose scoring
        comes from its dataset.
    eeg_unit : str | None
        The true unit of the voltage channels (``"V"``, ``"mV"``, ``"uV"``) when the file's is wrong.
    subject : str | None
        Subject label; by default from the file name.

    Returns
    -------
    recording : Recording

    Raises
    ------
    DatasetFormatError
        If the file is missing, of an unknown type or unreadable, or its content cannot be
        used (the message names the file and the problem).
    ValueError
        If ``eeg_unit`` is not one of ``"V"``, ``"mV"``, ``"uV"``.
    """
    path = Path(path)
    check_eeg_unit(eeg_unit)
    if path.is_dir():
        raise DatasetFormatError(path, "a folder, not a recording: list its recordings with find_recordings")
    if not path.is_file():
        raise DatasetFormatError(path, "recording not found")
    suffix = path.suffix.lower()
    if suffix in EDF_SUFFIXES:
        return read_edf(path, hypnogram=hypnogram, eeg_unit=eeg_unit, subject=subject)
    if suffix in XDF_SUFFIXES:
        return read_xdf(path, hypnogram=hypnogram, eeg_unit=eeg_unit, subject=subject)
    if suffix == ".vhdr":
        ds003768 = _ds003768_run(path)
        if ds003768 is None:
            return read_brainvision(path, hypnogram=hypnogram, eeg_unit=eeg_unit, subject=subject)
        root, sub, run = ds003768
        recording = read_session(root, sub, run)
        if eeg_unit is not None:
            declared = getattr(recording.raw, "_orig_units", {}) or {}
            units = [declared.get(name) for name in recording.ch_names]
            recording.unit_scale = voltage_scales(recording.ch_types, units, eeg_unit)
        check_amplitudes(recording, path, eeg_unit)
        return recording
    raise DatasetFormatError(
        path, f"unknown recording type {path.suffix!r}: expected one of {', '.join(RECORDING_SUFFIXES)}"
    )


def _ds003768_run(header: Path) -> tuple[Path, str, str] | None:
    """(root, subject, run) of a BrainVision header in the ds003768 layout with its BOLD, else None."""
    match = _DS003768.match(header.name)
    if match is None or header.parent.name != "eeg" or header.parent.parent.name != f"sub-{match['sub']}":
        return None
    bold = header.parent.parent / "func" / header.name.replace("_eeg.vhdr", "_bold.nii.gz")
    if not bold.is_file():
        return None
    return header.parent.parent.parent, match["sub"], f"{match['task']}-{match['run']}"


def find_recordings(folder: str | Path) -> list[Path]:
    """Every recording file in a folder and its subfolders, sorted.

    EDF/BDF files that hold only annotations (hypnograms) are left out.

    Parameters
    ----------
    folder : path-like
        The folder.

    Returns
    -------
    paths : list of Path
        Files :func:`read_recording` reads (``.edf``, ``.bdf``, ``.vhdr``, ``.xdf``, ``.xdfz``).

    Raises
    ------
    DatasetFormatError
        If the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(folder, "folder not found")
    found = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix.lower() in RECORDING_SUFFIXES and not _annotations_only(path)
    ]
    return found


def _annotations_only(path: Path) -> bool:
    """Whether an EDF/BDF file holds no signal but EDF+ annotations (a hypnogram, say)."""
    if path.suffix.lower() not in EDF_SUFFIXES:
        return False
    with path.open("rb") as handle:
        header = handle.read(_EDF_HEADER + 2 * _EDF_SIGNAL_LABEL)
    try:
        n_signals = int(header[252:256].decode("ascii").strip())
    except ValueError:
        return False
    labels = [
        header[_EDF_HEADER + i * _EDF_SIGNAL_LABEL : _EDF_HEADER + (i + 1) * _EDF_SIGNAL_LABEL]
        for i in range(min(n_signals, 2))
    ]
    return n_signals == 0 or (n_signals == 1 and labels[0].strip() == b"EDF Annotations")
