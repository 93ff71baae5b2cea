"""Synthetic 32-channel sleep EEG conditioned on a stage sequence.

The signal is a sum of sources, each with a spatial topography over the
10-20 electrode positions and a time course whose amplitude follows the scored
stage of every 30 s epoch (changes are smoothed over a few seconds):

- an aperiodic 1/f^2 background, independent per channel, plus a widespread
  common 1/f component whose share rises with sleep depth, so that inter-channel
  coherence rises from W to N3;
- posterior alpha (8.5-11.5 Hz, waxing and waning) in W, fading in N1;
- fronto-central theta (4-7.5 Hz) in N1;
- frontal delta (0.5-2 Hz), small in W and N1, moderate in N2, high-amplitude
  (> 75 uV peak to peak) in N3;
- centro-parietal sleep spindles (11-16 Hz, 0.5-2 s) and frontal K-complexes
  in N2 (spindles also, fewer, in N3);
- a little beta and gamma, larger in W, independent per channel (muscle-like);
- EOG: blinks and saccades in W, slow rolling eye movements in N1, leaking into
  Fp1/Fp2; ECG: a QRS-like waveform at 55-70 beats per minute.

Units are microvolts. Everything is deterministic given the random generator.
Sources are listed in ``docs/simulators.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recordings.montage import EEG_CHANNELS

STAGE_ORDER = ("W", "N1", "N2", "N3")


@dataclass(frozen=True)
class StageProfile:
    """Amplitudes (uV RMS at the source's peak electrode) for one stage."""

    alpha: float
    theta: float
    delta: float
    beta: float
    gamma: float
    background: float
    common_share: float
    spindles_per_min: float
    kcomplexes_per_min: float
    rolling_eye: float
    blinks_per_min: float
    heart_rate: float


PROFILES: dict[str, StageProfile] = {
    "W": StageProfile(14.0, 3.0, 4.0, 3.0, 1.2, 6.0, 0.25, 0.0, 0.0, 5.0, 12.0, 68.0),
    "N1": StageProfile(4.0, 8.0, 8.0, 2.0, 0.8, 6.5, 0.35, 0.3, 0.0, 45.0, 1.0, 63.0),
    "N2": StageProfile(2.0, 6.0, 22.0, 1.5, 0.6, 7.0, 0.5, 5.0, 1.5, 5.0, 0.0, 60.0),
    "N3": StageProfile(1.5, 5.0, 55.0, 1.0, 0.5, 8.0, 0.65, 1.5, 0.5, 2.0, 0.0, 58.0),
}

# Topography centres as 10-20 electrode names; widths in metres on the head.
_TOPOGRAPHY = {
    "alpha": (("O1", "Oz", "O2", "Pz"), 0.06),
    "theta": (("Fz", "Cz", "FC1", "FC2"), 0.07),
    "delta": (("Fz", "F3", "F4"), 0.09),
    "spindle": (("Cz", "CP1", "CP2", "Pz"), 0.06),
    "kcomplex": (("Fz", "FC1", "FC2"), 0.08),
    "beta": (("C3", "C4", "Fz"), 0.08),
    "gamma": (("T7", "T8", "TP9", "TP10"), 0.05),
}
_EOG_LEAK = {"Fp1": 0.35, "Fp2": 0.35, "F7": 0.12, "F8": 0.12, "F3": 0.08, "F4": 0.08}


def electrode_positions() -> np.ndarray:
    """Head positions (metres) of :data:`EEG_CHANNELS` from MNE's standard 10-20 montage."""
    import mne

    try:  # MNE >= 1.13 renamed the template; older releases only know the old name
        montage = mne.channels.make_standard_montage("colin27_1020")
    except ValueError:
        montage = mne.channels.make_standard_montage("standard_1020")
    positions = montage.get_positions()["ch_pos"]
    return np.array([positions[name] for name in EEG_CHANNELS])


def topography(centres: tuple[str, ...], width: float, positions: np.ndarray) -> np.ndarray:
    """Gaussian spatial weights (peak 1) around the mean position of ``centres``."""
    index = [EEG_CHANNELS.index(name) for name in centres]
    centre = positions[index].mean(axis=0)
    distance = np.linalg.norm(positions - centre, axis=1)
    weights = np.exp(-(distance**2) / (2 * width**2))
    return weights / weights.max()


def stage_envelope(
    stage_per_sample: np.ndarray, values: dict[str, float], sfreq: float, smooth_s: float = 4.0
) -> np.ndarray:
    """Per-sample value of a stage-dependent parameter, smoothed at transitions."""
    raw = np.zeros(stage_per_sample.size)
    for index, stage in enumerate(STAGE_ORDER):
        raw[stage_per_sample == index] = values[stage]
    width = max(1, int(smooth_s * sfreq))
    kernel = np.hanning(width)
    kernel /= kernel.sum()
    padded = np.pad(raw, (width // 2, width - width // 2 - 1), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def band_noise(
    rng: np.random.Generator, n_times: int, sfreq: float, low: float, high: float, rows: int = 0
) -> np.ndarray:
    """Unit-variance Gaussian noise band-limited to [low, high] Hz (FFT filter).

    One series of ``n_times`` samples, or ``rows`` independent ones when ``rows > 0``.
    """
    shape = (rows, n_times) if rows else (n_times,)
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=-1)
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    taper = np.clip(np.minimum(freqs - low + 0.25, high + 0.25 - freqs) / 0.5, 0, 1)
    signal = np.fft.irfft(spectrum * taper, n=n_times, axis=-1)
    return signal / np.maximum(signal.std(axis=-1, keepdims=True), 1e-12)


def pink_noise(
    rng: np.random.Generator, shape: tuple[int, int], sfreq: float, exponent: float = 2.0
) -> np.ndarray:
    """Unit-variance noise with a 1/f^exponent power spectrum above 0.3 Hz, per row."""
    n_times = shape[1]
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=1)
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    gain = 1 / np.maximum(freqs, 0.3) ** (exponent / 2)
    gain[freqs > min(0.45 * sfreq, 100.0)] = 0.0
    signal = np.fft.irfft(spectrum * gain, n=n_times, axis=1)
    return signal / np.maximum(signal.std(axis=1, keepdims=True), 1e-12)


