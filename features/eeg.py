"""EEG features from Welch spectra kept per segment, so a hop costs only its new segments.

Segments of ``segment_seconds`` (Hann window, constant detrend, as
``scipy.signal.welch``) lie on a fixed grid of step ``segment_seconds *
(1 - overlap)``, counted in samples from the first sample of the first window. A window uses
every grid segment lying wholly inside it. For each segment the cross-spectral
matrix of all EEG channels is computed once (one FFT per channel, one outer
product per frequency bin, vectorised) and kept while windows still cover it;
the window's spectra are a running sum of its segments' matrices. Band powers
and the spectral entropy come from its diagonal (the PSDs), the coherence from
its off-diagonal terms. The result equals ``scipy.signal.welch`` and
``scipy.signal.coherence`` applied to the samples the segments span (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import get_window

from features.config import FeatureConfig


@dataclass
class EegSpectra:
    """Summed spectra of one window.

    Attributes
    ----------
    freqs : np.ndarray
        Frequencies (Hz) of the kept bins.
    cross : np.ndarray of complex, shape (n_channels, n_channels, n_freqs)
        Mean cross-spectral density over the window's segments (µV²/Hz).
    n_segments : int
        Segments averaged.
    span : tuple of int
        First and last+1 sample index (within the window) of the samples the segments cover.
    """

    freqs: np.ndarray
    cross: np.ndarray
    n_segments: int
    span: tuple[int, int]

    @property
    def psd(self) -> np.ndarray:
        """Power spectral density per channel, shape (n_channels, n_freqs)."""
        return np.einsum("iif->if", self.cross).real


class IncrementalWelch:
    """Per-segment cross-spectra with a running window sum.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    n_channels : int
        EEG channels (all EEG-type channels of the stream; bad ones are left
        out when features are read, not here).
    config : FeatureConfig
        Segment length, overlap and frequency span.
    origin : int | None
        Sample number where the segment grid starts; the first window's first sample by default.
    """

    def __init__(
        self, sfreq: float, n_channels: int, config: FeatureConfig, origin: int | None = None
    ) -> None:
        self.sfreq = sfreq
        self.n_channels = n_channels
        self.length = round(config.segment_seconds * sfreq)
        self.step = max(1, round(self.length * (1 - config.segment_overlap)))
        window = get_window("hann", self.length)
        self._taper = window.astype(np.float64)
        freqs = np.fft.rfftfreq(self.length, 1 / sfreq)
        low, high = config.frequency_span
        self._bins = np.flatnonzero((freqs >= low) & (freqs <= high))
        if self._bins.size == 0 or self._bins[0] == 0 or freqs[self._bins[-1]] >= sfreq / 2:
            raise ValueError(f"frequency span {config.frequency_span} Hz does not fit a {sfreq:g} Hz signal")
        self.freqs = freqs[self._bins]
        # One-sided density scaling (DC and Nyquist are outside the kept bins).
        self._scale = 2.0 / (sfreq * np.sum(window**2))
        self._origin = origin
        self._segments: dict[int, np.ndarray] = {}
        self._sum = np.zeros((n_channels, n_channels, self._bins.size), dtype=np.complex128)

    def reset(self) -> None:
        """Forget the grid and every segment (a stream restarted)."""
        self._origin = None
        self._segments.clear()
        self._sum[:] = 0

    def spectra(self, data: np.ndarray, times: np.ndarray, first_sample: int) -> EegSpectra | None:
        """Spectra of one window.

        Parameters
        ----------
        data : np.ndarray, shape (n_channels, n_samples)
            The window's EEG channels (µV).
        times : np.ndarray, shape (n_samples,)
            Their (dejittered) times, used to reject segments that span a gap.
        first_sample : int
            Sequence number of the window's first sample; segment k covers
            samples ``origin + k * step`` to ``+ length``.

        Returns
        -------
        spectra : EegSpectra | None
            None when no whole segment lies in the window.
        """
        n = times.size
        if n < self.length:
            return None
        if self._origin is None:
            self._origin = first_sample
        period = (times[-1] - times[0]) / (n - 1)
        first_key = -((self._origin - first_sample) // self.step)  # ceil((first_sample - origin) / step)
        wanted: dict[int, int] = {}
        key = first_key
        while True:
            index = self._origin + key * self.step - first_sample
            if index + self.length > n:
                break
            # Reject a segment spanning a dropout: its samples are not evenly spaced.
            if (
                abs(times[index + self.length - 1] - times[index] - (self.length - 1) * period)
                <= 0.5 * period
            ):
                wanted[key] = index
            key += 1
        for stale in [k for k in self._segments if k not in wanted]:
            self._sum -= self._segments.pop(stale)
        for key, index in wanted.items():
            if key not in self._segments:
                matrix = self._segment_matrix(data[:, index : index + self.length])
                self._segments[key] = matrix
                self._sum += matrix
        if not wanted:
            return None
        indices = list(wanted.values())
        return EegSpectra(
            freqs=self.freqs,
            cross=self._sum / len(wanted),
            n_segments=len(wanted),
            span=(min(indices), max(indices) + self.length),
        )

    def _segment_matrix(self, segment: np.ndarray) -> np.ndarray:
        clean = np.nan_to_num(segment.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        clean -= clean.mean(axis=1, keepdims=True)
        spectrum = np.fft.rfft(clean * self._taper, axis=1)[:, self._bins]
        return np.einsum("if,jf->ijf", spectrum, spectrum.conj()) * self._scale


def band_powers(psd: np.ndarray, freqs: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Band power per band, averaged over channels.

    Parameters
    ----------
    psd : np.ndarray, shape (n_channels, n_freqs)
        Power spectral density (µV²/Hz).
    freqs : np.ndarray, shape (n_freqs,)
        Bin frequencies (evenly spaced).
    config : FeatureConfig
        Bands and power scale.

    Returns
    -------
    powers : np.ndarray, shape (5,)
        Delta, theta, alpha, beta, gamma: µV² (absolute), log10 µV² (log) or
        fraction of the power in ``spectrum_range`` (relative).
    """
    df = freqs[1] - freqs[0]
    names = list(config.bands)
    powers = np.empty((psd.shape[0], len(names)))
    for k, name in enumerate(names):
        low, high = config.bands[name]
        upper = freqs <= high if k == len(names) - 1 else freqs < high
        powers[:, k] = psd[:, (freqs >= low) & upper].sum(axis=1) * df
    if config.power_scale == "relative":
        low, high = config.spectrum_range
        total = psd[:, (freqs >= low) & (freqs <= high)].sum(axis=1, keepdims=True) * df
        powers = powers / total
    mean = powers.mean(axis=0)
    return np.log10(mean) if config.power_scale == "log" else mean


