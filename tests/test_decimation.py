"""Anti-alias decimation in the windower's EEG path, and features at every EEG rate from 50 Hz to 5 kHz."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from core.problems import ProblemCode
from features.extractor import FeatureExtractor
from features.names import BAND_NAMES
from stream.config import WindowConfig
from stream.decimation import StreamingDecimator, antialias_taps, decimation_factor
from stream.windower import MultiRateWindower

T0 = 500.0


def stream(sfreq: float, seconds: float, n_eeg: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stamps and samples of ``n_eeg`` noise channels plus a sample counter as the last (misc) channel."""
    n = round(seconds * sfreq)
    rng = np.random.default_rng(seed)
    data = np.empty((n, n_eeg + 1), dtype=np.float32)
    # Brown-ish noise (a random walk, high-passed by its own mean) plus white: power in every band.
    walk = np.cumsum(rng.normal(0, 1, (n, n_eeg)), axis=0)
    data[:, :n_eeg] = walk - walk.mean(axis=0) + rng.normal(0, 5, (n, n_eeg))
    data[:, -1] = np.arange(n)
    return T0 + np.arange(n) / sfreq, data


def windower(sfreq: float, n_eeg: int, **config: float) -> MultiRateWindower:
    names = [f"E{i}" for i in range(n_eeg)] + ["SampleIndex"]
    types = ["eeg"] * n_eeg + ["misc"]
    return MultiRateWindower(WindowConfig(**config), sfreq, names, types, ("r1",), 2.1, use_triggers=False)


def run(w: MultiRateWindower, times: np.ndarray, data: np.ndarray, sizes: np.ndarray) -> list:
    """Feed in chunks of the given sizes (cycled), polling after each; then flush."""
    windows, start, k = [], 0, 0
    while start < times.size:
        stop = start + int(sizes[k % sizes.size])
        w.add_eeg(times[start:stop], data[start:stop])
        windows += w.poll()
        start, k = stop, k + 1
    return windows + w.flush()


@pytest.mark.parametrize(
    ("sfreq", "factor"),
    [(5000, 20), (1000, 4), (512, 2), (500, 2), (499, 1), (400, 1), (256, 1), (250, 1), (100, 1)],
)
def test_decimation_factor_keeps_at_least_the_feature_rate(sfreq, factor):
    assert decimation_factor(sfreq, 250.0) == factor
    assert sfreq / factor >= 250 or factor == 1
    assert decimation_factor(sfreq, None) == 1


def test_window_config_refuses_a_nonsense_feature_rate():
    for rate in (0.0, -250.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="feature_rate_hz"):
            WindowConfig(feature_rate_hz=rate)
    assert WindowConfig(feature_rate_hz=None).feature_rate_hz is None


@pytest.mark.parametrize("factor", [2, 4, 20])
def test_antialias_filter_is_flat_below_and_60_db_down_above_the_new_nyquist(factor):
    taps = antialias_taps(factor)
    assert taps.size % 2 == 1
    np.testing.assert_allclose(taps, taps[::-1])  # linear phase: zero phase about the centre tap
    freqs, response = signal.freqz(taps, worN=1 << 16, fs=1.0)  # cycles per input sample
    nyquist = 0.5 / factor
    gain = np.abs(response)
    assert np.abs(gain[freqs <= 0.8 * nyquist] - 1).max() < 0.01
    assert 20 * np.log10(gain[freqs >= nyquist].max()) <= -60


def amplitude(times: np.ndarray, values: np.ndarray, freq: float) -> float:
    """Least-squares amplitude of a sinusoid of ``freq`` Hz in ``values``."""
    basis = np.column_stack([np.sin(2 * np.pi * freq * times), np.cos(2 * np.pi * freq * times)])
    coef, *_ = np.linalg.lstsq(basis, values, rcond=None)
    return float(np.hypot(*coef))


