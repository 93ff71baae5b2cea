"""The four fMRI features: independent references on real BOLD, scale-free and length-free by test."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import signal

from core.problems import ProblemCode
from core.windows import Window
from features.config import FeatureConfig
from features.extractor import FeatureExtractor
from features.fmri import alff, fmri_features
from features.names import FEATURE_NAMES
from recordings.regions import grid_parcellation, region_means
from stream.config import WindowConfig
from stream.windower import MultiRateWindower

HAXBY = Path(__file__).parent / "data" / "haxby2001"
FMRI = slice(7, 11)
LEVEL, VARIANCE, ALFF_MEAN, ALFF_VARIANCE = 7, 8, 9, 10


@pytest.fixture(scope="module")
def haxby() -> tuple[np.ndarray, float]:
    """Region means (121 volumes x 8 regions) of the real Haxby BOLD run, and its TR (2.5 s)."""
    image = nib.load(HAXBY / "sub001_task001_run001_bold_25mm.nii.gz")
    bold = image.get_fdata(dtype=np.float32)
    mask = nib.load(HAXBY / "sub001_brain_mask_25mm.nii.gz").get_fdata() > 0
    tr = float(image.header.get_zooms()[3])
    assert tr == 2.5
    means = region_means(bold, grid_parcellation(mask, grid=(2, 2, 2))).astype(np.float64)
    return means, tr


def cut_windows(means: np.ndarray, tr: float, dropped: tuple[int, ...] = ()) -> list[Window]:
    """The project's windower over the Haxby region means (and 2 channels of 128 Hz EEG noise).

    Each volume and its trigger are delivered when the EEG reaches its acquisition time, as live;
    the volumes in ``dropped`` never arrive (their triggers do).
    """
    sfreq = 128.0
    rng = np.random.default_rng(3)
    seconds = means.shape[0] * tr
    n = int(seconds * sfreq)
    eeg = rng.standard_normal((n, 2)).astype(np.float32) * 10
    windower = MultiRateWindower(
        WindowConfig(), sfreq, ["C3", "C4"], ["eeg", "eeg"], [f"r{i}" for i in range(means.shape[1])], tr
    )
    triggers = np.arange(means.shape[0]) * tr
    windows: list[Window] = []
    sent = 0
    for start in range(0, n, int(sfreq)):
        stop = min(n, start + int(sfreq))
        windower.add_eeg(np.arange(start, stop) / sfreq, eeg[start:stop])
        due = int(np.searchsorted(triggers, (stop - 1) / sfreq, side="right"))
        if due > sent:
            windower.add_triggers(triggers[sent:due])
            arrive = np.array([i for i in range(sent, due) if i not in dropped], dtype=int)
            windower.add_fmri(arrive, triggers[arrive], means[arrive])
            sent = due
        windows.extend(windower.poll())
    return windows


@pytest.fixture(scope="module")
def haxby_windows(haxby) -> tuple[Window, ...]:
    windows = tuple(cut_windows(*haxby))
    assert len(windows) > 100
    return windows


def scaled(window: Window, gain: float) -> Window:
    """A copy of ``window`` with every intensity multiplied by ``gain`` (in double precision)."""
    return dataclasses.replace(window, fmri=window.fmri.astype(np.float64) * gain)


def psc_of(values: np.ndarray) -> np.ndarray:
    mean = values.mean(axis=0)
    return 100 * (values - mean) / mean


def numpy_spectrum(values: np.ndarray, tr: float, band: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Amplitude spectral density of the detrended PSC series by numpy's FFT, and the in-band mask."""
    n = values.shape[0]
    residual = signal.detrend(psc_of(values), axis=0, type="linear")
    spectrum = np.fft.rfft(residual, axis=0)
    freqs = np.fft.rfftfreq(n, tr)
    asd = np.sqrt(2 * tr * np.abs(spectrum) ** 2 / n)
    in_band = (freqs >= band[0]) & (freqs <= band[1]) & (freqs > 0)
    return spectrum, asd, in_band


