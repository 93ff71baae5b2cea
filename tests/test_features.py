"""Each feature against an independent computation on realistic data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from core.problems import ProblemCode
from features.config import FeatureConfig
from features.eeg import IncrementalWelch, pair_layout
from features.extractor import FeatureExtractor
from features.names import FEATURE_NAMES
from pipeline.offline import session_windows
from recordings.session import read_session

RTOL = 1e-6


@pytest.fixture(scope="module")
def windows(bundled_dataset):
    """Windows of a real-length surrogate sleep run (30 EEG channels, 250 Hz), shared read-only.

    Their arrays cannot be written; a test that needs a changed window changes a copy
    (``dataclasses.replace``), which :func:`windows_unchanged` checks after every test.
    """
    session = read_session(bundled_dataset, "27", "sleep-2")
    shared = tuple(session_windows(session))
    for window in shared:
        for array in (window.eeg, window.eeg_times, window.fmri, window.fmri_times, window.fmri_indices):
            array.flags.writeable = False
    return shared


def snapshot(window) -> tuple:
    """What a test could change on a shared window: its attributes (arrays by identity) and quality."""
    attributes = tuple(
        id(value) if isinstance(value, np.ndarray) else value
        for field in dataclasses.fields(window)
        if field.name != "quality"
        for value in (getattr(window, field.name),)
    )
    return attributes, repr(window.quality.as_dict())


@pytest.fixture(autouse=True)
def windows_unchanged(request):
    """Fail a test that changed the module's shared windows (later tests would see its changes)."""
    if "windows" not in request.fixturenames:
        yield
        return
    shared = request.getfixturevalue("windows")
    before = [snapshot(window) for window in shared]
    yield
    changed = [window.index for window, seen in zip(shared, before, strict=True) if snapshot(window) != seen]
    assert not changed, f"the test changed the shared windows {changed[:5]}: change a copy instead"


def eeg_of(window):
    rows = [i for i, kind in enumerate(window.ch_types) if kind == "eeg"]
    return window.eeg[rows].astype(np.float64)


def reference_welch(window, span):
    """scipy.signal.welch over exactly the samples the segments cover."""
    config = FeatureConfig()
    length = int(config.segment_seconds * window.sfreq)
    step = int(length * (1 - config.segment_overlap))
    data = eeg_of(window)[:, span[0] : span[1]]
    return signal.welch(
        data, fs=window.sfreq, window="hann", nperseg=length, noverlap=length - step, detrend="constant"
    )


def test_band_powers_and_entropy_equal_scipy_welch(windows):
    extractor = FeatureExtractor()
    for window in windows[:60]:
        features = extractor.compute(window)
        if window.index % 15:
            continue
        span = extractor._welch.spectra(eeg_of(window), window.eeg_times, window.eeg_first_sample).span
        freqs, psd = reference_welch(window, span)
        df = freqs[1] - freqs[0]
        for k, (low, high) in enumerate(FeatureConfig().bands.values()):
            upper = freqs <= high if k == 4 else freqs < high
            expected = (psd[:, (freqs >= low) & upper].sum(axis=1) * df).mean()
            assert features.values[k] == pytest.approx(expected, rel=RTOL)
        band = psd[:, (freqs >= 0.5) & (freqs <= 45)]
        p = band / band.sum(axis=1, keepdims=True)
        entropy = (-(p * np.log(p)).sum(axis=1) / np.log(band.shape[1])).mean()
        assert features.values[5] == pytest.approx(entropy, rel=RTOL)


