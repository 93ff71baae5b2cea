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
    indices = np.asarray(indices, dtype=float)
    full = np.arange(indices.min(), indices.max() + 1)
    if full.size == indices.size:
        return values.astype(np.float64)
    return np.column_stack([np.interp(full, indices, values[:, r]) for r in range(values.shape[1])])


def alff(psc: np.ndarray, tr: float, band: tuple[float, float]) -> np.ndarray:
    """Amplitude of low-frequency fluctuations per region (after Zang et al. 2007).

    The series is linearly detrended; its one-sided amplitude spectrum
    ``2 |X(f)| / N`` is summed over the bins with ``band[0] <= f <= band[1]``.

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
    spectrum = np.abs(np.fft.rfft(_linear_residual(n) @ psc, axis=0)) * 2 / n
    freqs = np.fft.rfftfreq(n, tr)
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    return spectrum[in_band].sum(axis=0)


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
    means = series.mean(axis=0)
    psc = 100.0 * (series - means) / means
    region_alff = alff(psc, tr, config.alff_band)
    return np.array(
        [
            float(values.mean()),
            float(psc.var(axis=0, ddof=1).mean()),
            float(region_alff.mean()),
            float(region_alff.var(ddof=1)) if region_alff.size > 1 else 0.0,
        ]
    )
