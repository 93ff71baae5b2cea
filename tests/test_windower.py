"""The pure windowing logic, fed directly with arrays and timestamps (no LSL)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.problems import ProblemCode
from stream.config import WindowConfig
from stream.dejitter import Gap
from stream.volumes import VolumePlacer
from stream.windower import MultiRateWindower

SFREQ = 250.0
TR = 2.1
CH_NAMES = ("Fz", "Cz", "Pz", "EOG", "SampleIndex")
CH_TYPES = ("eeg", "eeg", "eeg", "eog", "misc")
REGIONS = ("r1", "r2", "r3")
T0 = 1000.0  # EEG clock time of the first sample
LEAD_IN = 10.0  # first trigger 10 s after the first sample: the run's start is seen


class Feed:
    """A synthetic session: EEG at 250 Hz, a trigger every TR, one fMRI sample per volume."""

    def __init__(
        self,
        seconds: float,
        *,
        fmri_lag: float = 0.0,
        stamp_error: float = 0.0,
        seed: int = 0,
        trigger_lag: float = 0.0,
        lead_in: float = LEAD_IN,
        latency: float = 0.0,
        dummy_scans: int = 0,
        latency_jump: tuple[float, float] | None = None,
    ):
        """``latency``: volumes stamped (and delivered) that long after their triggers; ``dummy_scans``
        triggers without a volume first; ``latency_jump``: (time since T0, new latency)."""
        rng = np.random.default_rng(seed)
        self.n = int(seconds * SFREQ)
        self.eeg_times = T0 + np.arange(self.n) / SFREQ
        self.eeg = rng.normal(0, 10, (self.n, len(CH_NAMES))).astype(np.float32)
        self.eeg[:, -1] = np.arange(self.n)
        self.all_triggers = T0 + lead_in + np.arange(int((seconds - lead_in) / TR) + 1) * TR
        self.triggers = self.all_triggers  # trigger times fed
        self.volume_triggers = self.all_triggers[dummy_scans:]  # volume v's trigger time
        latencies = np.full(self.volume_triggers.size, latency)
        if latency_jump is not None:
            latencies[self.volume_triggers >= T0 + latency_jump[0]] = latency_jump[1]
        self.volume_stamps = (
            self.volume_triggers + latencies + rng.normal(0, stamp_error, self.volume_triggers.size)
        )
        self.volume_arrivals = np.maximum.accumulate(
            self.volume_triggers + np.maximum(latencies, 0) + fmri_lag
        )
        self.fmri = rng.normal(1000, 5, (self.volume_triggers.size, len(REGIONS))).astype(np.float32)
        self.trigger_lag = trigger_lag

    def play(self, windower: MultiRateWindower, chunk_seconds: float = 0.1, truth=None):
        """Feed everything in arrival order, polling after each chunk; return the windows."""
        windows = []
        step = int(chunk_seconds * SFREQ)
        sent_triggers = sent_volumes = sent_truth = 0
        for start in range(0, self.n, step):
            now = self.eeg_times[min(self.n, start + step) - 1]
            windower.add_eeg(self.eeg_times[start : start + step], self.eeg[start : start + step])
            due = np.searchsorted(self.triggers + self.trigger_lag, now, side="right")
            windower.add_triggers(self.triggers[sent_triggers:due])
            sent_triggers = due
            due = np.searchsorted(self.volume_arrivals, now, side="right")
            windower.add_fmri(
                np.arange(sent_volumes, due),
                self.volume_stamps[sent_volumes:due],
                self.fmri[sent_volumes:due],
            )
            sent_volumes = due
            if truth is not None:
                onsets, stages = truth
                due = np.searchsorted(onsets, now, side="right")
                windower.add_truth(onsets[sent_truth:due], stages[sent_truth:due])
                sent_truth = due
            windows.extend(windower.poll())
        return windows


def codes(window) -> set[ProblemCode]:
    """The problem codes of a window."""
    return {p.code for p in window.quality.problems}


def make_windower(config: WindowConfig | None = None, **kwargs) -> MultiRateWindower:
    return MultiRateWindower(config or WindowConfig(), SFREQ, CH_NAMES, CH_TYPES, REGIONS, TR, **kwargs)


def test_window_count_grid_and_eeg_content():
    feed = Feed(300)
    windows = feed.play(make_windower())
    expected = math.floor((feed.eeg_times[-1] - (T0 + 30)) / TR + 1e-9) + 1
    assert len(windows) == expected
    ends = np.array([w.end for w in windows])
    np.testing.assert_allclose(np.diff(ends), TR, atol=1e-9)
    assert ends[0] == pytest.approx(T0 + 30.0)
    for window in windows:
        assert window.eeg.shape == (5, 7500)
        first = round((window.start - T0) * SFREQ) + 1
        np.testing.assert_array_equal(window.eeg[-1], np.arange(first, first + 7500))
        assert window.quality.usable and not window.quality.problems
    assert [w.index for w in windows] == list(range(len(windows)))


def test_fmri_volumes_sit_on_their_triggers_despite_timestamp_error():
    feed = Feed(400, stamp_error=0.3)  # scanner-side timestamps off by 0.3 s (SD)
    windows = feed.play(make_windower())
    for window in windows[::5]:
        expected = feed.triggers[(feed.triggers > window.end - 120) & (feed.triggers <= window.end)]
        np.testing.assert_allclose(window.fmri_times, expected, atol=0.5 / SFREQ)
        np.testing.assert_array_equal(window.fmri, feed.fmri[window.fmri_indices])
        assert window.quality.fmri_unmatched == 0
        assert window.quality.fmri_staleness <= TR


def test_late_fmri_is_waited_for_within_the_limit():
    feed = Feed(200, fmri_lag=3.0)
    windows = feed.play(make_windower(WindowConfig(max_fmri_wait=3.5)))
    late = windows[10:]
    assert all(w.quality.fmri_staleness <= TR + 1e-9 for w in late)  # the newest volume is there
    for window in late:
        # It waited for the volume of the last trigger before its end: 3 s after that trigger.
        last_trigger = feed.triggers[feed.triggers <= window.end][-1]
        assert window.quality.fmri_waited == pytest.approx(
            max(0.0, last_trigger + 3.0 - window.end), abs=0.11
        )
        assert window.fmri_times[-1] == pytest.approx(last_trigger)
    assert all(w.quality.usable for w in late)


def test_fmri_later_than_the_limit_is_emitted_stale_and_flagged():
    feed = Feed(200, fmri_lag=3.0)
    windows = feed.play(make_windower(WindowConfig(max_fmri_wait=1.0)))
    late = windows[10:]
    assert all(w.quality.fmri_waited <= 1.0 + 0.1 for w in late)
    stale = [w.quality.fmri_staleness for w in late]
    assert min(stale) > 0.9 and max(stale) <= 3.0 + TR
    assert any(ProblemCode.FMRI_STALE in codes(w) for w in late)


def test_stage_of_the_epoch_holding_the_window_midpoint():
    feed = Feed(220)
    onsets = T0 + LEAD_IN + np.arange(6) * 30.0
    stages = ["W", "N1", "N2", "unscored", "N3", "N2"]
    windows = feed.play(make_windower(use_truth=True), truth=(onsets, stages))
    assert len(windows) == len(feed.play(make_windower()))
    for window in windows:
        # The epoch holding the midpoint holds at least 15 of the window's 30 s of EEG.
        epoch = math.floor((window.end - 15.0 - onsets[0]) / 30)
        held = 0 <= epoch < 6
        assert window.stage == (stages[epoch] if held else None)
        assert window.epoch_start == (pytest.approx(onsets[epoch]) if held else None)
        if held:
            overlap = min(window.end, onsets[epoch] + 30) - max(window.start, onsets[epoch])
            assert overlap >= 15.0 - 1e-9


def test_a_window_longer_than_an_epoch_takes_the_plurality_epoch():
    feed = Feed(200)
    onsets = T0 + LEAD_IN + np.arange(5) * 30.0
    stages = ["W", "N1", "N2", "N3", "N2"]
    config = WindowConfig(eeg_window=50.0, fmri_window=120.0)
    windows = feed.play(make_windower(config), truth=(onsets, stages))
    for window in windows:
        overlaps = [min(window.end, o + 30) - max(window.start, o) for o in onsets]
        best = int(np.argmax(overlaps))
        if overlaps[best] > 0:
            assert window.stage == stages[best] and window.epoch_start == pytest.approx(onsets[best])


def test_a_window_waits_for_the_truth_marker_of_its_midpoint_epoch():
    feed = Feed(150)
    onsets = T0 + LEAD_IN + np.arange(4) * 30.0
    stages = ["W", "N1", "N2", "N3"]
    # Every marker delivered 20 s late: a window is held (within max_fmri_wait) until its marker is in.
    late_truth = (onsets + 20.0, stages)
    config = WindowConfig(max_fmri_wait=25.0)
    windower = make_windower(config, use_truth=True)
    windows = []
    sent = 0
    step = int(0.1 * SFREQ)
    for start in range(0, feed.n, step):
        now = feed.eeg_times[min(feed.n, start + step) - 1]
        windower.add_eeg(feed.eeg_times[start : start + step], feed.eeg[start : start + step])
        windower.add_triggers(feed.triggers[(feed.triggers > now - 0.1) & (feed.triggers <= now)])
        due = (feed.volume_arrivals > now - 0.1) & (feed.volume_arrivals <= now)
        windower.add_fmri(np.flatnonzero(due), feed.volume_stamps[due], feed.fmri[due])
        arrived = int(np.searchsorted(late_truth[0], now, side="right"))
        if arrived > sent:
            windower.add_truth(onsets[sent:arrived], stages[sent:arrived])
            sent = arrived
        windows.extend(windower.poll())
    labelled = [w for w in windows if onsets[0] <= w.end - 15.0 < onsets[-1] + 30]
    assert labelled
    for window in labelled:
        epoch = math.floor((window.end - 15.0 - onsets[0]) / 30)
        assert window.stage == stages[epoch]


def test_bad_channels_are_flagged_not_fed_silently():
    feed = Feed(100)
    feed.eeg[5000:5010, 1] = np.nan  # Cz: NaN for 40 ms
    feed.eeg[:, 0] = 3.0  # Fz flat
    windows = feed.play(make_windower())
    with_nan = [w for w in windows if w.start < feed.eeg_times[5000] < w.end]
    assert with_nan and all(w.quality.nonfinite_channels == ["Cz"] for w in with_nan)
    assert all(w.quality.flat_channels == ["Fz"] for w in windows)
    assert all(list(w.good_eeg_picks) == ([2] if w in with_nan else [1, 2]) for w in windows)
    assert all(w.quality.usable for w in windows)  # one good EEG channel is enough


def test_a_channel_flat_for_part_of_a_window_is_flagged():
    feed = Feed(100)
    flat = (feed.eeg_times > T0 + 50) & (feed.eeg_times <= T0 + 70)  # Pz flat for 20 s
    feed.eeg[flat, 2] = 0.0
    windows = feed.play(make_windower())
    overlap = [min(w.end, T0 + 70) - max(w.start, T0 + 50) for w in windows]
    assert any(0 < o < 30 for o in overlap)
    for window, flat_seconds in zip(windows, overlap, strict=True):
        if flat_seconds >= 2:  # a whole aligned second is flat
            assert window.quality.flat_channels == ["Pz"] and ProblemCode.FLAT_CHANNELS in codes(window)
            assert "flat channel(s) Pz" in window.quality.problem_texts
        elif flat_seconds <= 0:
            assert window.quality.flat_channels == []


def test_an_eeg_rate_off_its_nominal_rate_is_flagged():
    feed = Feed(80)
    feed.eeg_times = T0 + np.arange(feed.n) / (SFREQ * 1.02)  # the amplifier runs 2 % fast
    windows = feed.play(make_windower())
    assert windows
    for window in windows:
        assert window.quality.eeg_rate == pytest.approx(255.0, rel=1e-4)
        assert "EEG rate 255.00 Hz, +2.0% off its nominal 250 Hz" in window.quality.problem_texts
        rate_off = [p for p in window.quality.problems if p.code is ProblemCode.EEG_RATE_OFF]
        assert rate_off and rate_off[0].params["rate"] == pytest.approx(255.0, rel=1e-4)
        assert window.quality.usable
    assert not any(ProblemCode.EEG_RATE_OFF in codes(w) for w in Feed(60).play(make_windower()))


def test_gap_is_flagged_and_empty_windows_are_skipped():
    feed = Feed(200)
    windower = make_windower()
    lost = (feed.eeg_times > T0 + 60) & (feed.eeg_times <= T0 + 100)  # 40 s without EEG
    keep = ~lost
    feed.eeg_times, feed.eeg, feed.n = feed.eeg_times[keep], feed.eeg[keep], int(keep.sum())
    windower.add_gap(Gap(start=T0 + 60, end=T0 + 100, missing_samples=10000))
    windows = feed.play(windower)
    spanning = [w for w in windows if w.start < T0 + 100 and w.end > T0 + 60]
    assert spanning and all(w.quality.gaps == 1 for w in spanning)
    assert all(w.quality.usable == (w.quality.eeg_coverage >= 0.9) for w in spanning)
    assert any(not w.quality.usable for w in spanning)
    assert windower.windows_skipped > 0
    assert all(w.quality.eeg_received > 0 for w in windows)
    clean = [w for w in windows if w.start >= T0 + 100]
    assert clean and all(w.quality.usable for w in clean)


def test_restart_drops_the_old_timeline():
    windower = make_windower()
    first = Feed(80)
    first.play(windower)
    windower.restart()
    second = Feed(80, seed=1)
    second.eeg_times = second.eeg_times - 500.0  # the new stream's clock is earlier
    second.triggers = second.triggers - 500.0
    second.volume_stamps = second.volume_stamps - 500.0
    second.volume_arrivals = second.volume_arrivals - 500.0
    windows = second.play(windower)
    assert windows[0].quality.restarted and ProblemCode.STREAM_RESTARTED in codes(windows[0])
    assert windows[0].end == pytest.approx(T0 - 500 + 30)
    assert not windows[1].quality.restarted


def test_without_triggers_volumes_are_placed_at_their_own_timestamps():
    feed = Feed(200, stamp_error=0.05)
    windows = feed.play(make_windower(use_triggers=False))
    window = windows[-1]
    stamps = feed.volume_stamps[window.fmri_indices]
    np.testing.assert_allclose(window.fmri_times, stamps)
    assert window.quality.usable


def held(windower: MultiRateWindower) -> dict[str, int]:
    """Sizes of everything the windower keeps between windows."""
    checks = windower._channel_checks
    return {
        "EEG samples": windower.eeg.count,
        "EEG buffer bytes": windower.eeg._data.nbytes + windower.eeg._times.nbytes,
        "channel-check blocks": checks._highest.size + checks._lowest.size,
        "volumes": len(windower.volumes._placed) + len(windower.volumes._pending),
        "triggers": len(windower.volumes._triggers),
    }


def test_memory_stays_flat_and_holds_only_the_latest_data():
    config = WindowConfig()
    # Enough EEG to cut a window that waited the longest for its fMRI volume.
    capacity = config.eeg_capacity(SFREQ)
    assert capacity >= (config.eeg_window + config.hop + config.max_fmri_wait) * SFREQ
    volume_capacity = config.fmri_capacity(TR)
    assert volume_capacity * TR >= config.fmri_window + config.max_fmri_wait
    sizes = []
    for seconds in (600, 1200):  # 13 and 26 times what the EEG buffer holds
        feed = Feed(seconds)
        windower = make_windower(config)
        windows = feed.play(windower, chunk_seconds=1.0)
        sizes.append(held(windower))
        # The buffers hold the latest samples, volumes and triggers: everything older was dropped.
        times, data = windower.eeg._view()
        np.testing.assert_array_equal(times, feed.eeg_times[-capacity:])
        np.testing.assert_array_equal(data.T, feed.eeg[-capacity:])
        assert windower.eeg.total == feed.n
        placed = [v.index for v in windower.volumes._placed]
        assert placed == list(range(feed.triggers.size - volume_capacity, feed.triggers.size))
        assert [t for _, t in windower.volumes._triggers] == feed.triggers[-volume_capacity:].tolist()
        # and the last window, cut after the buffer wrapped many times, holds its own samples
        last = windows[-1]
        assert last.end == pytest.approx(feed.eeg_times[-1] - (feed.eeg_times[-1] - T0 - 30) % TR, abs=1e-6)
        first = round((last.start - T0) * SFREQ) + 1
        np.testing.assert_array_equal(last.eeg[-1], np.arange(first, first + 7500))
        in_window = (feed.triggers > last.end - config.fmri_window) & (feed.triggers <= last.end)
        np.testing.assert_array_equal(last.fmri_indices, np.flatnonzero(in_window))
    # Twice the recording, the same memory.
    assert sizes[0] == sizes[1], sizes
    assert sizes[1]["EEG samples"] == capacity and sizes[1]["volumes"] == volume_capacity


def test_volume_placer_pending_until_trigger_and_a_missed_trigger_keeps_the_mapping():
    placer = VolumePlacer(TR, capacity=100)
    placer.add_volumes(np.array([0]), np.array([10.0]), np.ones((1, 3)))
    assert placer.volumes_between(0, 20)[0].matched is False  # no trigger yet
    placer.add_triggers(np.array([10.01]))
    placed = placer.volumes_between(0, 20)
    assert placed[0].matched and placed[0].time == 10.01
    # The trigger of volume 1 is missed: trigger ordinals count TRs, so volume 2 keeps its own.
    placer.add_triggers(np.array([10.01 + 2 * TR]))
    placer.add_volumes(np.array([1, 2]), np.array([10.0 + TR, 10.0 + 2 * TR]), np.ones((2, 3)))
    assert placer.remaps == 0
    volumes = placer.volumes_between(0, 20)
    assert [v.index for v in volumes] == [0, 1, 2] and [v.matched for v in volumes] == [True, False, True]
    assert volumes[-1].time == pytest.approx(10.01 + 2 * TR)


def test_volume_placer_keeps_the_mapping_when_triggers_stop_and_return():
    placer = VolumePlacer(TR, capacity=100)
    times = 10.0 + np.arange(60) * TR
    stopped = (times > 40) & (times < 80)  # no trigger for these volumes
    for index, time in enumerate(times):
        if not stopped[index]:
            placer.add_triggers(np.array([time]))
        placer.add_volumes(np.array([index]), np.array([time + 0.01]), np.ones((1, 3)))
    assert placer.remaps == 0  # the triggers came back on the same TR grid: no re-locking needed
    volumes = placer.volumes_between(0, times[-1] + 1)
    assert [v.matched for v in volumes] == (~stopped).tolist()
    matched = [v for v in volumes if v.matched]
    np.testing.assert_allclose([v.time for v in matched], times[~stopped])


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match=r"WindowConfig\.hop = 0"):
        WindowConfig(hop=0)
    with pytest.raises(ValueError, match="min_eeg_coverage"):
        WindowConfig(min_eeg_coverage=1.5)
    with pytest.raises(ValueError, match="channel names but"):
        MultiRateWindower(WindowConfig(), SFREQ, ("a",), ("eeg", "eeg"), REGIONS, TR)


def test_highpass_is_chunking_invariant_and_removes_drift():
    from scipy import signal

    from stream.filters import StreamingHighpass

    rng = np.random.default_rng(3)
    data = (rng.standard_normal((5000, 3)) + np.linspace(0, 500, 5000)[:, None]).astype(np.float32)
    whole = StreamingHighpass(0.5, SFREQ, 3).process(data)
    pieces = StreamingHighpass(0.5, SFREQ, 3)
    chunked = np.vstack([pieces.process(data[i : i + 37]) for i in range(0, 5000, 37)])
    np.testing.assert_array_equal(whole, chunked)
    sos = signal.butter(2, 0.5, btype="highpass", fs=SFREQ, output="sos")
    zi = signal.sosfilt_zi(sos)[:, None, :] * data[0].astype(np.float64)[None, :, None]
    reference, _ = signal.sosfilt(sos, data.T.astype(np.float64), axis=1, zi=zi)
    np.testing.assert_allclose(whole, reference.T, rtol=1e-5, atol=1e-4)
    assert abs(whole[2000:].mean()) < 1.0  # the 500 uV ramp is gone


def test_windower_applies_the_highpass_to_eeg_channels_only():
    feed = Feed(100)
    feed.eeg[:, :4] += 200.0  # a DC offset on Fz, Cz, Pz and EOG
    windows = feed.play(make_windower(WindowConfig(highpass_hz=0.5)))
    last = windows[-1]
    assert np.abs(last.eeg[:3].mean(axis=1)).max() < 5.0  # EEG: offset removed
    assert last.eeg[3].mean() > 150.0  # EOG: as recorded
    np.testing.assert_array_equal(last.eeg[4], np.arange(last.eeg_first_sample, last.eeg_first_sample + 7500))


def test_triggers_arriving_after_the_eeg_do_not_change_the_windows():
    reference = Feed(200).play(make_windower())
    late = Feed(200, trigger_lag=1.0, fmri_lag=1.0).play(make_windower())
    assert len(late) == len(reference)
    for a, b in zip(reference, late, strict=True):
        np.testing.assert_array_equal(a.fmri_indices, b.fmri_indices)
        np.testing.assert_allclose(a.fmri_times, b.fmri_times)
