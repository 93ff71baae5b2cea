"""EEG features from Welch spectra kept per segment, so a hop costs only its new segments.

Segments of ``segment_seconds`` (Hann window, constant detrend, as
``scipy.signal.welch``) lie on a fixed grid of step ``segment_seconds *
(1 - overlap)``, counted in samples from the first sample of the first window. A window uses
every grid segment lying wholly inside it. Each segment's spectrum (one FFT per EEG channel,
the bins of the features' frequency span only) is computed once and kept while windows still
cover the segment; the window's PSDs and the cross-spectra of all channel pairs are running
sums over its segments: a segment's PSDs and pair products are added when it enters and
subtracted when it leaves. Band powers and the spectral entropy come from the PSDs, the
coherence from the pair cross-spectra. The result equals ``scipy.signal.welch`` and
``scipy.signal.coherence`` applied to the samples the segments span (tested).

Pairs are stored in :class:`PairLayout` order (by circular channel distance), in which the
products of all pairs, and the coherence weights, are two broadcast operations over shifted
views of the channels: no Python loop over channels or pairs, no gathered copies.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import as_strided
from scipy.signal import get_window

from features.config import FeatureConfig

RESUM_EVERY = 256
CHUNK_ROWS = 128  # pairs per chunk of the running-sum update (4 channel shifts of 32)
LARGE_SHARE = 0.25


class PairLayout:
    """Order of the channel pairs in cross-spectral arrays: by circular distance between channels.

    For ``n`` channels, row ``(d - 1) * n + i`` holds the pair ``(i, (i + d) mod n)``, for
    ``d = 1 .. (n - 1) // 2`` and ``i = 0 .. n - 1``; for even ``n`` the last ``n / 2`` rows hold
    the pairs ``(i, i + n / 2)``, ``i < n / 2``. Each of the ``n (n - 1) / 2`` unordered pairs
    appears once, as ``(first[row], second[row])``; its cross-spectrum is
    ``X_first conj(X_second)``. In this order the products of every pair are one broadcast
    product of the channels with the channels shifted by ``d`` (plus one for the half
    distance), where the upper-triangle order needs a loop over channels or gathered copies.

    Parameters
    ----------
    n_channels : int
        Number of channels.

    Attributes
    ----------
    first, second : np.ndarray of int, shape (n_pairs,)
        The two channels of each row.
    row : np.ndarray of int, shape (n_channels, n_channels)
        Row of the pair ``{i, j}`` (either order); -1 on the diagonal.
    """

    def __init__(self, n_channels: int) -> None:
        n = n_channels
        self.n_channels = n
        self.n_shifts = max(0, (n - 1) // 2)
        self.n_half = n // 2 if n % 2 == 0 else 0
        self.n_pairs = n * (n - 1) // 2
        channels = np.arange(n)
        shifted = (channels[None, :] + np.arange(1, self.n_shifts + 1)[:, None]) % n
        self.first = np.concatenate([np.tile(channels, self.n_shifts), channels[: self.n_half]])
        self.second = np.concatenate([shifted.ravel(), channels[: self.n_half] + self.n_half])
        self.row = np.full((n, n), -1)
        self.row[self.first, self.second] = np.arange(self.n_pairs)
        self.row[self.second, self.first] = np.arange(self.n_pairs)
        for array in (self.first, self.second, self.row):
            array.flags.writeable = False

    def plan(self, doubled: np.ndarray, out: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Operands of the pair products ``out[row] = left[first] * right[second]``.

        Parameters
        ----------
        doubled : np.ndarray, shape (2 * n_channels, ...)
            The right operand stacked twice (``doubled[k] = right[k % n_channels]``).
        out : np.ndarray, shape (n_pairs, ...)
            Where the products go (C-contiguous).

        Returns
        -------
        plan : list of (int, np.ndarray, np.ndarray)
            ``(count, right_view, out_view)``: ``np.multiply(left[:count], right_view,
            out=out_view)`` for each entry computes every row (views, computed once per buffer).
        """
        n, shifts, half = self.n_channels, self.n_shifts, self.n_half
        steps: list[tuple[int, np.ndarray, np.ndarray]] = []
        if shifts:
            # Overlapping views doubled[d : d + n] for d = 1 .. shifts, as one array.
            shape, strides = (shifts, n, *doubled.shape[1:]), (doubled.strides[0], *doubled.strides)
            right = (
                np.ndarray(shape, doubled.dtype, buffer=doubled, offset=doubled.strides[0], strides=strides)
                if doubled.flags.c_contiguous  # the direct constructor is much cheaper than as_strided
                else as_strided(doubled[1:], shape=shape, strides=strides, writeable=False)
            )
            block = out[: shifts * n].view()
            block.shape = (shifts, n, *out.shape[1:])  # raises rather than copy a non-contiguous `out`
            steps.append((n, right, block))
        if half:
            steps.append((half, doubled[half:n], out[shifts * n :]))
        return steps

    def upper_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the pairs in ``np.triu_indices(n, k=1)`` order, and which are stored as ``(j, i)``.

        ``pairs[rows]``, conjugated where ``swapped``, is the upper-triangle order.
        """
        upper_i, upper_j = np.triu_indices(self.n_channels, k=1)
        rows = self.row[upper_i, upper_j]
        return rows, self.first[rows] != upper_i


@functools.lru_cache(maxsize=16)
def pair_layout(n_channels: int) -> PairLayout:
    """The (shared, read-only) :class:`PairLayout` of ``n_channels`` channels."""
    return PairLayout(n_channels)


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
        Sum over segments of the cross-spectral density of every pair, in
        :class:`PairLayout` order. Read-only: it is the running sum itself.
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
        """Welch cross-spectral density per pair (mean over segments), :class:`PairLayout` order."""
        return self.pairs_sum / self.n_segments

    def cross_matrix(self) -> np.ndarray:
        """Full Hermitian cross-spectral matrix, shape (n_channels, n_channels, n_freqs)."""
        n = self.psd_sum.shape[0]
        layout = pair_layout(n)
        pairs = self.pairs
        cross = np.zeros((n, n, self.freqs.size), dtype=complex)
        cross[np.arange(n), np.arange(n)] = self.psd
        cross[layout.first, layout.second] = pairs
        cross[layout.second, layout.first] = pairs.conj()
        return cross


class _Segment:
    """One segment's spectrum and PSDs, in buffers reused once it has left every window."""

    __slots__ = ("power", "psd", "spectrum")

    def __init__(self, n_channels: int, n_freqs: int) -> None:
        self.spectrum = np.empty((n_channels, n_freqs), dtype=np.complex64)
        self.psd = np.empty((n_channels, n_freqs))
        self.power = 0.0


