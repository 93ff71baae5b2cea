"""XDF files from LabRecorder: the EEG stream, marker streams and the fMRI stream of one file.

Every stream's LSL timestamps (clock offsets applied and dejittered by pyxdf) are placed on
the EEG's time base: time 0 is the first EEG sample. The EEG is laid on its nominal rate's
grid; samples missing from the grid (a dropout) are NaN, so the windows that hold them are
flagged rather than shifted in time.

Marker streams: ``R128`` markers are volume triggers; a marker stream whose every marker is a
stage (``W``, ``N1``, ``N2``, ``N3``, ``R``, ``unscored``: this project's ``Truth`` stream,
:mod:`simulators.replay`) is the hypnogram, its first marker the run's origin. The fMRI stream
(type ``fMRI``, :mod:`core.layouts`) gives the volumes: index, then one mean per region,
stamped at acquisition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.channels import VOLTAGE_TYPES
from core.layouts import FMRI_INDEX_CHANNEL, VOLUME_TRIGGER
from core.stages import EPOCH_SECONDS, SLEEP_STAGES, UNSCORED
from recordings.assemble import assemble, check_rate
from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram
from recordings.montage import channel_type_from_name
from recordings.recording import CHANNEL_TYPES, Recording
from recordings.units import check_eeg_unit, unit_in_volts

XDF_SUFFIXES = (".xdf", ".xdfz")
BREAK_SECONDS = 0.25
"""A jump in a stream's stamps longer than this is a dropout: the stamps on either side are
dejittered separately and the EEG missing in between is NaN (pyxdf's default is 1 s)."""
DEFAULT_EEG_UNIT = "microvolts"
"""The unit of voltage channels that declare none, or one that is not a voltage (LSL's EEG convention)."""


def read_xdf(
    path: str | Path,
    *,
    hypnogram: str | Path | Hypnogram | None = None,
    eeg_unit: str | None = None,
    subject: str | None = None,
) -> Recording:
    """Read an XDF recording: its EEG stream, volume triggers, truth stages and fMRI stream.

    Parameters
    ----------
    path : path-like
        The ``.xdf`` (or gzipped ``.xdfz``) file.
    hypnogram : path-like | Hypnogram | None
        A hypnogram file (its time 0 is the first EEG sample); by default the file's truth
        stream, else a file beside it by naming convention, else none.
    eeg_unit : str | None
        The true unit of the voltage channels (``"V"``, ``"mV"``, ``"uV"``) whatever the
        stream declares (microvolts when it declares nothing).
    subject : str | None
        Subject label; by default the file's stem.

    Returns
    -------
    recording : Recording

    Raises
    ------
    DatasetFormatError
        If the file cannot be read, holds no (or several) EEG streams, an EEG stream without
        a nominal rate or below 50 Hz, or implausible amplitudes; the message names the file.
    """
    import pyxdf  # type: ignore[import-untyped]

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "recording not found")
    check_eeg_unit(eeg_unit)
    try:
        streams, _ = pyxdf.load_xdf(
            str(path),
            dejitter_timestamps=True,
            jitter_break_threshold_seconds=BREAK_SECONDS,
            jitter_break_threshold_samples=0,
            verbose=False,
        )
    except Exception as err:  # pyxdf raises many kinds of error on a damaged file
        raise DatasetFormatError(path, f"cannot be read as XDF: {err}") from None
    eeg = _eeg_stream(path, streams)
    raw, ch_types, units, t0 = _eeg_raw(path, eeg)
    triggers = np.empty(0)
    truth: tuple[np.ndarray, list[str]] | None = None
    for stream in streams:
        if stream is eeg or _info(stream, "channel_format") != "string":
            continue
        values = [str(row[0]) if len(row) else "" for row in stream["time_series"]]
        times = np.asarray(stream["time_stamps"], dtype=float) - t0
        if values and all(v in (*SLEEP_STAGES, UNSCORED) for v in values):
            truth = (times, values)
        elif VOLUME_TRIGGER in values:
            triggers = np.sort(times[[v.strip() == VOLUME_TRIGGER for v in values]])
    fmri = next((s for s in streams if _info(s, "type").lower() == "fmri"), None)
    origin = None
    if hypnogram is None and truth is not None:
        origin = float(truth[0][0])
        onsets = truth[0] - origin
        hypnogram = Hypnogram(
            onsets, tuple(truth[1]), tuple(truth[1]), f"{path} (truth stream)", EPOCH_SECONDS
        )
    elif hypnogram is not None:
        origin = 0.0
    recording = assemble(
        path,
        raw,
        ch_types,
        "xdf",
        declared_units=units,
        hypnogram=hypnogram,
        eeg_unit=eeg_unit,
        subject=subject,
        volume_times=triggers,
        origin=origin,
    )
    if fmri is not None and len(fmri["time_stamps"]):
        _add_fmri(recording, fmri, t0)
    return recording