def test_coherence_equals_scipy_coherence_over_every_pair(windows):
    config = FeatureConfig()
    extractor = FeatureExtractor(config)
    for window in windows[:41]:
        features = extractor.compute(window)
    window = windows[40]
    span = extractor._welch.spectra(eeg_of(window), window.eeg_times, window.eeg_first_sample).span
    data = eeg_of(window)[:, span[0] : span[1]]
    length, step = 1000, 500
    upper_i, upper_j = np.triu_indices(data.shape[0], k=1)
    assert upper_i.size == 435
    values = []
    for i, j in zip(upper_i, upper_j, strict=True):
        freqs, coherence = signal.coherence(
            data[i], data[j], fs=250.0, nperseg=length, noverlap=length - step
        )
        values.append(coherence[(freqs >= 0.5) & (freqs <= 45)].mean())
    assert features.values[6] == pytest.approx(np.mean(values), rel=RTOL)


def test_incremental_equals_recomputing_every_window(windows):
    config = FeatureConfig()
    incremental = IncrementalWelch(250.0, 30, config)
    for window in windows[:80]:
        online = incremental.spectra(eeg_of(window), window.eeg_times, window.eeg_first_sample)
        # A fresh instance on the same segment grid keeps nothing from earlier windows.
        fresh = IncrementalWelch(250.0, 30, config, origin=incremental._origin)
        batch = fresh.spectra(eeg_of(window), window.eeg_times, window.eeg_first_sample)
        assert online.span == batch.span and online.n_segments == batch.n_segments
        # Running single-precision sums versus a fresh sum: equal to single precision.
        np.testing.assert_allclose(online.psd, batch.psd, rtol=1e-6)
        scale = np.abs(batch.pairs).max()
        np.testing.assert_allclose(online.pairs, batch.pairs, rtol=1e-5, atol=1e-6 * scale)


def grid_segments(window, origin: int, length: int, step: int) -> set[int]:
    """Keys k of the grid segments (samples ``origin + k * step`` to ``+ length``) inside the window."""
    first, last = window.eeg_first_sample, window.eeg_first_sample + window.eeg_times.size
    keys = range((first - origin) // step - 1, (last - origin) // step + 1)
    return {k for k in keys if first <= origin + k * step and origin + k * step + length <= last}


def test_hop_computes_only_new_segments(windows):
    config = FeatureConfig()
    welch = IncrementalWelch(250.0, 30, config)
    length, step = 1000, 500  # 4 s segments, 50 % overlap, at 250 Hz
    origin = windows[0].eeg_first_sample  # the grid starts at the first window's first sample
    computed = []
    original = welch._segment_spectra

    def counting(segment):
        computed.append(1)
        return original(segment)

    welch._segment_spectra = counting
    previous: set[int] = set()
    new_counts = []
    for window in windows[:40]:
        before = len(computed)
        spectra = welch.spectra(eeg_of(window), window.eeg_times, window.eeg_first_sample)
        inside = grid_segments(window, origin, length, step)
        # Exactly the grid segments inside the window are averaged, and only those not in the
        # previous window are computed (the bundled run has no dropout: every segment is whole).
        assert spectra.n_segments == len(inside) and len(inside) in (13, 14)
        assert len(computed) - before == len(inside - previous)
        offset = origin - window.eeg_first_sample
        assert spectra.span == (offset + min(inside) * step, offset + max(inside) * step + length)
        new_counts.append(len(inside - previous))
        previous = inside
    assert new_counts[0] in (13, 14) and set(new_counts[1:]) == {1, 2}  # a 2.1 s hop: one or two 2 s steps


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 29, 32])
def test_pair_layout_holds_every_pair_once_and_its_products(n):
    layout = pair_layout(n)
    pairs = {frozenset(pair) for pair in zip(layout.first.tolist(), layout.second.tolist(), strict=True)}
    assert len(pairs) == layout.n_pairs == n * (n - 1) // 2 and all(len(pair) == 2 for pair in pairs)
    rng = np.random.default_rng(n)
    spectrum = rng.standard_normal((n, 7)) + 1j * rng.standard_normal((n, 7))
    doubled = np.concatenate([spectrum.conj(), spectrum.conj()])
    products = np.empty((layout.n_pairs, 7), dtype=complex)
    for count, right, out in layout.plan(doubled, products):
        np.multiply(spectrum[:count], right, out=out)
    np.testing.assert_allclose(products, spectrum[layout.first] * spectrum[layout.second].conj(), rtol=1e-15)
    rows, swapped = layout.upper_rows()
    upper_i, upper_j = np.triu_indices(n, k=1)
    upper = np.where(swapped[:, None], products[rows].conj(), products[rows])
    np.testing.assert_allclose(upper, spectrum[upper_i] * spectrum[upper_j].conj(), rtol=1e-15)


