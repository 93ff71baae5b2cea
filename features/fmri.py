"""fMRI features of a window: BOLD level and variance, ALFF (or fALFF) mean and variance.

Computed on the per-volume region means of the trailing fMRI window. Every feature is free of the
scanner's arbitrary intensity scale: each region's series is converted to percent signal change
(PSC) about its mean over the window, ``100 * (x - mean) / mean``, and the BOLD level is a percentage
of the run's causal baseline (:mod:`features.baseline`). Definitions and references in
``docs/features.md``.
"""

from __future__ import annotations

import functools

import numpy as np

from core.problems import Problem, ProblemCode, problem
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


def detrended(series: np.ndarray) -> np.ndarray:
    """Residual of the least-squares line of each column (as ``scipy.signal.detrend(type="linear")``)."""
    n = series.shape[0]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    centred = series - np.add.reduce(series, axis=0) / n
    slope = (t @ centred) / (t @ t)
    return centred - np.outer(t, slope)


def alff_bins(n: int, tr: float, band: tuple[float, float]) -> np.ndarray:
    """DFT bins ``k`` (``1 <= k <= n // 2``, frequency ``k / (n tr)``) inside ``band``, inclusive.

    Cached and read-only: every window of a run asks for the same one or two series lengths.
    """
    return _alff_bins(int(n), float(tr), (float(band[0]), float(band[1])))