def _events(rng: np.random.Generator, rate_per_sample: np.ndarray, refractory: int) -> np.ndarray:
    """Sample indices of events drawn as a Poisson process with a varying rate."""
    draws = rng.random(rate_per_sample.size) < rate_per_sample
    onsets = np.flatnonzero(draws)
    kept: list[int] = []
    for onset in onsets:
        if not kept or onset - kept[-1] >= refractory:
            kept.append(int(onset))
    return np.array(kept, dtype=int)


def _add_waveform(target: np.ndarray, onset: int, waveform: np.ndarray) -> None:
    stop = min(target.size, onset + waveform.size)
    target[onset:stop] += waveform[: stop - onset]


def _spindle_train(
    rng: np.random.Generator,
    stage_idx: np.ndarray,
    profile_rates: dict[str, float],
    sfreq: float,
    n_times: int,
) -> np.ndarray:
    rate = stage_envelope(stage_idx, profile_rates, sfreq, smooth_s=1.0) / 60 / sfreq
    out = np.zeros(n_times)
    for onset in _events(rng, rate, refractory=int(3 * sfreq)):
        duration = rng.uniform(0.5, 2.0)
        t = np.arange(int(duration * sfreq)) / sfreq
        envelope = np.sin(np.pi * t / duration) ** 2
        freq = rng.uniform(11.5, 15.0)
        _add_waveform(out, onset, rng.uniform(20, 35) * envelope * np.sin(2 * np.pi * freq * t))
    return out


def _kcomplex_train(
    rng: np.random.Generator,
    stage_idx: np.ndarray,
    profile_rates: dict[str, float],
    sfreq: float,
    n_times: int,
) -> np.ndarray:
    rate = stage_envelope(stage_idx, profile_rates, sfreq, smooth_s=1.0) / 60 / sfreq
    out = np.zeros(n_times)
    t = np.arange(int(1.2 * sfreq)) / sfreq
    for onset in _events(rng, rate, refractory=int(5 * sfreq)):
        amplitude = rng.uniform(80, 140)
        negative = -np.exp(-((t - 0.35) ** 2) / (2 * 0.09**2))
        positive = 0.5 * np.exp(-((t - 0.75) ** 2) / (2 * 0.15**2))
        _add_waveform(out, onset, amplitude * (negative + positive))
    return out


def _eog(rng: np.random.Generator, stage_idx: np.ndarray, sfreq: float, n_times: int) -> np.ndarray:
    rolling = stage_envelope(stage_idx, {s: PROFILES[s].rolling_eye for s in STAGE_ORDER}, sfreq)
    out = rolling * band_noise(rng, n_times, sfreq, 0.1, 0.6)
    blink_rate = stage_envelope(
        stage_idx, {s: PROFILES[s].blinks_per_min for s in STAGE_ORDER}, sfreq, smooth_s=1.0
    )
    t = np.arange(int(0.4 * sfreq)) / sfreq
    blink = 150 * np.exp(-((t - 0.2) ** 2) / (2 * 0.05**2))
    for onset in _events(rng, blink_rate / 60 / sfreq, refractory=int(1 * sfreq)):
        _add_waveform(out, onset, blink)
    return out + 3 * rng.standard_normal(n_times)


