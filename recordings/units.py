"""Voltage units: the scale of each channel to microvolts, and a check that amplitudes are plausible.

A file may say volts where it stores microvolts (or the reverse): EEG then looks a million
times too large or too small. :func:`check_amplitudes` catches both, and ``eeg_unit``
(:func:`voltage_scales`) overrides what the file says.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.channels import VOLTAGE_TYPES
from recordings.errors import DatasetFormatError

if TYPE_CHECKING:
    from pathlib import Path

    from recordings.recording import Recording

EEG_UNITS: dict[str, float] = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}
"""The units ``eeg_unit`` may name, in volts."""

_ALIASES = {
    "v": "V",
    "volt": "V",
    "volts": "V",
    "mv": "mV",
    "millivolt": "mV",
    "millivolts": "mV",
    "uv": "uV",
    "µv": "uV",
    "μv": "uV",
    "microvolt": "uV",
    "microvolts": "uV",
}
MAX_TYPICAL_UV = 10_000.0
"""Above this median absolute deviation (µV) a voltage channel is not plausibly in microvolts."""
MIN_TYPICAL_UV = 0.01
"""Below this median absolute deviation (µV) on every EEG channel, the EEG is not plausibly in microvolts."""
_STRETCHES = 5
_STRETCH_SECONDS = 10.0


def unit_in_volts(unit: str | None) -> float | None:
    """Volts per unit of a unit's name (``"uV"``, ``"microvolts"``, ``"mV"``, ``"V"``...), None if unknown."""
    if unit is None:
        return None
    name = _ALIASES.get(unit.strip().lower())
    return None if name is None else EEG_UNITS[name]


def check_eeg_unit(eeg_unit: str | None) -> float | None:
    """Volts per unit of an ``eeg_unit`` override; ValueError naming the choices if unknown."""
    if eeg_unit is None:
        return None
    volts = unit_in_volts(eeg_unit)
    if volts is None:
        raise ValueError(f"eeg_unit must be one of {', '.join(EEG_UNITS)}, got {eeg_unit!r}")
    return volts


def voltage_scales(
    ch_types: Sequence[str], declared_units: Sequence[str | None], eeg_unit: str | None = None
) -> np.ndarray:
    """Factor from ``raw.get_data()`` to the streamed unit, per channel.

    Parameters
    ----------
    ch_types : sequence of str
        Channel types; voltage channels (:data:`core.channels.VOLTAGE_TYPES`) go to microvolts.
    declared_units : sequence of str | None
        The unit the file declares per channel (MNE has already converted it to volts).
    eeg_unit : str | None
        What the voltage channels' numbers really are (``"V"``, ``"mV"``, ``"uV"``),
        whatever the file declares; None trusts the file.

    Returns
    -------
    scale : np.ndarray, shape (n_channels,)
        1e6 for a voltage channel read as the file declares it, 1 for other channels.
    """
    override = check_eeg_unit(eeg_unit)
    scales = []
    for ch_type, declared in zip(ch_types, declared_units, strict=True):
        if ch_type not in VOLTAGE_TYPES:
            scales.append(1.0)
        elif override is None:
            scales.append(1e6)
        else:
            # MNE scaled the stored numbers by the declared unit's volts; undo it, apply the true unit.
            scales.append(1e6 * override / (unit_in_volts(declared) or 1.0))
    return np.array(scales)


def typical_amplitudes(recording: Recording) -> np.ndarray:
    """Median absolute deviation of each channel in its streamed unit, over stretches of the recording.

    Up to five stretches of 10 s spread over the recording; the median over stretches, so that
    a flat or saturated stretch does not decide.
    """
    length = max(1, min(recording.n_times, int(_STRETCH_SECONDS * recording.sfreq)))
    starts = np.unique(np.linspace(0, recording.n_times - length, _STRETCHES).astype(int))
    deviations = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a stretch wholly missing (NaN) gives NaN
        for start in starts:
            block = recording.eeg_samples(int(start), int(start) + length).astype(float)
            deviations.append(np.nanmedian(np.abs(block - np.nanmedian(block, axis=0)), axis=0))
        return np.nanmedian(np.array(deviations), axis=0)


def check_amplitudes(recording: Recording, path: str | Path, eeg_unit: str | None = None) -> None:
    """Refuse voltage channels whose typical amplitude cannot be microvolts of EEG.

    Parameters
    ----------
    recording : Recording
        The recording, voltage channels scaled to microvolts.
    path : path-like
        The file (named in the error).
    eeg_unit : str | None
        The override in force, if any (named in the error).

    Raises
    ------
    DatasetFormatError
        If a voltage channel's median absolute deviation exceeds :data:`MAX_TYPICAL_UV`, or
        every EEG channel's is above 0 but below :data:`MIN_TYPICAL_UV`; the message names
        the channel, its amplitude, the likely cause and the ``eeg_unit`` override.
    """
    voltage = [i for i, t in enumerate(recording.ch_types) if t in VOLTAGE_TYPES]
    if not voltage:
        return
    amplitude = typical_amplitudes(recording)
    names = recording.ch_names
    given = f" (with eeg_unit={eeg_unit!r})" if eeg_unit else ""
    for i in voltage:
        if amplitude[i] > MAX_TYPICAL_UV:
            raise DatasetFormatError(
                path,
                f"channel {names[i]!r} ({recording.ch_types[i]}) has a typical amplitude of "
                f"{amplitude[i]:.4g} µV{given} (median absolute deviation; EEG is tens of µV): the file "
                f"probably stores microvolts under a volts label; give the true unit with eeg_unit='uV' "
                f"(or 'mV')",
            )
    eeg = [i for i in voltage if recording.ch_types[i] == "eeg"] or voltage
    largest = max(eeg, key=lambda i: -np.inf if np.isnan(amplitude[i]) else amplitude[i])
    if 0 < amplitude[largest] < MIN_TYPICAL_UV:
        raise DatasetFormatError(
            path,
            f"every EEG channel has a typical amplitude below {MIN_TYPICAL_UV:g} µV{given} (the largest, "
            f"{names[largest]!r}, {amplitude[largest]:.3g} µV; EEG is tens of µV): the file probably "
            f"stores volts under a microvolts label; give the true unit with eeg_unit='V' (or 'mV')",
        )