@functools.lru_cache(maxsize=32)
def _alff_bins(n: int, tr: float, band: tuple[float, float]) -> np.ndarray:
    k = np.arange(1, n // 2 + 1)
    freqs = k / (n * tr)
    bins = k[(freqs >= band[0]) & (freqs <= band[1])]
    bins.flags.writeable = False
    return bins


def alff_band_problem(n: int, tr: float, band: tuple[float, float]) -> Problem | None:
    """Why a series of ``n`` volumes at ``tr`` gives no ALFF in ``band`` (None: it gives one).

    The band must lie below the Nyquist frequency ``1 / (2 tr)`` and hold at least one non-DC bin.
    Cached: the extractor and :func:`fmri_features` ask for it every window.
    """
    return _alff_band_problem(int(n), float(tr), (float(band[0]), float(band[1])))


@functools.lru_cache(maxsize=32)
def _alff_band_problem(n: int, tr: float, band: tuple[float, float]) -> Problem | None:
    nyquist = 1.0 / (2.0 * tr)
    if band[1] > nyquist:
        return problem(ProblemCode.ALFF_BAND_ABOVE_NYQUIST, high=band[1], nyquist=nyquist, tr=tr)
    if alff_bins(n, tr, band).size == 0:
        return problem(ProblemCode.ALFF_BAND_EMPTY, seconds=n * tr, low=band[0], high=band[1])
    return None


def amplitude_spectrum(psc: np.ndarray, tr: float, band: tuple[float, float], whole: bool) -> np.ndarray:
    """Amplitude spectral density ``sqrt(2 tr |X(f)|^2 / n)`` of the linearly detrended series.

    Parameters
    ----------
    psc : np.ndarray, shape (n_volumes, n_regions)
        Percent-signal-change series, one column per region.
    tr : float
        Repetition time in seconds.
    band : tuple of float
        Frequency band in Hz.
    whole : bool
        All bins ``1 <= k <= n // 2`` (True) or only those in ``band`` (False).

    Returns
    -------
    amplitude : np.ndarray, shape (n_bins, n_regions)
        In %/sqrt(Hz). Detrending and the DFT bins are one precomputed linear map, applied as a
        single matrix product.
    """
    n = psc.shape[0]
    parts = _spectrum_map(n, float(tr), (float(band[0]), float(band[1])), whole) @ psc
    bins = parts.shape[0] // 2
    return np.hypot(parts[:bins], parts[bins:])


def alff(psc: np.ndarray, tr: float, band: tuple[float, float]) -> np.ndarray:
    """Amplitude of low-frequency fluctuations per region (Zang et al. 2007).

    The mean over the in-band bins of the amplitude spectral density of the linearly detrended
    series: ``mean_f sqrt(2 tr |X(f)|^2 / n)``, which equals the common implementation's mean of
    ``2 |X(f)| / n`` (REST, DPABI) times ``sqrt(n tr / 2)`` and, unlike it, does not depend on the
    series length ``n``.

    Parameters
    ----------
    psc : np.ndarray, shape (n_volumes, n_regions)
        Percent-signal-change series, one column per region.
    tr : float
        Repetition time in seconds.
    band : tuple of float
        Frequency band in Hz (0.01-0.08 Hz in Zang et al.).

    Returns
    -------
    alff : np.ndarray, shape (n_regions,)
        In %/sqrt(Hz); NaN when no bin lies in the band.
    """
    amplitude = amplitude_spectrum(psc, tr, band, whole=False)
    if amplitude.shape[0] == 0:
        return np.full(psc.shape[1], np.nan)
    return np.add.reduce(amplitude, axis=0) / amplitude.shape[0]


def falff(psc: np.ndarray, tr: float, band: tuple[float, float]) -> np.ndarray:
    """Fractional ALFF per region (Zou et al. 2008).

    The sum of the amplitude over the in-band bins divided by its sum over all bins from the first
    non-DC bin to Nyquist, of the linearly detrended series.

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
    falff : np.ndarray, shape (n_regions,)
        Dimensionless (0-1); NaN when no bin lies in the band, or for a series without any
        fluctuation.
    """
    n = psc.shape[0]
    amplitude = amplitude_spectrum(psc, tr, band, whole=True)
    in_band = alff_bins(n, float(tr), band) - 1  # rows of bins 1..n // 2
    if in_band.size == 0:
        return np.full(psc.shape[1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.add.reduce(amplitude[in_band], axis=0) / np.add.reduce(amplitude, axis=0)


@functools.lru_cache(maxsize=32)
def _spectrum_map(n: int, tr: float, band: tuple[float, float], whole: bool) -> np.ndarray:
    """Real and imaginary parts of the DFT bins of the linear-detrend residual, times ``sqrt(2 tr / n)``.

    Shape ``(2 * n_bins, n)``: rows ``[:n_bins]`` give the real parts, ``[n_bins:]`` the imaginary
    parts, for the bins ``1 <= k <= n // 2`` (``whole``) or those of them inside ``band``.
    """
    k = np.arange(1, n // 2 + 1) if whole else alff_bins(n, tr, band)
    dft = np.exp(-2j * np.pi * np.outer(k, np.arange(n)) / n) @ _linear_residual(n) * np.sqrt(2.0 * tr / n)
    matrix = np.concatenate([dft.real, dft.imag])
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=16)
def _linear_residual(n: int) -> np.ndarray:
    """Matrix removing the least-squares line from a series of n points (as ``scipy.signal.detrend``)."""
    design = np.column_stack([np.ones(n), np.arange(n, dtype=float)])
    return np.eye(n) - design @ np.linalg.pinv(design)


def bold_level(values: np.ndarray, baseline: np.ndarray | None) -> np.float64:
    """Window mean per region in percent of its baseline, ``100 (mean - baseline) / baseline``, averaged.

    Parameters
    ----------
    values : np.ndarray, shape (n_volumes, n_regions)
        Region means of the volumes in the window.
    baseline : np.ndarray, shape (n_regions,) | None
        Each region's causal baseline (:class:`features.baseline.RunBaseline`); None: the window's
        own volumes (as for a run's first window), which gives 0.

    Returns
    -------
    level : float
        In percent.
    """
    means = np.add.reduce(values, axis=0, dtype=np.float64) / np.float64(values.shape[0])
    reference = means if baseline is None else np.asarray(baseline, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        percent = 100.0 * (means - reference) / reference
    return np.add.reduce(percent) / np.float64(percent.size)


def fmri_features(
    values: np.ndarray,
    indices: np.ndarray,
    tr: float,
    config: FeatureConfig,
    baseline: np.ndarray | None = None,
) -> np.ndarray:
    """BOLD level, BOLD variance, ALFF mean and ALFF variance of one fMRI window.

    Parameters
    ----------
    values : np.ndarray, shape (n_volumes, n_regions)
        Region means (scanner units) of the volumes in the window.
    indices : np.ndarray of int, shape (n_volumes,)
        Their volume indices (missing volumes are interpolated).
    tr : float
        Repetition time in seconds (from the stream or the sidecar).
    config : FeatureConfig
        BOLD level definition, ALFF measure and band, minimum volume count.
    baseline : np.ndarray, shape (n_regions,) | None
        Causal baseline of each region for ``bold_level="baseline-percent"``; None: the window's own
        volumes (the level is then 0).

    Returns
    -------
    features : np.ndarray, shape (4,)
        ``bold_mean`` (``"baseline-percent"``: %, the mean over regions of the window's mean relative
        to the baseline; ``"raw"``: scanner units, mean over regions and volumes),
        ``bold_variance`` (%², mean over regions of the variance of the linearly detrended PSC
        series, ddof = 2), ``alff_mean`` and ``alff_variance`` (mean and variance across regions of
        each region's ALFF, %/sqrt(Hz) and %²/Hz, or fALFF, dimensionless). NaN when the window has
        fewer than ``config.min_fmri_volumes`` volumes; the ALFF pair is NaN when
        :func:`alff_band_problem` names a problem.
    """
    if values.shape[0] < config.min_fmri_volumes:
        return np.full(4, np.nan)
    if config.bold_level == "raw":
        level = np.add.reduce(values, axis=None, dtype=np.float64) / np.float64(values.size)
    else:
        level = bold_level(values, baseline)
    series = regular_series(values, indices)
    n, regions = series.shape
    means = np.add.reduce(series, axis=0) / n
    psc = series - means
    psc *= 100.0 / means
    residual = detrended(psc)
    # The least-squares line takes two degrees of freedom: ddof = 2 gives white noise its variance.
    # (numpy scalars throughout: no regions gives NaN, not an exception)
    variance = np.einsum("ij,ij->", residual, residual) / np.float64((n - 2) * regions)
    if alff_band_problem(n, float(tr), config.alff_band) is not None:
        return np.array([level, variance, np.nan, np.nan], dtype=np.float64)
    measure = falff if config.alff_measure == "falff" else alff
    region_alff = measure(psc, tr, config.alff_band)
    alff_mean = np.add.reduce(region_alff) / np.float64(regions)
    spread = region_alff - alff_mean
    alff_variance = (spread @ spread) / (regions - 1) if regions > 1 else 0.0
    return np.array([level, variance, alff_mean, alff_variance], dtype=np.float64)