def _ecg(rng: np.random.Generator, stage_idx: np.ndarray, sfreq: float, n_times: int) -> np.ndarray:
    heart_rate = stage_envelope(stage_idx, {s: PROFILES[s].heart_rate for s in STAGE_ORDER}, sfreq)
    phase = np.cumsum(heart_rate / 60 / sfreq * (1 + 0.03 * band_noise(rng, n_times, sfreq, 0.05, 0.4)))
    beats = np.flatnonzero(np.diff(np.floor(phase)) > 0)
    t = np.arange(int(0.6 * sfreq)) / sfreq
    waveform = (
        900 * np.exp(-((t - 0.20) ** 2) / (2 * 0.010**2))
        - 120 * np.exp(-((t - 0.23) ** 2) / (2 * 0.012**2))
        + 150 * np.exp(-((t - 0.45) ** 2) / (2 * 0.040**2))
    )
    out = np.zeros(n_times)
    for beat in beats:
        _add_waveform(out, max(0, int(beat) - int(0.2 * sfreq)), waveform)
    return out + 10 * rng.standard_normal(n_times)


def synthesize_eeg(stage_per_sample: np.ndarray, sfreq: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesize the 32 channels of one run.

    Parameters
    ----------
    stage_per_sample : np.ndarray of int, shape (n_times,)
        Index into ``("W", "N1", "N2", "N3")`` of the stage at every sample.
    sfreq : float
        Sampling rate in Hz.
    rng : np.random.Generator
        Source of randomness (seeded by the caller).

    Returns
    -------
    data : np.ndarray of float64, shape (32, n_times)
        30 EEG channels, EOG and ECG, in microvolts, in
        :data:`recordings.montage.CHANNELS` order.
    """
    n_times = stage_per_sample.size
    positions = electrode_positions()
    n_eeg = len(EEG_CHANNELS)

    def envelope(field: str) -> np.ndarray:
        return stage_envelope(stage_per_sample, {s: getattr(PROFILES[s], field) for s in STAGE_ORDER}, sfreq)

    common_share = envelope("common_share")
    background = envelope("background")
    local = pink_noise(rng, (n_eeg, n_times), sfreq)
    common = pink_noise(rng, (1, n_times), sfreq)[0]
    eeg = background * (np.sqrt(1 - common_share) * local + np.sqrt(common_share) * common)

    alpha_waxing = 0.6 + 0.4 * np.tanh(band_noise(rng, n_times, sfreq, 0.05, 0.3))
    rhythms = {
        "alpha": envelope("alpha") * alpha_waxing * band_noise(rng, n_times, sfreq, 8.5, 11.5),
        "theta": envelope("theta") * band_noise(rng, n_times, sfreq, 4.0, 7.5),
        "delta": envelope("delta") * band_noise(rng, n_times, sfreq, 0.5, 2.0),
        "spindle": _spindle_train(
            rng, stage_per_sample, {s: PROFILES[s].spindles_per_min for s in STAGE_ORDER}, sfreq, n_times
        ),
        "kcomplex": _kcomplex_train(
            rng, stage_per_sample, {s: PROFILES[s].kcomplexes_per_min for s in STAGE_ORDER}, sfreq, n_times
        ),
    }
    for name, signal in rhythms.items():
        centres, width = _TOPOGRAPHY[name]
        eeg += np.outer(topography(centres, width, positions), signal)
    # Beta and gamma at the scalp are largely muscle activity: local, so incoherent.
    for name, (low, high) in (("beta", (15.0, 25.0)), ("gamma", (30.0, min(45.0, 0.45 * sfreq)))):
        centres, width = _TOPOGRAPHY[name]
        local_band = band_noise(rng, n_times, sfreq, low, high, rows=n_eeg)
        eeg += topography(centres, width, positions)[:, None] * envelope(name) * local_band

    eog = _eog(rng, stage_per_sample, sfreq, n_times)
    for name, share in _EOG_LEAK.items():
        eeg[EEG_CHANNELS.index(name)] += share * eog
    ecg = _ecg(rng, stage_per_sample, sfreq, n_times)
    return np.vstack([eeg, eog, ecg])
