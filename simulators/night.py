"""Full-night surrogate polysomnography that follows a real expert hypnogram.

The stage sequence is real (a Sleep-EDF hypnogram, shipped in
``simulators/data/sleep-edf/``), cropped to the sleep period; the signals are
synthetic (:mod:`simulators.surrogate_eeg`). Unscored and movement epochs are
synthesised like the closest scored epoch before them and keep their unscored
label. :func:`write_night` writes the night as an EDF file with its hypnogram
as a YASA-style text file (one stage per line: 0 W, 1 N1, 2 N2, 3 N3, 4 REM,
-1 movement or artefact, -2 unscored).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.stages import UNSCORED
from recordings.hypnogram import Hypnogram, exclusion_reason, read_hypnogram
from simulators.surrogate_eeg import STAGE_ORDER, subject_traits, synthesize

NIGHT_FORMAT_VERSION = 1
"""Version of the night synthesis; part of :func:`night_rng`'s seed derivation is *not* this."""

NIGHT_EEG_CHANNELS: tuple[str, ...] = ("F3", "F4", "C3", "C4", "O1", "O2", "TP9", "TP10")
"""EEG electrodes of the reduced PSG-like night montage (reference FCz)."""

SHIPPED_HYPNOGRAMS = Path(__file__).parent / "data" / "sleep-edf"
MARGIN_SECONDS = 15 * 60.0
_YASA_CODES = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4}


@dataclass(frozen=True)
class SurrogateNight:
    """One synthetic night in memory.

    Attributes
    ----------
    data : np.ndarray, shape (n_channels, n_times)
        Signals in microvolts.
    ch_names, ch_types : tuple of str
        Channel names and MNE types (``eeg``, ``eog``, ``emg``, ``ecg``).
    sfreq : float
        Sampling rate in Hz.
    hypnogram : Hypnogram
        The stages followed, epoch ``i`` starting at ``i * 30`` s of ``data``.
    """

    data: np.ndarray
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    sfreq: float
    hypnogram: Hypnogram

    @property
    def n_times(self) -> int:
        """Number of samples per channel."""
        return int(self.data.shape[1])

    def channel(self, name: str) -> np.ndarray:
        """The samples of one channel, in microvolts."""
        return self.data[self.ch_names.index(name)]


def shipped_hypnograms() -> list[Path]:
    """The real Sleep-EDF hypnograms shipped with the simulators, sorted by name."""
    return sorted(SHIPPED_HYPNOGRAMS.glob("*-Hypnogram.edf"))


def crop_to_sleep(hypnogram: Hypnogram, margin_seconds: float = MARGIN_SECONDS) -> Hypnogram:
    """Keep the sleep period: from ``margin_seconds`` before the first sleep epoch to as long after the last.

    Parameters
    ----------
    hypnogram : Hypnogram
        A whole recording's hypnogram (Sleep-EDF's span about 24 h).
    margin_seconds : float
        Wake kept on either side of the sleep period.

    Returns
    -------
    night : Hypnogram
        The cropped epochs, onsets restarting at 0.

    Raises
    ------
    ValueError
        If the hypnogram holds no sleep epoch.
    """
    sleep = np.flatnonzero([stage not in ("W", UNSCORED) for stage in hypnogram.stages])
    if sleep.size == 0:
        raise ValueError(f"{hypnogram.source}: no sleep epoch, nothing to crop to")
    margin = round(margin_seconds / hypnogram.epoch_seconds)
    start = max(0, int(sleep[0]) - margin)
    stop = min(hypnogram.n_epochs, int(sleep[-1]) + 1 + margin)
    return Hypnogram(
        onsets=np.arange(stop - start) * hypnogram.epoch_seconds,
        stages=hypnogram.stages[start:stop],
        raw_labels=hypnogram.raw_labels[start:stop],
        source=hypnogram.source,
        epoch_seconds=hypnogram.epoch_seconds,
    )


def synthesis_stages(stages: tuple[str, ...] | list[str]) -> np.ndarray:
    """Stage names to indices into :data:`STAGE_ORDER` for synthesis.

    An unscored epoch is synthesised like the closest scored epoch before it
    (after it at the start); its label stays unscored.

    Parameters
    ----------
    stages : sequence of str
        Stage per epoch, possibly :data:`core.stages.UNSCORED`.

    Returns
    -------
    index : np.ndarray of int
    """
    index = np.array([STAGE_ORDER.index(s) if s in STAGE_ORDER else -1 for s in stages], dtype=int)
    if (index < 0).all():
        return np.zeros(index.size, dtype=int)
    for i in range(1, index.size):
        if index[i] < 0:
            index[i] = index[i - 1]
    index[index < 0] = index[index >= 0][0]
    return index


