"""fMRI features of a window: BOLD mean and variance, ALFF mean and variance.

Computed on the per-volume region means of the trailing fMRI window.
Normalisation: each region's series is converted to percent signal change
(PSC) about its mean over the window, ``100 * (x - mean) / mean``, so that
variance and ALFF do not depend on the scanner's arbitrary intensity scale.
"""

from __future__ import annotations

import functools

import numpy as np

from features.config import FeatureConfig


def regular_series(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Fill missing volumes by linear interpolation over the volume index.

    Parameters
    ----------
    values : np.ndarray, shape (n_volumes, n_regions)
        Region means of the volumes present, in time order.
    indices : np.ndarray of int, shape (n_volumes,)
        Their volume indices.

    Returns
    -------
    series : np.ndarray, shape (indices.max() - indices.min() + 1, n_regions)
        One row per volume index.
    """
    indices = np.asarray(indices)
    first, last = int(np.minimum.reduce(indices)), int(np.maximum.reduce(indices))
    if last - first + 1 == indices.size:
        return values.astype(np.float64)
    full = np.arange(first, last + 1, dtype=float)
    present = indices.astype(float)
    return np.column_stack([np.interp(full, present, values[:, r]) for r in range(values.shape[1])])


def alff(psc: np.ndarray, tr: float, band: tuple[float, float]) -> np.ndarray:
    """Amplitude of low-frequency fluctuations per region (after Zang et al. 2007).

    The series is linearly detrended; its one-sided amplitude spectrum
    ``2 |X(f)| / N`` is summed over the bins with ``band[0] <= f <= band[1]``.
    Detrending and the in-band DFT bins are one precomputed linear map, applied as a single
    matrix product.

    Parameters
    ----------
    psc : np.ndarray, shape (n_volumes, n_regions)
        Percent-signal-change series, one column per region.
    tr : float
        Repetition time in seconds.
    band : tuple of float
        Frequency band in Hz.

    Returns
    -------
    alff : np.ndarray, shape (n_regions,)
        In percent.
    """
    n = psc.shape[0]
    parts = _band_dft(n, float(tr), (float(band[0]), float(band[1]))) @ psc
    bins = parts.shape[0] // 2
    return np.hypot(parts[:bins], parts[bins:]).sum(axis=0)


@functools.lru_cache(maxsize=16)
def _band_dft(n: int, tr: float, band: tuple[float, float]) -> np.ndarray:
    """Real and imaginary parts of the in-band DFT bins of the linear-detrend residual, times 2 / n.

    Shape ``(2 * n_bins, n)``: rows ``[:n_bins]`` give the real parts, ``[n_bins:]`` the imaginary
    parts, of ``2 X(f) / n`` for the bins ``f = k / (n tr)`` (``k <= n / 2``) inside ``band``.
    """
    freqs = np.fft.rfftfreq(n, tr)
    k = np.flatnonzero((freqs >= band[0]) & (freqs <= band[1]))
    dft = np.exp(-2j * np.pi * np.outer(k, np.arange(n)) / n) @ _linear_residual(n) * (2.0 / n)
    matrix = np.concatenate([dft.real, dft.imag])
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=16)
def _linear_residual(n: int) -> np.ndarray:
    """Matrix removing the least-squares line from a series of n points (as ``scipy.signal.detrend``)."""
    design = np.column_stack([np.ones(n), np.arange(n, dtype=float)])
    return np.eye(n) - design @ np.linalg.pinv(design)


def fmri_features(values: np.ndarray, indices: np.ndarray, tr: float, config: FeatureConfig) -> np.ndarray:
    """BOLD mean, BOLD variance, ALFF mean and ALFF variance of one fMRI window.

    Parameters
    ----------
    values : np.ndarray, shape (n_volumes, n_regions)
        Region means (scanner units) of the volumes in the window.
    indices : np.ndarray of int, shape (n_volumes,)
        Their volume indices (missing volumes are interpolated).
    tr : float
        Repetition time in seconds (from the stream or the sidecar).
    config : FeatureConfig
        ALFF band and minimum volume count.

    Returns
    -------
    features : np.ndarray, shape (4,)
        ``bold_mean`` (scanner units: mean over regions and volumes),
        ``bold_variance`` (%², mean over regions of the temporal variance of
        the PSC series), ``alff_mean`` and ``alff_variance`` (%, %²: mean and
        variance across regions of each region's ALFF). NaN when the window has
        fewer than ``config.min_fmri_volumes`` volumes.
    """
    if values.shape[0] < config.min_fmri_volumes:
        return np.full(4, np.nan)
    series = regular_series(values, indices)
    n, regions = series.shape
    means = np.add.reduce(series, axis=0) / n
    psc = series - means
    psc *= 100.0 / means
    # Each PSC column has zero mean, so its sample variance is its sum of squares / (n - 1).
    # (numpy scalars throughout: no regions gives NaN, not an exception)
    variance = np.einsum("ij,ij->", psc, psc) / np.float64((n - 1) * regions)
    region_alff = alff(psc, tr, config.alff_band)
    alff_mean = np.add.reduce(region_alff) / np.float64(regions)
    spread = region_alff - alff_mean
    alff_variance = (spread @ spread) / (regions - 1) if regions > 1 else 0.0
    return np.array([values.mean(), variance, alff_mean, alff_variance], dtype=np.float64)