# -- independent references on the real Haxby run -------------------------------------------------
@pytest.mark.parametrize("start", [0, 37, 73])
def test_fmri_features_on_real_bold_equal_an_independent_computation(haxby, start):
    means, tr = haxby
    values = means[start : start + 48]  # 120 s at TR 2.5 s
    band = (0.01, 0.08)
    spectrum, asd, in_band = numpy_spectrum(values, tr, band)
    assert in_band.sum() == 8
    region_alff = asd[in_band].mean(axis=0)
    # The common implementation (REST, DPABI) averages 2|X|/N: ours is that times sqrt(N TR / 2).
    rest = (2 * np.abs(spectrum[in_band]) / 48).mean(axis=0)
    np.testing.assert_allclose(region_alff, rest * math.sqrt(48 * tr / 2), rtol=1e-12)
    region_falff = asd[in_band].sum(axis=0) / asd[1:].sum(axis=0)
    variance = signal.detrend(psc_of(values), axis=0).var(axis=0, ddof=2).mean()
    baseline = means[: start + 48].mean(axis=0)  # e.g. every volume of the run so far
    level = (100 * (values.mean(axis=0) - baseline) / baseline).mean()

    ours = fmri_features(values, np.arange(48), tr, FeatureConfig(), baseline)
    expected = [level, variance, region_alff.mean(), region_alff.var(ddof=1)]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-12)
    ours = fmri_features(values, np.arange(48), tr, FeatureConfig(alff_measure="falff"), baseline)
    np.testing.assert_allclose(ours[2:], [region_falff.mean(), region_falff.var(ddof=1)], rtol=1e-6)
    assert np.all((region_falff > 0) & (region_falff < 1))


def test_raw_option_reproduces_the_raw_mean(haxby):
    means, tr = haxby
    values = means[:48].astype(np.float32)
    ours = fmri_features(values, np.arange(48), tr, FeatureConfig(bold_level="raw"))
    assert ours[0] == pytest.approx(values.astype(np.float64).mean(), rel=1e-12)
    assert 100 < ours[0]  # scanner units, not percent
    # Without a baseline, the baseline-percent level compares the window with itself.
    assert fmri_features(values, np.arange(48), tr, FeatureConfig())[0] == pytest.approx(0, abs=1e-9)


# -- independent of the series length --------------------------------------------------------------
def noise_regions(n: int, regions: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """``regions`` independent realisations of AR(1) noise (white for phi = 0) about 1000."""
    innovations = rng.standard_normal((n + 200, regions))
    return 1000 + signal.lfilter([1.0], [1.0, -phi], innovations, axis=0)[200:]


def old_alff(values: np.ndarray, tr: float, band: tuple[float, float]) -> np.ndarray:
    """The former definition: the sum of 2|X(f)|/N over the in-band bins."""
    spectrum, _, in_band = numpy_spectrum(values, tr, band)
    return (2 * np.abs(spectrum[in_band]) / values.shape[0]).sum(axis=0)


@pytest.mark.parametrize(("phi", "band"), [(0.0, (0.01, 0.08)), (0.0, (0.01, 0.1)), (0.5, (0.01, 0.08))])
def test_57_and_58_volumes_of_the_same_process_give_the_same_alff(phi, band):
    rng = np.random.default_rng(11)
    regions, tr = 4000, 2.1
    config = FeatureConfig(alff_band=band)
    result = {}
    for n in (57, 58):
        values = noise_regions(n, regions, phi, rng)
        features = fmri_features(values, np.arange(n), tr, config)
        old = old_alff(values, tr, band)
        # Regions are independent realisations: the standard error of the mean across them.
        result[n] = (
            features[2],
            math.sqrt(features[3] / regions),
            old.mean(),
            old.std() / math.sqrt(regions),
        )
    (new57, se57, old57, old_se57), (new58, se58, old58, old_se58) = result[57], result[58]
    assert abs(new58 - new57) < 4 * math.hypot(se57, se58), (new57, new58)
    if band == (0.01, 0.1):  # 10 bins at 57 volumes, 11 at 58: the former sum differs by about 9 %
        assert old58 / old57 - 1 > 0.05 and old58 - old57 > 10 * math.hypot(old_se57, old_se58)


def test_alff_of_white_noise_is_its_amplitude_spectral_density():
    """White noise of variance s² has the one-sided PSD 2 s² TR: each bin's amplitude is Rayleigh."""
    rng = np.random.default_rng(5)
    tr, regions = 2.1, 4000
    series = rng.standard_normal((57, regions)) * 0.3
    expected = math.sqrt(2 * 0.3**2 * tr) * math.sqrt(math.pi) / 2  # mean of a Rayleigh amplitude
    assert alff(series, tr, (0.01, 0.08)).mean() == pytest.approx(expected, rel=0.02)


# -- scale-free: a scanner's gain -------------------------------------------------------------------
@pytest.mark.parametrize("measure", ["alff", "falff"])
def test_scanner_gain_leaves_every_fmri_feature_unchanged(haxby_windows, measure):
    config = FeatureConfig(alff_measure=measure)
    reference = FeatureExtractor(config)
    expected = np.array([reference.compute(window).values[FMRI] for window in haxby_windows])
    assert np.isfinite(expected).all()
    # Not vacuous: once the run is longer than the fMRI window, the level departs from 0.
    assert np.abs(expected[:, 0]).max() > 1e-2
    for gain in (10.0, 0.05):
        extractor = FeatureExtractor(config)
        got = np.array([extractor.compute(scaled(window, gain)).values[FMRI] for window in haxby_windows])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=f"gain {gain}")


