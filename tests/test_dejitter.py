import numpy as np
import pytest

from stream.dejitter import RegularClock


def feed(clock, raw, chunk=25):
    out, updates = [], []
    for start in range(0, raw.size, chunk):
        update = clock.process(raw[start : start + chunk])
        out.append(update.times)
        updates.append(update)
    return np.concatenate(out), updates


def test_jittered_chunk_stamps_are_smoothed_onto_the_sample_grid():
    rng = np.random.default_rng(0)
    sfreq, n = 250.0, 250 * 60
    true = 100.0 + np.arange(n) / sfreq
    # Each chunk of 25 samples stamped at push time: up to 8 ms late, samples deduced backwards.
    raw = true.copy()
    for start in range(0, n, 25):
        raw[start : start + 25] += rng.uniform(0, 0.008)
    times, _ = feed(RegularClock(sfreq), raw)
    settled = slice(int(10 * sfreq), None)
    assert np.abs(times[settled] - true[settled] - 0.004).max() < 0.0015  # the mean delay remains
    assert np.all(np.diff(times) > 0)


def test_effective_rate_of_a_fast_amplifier_clock():
    sfreq, actual = 250.0, 255.0  # the device runs 2 % fast
    raw = np.arange(int(actual * 120)) / actual
    clock = RegularClock(sfreq)
    feed(clock, raw)
    assert clock.effective_rate == pytest.approx(actual, rel=1e-4)


def test_a_dropout_is_reported_as_a_gap_not_smeared():
    sfreq = 250.0
    index = np.concatenate([np.arange(0, 5000), np.arange(5100, 8000)])  # 100 samples lost
    raw = index / sfreq
    times, updates = feed(RegularClock(sfreq), raw)
    gaps = [gap for update in updates for gap in update.gaps]
    assert len(gaps) == 1
    assert gaps[0].missing_samples == 100
    assert gaps[0].start == pytest.approx(4999 / sfreq, abs=1e-6)
    assert gaps[0].end == pytest.approx(5100 / sfreq, abs=1e-6)
    np.testing.assert_allclose(times, raw, atol=1e-6)  # samples keep their own times


def test_backward_jump_is_a_restart_and_small_disorder_is_counted():
    clock = RegularClock(250.0)
    clock.process(1000 + np.arange(500) / 250)
    update = clock.process(np.array([10.0, 10.004, 10.008]))
    assert update.restarted
    np.testing.assert_allclose(update.times, [10.0, 10.004, 10.008], atol=1e-9)
    update = clock.process(np.array([10.012, 10.011, 10.016]))
    assert not update.restarted and update.non_monotonic == 1
    assert np.all(np.diff(update.times) > 0)


def test_a_backward_jump_inside_a_chunk_is_found():
    clock = RegularClock(250.0)
    clock.process(1000 + np.arange(500) / 250)
    # The sender's clock was reset 5 s back between samples 30 and 31 of a 50-sample chunk.
    chunk = 1002 + np.arange(50) / 250
    chunk[31:] -= 5.0
    assert clock.restart_points(chunk) == [31]
    assert clock.restart_points(chunk[:31]) == [] and clock.restart_points(np.array([5.0])) == []
    twice = np.concatenate([chunk, chunk[-1] - 3 + np.arange(5) / 250])
    assert clock.restart_points(twice) == [31, 50]
    first, second = clock.process(chunk[:31]), clock.process(chunk[31:])
    assert not first.restarted and second.restarted
    np.testing.assert_allclose(second.times, chunk[31:], atol=1e-9)


def test_rejects_a_stream_without_rate():
    with pytest.raises(ValueError, match="nominal rate > 0"):
        RegularClock(0.0)