class IncrementalWelch:
    """Per-segment spectra with running window sums of the PSDs and pair cross-spectra.

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
    span : tuple of float | None
        Frequencies (Hz, inclusive) of the bins kept; the config's ``frequency_span`` by default
        (:func:`reachable_span` gives the part of it a low rate can hold).
    """

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        config: FeatureConfig,
        origin: int | None = None,
        span: tuple[float, float] | None = None,
    ) -> None:
        self.sfreq = sfreq
        self.n_channels = n_channels
        self.length = round(config.segment_seconds * sfreq)
        self.step = max(1, round(self.length * (1 - config.segment_overlap)))
        window = get_window("hann", self.length)
        self._taper = window.astype(np.float32)
        freqs = np.fft.rfftfreq(self.length, 1 / sfreq)
        low, high = config.frequency_span if span is None else span
        self._bins = np.flatnonzero((freqs >= low) & (freqs <= high))
        if self._bins.size == 0 or self._bins[0] == 0 or freqs[self._bins[-1]] >= sfreq / 2:
            raise ValueError(f"frequency span {(low, high)} Hz does not fit a {sfreq:g} Hz signal")
        self.freqs = freqs[self._bins]
        # One-sided density scaling (DC and Nyquist are outside the kept bins),
        # applied to the spectrum as its square root so products come out scaled.
        self._root_scale = np.float32(np.sqrt(2.0 / (sfreq * np.sum(window**2))))
        self._bin_slice = slice(int(self._bins[0]), int(self._bins[-1]) + 1)
        self._origin = origin
        n_freqs = self._bins.size
        layout = pair_layout(n_channels)
        # Work buffers (reused for every segment) and the running sums.
        self._frame = np.empty((n_channels, self.length), dtype=np.float32)
        self._squared = np.empty((n_channels, 2 * n_freqs))
        self._conjugate = np.empty((2 * n_channels, n_freqs), dtype=np.complex64)
        self._products = np.empty((layout.n_pairs, n_freqs), dtype=np.complex64)
        self._plan = layout.plan(self._conjugate, self._products)
        self._psd_sum = np.zeros((n_channels, n_freqs))
        self._pairs_sum = np.zeros((layout.n_pairs, n_freqs), dtype=np.complex64)
        # A segment's products are added to (or subtracted from) the running sum in chunks of
        # about CHUNK_ROWS pairs, each through the head of the products buffer, which stays in
        # cache: the full products array is never written and read back.
        self._chunks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        for count, right, block in layout.plan(self._conjugate, self._pairs_sum):
            if block.ndim == 3:
                step = max(1, CHUNK_ROWS // n_channels)
                for start in range(0, block.shape[0], step):
                    part = block[start : start + step]
                    buffer = self._products[: part.shape[0] * n_channels].view()
                    buffer.shape = part.shape
                    self._chunks.append((count, right[start : start + step], buffer, part))
            else:
                self._chunks.append((count, right, self._products[: block.shape[0]], block))
        self._segments: dict[int, _Segment] = {}
        self._spare: list[_Segment] = []
        self._updates = 0

    def reset(self) -> None:
        """Forget the grid and every segment (a stream restarted)."""
        self._origin = None
        self._spare.extend(self._segments.values())
        self._segments.clear()
        self._psd_sum[:] = 0
        self._pairs_sum[:] = 0
        self._updates = 0

    def spectra(
        self,
        data: np.ndarray,
        times: np.ndarray,
        first_sample: int,
        rows: np.ndarray | slice | None = None,
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
        rows : np.ndarray of int | slice | None
            Rows of ``data`` to use (the EEG channels); all rows when None.

        Returns
        -------
        spectra : EegSpectra | None
            None when no whole segment lies in the window.
        """
        n = times.size
        length, step = self.length, self.step
        if n < length:
            return None
        if self._origin is None:
            self._origin = first_sample
        offset = self._origin - first_sample
        first_key = -(offset // step)  # ceil((first_sample - origin) / step)
        first = offset + first_key * step  # its first sample in the window
        count = (n - length - first) // step + 1
        # Reject a segment spanning a dropout: its samples are not evenly spaced.
        period = (times[-1] - times[0]) / (n - 1)
        spans = times[first + length - 1 :: step][:count] - times[first::step][:count]
        spans -= (length - 1) * period
        even = np.abs(spans, out=spans) <= 0.5 * period
        keys = range(first_key, first_key + count)
        starts = range(first, first + count * step, step)
        if even.all():
            wanted = dict(zip(keys, starts, strict=True))
        else:
            wanted = {key: start for key, start, ok in zip(keys, starts, even.tolist(), strict=True) if ok}
        segments = self._segments
        # Subtracting a segment from single-precision sums leaves its rounding behind;
        # re-sum exactly every RESUM_EVERY updates, and whenever a leaving segment
        # carried a large share of the power (an artefact), so errors never build up.
        resum = self._updates >= RESUM_EVERY
        leaving = [key for key in segments if key not in wanted]
        if leaving:
            total = float(self._psd_sum.sum())
            for key in leaving:
                stale = segments.pop(key)
                self._spare.append(stale)
                if resum or stale.power > LARGE_SHARE * total:
                    resum = True
                else:
                    np.subtract(self._psd_sum, stale.psd, out=self._psd_sum)
                    self._accumulate(stale.spectrum, np.subtract)
                    self._updates += 1
                    total -= stale.power
        if rows is None:
            rows = slice(None)
        for key, index in wanted.items():
            if key not in segments:
                fresh = self._segment_spectra(data[rows, index : index + length])
                segments[key] = fresh
                if not resum:
                    np.add(self._psd_sum, fresh.psd, out=self._psd_sum)
                    self._accumulate(fresh.spectrum, np.add)
                    self._updates += 1
        if resum:
            self._resum()
        if not wanted:
            return None
        indices = list(wanted.values())
        return EegSpectra(
            freqs=self.freqs,
            psd_sum=self._psd_sum.copy(),
            pairs_sum=self._pairs_sum,
            n_segments=len(indices),
            span=(indices[0], indices[-1] + length),
        )

    def _resum(self) -> None:
        self._psd_sum[:] = 0
        pairs = np.zeros(self._pairs_sum.shape, dtype=np.complex128)
        for key in sorted(self._segments):
            segment = self._segments[key]
            self._psd_sum += segment.psd
            pairs += self._pair_products(segment.spectrum)
        self._pairs_sum[:] = pairs
        self._updates = 0

    def _accumulate(self, spectrum: np.ndarray, operation: np.ufunc) -> None:
        """Add (or subtract) one segment's pair products to the running sum, chunk by chunk."""
        n = spectrum.shape[0]
        np.conjugate(spectrum, out=self._conjugate[:n])
        self._conjugate[n:] = self._conjugate[:n]
        for count, right, buffer, part in self._chunks:
            np.multiply(spectrum[:count], right, out=buffer)
            operation(part, buffer, out=part)

    def _pair_products(self, spectrum: np.ndarray) -> np.ndarray:
        """Cross-spectra ``X_i conj(X_j)`` of one segment, every pair, into the products buffer."""
        n = spectrum.shape[0]
        np.conjugate(spectrum, out=self._conjugate[:n])
        self._conjugate[n:] = self._conjugate[:n]
        for count, right, out in self._plan:
            np.multiply(spectrum[:count], right, out=out)
        return self._products

    def _segment_spectra(self, segment: np.ndarray) -> _Segment:
        # Single precision for the FFT and the pair products (the running PSD sums
        # are double): relative error ~1e-7, well inside what EEG amplitudes carry.
        frame = self._frame
        # The mean in single precision: its rounding error (~1e-7 of the mean) is a
        # constant, which the (periodic) Hann window confines to bins 0 and 1.
        mean = np.add.reduce(segment, axis=1, keepdims=True, dtype=np.float32)
        mean /= segment.shape[1]
        if math.isfinite(mean.sum()):
            np.subtract(segment, mean, out=frame, casting="unsafe")
        else:  # a NaN or an infinity in a row makes its mean non-finite
            np.copyto(frame, segment, casting="unsafe")
            np.nan_to_num(frame, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            frame -= frame.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        frame *= self._taper
        result = self._spare.pop() if self._spare else _Segment(*self._psd_sum.shape)
        spectrum, psd = result.spectrum, result.psd
        np.multiply(scipy.fft.rfft(frame, axis=1)[:, self._bin_slice], self._root_scale, out=spectrum)
        # |X|^2 in double precision: real and imaginary parts squared exactly, then added.
        parts = self._squared
        np.copyto(parts, spectrum.view(np.float32))
        parts *= parts
        np.add(parts[:, 0::2], parts[:, 1::2], out=psd)
        result.power = float(np.add.reduce(psd, axis=None))
        return result


def band_reachable(band: tuple[float, float], sfreq: float) -> bool:
    """Whether a band lies wholly below the Nyquist frequency of ``sfreq`` (its upper edge strictly)."""
    return band[1] < sfreq / 2


def reachable_span(config: FeatureConfig, sfreq: float) -> tuple[float, float]:
    """The features' frequency span, its top lowered below the Nyquist frequency where ``sfreq`` needs it.

    The top becomes half a bin below Nyquist (bins of ``1 / segment_seconds`` Hz), so the Nyquist
    bin, whose density scaling differs, is never kept: at 64 Hz, (0.5, 45) becomes (0.5, 31.875).
    """
    low, high = config.frequency_span
    length = round(config.segment_seconds * sfreq)
    return low, min(high, sfreq / 2 - sfreq / length / 2)


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
    df = float(freqs[1] - freqs[0])
    membership = _band_membership(freqs.size, float(freqs[0]), df, tuple(config.bands.values()))
    powers = psd @ membership
    if config.power_scale == "relative":
        powers /= np.add.reduce(psd[:, _in_range(freqs, config.spectrum_range)], axis=1, keepdims=True)
        df = 1.0
    mean = np.add.reduce(powers, axis=0) * (df / powers.shape[0])
    return np.log10(mean) if config.power_scale == "log" else mean


def band_power(psd: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Power of any band per channel, ``sum_{low <= f < high} PSD(f) df`` (µV²), as the feature bands.

    For bands outside the five features (e.g. sigma, 11-16 Hz, where spindles lie).

    Parameters
    ----------
    psd : np.ndarray, shape (n_channels, n_freqs)
        Power spectral density (µV²/Hz).
    freqs : np.ndarray, shape (n_freqs,)
        Bin frequencies (evenly spaced).
    band : tuple of float
        (low, high) in Hz.
    """
    low, high = band
    inside = (freqs >= low - 1e-9) & (freqs < high - 1e-9)
    return np.add.reduce(psd[:, inside], axis=1) * float(freqs[1] - freqs[0])


@functools.lru_cache(maxsize=8)
def _band_membership(
    n_freqs: int, first: float, df: float, bands: tuple[tuple[float, float], ...]
) -> np.ndarray:
    """Band membership matrix (n_freqs, n_bands) of 0 and 1.

    Bin f is in band (low, high) when low <= f < high; the last band also takes f == high.
    """
    freqs = first + df * np.arange(n_freqs)
    membership = np.zeros((n_freqs, len(bands)))
    for k, (low, high) in enumerate(bands):
        upper = freqs <= high + 1e-9 if k == len(bands) - 1 else freqs < high - 1e-9
        membership[(freqs >= low - 1e-9) & upper, k] = 1.0
    return membership


def _in_range(freqs: np.ndarray, span: tuple[float, float]) -> slice:
    """The bins with ``span[0] <= f <= span[1]`` of increasing ``freqs``, as a slice."""
    return slice(int(freqs.searchsorted(span[0], "left")), int(freqs.searchsorted(span[1], "right")))


def spectral_entropy(psd: np.ndarray, freqs: np.ndarray, config: FeatureConfig) -> float:
    """Normalised Shannon entropy of the PSD in ``spectrum_range``, averaged over channels.

    ``H = -sum(p log p) / log(N)`` with ``p`` the PSD normalised to sum 1 over the
    N bins (``0 log 0 = 0``); 1 for a flat spectrum, 0 for a single line. Computed as
    ``log(T) - sum(P log P) / T`` with ``T = sum(P)``, without normalising every bin.
    """
    band = psd[:, _in_range(freqs, config.spectrum_range)]
    total = np.add.reduce(band, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.log(total) - np.einsum("ij,ij->i", band, np.log(band)) / total
        if not np.isfinite(entropy).all():  # bins without power: 0 log 0 = 0
            logs = np.zeros(band.shape)
            np.log(band, out=logs, where=band > 0)
            entropy = np.log(total) - np.einsum("ij,ij->i", band, logs) / total
            entropy[~(total > 0)] = 0.0  # a channel without power: no bin contributes
    return float(np.add.reduce(entropy) / (entropy.size * np.log(band.shape[1])))


def mean_coherence(psd: np.ndarray, pairs: np.ndarray, freqs: np.ndarray, config: FeatureConfig) -> float:
    """Magnitude-squared coherence averaged over ``spectrum_range`` and all channel pairs.

    ``C_ij(f) = |S_ij(f)|^2 / (S_ii(f) S_jj(f))`` from Welch-averaged spectra.
    Sums over segments may be passed instead of means: the ratio is the same.

    Parameters
    ----------
    psd : np.ndarray, shape (n_channels, n_freqs)
        Power spectral densities.
    pairs : np.ndarray of complex, shape (n_pairs, n_freqs)
        Cross-spectral densities of the pairs, in :class:`PairLayout` order.
    freqs : np.ndarray
        Bin frequencies (increasing).
    config : FeatureConfig
        Frequency range.
    """
    band = _in_range(freqs, config.spectrum_range)
    psd, pairs = psd[:, band], pairs[:, band]
    n = psd.shape[0]
    # |S_ij|^2 weighted by 1 / (S_ii S_jj): the weights are the pair products of the
    # inverse PSDs, taken block by block over the same shifted views as the cross-spectra.
    doubled = np.empty((2 * n, psd.shape[1]), dtype=pairs.real.dtype)  # the cross-spectra's precision
    np.divide(1.0, psd, out=doubled[:n], casting="unsafe")
    doubled[n:] = doubled[:n]
    magnitude = np.abs(pairs)
    magnitude *= magnitude
    total = 0.0
    for count, right, block in pair_layout(n).plan(doubled, magnitude):
        block *= doubled[:count]
        # Single-precision sums over the bins of each pair, then a double-precision total.
        total += float(np.add.reduce(np.einsum("...f,...f->...", block, right), axis=None, dtype=np.float64))
    return total / magnitude.size


def mean_pearson(data: np.ndarray) -> float:
    """Mean Pearson correlation over all channel pairs (the origin app's "coherence")."""
    correlation = np.corrcoef(data)
    upper = np.triu_indices(data.shape[0], k=1)
    return float(correlation[upper].mean())


def average_reference(cross: np.ndarray) -> np.ndarray:
    """Cross-spectral matrix after re-referencing to the common average of its channels."""
    # P C P with P = I - 1 1^T / n: subtract the row and column means, add back the grand mean.
    rows = cross.mean(axis=1, keepdims=True)
    return cross - rows - cross.mean(axis=0, keepdims=True) + rows.mean(axis=0, keepdims=True)


def select_channels(spectra: EegSpectra, keep: np.ndarray, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """Summed PSDs and pair cross-spectra of the channels ``keep``, optionally average-referenced.

    Returns
    -------
    psd_sum : np.ndarray, shape (n_keep, n_freqs)
    pairs_sum : np.ndarray, shape (n_keep * (n_keep - 1) / 2, n_freqs)
        Both summed over the window's segments (divide by ``n_segments`` for means); the
        pairs in the :class:`PairLayout` order of ``n_keep`` channels.
    """
    n = spectra.psd_sum.shape[0]
    subset = pair_layout(keep.size)
    if reference == "average" and keep.size > 1:
        cross = average_reference(spectra.cross_matrix()[np.ix_(keep, keep)]) * spectra.n_segments
        return np.einsum("iif->if", cross).real, cross[subset.first, subset.second]
    if keep.size == n:
        return spectra.psd_sum, spectra.pairs_sum
    full = pair_layout(n)
    first, second = keep[subset.first], keep[subset.second]
    rows = full.row[first, second]
    pairs = spectra.pairs_sum[rows]
    swapped = full.first[rows] != first
    pairs[swapped] = pairs[swapped].conj()
    return spectra.psd_sum[keep], pairs