# -- detrended: a linear drift -----------------------------------------------------------------------
def test_linear_drift_leaves_bold_variance_unchanged(haxby):
    means, tr = haxby
    values = means[20:68]
    t = np.arange(48) - 23.5
    slopes = values.mean(axis=0) * np.linspace(-0.002, 0.003, values.shape[1])  # up to ±7 % over 120 s
    drifted = values + np.outer(t, slopes)
    clean = fmri_features(values, np.arange(48), tr, FeatureConfig())
    with_drift = fmri_features(drifted, np.arange(48), tr, FeatureConfig())
    np.testing.assert_allclose(with_drift[1:], clean[1:], rtol=1e-9)
    # Not vacuous: the drift dominates the variance of the PSC series before detrending.
    assert psc_of(drifted).var(axis=0).mean() > 10 * psc_of(values).var(axis=0).mean()


# -- the causal baseline of the BOLD level ---------------------------------------------------------
def explicit_levels(windows: list[Window] | tuple[Window, ...], seconds: float) -> np.ndarray:
    """The BOLD level of each window from its definition: each volume received so far counted once."""
    seen: dict[int, np.ndarray] = {}
    levels = []
    for window in windows:
        for index, row in zip(window.fmri_indices.tolist(), window.fmri.astype(np.float64), strict=True):
            seen.setdefault(index, row)
        newest = int(window.fmri_indices.max())
        span = math.ceil(seconds / window.tr - 1e-9)
        held = np.array([row for index, row in seen.items() if newest - span < index <= newest])
        baseline = held.mean(axis=0)
        window_mean = window.fmri.astype(np.float64).mean(axis=0)
        levels.append((100 * (window_mean - baseline) / baseline).mean())
    return np.array(levels)


@pytest.mark.parametrize("seconds", [600.0, 100.0])
def test_bold_level_equals_its_definition_over_consecutive_windows(haxby, seconds):
    means, tr = haxby
    # Volumes missing from the stream: each window's volumes join the baseline once, whatever overlaps.
    windows = cut_windows(means, tr, dropped=(5, 40, 41, 90))
    extractor = FeatureExtractor(FeatureConfig(bold_baseline_seconds=seconds))
    levels = np.array([extractor.compute(window).values[LEVEL] for window in windows])
    expected = explicit_levels(windows, seconds)
    np.testing.assert_allclose(levels, expected, rtol=1e-9, atol=1e-12)
    assert levels[0] == pytest.approx(0.0, abs=1e-9)  # the first window of a run reads 0 by construction
    assert np.abs(levels).max() > 1e-2
    # The baseline holds at most ceil(seconds / TR) volumes, whatever the run's length.
    assert extractor._baseline.volumes <= math.ceil(seconds / tr)


def test_a_new_run_or_a_restart_resets_the_baseline(haxby_windows):
    windows = list(haxby_windows)
    extractor = FeatureExtractor()
    first = np.array([extractor.compute(w).values[FMRI] for w in windows])
    # A second run through the same extractor: its volume indices start again from 0.
    extractor = FeatureExtractor()
    for window in windows:
        extractor.compute(window)
    again = np.array([extractor.compute(w).values[FMRI] for w in windows])
    np.testing.assert_array_equal(again, first)
    # A restart flagged by the windower mid-run: from there on, as a fresh extractor.
    middle = len(windows) // 2
    restarted = dataclasses.replace(
        windows[middle], quality=dataclasses.replace(windows[middle].quality, restarted=True)
    )
    extractor = FeatureExtractor()
    for window in windows[:middle]:
        extractor.compute(window)
    resumed = [extractor.compute(restarted).values[LEVEL]]
    resumed += [extractor.compute(w).values[LEVEL] for w in windows[middle + 1 :]]
    fresh = FeatureExtractor()
    expected = [fresh.compute(w).values[LEVEL] for w in [restarted, *windows[middle + 1 :]]]
    np.testing.assert_array_equal(resumed, expected)
    assert resumed[0] == pytest.approx(0.0, abs=1e-9)
    assert abs(first[middle, 0]) > 1e-3  # without the reset it would not have read 0


