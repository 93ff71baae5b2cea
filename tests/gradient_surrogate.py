"""A small, honest gradient-artefact surrogate for the corrector's tests (independent of simulators/).

The artefact is what an EEG lead picks up from an EPI sequence: the time derivative of three gradient
axes (slice select with its rewinder and a spoiler, a readout train of alternating lobes, phase-encode
blips), as rectangular pulses on the ramps, smoothed by the amplifier's anti-alias filter (a Gaussian
of 0.27 ms, which makes each pulse a difference of two error functions and lets the waveform be
evaluated at any continuous time). Each channel mixes the three axes with its own weights, and the
weights drift slowly (head movement). Volumes start at continuous times: on the sample grid with a
sync box, else at ``TR * (1 + clock_ppm * 1e-6)`` intervals from an arbitrary phase, the trigger being
registered at the first sample after the onset. The clean signal is pink noise with an alpha rhythm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

SMOOTHING = 0.27e-3  # s: the amplifier's 1 kHz anti-alias filter (-40 dB at 2.5 kHz) as a Gaussian


def _trapezoids(slice_seconds: float) -> list[tuple[int, float, float, float, float]]:
    """Gradient lobes of one slice: (axis, start, ramp, flat, amplitude), times in seconds."""
    lobes: list[tuple[int, float, float, float, float]] = [
        (2, 0.5e-3, 0.4e-3, 3.0e-3, 1.5),  # slice select
        (2, 4.5e-3, 0.4e-3, 1.3e-3, -1.5),  # its rewinder
        (0, 5.0e-3, 0.2e-3, 1.0e-3, -0.8),  # readout prephaser
        (1, 5.0e-3, 0.2e-3, 1.0e-3, -0.6),  # phase prephaser
    ]
    start, sign = 7.0e-3, 1.0
    for echo in range(40):
        lobes.append((0, start, 0.1e-3, 0.45e-3, sign * 1.0))
        lobes.append((1, start + 0.6e-3, 0.05e-3, 0.0, 0.15))  # blip between echoes
        start += 0.65e-3
        sign = -sign
        del echo
    lobes.append((2, start + 1.0e-3, 0.6e-3, 6.0e-3, 3.0))  # spoiler: a net area, so slice-rate energy
    assert start + 9e-3 < slice_seconds
    return lobes


def slice_waveforms(tau: np.ndarray, slice_seconds: float) -> np.ndarray:
    """dG/dt of the three axes at slice-local times ``tau`` (s), smoothed; shape (3, n)."""
    out = np.zeros((3, tau.size))
    scale = np.sqrt(2) * SMOOTHING

    def pulse(a: float, b: float, height: float) -> np.ndarray:
        return height * 0.5 * (erf((tau - a) / scale) - erf((tau - b) / scale))

    for axis, start, ramp, flat, amplitude in _trapezoids(slice_seconds):
        out[axis] += pulse(start, start + ramp, amplitude / ramp)
        out[axis] += pulse(start + ramp + flat, start + 2 * ramp + flat, -amplitude / ramp)
    return out * 1e-4  # one unit lobe's ramp gives a pulse of ~1 (per 0.1 ms)


@dataclass
class Surrogate:
    times: np.ndarray  # (n,)
    clean: np.ndarray  # (n, channels), the last channel a misc sample counter
    artefact: np.ndarray  # (n, channels)
    triggers: np.ndarray  # trigger stamps as registered
    onsets: np.ndarray  # true continuous onsets (s)
    sfreq: float
    tr: float
    slices: int

    @property
    def contaminated(self) -> np.ndarray:
        return self.clean + self.artefact

    @property
    def trigger_samples(self) -> np.ndarray:
        return np.round((self.triggers - self.times[0]) * self.sfreq).astype(np.int64)


def make_surrogate(
    *,
    sfreq: float = 5000.0,
    seconds: float = 60.0,
    n_eeg: int = 8,
    tr: float = 2.1,
    slices: int = 35,
    clock_ppm: float = 0.0,
    scan_start: float = 1.0,
    scan_stop: float | None = None,
    peak_uv: float = 5000.0,
    drift: float = 0.02,
    seed: int = 0,
) -> Surrogate:
    """Clean EEG (``n_eeg`` channels + a misc counter) and the artefact of volumes from ``scan_start`` on."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sfreq)
    t0 = 100.0
    times = t0 + np.arange(n) / sfreq
    clean = np.zeros((n, n_eeg + 1))
    freqs = np.fft.rfftfreq(n, 1 / sfreq)
    shape = np.where(freqs > 0.3, 1 / np.sqrt(np.maximum(freqs, 0.3)), 0.0) * (freqs < 200)
    for c in range(n_eeg):
        spectrum = (rng.normal(size=freqs.size) + 1j * rng.normal(size=freqs.size)) * shape
        pink = np.fft.irfft(spectrum, n)
        pink *= 20.0 / pink.std()
        band = (rng.normal(size=freqs.size) + 1j * rng.normal(size=freqs.size)) * np.exp(
            -0.5 * ((freqs - 10.0) / 0.8) ** 2
        )
        alpha = np.fft.irfft(band, n)
        clean[:, c] = pink + alpha * 8.0 / alpha.std()
    clean[:, -1] = np.arange(n)

    stretch = 1 + clock_ppm * 1e-6
    period = tr * stretch
    if clock_ppm == 0.0:
        first = t0 + round(scan_start * sfreq) / sfreq  # a sync box: onsets on samples
    else:
        first = t0 + scan_start + 0.37 / sfreq  # between two samples
    stop = times[-1] if scan_stop is None else t0 + scan_stop
    onsets = first + period * np.arange(int((stop - first) // period) + 1)
    onsets = onsets[onsets + period <= times[-1] + 1 / sfreq]
    weights = rng.normal(size=(n_eeg, 3)) * np.array([1.0, 0.6, 0.8])
    phases = rng.uniform(0, 2 * np.pi, size=(n_eeg, 3))
    artefact = np.zeros((n, n_eeg + 1))
    slice_seconds = tr / slices
    for onset in onsets:
        a = int(np.ceil((onset - t0) * sfreq - 1e-9))
        b = min(n, int(np.ceil((onset + period - t0) * sfreq - 1e-9)))
        local = (times[a:b] - onset) / stretch  # the scanner's clock
        index = np.minimum((local // slice_seconds).astype(int), slices - 1)
        tau = local - index * slice_seconds
        waves = slice_waveforms(tau, slice_seconds)  # (3, m)
        moving = weights[:, :, None] * (
            1 + drift * np.sin(2 * np.pi * (times[a:b] - t0)[None, None, :] / 45.0 + phases[:, :, None])
        )
        artefact[a:b, :n_eeg] = np.einsum("cam,am->mc", moving, waves)
    artefact[:, :n_eeg] *= peak_uv / np.abs(artefact[:, :n_eeg]).max()
    trigger_index = np.ceil((onsets - t0) * sfreq - 1e-6).astype(np.int64)
    return Surrogate(times, clean, artefact, times[trigger_index], onsets, sfreq, tr, slices)