def spectral_entropy(psd: np.ndarray, freqs: np.ndarray, config: FeatureConfig) -> float:
    """Normalised Shannon entropy of the PSD in ``spectrum_range``, averaged over channels.

    ``H = -sum(p log p) / log(N)`` with ``p`` the PSD normalised to sum 1 over the
    N bins; 1 for a flat spectrum, 0 for a single line.
    """
    low, high = config.spectrum_range
    band = psd[:, (freqs >= low) & (freqs <= high)]
    p = band / band.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return float((-terms.sum(axis=1) / np.log(band.shape[1])).mean())


def mean_coherence(cross: np.ndarray, freqs: np.ndarray, config: FeatureConfig) -> float:
    """Magnitude-squared coherence averaged over ``spectrum_range`` and all channel pairs.

    ``C_ij(f) = |S_ij(f)|^2 / (S_ii(f) S_jj(f))`` from Welch-averaged cross-spectra.
    """
    low, high = config.spectrum_range
    band = (freqs >= low) & (freqs <= high)
    upper_i, upper_j = np.triu_indices(cross.shape[0], k=1)
    pairs = cross[upper_i, upper_j][:, band]
    power = np.einsum("iif->if", cross).real[:, band]
    coherence = np.abs(pairs) ** 2 / (power[upper_i] * power[upper_j])
    return float(coherence.mean())


def mean_pearson(data: np.ndarray) -> float:
    """Mean Pearson correlation over all channel pairs (the origin app's "coherence")."""
    correlation = np.corrcoef(data)
    upper = np.triu_indices(data.shape[0], k=1)
    return float(correlation[upper].mean())


def average_reference(cross: np.ndarray) -> np.ndarray:
    """Cross-spectra after re-referencing to the common average of the channels given."""
    n = cross.shape[0]
    projector = np.eye(n) - np.full((n, n), 1.0 / n)
    return np.einsum("ai,ijf,bj->abf", projector, cross, projector)