def _info(stream: dict[str, Any], key: str) -> str:
    value = stream["info"].get(key)
    return str(value[0]) if isinstance(value, list) and value else ""


def _channels(stream: dict[str, Any]) -> list[dict[str, str]]:
    """Label, type and unit of each channel from the stream's description (empty strings if absent)."""
    count = int(_info(stream, "channel_count") or 0)
    desc = stream["info"].get("desc")
    found: list[dict[str, str]] = []
    try:
        channels = desc[0]["channels"][0]["channel"]
        for channel in channels:
            found.append({key: str((channel.get(key) or [""])[0] or "") for key in ("label", "type", "unit")})
    except (TypeError, KeyError, IndexError, AttributeError):
        found = []
    if len(found) != count:
        found = [{"label": f"ch{i + 1}", "type": "", "unit": ""} for i in range(count)]
    return found


def _eeg_stream(path: Path, streams: list[dict[str, Any]]) -> dict[str, Any]:
    eeg = [s for s in streams if _info(s, "type").lower() == "eeg"]
    if len(eeg) == 1:
        return eeg[0]
    listed = ", ".join(f"{_info(s, 'name')!r} ({_info(s, 'type')})" for s in streams) or "none"
    problem = "no stream of type EEG" if not eeg else f"{len(eeg)} streams of type EEG"
    raise DatasetFormatError(path, f"{problem}: expected one; the file holds {listed}")


def _eeg_raw(path: Path, stream: dict[str, Any]) -> tuple[Any, tuple[str, ...], list[str | None], float]:
    """The EEG stream as an ``mne.io.RawArray`` (volts as declared), its channel types and units, t0."""
    import mne

    name = _info(stream, "name")
    sfreq = float(_info(stream, "nominal_srate") or 0)
    if sfreq <= 0:
        raise DatasetFormatError(
            path, f"EEG stream {name!r} has no nominal rate (irregular): cannot lay it out"
        )
    check_rate(sfreq, path)
    stamps = np.asarray(stream["time_stamps"], dtype=float)
    data = np.asarray(stream["time_series"], dtype=float)
    if stamps.size == 0:
        raise DatasetFormatError(path, f"EEG stream {name!r} holds no sample")
    channels = _channels(stream)
    labels = [c["label"] or f"ch{i + 1}" for i, c in enumerate(channels)]
    if len(set(labels)) != len(labels):
        raise DatasetFormatError(path, f"EEG stream {name!r} has duplicate channel labels")
    types = []
    for channel, label in zip(channels, labels, strict=True):
        declared = channel["type"].lower()
        types.append(declared if declared in CHANNEL_TYPES else channel_type_from_name(label))
    t0 = float(stamps[0])
    # Each sample on its place of the nominal grid; places no sample reached stay NaN.
    places = np.rint((stamps - t0) * sfreq).astype(np.int64)
    if places.size == data.shape[0] and np.array_equal(places, np.arange(places.size)):
        grid = data
    else:
        grid = np.full((int(places.max()) + 1, data.shape[1]), np.nan)
        keep = places >= 0
        grid[places[keep]] = data[keep]
    units: list[str | None] = [None] * len(types)
    to_volts = np.ones(len(types))
    for i, (channel, ch_type) in enumerate(zip(channels, types, strict=True)):
        if ch_type in VOLTAGE_TYPES:
            units[i] = channel["unit"] if unit_in_volts(channel["unit"]) else DEFAULT_EEG_UNIT
            to_volts[i] = unit_in_volts(units[i]) or 1e-6
    info = mne.create_info(labels, sfreq, types)
    raw = mne.io.RawArray((grid * to_volts).T, info, verbose="error")
    return raw, tuple(types), units, t0


def _add_fmri(recording: Recording, stream: dict[str, Any], t0: float) -> None:
    """Volumes of the fMRI stream: times on the EEG's base, region means, names and TR."""
    values = np.asarray(stream["time_series"], dtype=np.float32)
    labels = [c["label"] for c in _channels(stream)]
    names = (
        labels[1:]
        if labels and labels[0] == FMRI_INDEX_CHANNEL
        else [f"region{i}" for i in range(1, len(labels))]
    )
    tr = _session_value(stream, "tr")
    rate = float(_info(stream, "nominal_srate") or 0)
    recording.volume_times = np.asarray(stream["time_stamps"], dtype=float) - t0
    recording.roi_means = values[:, 1:]
    recording.region_labels = tuple(names)
    recording.tr = float(tr) if tr else (1.0 / rate if rate > 0 else recording.tr)


def _session_value(stream: dict[str, Any], key: str) -> str:
    try:
        return str(stream["info"]["desc"][0]["session"][0][key][0])
    except (TypeError, KeyError, IndexError):
        return ""