def night_rng(hypnogram_name: str, seed: int) -> np.random.Generator:
    """The random generator of one night: a function of the hypnogram's name and the seed only."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(hypnogram_name.encode())]))


def surrogate_night(
    hypnogram: str | Path | Hypnogram,
    *,
    sfreq: float = 100.0,
    seed: int = 0,
    crop: bool = True,
    eeg_channels: tuple[str, ...] = NIGHT_EEG_CHANNELS,
) -> SurrogateNight:
    """Synthesise a night that follows a hypnogram epoch by epoch.

    Parameters
    ----------
    hypnogram : path-like or Hypnogram
        The hypnogram to follow (any file :func:`recordings.hypnogram.read_hypnogram` reads).
    sfreq : float
        Sampling rate in Hz (100 by default, as YASA and Sleep-EDF's EEG).
    seed : int
        Seed of the synthesis; the subject's traits also follow from it and the hypnogram.
    crop : bool
        Crop to the sleep period (:func:`crop_to_sleep`) first.
    eeg_channels : tuple of str
        EEG electrodes to synthesise (10-20 names, reference FCz).

    Returns
    -------
    night : SurrogateNight
    """
    if sfreq < 100:
        raise ValueError(f"sfreq must be at least 100 Hz, got {sfreq}")
    hyp = hypnogram if isinstance(hypnogram, Hypnogram) else read_hypnogram(hypnogram)
    if crop:
        hyp = crop_to_sleep(hyp)
    name = Path(hyp.source).name
    rng = night_rng(name, seed)
    traits = subject_traits(zlib.crc32(name.encode()) + seed)
    epochs = synthesis_stages(hyp.stages)
    samples_per_epoch = round(hyp.epoch_seconds * sfreq)
    stage_per_sample = np.repeat(epochs, samples_per_epoch)
    signals = synthesize(stage_per_sample, sfreq, rng, eeg_channels, traits)
    data = np.vstack([signals["eeg"], signals["eog"][None], signals["emg"][None], signals["ecg"][None]])
    names = (*eeg_channels, "EOG", "EMG chin", "ECG")
    types = ("eeg",) * len(eeg_channels) + ("eog", "emg", "ecg")
    return SurrogateNight(data.astype(np.float32), names, types, float(sfreq), hyp)


def hypnogram_text(hypnogram: Hypnogram) -> str:
    """The hypnogram as YASA-style text: one integer per epoch (see the module docstring)."""
    lines = []
    for stage, label in zip(hypnogram.stages, hypnogram.raw_labels, strict=True):
        if stage == UNSCORED:
            lines.append("-2" if exclusion_reason(label) == "unscored" else "-1")
        else:
            lines.append(str(_YASA_CODES[stage]))
    return "\n".join(lines) + "\n"


def write_night(night: SurrogateNight, folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write a night as ``<name>.edf``, its hypnogram as ``<name>_hypnogram.txt`` and ``<name>.json``.

    The hypnogram's name follows the convention the recording readers look for beside an EDF file.
    The JSON sidecar marks the data as surrogate (key ``SurrogateData``), so that feature tables
    and model bundles made from them say so.

    Parameters
    ----------
    night : SurrogateNight
        From :func:`surrogate_night`.
    folder : path-like
        Output folder; created if missing.
    name : str
        Base name of both files.

    Returns
    -------
    edf, hypnogram : Path
        The files written.
    """
    import mne

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = mne.create_info(list(night.ch_names), night.sfreq, list(night.ch_types), verbose=False)
    raw = mne.io.RawArray(night.data.astype(np.float64) * 1e-6, info, verbose=False)
    edf = folder / f"{name}.edf"
    mne.export.export_raw(edf, raw, fmt="edf", overwrite=True, verbose=False)
    text = folder / f"{name}_hypnogram.txt"
    text.write_text(hypnogram_text(night.hypnogram))
    sidecar = {
        "SamplingFrequency": night.sfreq,
        "Hypnogram": Path(night.hypnogram.source).name,
        "SurrogateData": "synthetic polysomnography generated by sleepstream's simulators (not a recording)",
    }
    edf.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return edf, text
