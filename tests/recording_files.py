"""Recording files for the reader tests, written with the formats' own writers (MNE/edfio, pybv, XDF)."""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

EDF_DIMENSION_OFFSET = 256  # the signal headers follow the 256-byte file header


def eeg_like(
    n_channels: int, n_times: int, sfreq: float, seed: int = 0, amplitude: float = 20.0
) -> np.ndarray:
    """Signals in microvolts, shape (n_channels, n_times): a 10 Hz rhythm and noise of ``amplitude`` µV."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    rhythm = amplitude * np.sin(2 * np.pi * 10 * t)
    return rhythm + rng.normal(0, amplitude, (n_channels, n_times))


def write_edf(
    path: Path,
    data_uv: np.ndarray,
    sfreq: float,
    ch_names: list[str],
    ch_types: list[str],
    meas_date: datetime | None = None,
) -> Path:
    """An EDF file of ``data_uv`` (µV for voltage channels, as-is for misc) through ``mne.export``."""
    import mne

    scale = np.array([1e-6 if t in ("eeg", "eog", "ecg", "emg") else 1.0 for t in ch_types])
    raw = mne.io.RawArray(
        data_uv * scale[:, None], mne.create_info(ch_names, sfreq, ch_types), verbose="error"
    )
    if meas_date is not None:
        raw.set_meas_date(meas_date)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


def relabel_edf_unit(path: Path, old: str, new: str) -> None:
    """Rewrite the physical dimension of every signal declared ``old`` as ``new`` (a wrong header)."""
    content = bytearray(path.read_bytes())
    n_signals = int(content[252:256].decode())
    start = EDF_DIMENSION_OFFSET + n_signals * (16 + 80)  # every label, every transducer, then dimensions
    for i in range(n_signals):
        field = slice(start + 8 * i, start + 8 * (i + 1))
        if content[field].decode().strip() == old:
            content[field] = new.ljust(8).encode()
    path.write_bytes(bytes(content))


def write_brainvision(
    folder: Path,
    name: str,
    data: np.ndarray,
    sfreq: float,
    ch_names: list[str],
    *,
    unit: str = "µV",
    trigger_samples: list[int] | None = None,
) -> Path:
    """A BrainVision recording (float32) of ``data`` in volts, written in ``unit``.

    A wrong header is written by giving data of the wrong magnitude: 20 "volts" in ``"V"`` are
    microvolts under a volts label.
    """
    import pybv

    events = [{"onset": int(s), "description": 128, "type": "Response"} for s in trigger_samples or []]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pybv.write_brainvision(
            data=data,
            sfreq=sfreq,
            ch_names=ch_names,
            fname_base=name,
            folder_out=folder,
            events=events or None,
            unit=unit,
            fmt="binary_float32",
            overwrite=True,
        )
    return folder / f"{name}.vhdr"


def write_bdf(path: Path, data_uv: np.ndarray, sfreq: int, ch_names: list[str], start: datetime) -> Path:
    """A BDF file (BioSemi's 24-bit EDF) of ``data_uv`` in µV, one-second records, written byte by byte."""
    n_signals, n_times = data_uv.shape
    n_records = n_times // sfreq
    physical = float(np.ceil(np.abs(data_uv).max())) + 1
    digital = 2**23 - 1

    def field(value: object, width: int) -> bytes:
        return str(value).ljust(width)[:width].encode("ascii")

    header = b"\xffBIOSEMI" + field("X X X X", 80) + field("Startdate X X X X", 80)
    header += field(start.strftime("%d.%m.%y"), 8) + field(start.strftime("%H.%M.%S"), 8)
    header += field(256 * (n_signals + 1), 8) + field("24BIT", 44) + field(n_records, 8) + field(1, 8)
    header += field(n_signals, 4)
    columns = [
        (ch_names, 16),
        (["AgAgCl electrode"] * n_signals, 80),
        (["uV"] * n_signals, 8),
        ([f"{-physical:g}"] * n_signals, 8),
        ([f"{physical:g}"] * n_signals, 8),
        ([str(-digital - 1)] * n_signals, 8),
        ([str(digital)] * n_signals, 8),
        (["HP:DC"] * n_signals, 80),
        ([str(sfreq)] * n_signals, 8),
        ([""] * n_signals, 32),
    ]
    for values, width in columns:
        header += b"".join(field(value, width) for value in values)
    counts = np.round(
        (data_uv[:, : n_records * sfreq] + physical) / (2 * physical) * (2 * digital + 1) - digital - 1
    )
    counts = counts.astype(np.int32).reshape(n_signals, n_records, sfreq).transpose(1, 0, 2)
    raw_bytes = counts.astype("<i4").view(np.uint8).reshape(*counts.shape, 4)[..., :3]
    path.write_bytes(header + raw_bytes.tobytes())
    return path