def test_cross_spectra_of_an_odd_channel_count_equal_scipy_csd(windows):
    welch = IncrementalWelch(250.0, 7, FeatureConfig())
    for window in windows[:20]:
        spectra = welch.spectra(eeg_of(window)[:7], window.eeg_times, window.eeg_first_sample)
    data = eeg_of(windows[19])[:7, spectra.span[0] : spectra.span[1]]
    upper_i, upper_j = np.triu_indices(7, k=1)
    # scipy's csd(x, y) is conj(X) Y: ours, X_i conj(X_j), is csd(x_j, x_i).
    freqs, expected = signal.csd(data[upper_j], data[upper_i], fs=250.0, nperseg=1000, noverlap=500)
    expected = expected[:, (freqs >= 0.5) & (freqs <= 45)]
    rows, swapped = pair_layout(7).upper_rows()
    pairs = np.where(swapped[:, None], spectra.pairs[rows].conj(), spectra.pairs[rows])
    np.testing.assert_allclose(pairs, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def scipy_mean_coherence(data):
    """scipy.signal.coherence of every pair (broadcast over pairs), averaged over 0.5-45 Hz."""
    freqs, coherence = signal.coherence(data[:, None], data[None], fs=250.0, nperseg=1000, noverlap=500)
    upper = np.triu_indices(data.shape[0], k=1)
    return coherence[upper][:, (freqs >= 0.5) & (freqs <= 45)].mean()


@pytest.mark.parametrize("reference", ["recorded", "average"])
def test_coherence_of_the_good_channels_equals_scipy(windows, reference):
    extractor = FeatureExtractor(FeatureConfig(reference=reference))
    for window in windows[:31]:
        features = extractor.compute(window)
    # 29 good channels left (an odd count): channel 4 flagged flat, on a copy of the window.
    quality = dataclasses.replace(windows[31].quality, flat_channels=[windows[31].ch_names[4]])
    window = dataclasses.replace(windows[31], quality=quality)
    features = extractor.compute(window)
    assert len(features.eeg_channels) == 29
    span = extractor._welch.spectra(eeg_of(window), window.eeg_times, window.eeg_first_sample).span
    data = np.delete(eeg_of(window), 4, axis=0)[:, span[0] : span[1]]
    if reference == "average":
        data = data - data.mean(axis=0)
    assert features.values[6] == pytest.approx(scipy_mean_coherence(data), rel=RTOL)


def test_pearson_option_is_the_mean_correlation(windows):
    window = windows[30]
    features = FeatureExtractor(FeatureConfig(coherence="pearson")).compute(window)
    correlation = np.corrcoef(eeg_of(window))
    assert features.values[6] == pytest.approx(correlation[np.triu_indices(30, k=1)].mean(), rel=RTOL)


def test_relative_and_log_power_options(windows):
    window = windows[30]
    absolute = FeatureExtractor().compute(window).values[:5]
    log = FeatureExtractor(FeatureConfig(power_scale="log")).compute(window).values[:5]
    relative = FeatureExtractor(FeatureConfig(power_scale="relative")).compute(window).values[:5]
    np.testing.assert_allclose(log, np.log10(absolute), rtol=RTOL)
    assert 0.9 < relative.sum() <= 1.0 + 1e-9  # five bands cover almost all of 0.5-45 Hz


def test_average_reference_option_equals_rereferenced_scipy(windows):
    window = windows[30]
    extractor = FeatureExtractor(FeatureConfig(reference="average"))
    features = extractor.compute(window)
    span = extractor._welch.spectra(eeg_of(window), window.eeg_times, window.eeg_first_sample).span
    data = eeg_of(window)[:, span[0] : span[1]]
    data = data - data.mean(axis=0)
    freqs, psd = signal.welch(data, fs=250.0, nperseg=1000, noverlap=500)
    df = freqs[1] - freqs[0]
    expected = (psd[:, (freqs >= 8) & (freqs < 13)].sum(axis=1) * df).mean()
    assert features.values[2] == pytest.approx(expected, rel=RTOL)


def test_bad_channels_are_left_out_and_features_stay_finite(windows):
    shared = windows[30]
    eeg = shared.eeg.copy()  # a copy: the shared window stays as it is for the other tests
    eeg[5, 100:200] = np.nan
    eeg[7] = 0.0
    quality = dataclasses.replace(
        shared.quality, nonfinite_channels=[shared.ch_names[5]], flat_channels=[shared.ch_names[7]]
    )
    window = dataclasses.replace(shared, eeg=eeg, quality=quality)
    features = FeatureExtractor().compute(window)
    assert features.complete
    assert len(features.eeg_channels) == 28
    assert not {shared.ch_names[5], shared.ch_names[7]} & set(features.eeg_channels)


def test_feature_problems_are_codes_that_explain_the_missing_features(windows):
    shared = windows[-1]
    eeg = [name for name, kind in zip(shared.ch_names, shared.ch_types, strict=True) if kind == "eeg"]
    one_left = dataclasses.replace(shared, quality=dataclasses.replace(shared.quality, flat_channels=eeg[1:]))
    features = FeatureExtractor().compute(one_left)
    assert [p.code for p in features.problems] == [ProblemCode.COHERENCE_NEEDS_TWO_CHANNELS]
    assert features.problems[0].text == "coherence needs two usable EEG channels"
    assert np.flatnonzero(np.isnan(features.values)).tolist() == [6]

    # At 64 Hz (Nyquist 32 Hz) only gamma (30-45 Hz) is out of reach; entropy and coherence use
    # the bins below Nyquist, and say so.
    slow = FeatureExtractor().compute(dataclasses.replace(shared, sfreq=64.0))
    assert [p.code for p in slow.problems] == [
        ProblemCode.EEG_BAND_ABOVE_NYQUIST,
        ProblemCode.EEG_SPECTRUM_CLIPPED,
    ]
    assert slow.problems[0].text == (
        "gamma band (30-45 Hz) reaches above the Nyquist frequency 32 Hz of EEG at 64 Hz"
    )
    assert slow.problems[0].affects == {"eeg_gamma_power"} and slow.problems[1].affects == set()
    assert np.flatnonzero(np.isnan(slow.values)).tolist() == [4]

    too_slow = FeatureExtractor().compute(dataclasses.replace(shared, sfreq=6.0))
    assert [p.code for p in too_slow.problems] == [ProblemCode.EEG_RATE_TOO_LOW]
    assert np.isnan(too_slow.values[:7]).all() and np.isfinite(too_slow.values[7:]).all()


def test_feature_config_refuses_nonsense():
    with pytest.raises(ValueError, match="power_scale must be one of"):
        FeatureConfig(power_scale="dB")
    with pytest.raises(ValueError, match="coherence must be one of"):
        FeatureConfig(coherence="granger")
    with pytest.raises(ValueError, match=r"band alpha = \(13.0, 8.0\) Hz is not an interval"):
        FeatureConfig(
            bands={
                "delta": (0.5, 4),
                "theta": (4, 8),
                "alpha": (13.0, 8.0),
                "beta": (13, 30),
                "gamma": (30, 45),
            }
        )
    with pytest.raises(ValueError, match="does not fit a 60 Hz signal"):
        IncrementalWelch(60.0, 4, FeatureConfig())
    assert len(FEATURE_NAMES) == 11