def test_5khz_to_250hz_keeps_40hz_in_phase_and_removes_what_would_alias():
    sfreq, seconds = 5000.0, 4.0
    times = np.arange(round(seconds * sfreq)) / sfreq
    kept = np.sin(2 * np.pi * 40 * times)
    aliasing = np.sin(2 * np.pi * 200 * times)  # at 250 Hz it would fold onto 50 Hz
    decimator = StreamingDecimator(sfreq, 20, np.array([True, True]))
    assert decimator.out_sfreq == 250.0
    out_times, out = decimator.process(times, np.column_stack([kept, aliasing]))
    steady = (out_times > 0.2) & (out_times < out_times[-1] - 0.2)  # away from the padded ends
    t = out_times[steady]
    # Zero phase at the kept samples' own stamps: the output is the 40 Hz wave itself, within 1 %.
    assert np.abs(out[steady, 0] - np.sin(2 * np.pi * 40 * t)).max() < 0.01
    assert abs(amplitude(t, out[steady, 0], 40.0) - 1) < 0.01
    # The 200 Hz component is gone: nothing at its alias (50 Hz), nothing at all above -60 dB.
    assert amplitude(t, out[steady, 1], 50.0) < 1e-3
    assert np.abs(out[steady, 1]).max() < 1e-3
    # Plain picking would have kept it, folded onto 50 Hz at full amplitude.
    assert amplitude(times[::20], aliasing[::20], 50.0) > 0.99


