"""Synthetic in-scanner EEG after gradient correction: clean EEG, ECG with known R peaks, BCG.

The clean EEG is 1/f noise with a little alpha, alike on neighbouring channels. The ECG is a train
of PQRST complexes (Gaussian waves) at known R-peak times with heart-rate variability, over
baseline wander and noise. The ballistocardiogram of each channel is a smooth multi-lobe waveform
0.1-0.8 s after each R peak (its main lobes 0.2-0.5 s after), 50-200 microvolts peak, alike on
neighbouring channels, scaled by ~10 % and shifted by a few ms from beat to beat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# (offset from the R peak in s, width in s, amplitude relative to R): P, Q, R, S, T
PQRST = (
    (-0.2, 0.025, 0.15),
    (-0.03, 0.008, -0.12),
    (0.0, 0.009, 1.0),
    (0.03, 0.01, -0.28),
    (0.28, 0.05, 0.3),
)
# BCG lobes: (delay after the R peak in s, width in s, sign)
LOBES = ((0.2, 0.04, 1.0), (0.32, 0.05, -1.0), (0.46, 0.06, 0.7), (0.62, 0.06, -0.35))


@dataclass
class Recording:
    """A synthetic recording: ``data = clean + bcg`` on the EEG channels, the ECG last."""

    sfreq: float
    times: np.ndarray  # (n,)
    clean: np.ndarray  # (n, n_eeg)
    bcg: np.ndarray  # (n, n_eeg)
    ecg: np.ndarray  # (n,)
    r_peaks: np.ndarray  # true R-peak times (s)

    @property
    def data(self) -> np.ndarray:
        """EEG with BCG, then the ECG, as ``(n, n_eeg + 1)``."""
        return np.column_stack([self.clean + self.bcg, self.ecg])


def r_peak_times(duration: float, bpm: Callable[[float], float], rng: np.random.Generator) -> np.ndarray:
    """R peaks from 0.6 s on at ``bpm(t)``, with respiratory sinus arrhythmia and random variation."""
    peaks, t = [], 0.6
    while t < duration - 0.05:
        peaks.append(t)
        rr = 60.0 / bpm(t) * (1 + 0.04 * np.sin(2 * np.pi * 0.25 * t)) + rng.normal(0, 0.012)
        t += rr
    return np.asarray(peaks)


def ecg_signal(
    times: np.ndarray,
    peaks: np.ndarray,
    rng: np.random.Generator,
    amplitude: float = 1000.0,
    noise: float = 15.0,
) -> np.ndarray:
    """PQRST complexes at ``peaks`` over baseline wander and white noise (microvolts)."""
    x = amplitude * 0.1 * np.sin(2 * np.pi * 0.27 * times + 1.0) + rng.normal(0, noise, times.size)
    sfreq = 1.0 / (times[1] - times[0])
    for peak in peaks:
        lo, hi = np.searchsorted(times, [peak - 0.4, peak + 0.5])
        t = times[lo:hi] - peak
        scale = 1 + rng.normal(0, 0.03)
        for offset, width, height in PQRST:
            x[lo:hi] += amplitude * scale * height * np.exp(-0.5 * ((t - offset) / width) ** 2)
    del sfreq
    return x


def pink_eeg(
    n: int, n_channels: int, sfreq: float, rng: np.random.Generator, rms: float = 20.0
) -> np.ndarray:
    """1/f noise with an alpha bump, neighbouring channels alike, ``rms`` microvolts per channel."""
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    shape = 1.0 / np.sqrt(np.maximum(freqs, 0.3))
    shape *= 1 + 1.5 * np.exp(-0.5 * ((freqs - 10.0) / 1.0) ** 2)
    shape[freqs > 45] *= np.exp(-(freqs[freqs > 45] - 45) / 5.0)
    sources = np.fft.irfft(np.fft.rfft(rng.normal(size=(n_channels + 2, n)), axis=1) * shape, n, axis=1)
    mixed = sources[:-2] + 0.6 * sources[1:-1] + 0.3 * sources[2:]  # neighbours share sources
    mixed -= mixed.mean(axis=1, keepdims=True)
    mixed *= rms / mixed.std(axis=1, keepdims=True)
    return mixed.T


def bcg_signal(
    times: np.ndarray,
    peaks: np.ndarray,
    n_channels: int,
    rng: np.random.Generator,
    variation: float = 0.1,
    jitter: float = 0.003,
) -> np.ndarray:
    """Per-channel multi-lobe BCG after every R peak, 50-200 microvolts peak, smooth over channels."""
    position = np.linspace(0, 1, n_channels)
    # Each lobe's gain changes smoothly across the montage (neighbours alike), sign flips on one side.
    gains = np.stack(
        [
            np.cos(np.pi * (position * (0.8 + 0.2 * j) + 0.15 * j)) + 0.35 * np.sin(2 * np.pi * position + j)
            for j in range(len(LOBES))
        ],
        axis=1,
    )
    t = np.arange(-0.1, 0.85, 1e-3)
    waves = np.zeros((n_channels, t.size))
    for j, (delay, width, sign) in enumerate(LOBES):
        waves += gains[:, j : j + 1] * sign * np.exp(-0.5 * ((t - delay) / width) ** 2)
    peak = np.abs(waves).max(axis=1, keepdims=True)
    target = 50.0 + 150.0 * (0.5 + 0.5 * np.cos(3 * np.pi * position))[:, None]
    waves *= target / peak
    out = np.zeros((times.size, n_channels))
    for r in peaks:
        at = r + rng.normal(0, jitter)
        lo, hi = np.searchsorted(times, [at - 0.1, at + 0.85])
        rel = times[lo:hi] - at
        scale = 1 + rng.normal(0, variation)
        out[lo:hi] += scale * np.stack([np.interp(rel, t, w) for w in waves], axis=1)
    return out


def make_recording(
    duration: float,
    sfreq: float = 250.0,
    n_channels: int = 16,
    seed: int = 0,
    bpm: Callable[[float], float] = lambda t: 62.0,
    polarity: float = 1.0,
) -> Recording:
    """A recording of ``duration`` seconds starting at t = 1000 s (a stream's clock)."""
    rng = np.random.default_rng(seed)
    n = round(duration * sfreq)
    rel = np.arange(n) / sfreq
    peaks = r_peak_times(duration, bpm, rng)
    ecg = polarity * ecg_signal(rel, peaks, rng)
    clean = pink_eeg(n, n_channels, sfreq, rng)
    bcg = bcg_signal(rel, peaks, n_channels, rng)
    return Recording(sfreq, 1000.0 + rel, clean, bcg, ecg, 1000.0 + peaks)
