"""EEG features from Welch spectra kept per segment, so a hop costs only its new segments.

Segments of ``segment_seconds`` (Hann window, constant detrend, as
``scipy.signal.welch``) lie on a fixed grid of step ``segment_seconds *
(1 - overlap)``, counted in samples from the first sample of the first window. A window uses
every grid segment lying wholly inside it. For each segment the PSD of every EEG channel
and the cross-spectrum of every channel pair are computed once (one FFT per
channel, one vectorised product for all pairs) and kept while windows still
cover the segment; the window's spectra are running sums over its segments.
Band powers and the spectral entropy come from the PSDs, the coherence from the
pair cross-spectra. The result equals ``scipy.signal.welch`` and
``scipy.signal.coherence`` applied to the samples the segments span (tested).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.signal import get_window

from features.config import FeatureConfig

RESUM_EVERY = 256
LARGE_SHARE = 0.25


@dataclass
class EegSpectra:
    """Welch spectra of one window, as sums over its segments.

    Attributes
    ----------
    freqs : np.ndarray
        Frequencies (Hz) of the kept bins.
    psd_sum : np.ndarray, shape (n_channels, n_freqs)
        Sum over segments of each channel's power spectral density (µV²/Hz).
    pairs_sum : np.ndarray of complex, shape (n_pairs, n_freqs)
        Sum over segments of the cross-spectral density of every pair ``i < j``
        (``np.triu_indices`` order). Read-only: it is the running sum itself.
    n_segments : int
        Segments summed.
    span : tuple of int
        First and last+1 sample index (within the window) of the samples the segments cover.
    """

    freqs: np.ndarray
    psd_sum: np.ndarray
    pairs_sum: np.ndarray
    n_segments: int
    span: tuple[int, int]

    @property
    def psd(self) -> np.ndarray:
        """Welch power spectral density per channel (mean over segments)."""
        return self.psd_sum / self.n_segments

    @property
    def pairs(self) -> np.ndarray:
        """Welch cross-spectral density per pair (mean over segments)."""
        return self.pairs_sum / self.n_segments

    def cross_matrix(self) -> np.ndarray:
        """Full Hermitian cross-spectral matrix, shape (n_channels, n_channels, n_freqs)."""
        n = self.psd_sum.shape[0]
        upper_i, upper_j = np.triu_indices(n, k=1)
        pairs = self.pairs
        cross = np.zeros((n, n, self.freqs.size), dtype=complex)
        cross[np.arange(n), np.arange(n)] = self.psd
        cross[upper_i, upper_j] = pairs
        cross[upper_j, upper_i] = pairs.conj()
        return cross


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
        self._taper = window.astype(np.float32)
        freqs = np.fft.rfftfreq(self.length, 1 / sfreq)
        low, high = config.frequency_span
        self._bins = np.flatnonzero((freqs >= low) & (freqs <= high))
        if self._bins.size == 0 or self._bins[0] == 0 or freqs[self._bins[-1]] >= sfreq / 2:
            raise ValueError(f"frequency span {config.frequency_span} Hz does not fit a {sfreq:g} Hz signal")
        self.freqs = freqs[self._bins]
        # One-sided density scaling (DC and Nyquist are outside the kept bins),
        # applied to the spectrum as its square root so products come out scaled.
        self._root_scale = np.float32(np.sqrt(2.0 / (sfreq * np.sum(window**2))))
        self._bin_slice = slice(int(self._bins[0]), int(self._bins[-1]) + 1)
        self._origin = origin
        self._upper = np.triu_indices(n_channels, k=1)
        self._segments: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._psd_sum = np.zeros((n_channels, self._bins.size))
        self._pairs_sum = np.zeros((self._upper[0].size, self._bins.size), dtype=np.complex64)
        self._updates = 0

    def reset(self) -> None:
        """Forget the grid and every segment (a stream restarted)."""
        self._origin = None
        self._segments.clear()
        self._psd_sum[:] = 0
        self._pairs_sum[:] = 0
        self._updates = 0

    def spectra(
        self, data: np.ndarray, times: np.ndarray, first_sample: int, rows: np.ndarray | None = None
    ) -> EegSpectra | None:
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
        rows : np.ndarray of int | None
            Rows of ``data`` to use (the EEG channels); all rows when None.

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
        leaving = [k for k in self._segments if k not in wanted]
        # Subtracting a segment from single-precision sums leaves its rounding behind;
        # re-sum exactly every RESUM_EVERY updates, and whenever a leaving segment
        # carried a large share of the power (an artefact), so errors never build up.
        resum = self._updates >= RESUM_EVERY
        for stale in leaving:
            psd, pairs = self._segments.pop(stale)
            if resum or psd.sum() > LARGE_SHARE * self._psd_sum.sum():
                resum = True
            else:
                self._psd_sum -= psd
                self._pairs_sum -= pairs
                self._updates += 1
        for key, index in wanted.items():
            if key not in self._segments:
                segment = (
                    data[:, index : index + self.length]
                    if rows is None
                    else data[rows, index : index + self.length]
                )
                psd, pairs = self._segment_spectra(segment)
                self._segments[key] = (psd, pairs)
                if not resum:
                    self._psd_sum += psd
                    self._pairs_sum += pairs
                    self._updates += 1
        if resum:
            self._resum()
        if not wanted:
            return None
        indices = list(wanted.values())
        count = len(wanted)
        return EegSpectra(
            freqs=self.freqs,
            psd_sum=self._psd_sum.copy(),
            pairs_sum=self._pairs_sum,
            n_segments=count,
            span=(min(indices), max(indices) + self.length),
        )

    def _resum(self) -> None:
        self._psd_sum[:] = 0
        pairs = np.zeros(self._pairs_sum.shape, dtype=np.complex128)
        for key in sorted(self._segments):
            psd_part, pairs_part = self._segments[key]
            self._psd_sum += psd_part
            pairs += pairs_part
        self._pairs_sum[:] = pairs
        self._updates = 0

    def _segment_spectra(self, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Single precision for the FFT and the pair products (the running sums are
        # double): relative error ~1e-7, well inside what EEG amplitudes carry.
        values = segment.astype(np.float32)
        if not np.isfinite(values).all():
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        values -= values.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        values *= self._taper
        spectrum = scipy.fft.rfft(values, axis=1)[:, self._bin_slice]
        spectrum *= self._root_scale
        psd = spectrum.real.astype(np.float64) ** 2
        psd += spectrum.imag.astype(np.float64) ** 2
        conjugate = spectrum.conj()
        n = spectrum.shape[0]
        pairs = np.empty((self._upper[0].size, spectrum.shape[1]), dtype=np.complex64)
        # All pairs (i, j > i) of one channel i in one vectorised product: a loop over
        # channels, not over pairs, and no gathered copies of the spectra.
        offset = 0
        for i in range(n - 1):
            np.multiply(spectrum[i], conjugate[i + 1 :], out=pairs[offset : offset + n - 1 - i])
            offset += n - 1 - i
        return psd, pairs


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
    membership = _band_membership(freqs.size, float(freqs[0]), float(df), tuple(config.bands.values()))
    powers = psd @ membership * df
    if config.power_scale == "relative":
        low, high = config.spectrum_range
        total = psd[:, (freqs >= low) & (freqs <= high)].sum(axis=1, keepdims=True) * df
        powers = powers / total
    mean = powers.mean(axis=0)
    return np.log10(mean) if config.power_scale == "log" else mean


@functools.lru_cache(maxsize=8)
def _band_membership(n_freqs: int, first: float, df: float, bands: tuple) -> np.ndarray:
    """Band membership matrix (n_freqs, n_bands) of 0 and 1.

    Bin f is in band (low, high) when low <= f < high; the last band also takes f == high.
    """
    freqs = first + df * np.arange(n_freqs)
    membership = np.zeros((n_freqs, len(bands)))
    for k, (low, high) in enumerate(bands):
        upper = freqs <= high + 1e-9 if k == len(bands) - 1 else freqs < high - 1e-9
        membership[(freqs >= low - 1e-9) & upper, k] = 1.0
    return membership


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


def mean_coherence(psd: np.ndarray, pairs: np.ndarray, freqs: np.ndarray, config: FeatureConfig) -> float:
    """Magnitude-squared coherence averaged over ``spectrum_range`` and all channel pairs.

    ``C_ij(f) = |S_ij(f)|^2 / (S_ii(f) S_jj(f))`` from Welch-averaged spectra.
    Sums over segments may be passed instead of means: the ratio is the same.

    Parameters
    ----------
    psd : np.ndarray, shape (n_channels, n_freqs)
        Power spectral densities.
    pairs : np.ndarray of complex, shape (n_pairs, n_freqs)
        Cross-spectral densities of the pairs ``i < j`` in ``np.triu_indices`` order.
    freqs : np.ndarray
        Bin frequencies.
    config : FeatureConfig
        Frequency range.
    """
    low, high = config.spectrum_range
    band = (freqs >= low) & (freqs <= high)
    if not band.all():
        psd, pairs = psd[:, band], pairs[:, band]
    upper_i, upper_j = np.triu_indices(psd.shape[0], k=1)
    inverse = (1.0 / psd).astype(pairs.real.dtype)  # the precision of the cross-spectra
    weight = inverse[upper_i]
    weight *= inverse[upper_j]
    magnitude = pairs.real**2
    magnitude += pairs.imag**2
    magnitude *= weight
    return float(magnitude.mean(dtype=np.float64))


def mean_pearson(data: np.ndarray) -> float:
    """Mean Pearson correlation over all channel pairs (the origin app's "coherence")."""
    correlation = np.corrcoef(data)
    upper = np.triu_indices(data.shape[0], k=1)
    return float(correlation[upper].mean())


def average_reference(cross: np.ndarray) -> np.ndarray:
    """Cross-spectral matrix after re-referencing to the common average of its channels."""
    n = cross.shape[0]
    projector = np.eye(n) - np.full((n, n), 1.0 / n)
    return np.einsum("ai,ijf,bj->abf", projector, cross, projector)


def select_channels(spectra: EegSpectra, keep: np.ndarray, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """Summed PSDs and pair cross-spectra of the channels ``keep``, optionally average-referenced.

    Returns
    -------
    psd_sum : np.ndarray, shape (n_keep, n_freqs)
    pairs_sum : np.ndarray, shape (n_keep * (n_keep - 1) / 2, n_freqs)
        Both summed over the window's segments (divide by ``n_segments`` for means).
    """
    n = spectra.psd_sum.shape[0]
    if reference == "average" and keep.size > 1:
        cross = average_reference(spectra.cross_matrix()[np.ix_(keep, keep)]) * spectra.n_segments
        upper = np.triu_indices(keep.size, k=1)
        return np.einsum("iif->if", cross).real, cross[upper]
    if keep.size == n:
        return spectra.psd_sum, spectra.pairs_sum
    index = np.full((n, n), -1)
    upper_i, upper_j = np.triu_indices(n, k=1)
    index[upper_i, upper_j] = np.arange(upper_i.size)
    sub_i, sub_j = np.triu_indices(keep.size, k=1)
    return spectra.psd_sum[keep], spectra.pairs_sum[index[keep[sub_i], keep[sub_j]]]