def test_decimator_output_does_not_depend_on_the_chunking():
    sfreq = 5000.0
    times, data = stream(sfreq, 12.0, 6, seed=1)
    filtered = np.array([True] * 6 + [False])
    data[20_000:20_010, 2] = np.nan  # a non-finite stretch reaches only the outputs near it
    results = []
    for sizes in (np.array([5000]), np.random.default_rng(2).integers(1, 900, 500), np.array([1, 7, 3])):
        decimator = StreamingDecimator(sfreq, 20, filtered)
        parts, start, k = [], 0, 0
        while start < times.size:
            stop = start + int(sizes[k % sizes.size])
            parts.append(decimator.process(times[start:stop], data[start:stop]))
            start, k = stop, k + 1
        parts.append(decimator.flush())
        results.append((np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
    reference_times, reference = results[0]
    for other_times, other in results[1:]:
        np.testing.assert_array_equal(other_times, reference_times)
        np.testing.assert_array_equal(other, reference)
    # Kept samples: input samples 0, 20, 40, ... by number, with their own stamps; misc picked, not filtered.
    assert reference.shape == (times.size // 20, 7)
    np.testing.assert_array_equal(reference_times, times[::20])
    np.testing.assert_array_equal(reference[:, -1], np.arange(0, times.size, 20))
    reach = (antialias_taps(20).size - 1) // 2 // 20 + 1
    nonfinite = np.flatnonzero(~np.isfinite(reference[:, 2]))
    assert nonfinite.min() >= 1000 - reach and nonfinite.max() <= 1000 + reach
    assert np.isfinite(np.delete(reference, 2, axis=1)).all()


def test_decimator_trails_the_input_by_half_its_filter():
    decimator = StreamingDecimator(5000.0, 20, np.array([True]))
    delay = decimator.delay
    assert decimator.latency == pytest.approx(delay / 5000.0) and decimator.latency < 0.1
    times = np.arange(2000) / 5000.0
    out_times, _ = decimator.process(times[: delay + 21], np.zeros((delay + 21, 1)))
    # Sample 20 is out once the `delay` samples after it are in, not before.
    assert out_times.tolist() == [times[0], times[20]]
    decimator.reset()  # a restart: numbering starts again at the next sample
    out_times, _ = decimator.process(times[5 : 5 + delay + 1], np.zeros((delay + 1, 1)))
    assert out_times.tolist() == [times[5]]


def test_windows_of_a_5khz_stream_are_identical_in_any_chunking_and_line_up():
    sfreq = 5000.0
    times, data = stream(sfreq, 40.0, 4, seed=3)
    runs = [
        run(windower(sfreq, 4), times, data, sizes)
        for sizes in (np.array([5000]), np.random.default_rng(4).integers(1, 3000, 400))
    ]
    assert len(runs[0]) == len(runs[1]) == 5  # windows ending 30, 32.1, ... 38.4 s after the first sample
    for a, b in zip(*runs, strict=True):
        assert (a.start, a.end, a.eeg_first_sample) == (b.start, b.end, b.eeg_first_sample)
        np.testing.assert_array_equal(a.eeg_times, b.eeg_times)
        np.testing.assert_array_equal(a.eeg, b.eeg)
    for window in runs[0]:
        assert window.sfreq == 250.0
        assert window.quality.eeg_received == window.quality.eeg_expected == 7500
        assert window.quality.eeg_rate == pytest.approx(250.0)
        assert ProblemCode.EEG_RATE_OFF not in {p.code for p in window.quality.problems}
        # The counter channel holds the input numbers of the kept samples, and their stamps are the times.
        numbers = window.eeg[-1].astype(np.int64)
        np.testing.assert_array_equal(np.diff(numbers), 20)
        np.testing.assert_array_equal(window.eeg_times, times[numbers])
        assert window.start < window.eeg_times[0] and window.eeg_times[-1] <= window.end


def test_a_restart_starts_the_decimation_afresh():
    sfreq = 1000.0
    times, data = stream(sfreq, 36.0, 2, seed=5)
    w = windower(sfreq, 2)
    first = run(w, times, data, np.array([1000]))
    w.restart()
    again = run(w, times - 100.0, data, np.array([333]))
    assert len(first) == len(again) == 3  # ends 30, 32.1, 34.2 s after the first sample
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.eeg, b.eeg)
    assert again[0].quality.restarted and again[0].sfreq == 250.0


@pytest.mark.parametrize("n_eeg", [1, 32])
@pytest.mark.parametrize("sfreq", [50.0, 100.0, 128.0, 200.0, 256.0, 500.0, 1000.0, 5000.0])
def test_features_at_any_rate_are_numbers_or_named_nan(sfreq, n_eeg):
    seconds = 36.0
    times, data = stream(sfreq, seconds, n_eeg, seed=int(sfreq) + n_eeg)
    windows = run(windower(sfreq, n_eeg, hop=4.0), times, data, np.array([max(1, int(sfreq))]))
    assert len(windows) == 2
    extractor = FeatureExtractor()
    for window in windows:
        assert window.sfreq == (250.0 if sfreq >= 500 else sfreq)
        features = extractor.compute(window)
        codes = [p.code for p in features.problems]
        nyquist = window.sfreq / 2
        out_of_reach = [
            name
            for name, (_, high) in zip(BAND_NAMES, extractor.config.bands.values(), strict=True)
            if high >= nyquist
        ]
        flagged = [
            p.params["band"] for p in features.problems if p.code is ProblemCode.EEG_BAND_ABOVE_NYQUIST
        ]
        assert flagged == out_of_reach
        assert (window.sfreq == 50.0) == bool(out_of_reach)  # beta (to 30 Hz) and gamma at 50 Hz only
        for k, name in enumerate(BAND_NAMES):
            assert np.isnan(features.values[k]) == (name in out_of_reach)
        # Spectral entropy and coherence still come out, over the bins below Nyquist at 50 Hz.
        assert 0 < features.values[5] < 1
        assert np.isnan(features.values[6]) == (n_eeg == 1)
        assert (ProblemCode.EEG_SPECTRUM_CLIPPED in codes) == (window.sfreq == 50.0)
        # Every NaN feature has its reason: no FEATURE_NOT_FINITE, and the fMRI ones are explained.
        assert ProblemCode.FEATURE_NOT_FINITE not in codes