# -- the band, validated against the TR ----------------------------------------------------------
def test_alff_band_beyond_nyquist_or_without_a_bin_is_named_by_code(haxby_windows):
    window = haxby_windows[-1]  # TR 2.5 s: Nyquist 0.2 Hz
    features = FeatureExtractor(FeatureConfig(alff_band=(0.01, 0.3))).compute(window)
    assert np.isnan(features.values[[ALFF_MEAN, ALFF_VARIANCE]]).all()
    assert np.isfinite(features.values[[LEVEL, VARIANCE]]).all()
    codes = [p.code for p in features.problems]
    assert ProblemCode.ALFF_BAND_ABOVE_NYQUIST in codes
    assert ProblemCode.FEATURE_NOT_FINITE not in codes  # explained by the code, not reported again
    (named,) = [p for p in features.problems if p.code == ProblemCode.ALFF_BAND_ABOVE_NYQUIST]
    assert named.text == "ALFF band up to 0.3 Hz exceeds the Nyquist frequency 0.2 Hz of TR 2.5 s"
    # A band between two bins of the 120-s series (bins every 1/120 Hz) holds none.
    features = FeatureExtractor(FeatureConfig(alff_band=(0.0501, 0.0580))).compute(window)
    assert np.isnan(features.values[[ALFF_MEAN, ALFF_VARIANCE]]).all()
    assert [p.code for p in features.problems].count(ProblemCode.ALFF_BAND_EMPTY) == 1
    assert ProblemCode.FEATURE_NOT_FINITE not in [p.code for p in features.problems]


def test_unexplained_non_finite_feature_is_named_by_code(haxby_windows):
    window = haxby_windows[-1]
    zeros = window.fmri.astype(np.float64)
    zeros[:, 0] = 0.0  # a region of zeros: no percent signal change
    with np.errstate(all="ignore"):
        features = FeatureExtractor().compute(dataclasses.replace(window, fmri=zeros))
    named = {p.params["feature"] for p in features.problems if p.code == ProblemCode.FEATURE_NOT_FINITE}
    assert named == {FEATURE_NAMES[i] for i in np.flatnonzero(np.isnan(features.values[FMRI])) + 7}
    assert named >= {"bold_variance", "alff_mean"}


def test_missing_volumes_are_interpolated_and_few_volumes_give_nan():
    rng = np.random.default_rng(0)
    values = 1000 + rng.standard_normal((57, 4))
    full = fmri_features(values, np.arange(57), 2.1, FeatureConfig())
    holed = fmri_features(
        np.delete(values, [20], axis=0), np.delete(np.arange(57), [20]), 2.1, FeatureConfig()
    )
    assert np.all(np.isfinite(holed)) and holed[2] == pytest.approx(full[2], rel=0.1)
    assert np.all(np.isnan(fmri_features(values[:5], np.arange(5), 2.1, FeatureConfig())))


def test_fmri_settings_refuse_nonsense_and_round_trip():
    with pytest.raises(ValueError, match="alff_measure must be one of"):
        FeatureConfig(alff_measure="malff")
    with pytest.raises(ValueError, match="bold_level must be one of"):
        FeatureConfig(bold_level="mean")
    with pytest.raises(ValueError, match="bold_baseline_seconds must be > 0"):
        FeatureConfig(bold_baseline_seconds=0)
    with pytest.raises(ValueError, match="alff_band"):
        FeatureConfig(alff_band=(0.08, 0.01))
    config = FeatureConfig(
        alff_band=(0.01, 0.1), alff_measure="falff", bold_level="raw", bold_baseline_seconds=300
    )
    assert FeatureConfig.from_dict(config.to_dict()) == config
    defaults = FeatureConfig()
    assert (defaults.alff_band, defaults.alff_measure) == ((0.01, 0.08), "alff")
    assert (defaults.bold_level, defaults.bold_baseline_seconds) == ("baseline-percent", 600.0)
