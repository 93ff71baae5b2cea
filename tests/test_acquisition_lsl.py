"""Acquisition against real replays over LSL on loopback."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simulators.replay import SessionPlayer
from simulators.session import read_session
from stream.acquisition import BACKLOG_MAX_PAUSE, BACKLOG_WINDOWS, Acquisition
from stream.config import AcquisitionConfig, StreamQuery, WindowConfig
from stream.discovery import StreamMismatchError, StreamNotFoundError

pytestmark = pytest.mark.lsl
PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def short_session(short_dataset):
    return read_session(short_dataset, "99", "sleep-1")


def collect(acquisition: Acquisition, until, timeout: float) -> list:
    """Take windows until ``until(windows)`` is true or ``timeout`` passes."""
    windows = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(windows):
        try:
            windows.append(acquisition.queue.get(timeout=0.2))
        except TimeoutError:
            continue
    return windows


def expected_window_count(session, window: WindowConfig) -> int:
    """Windows of a finite (non-looping) replay.

    The last window of the run ends more than a TR after the last volume trigger: it waits for
    a volume that never comes, and the EEG stops before the wait is over, so it is not emitted.
    """
    last_sample = (session.n_times - 1) / session.sfreq
    return math.floor((last_sample - window.eeg_window) / window.hop + 1e-9)


def test_fast_replay_gives_every_window_aligned_and_labelled(short_session, unique_prefix):
    config = AcquisitionConfig.for_replay(unique_prefix, with_truth=True, resolve_timeout=5)
    player = SessionPlayer(
        short_session,
        speed=20,
        with_truth=True,
        prefix=unique_prefix,
        wait_for_consumers=10,
        fmri_stamp_error=0.2,
    )
    with player, Acquisition(config) as acquisition:
        expected = expected_window_count(short_session, config.window)
        windows = collect(acquisition, lambda w: len(w) >= expected, timeout=30)
        assert player.wait(10)
        time.sleep(0.5)
        windows += collect(acquisition, lambda w: False, timeout=0.5)
        health = acquisition.health()
    assert len(windows) == expected
    sfreq = short_session.sfreq
    # Time of EEG sample 0 on this machine's clock (the SampleIndex channel numbers the samples).
    t0 = windows[0].eeg_times[0] - windows[0].eeg[-1, 0] / sfreq
    for window in windows:
        assert window.eeg.shape == (33, 7500)
        first = int(window.eeg[-1, 0])
        np.testing.assert_array_equal(window.eeg[-1], np.arange(first, first + 7500))
        # Each volume sits on its trigger (within one EEG sample), not on its 0.2 s-off timestamp.
        triggers = t0 + short_session.volume_times[window.fmri_indices]
        assert np.abs(window.fmri_times - triggers).max() <= 1 / sfreq
        np.testing.assert_allclose(window.fmri, short_session.roi_means[window.fmri_indices], rtol=1e-6)
        # The label is the scored stage of the epoch in which the window ends.
        run_time = window.end - t0 - short_session.volume_times[0]
        assert window.stage == short_session.scoring.stage_at(run_time)
        assert window.quality.usable, window.quality.problems
    assert {w.stage for w in windows} == {"W", "N1", "unscored", "N3"}
    eeg = health["streams"]["eeg"]
    assert eeg["effective_rate"] == pytest.approx(250.0, rel=1e-3)
    assert eeg["gaps"] == 0 and eeg["dropped_samples"] == 0 and eeg["reconnects"] == 0
    assert health["streams"]["fmri"]["samples"] == short_session.n_volumes
    assert health["windows"]["emitted"] == expected and health["windows"]["dropped"] == 0


@pytest.mark.parametrize(("max_wait", "fresh"), [(3.5, True), (1.0, False)])
def test_three_second_fmri_lag(short_session, unique_prefix, max_wait, fresh):
    window_config = WindowConfig(max_fmri_wait=max_wait)
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=5, window=window_config)
    player = SessionPlayer(short_session, speed=20, fmri_lag=3.0, prefix=unique_prefix, wait_for_consumers=10)
    with player, Acquisition(config) as acquisition:
        windows = collect(acquisition, lambda w: len(w) >= 30, timeout=30)
    assert len(windows) >= 30
    steady = windows[5:]
    staleness = np.array([w.quality.fmri_staleness for w in steady])
    waited = np.array([w.quality.fmri_waited for w in steady])
    if fresh:
        # Waited for the late volume: every window holds the volume of its last trigger.
        assert staleness.max() <= short_session.tr + 1 / 250
        assert waited.max() > 1.5 and waited.max() <= max_wait + 0.5
        assert all(w.quality.usable for w in steady)
    else:
        # Gave up after 1 s: emitted with the freshest volume there was, staleness recorded.
        assert waited.max() <= max_wait + 0.5
        assert staleness.max() > short_session.tr
        assert any("fMRI stale" in problem for w in steady for problem in w.quality.problems)


def start_replay_process(dataset: Path, prefix: str, speed: float) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "run_stream.py"), "replay", "--session", str(dataset),
         "--subject", "99", "--run", "sleep-1", "--loop", "--speed", str(speed), "--prefix", prefix],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=PROJECT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.startswith("Press Ctrl-C"):
            break
    return process


def stop_processes(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)


def test_killed_and_restarted_fast_replay_resumes_by_itself(short_dataset, unique_prefix):
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=10)
    first = start_replay_process(short_dataset, unique_prefix, speed=20)
    second = None
    try:
        with Acquisition(config) as acquisition:
            before = collect(acquisition, lambda w: len(w) >= 5, timeout=20)
            assert len(before) >= 5
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            time.sleep(1.0)
            lost = acquisition.health()["streams"]["eeg"]
            assert not lost["connected"] and "lost" in lost["error"]
            collect(acquisition, lambda w: False, timeout=0.3)  # drain
            second = start_replay_process(short_dataset, unique_prefix, speed=20)
            after = collect(acquisition, lambda w: len(w) >= 1, timeout=20)
            health = acquisition.health()["streams"]["eeg"]
    finally:
        stop_processes(first, second)
    assert after, "no window after the replay came back"
    assert after[0].quality.restarted and "stream restarted" in after[0].quality.problems
    assert health["connected"] and health["reconnects"] == 1 and health["restarts"] == 1


def test_real_time_dropout_is_flagged_as_a_gap(short_dataset, unique_prefix):
    window = WindowConfig(eeg_window=4.0, fmri_window=10.0, hop=0.5, max_fmri_wait=1.0)
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=10, window=window)
    first = start_replay_process(short_dataset, unique_prefix, speed=1)
    second = None
    try:
        with Acquisition(config) as acquisition:
            before = collect(acquisition, lambda w: len(w) >= 2, timeout=20)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed_at = time.monotonic()
            second = start_replay_process(short_dataset, unique_prefix, speed=1)
            downtime = time.monotonic() - killed_at
            after = collect(acquisition, lambda w: sum(x.quality.gaps > 0 for x in w) >= 3, timeout=20)
            health = acquisition.health()["streams"]["eeg"]
    finally:
        stop_processes(first, second)
    assert before and after
    flagged = [w for w in after if w.quality.gaps]
    assert flagged, "no window flagged the dropout"
    # The window that holds most of the gap (a 4 s window holds at most 4 s of it).
    widest = max(flagged, key=lambda w: w.quality.gap_seconds)
    assert widest.quality.gap_seconds == pytest.approx(min(downtime, 4.0), abs=1.0)
    assert any(problem.startswith("1 EEG gap") for problem in widest.quality.problems)
    assert health["gaps"] == 1 and health["dropped_samples"] > 0 and health["reconnects"] == 1


def test_async_iteration_and_a_consumer_that_never_reads(short_session, unique_prefix):
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=5, queue_size=3)
    player = SessionPlayer(short_session, speed=40, prefix=unique_prefix, wait_for_consumers=10)
    with player, Acquisition(config) as acquisition:
        assert player.wait(15)
        time.sleep(0.5)  # nobody reads: acquisition goes on, the queue keeps the newest three
        health = acquisition.health()

        async def take_three():
            taken = []
            async for window in acquisition.windows():
                taken.append(window)
                if len(taken) == 3:
                    return taken
            return taken

        taken = asyncio.run(asyncio.wait_for(take_three(), timeout=5))
    expected = expected_window_count(short_session, config.window)
    assert health["windows"]["emitted"] == expected
    assert health["windows"]["dropped"] == expected - 3
    assert [w.index for w in taken] == [expected - 3, expected - 2, expected - 1]


def test_a_backlog_pauses_pulls_briefly_and_loses_nothing(short_session, unique_prefix):
    """While the consumer has BACKLOG_WINDOWS to take, pulls pause, never longer than BACKLOG_MAX_PAUSE."""
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=5, queue_size=64)
    expected = expected_window_count(short_session, config.window)
    player = SessionPlayer(short_session, speed=20, prefix=unique_prefix, wait_for_consumers=10)
    with player:
        acquisition = Acquisition(config).connect()  # streams open; nothing pulled yet
        try:
            deadline = time.monotonic() + 5
            while acquisition.eeg.samples_waiting() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert acquisition.eeg.samples_waiting() > 0 and acquisition.eeg.health.samples == 0
            acquisition.start()
            arrivals, seen, most_queued = [], 0, 0  # (time, samples) whenever the EEG sample count grew
            while player.is_running:  # nobody reads meanwhile
                samples = acquisition.eeg.health.samples
                if samples != seen:
                    arrivals.append(time.monotonic())
                    seen = samples
                most_queued = max(most_queued, len(acquisition.queue))
                time.sleep(0.005)
            windows = collect(acquisition, lambda w: len(w) >= expected, timeout=10)
            deadline = time.monotonic() + 5  # the queue is empty now: the rest is pulled at once
            while acquisition.eeg.health.samples < short_session.n_times and time.monotonic() < deadline:
                time.sleep(0.01)
            health = acquisition.health()
        finally:
            acquisition.stop()
    assert most_queued >= BACKLOG_WINDOWS
    intervals = np.diff(arrivals)
    assert intervals.max() >= 0.8 * BACKLOG_MAX_PAUSE, "no pause happened although a backlog formed"
    assert intervals.max() <= BACKLOG_MAX_PAUSE + 0.35, "a pause lasted far longer than its bound"
    assert [w.index for w in windows] == list(range(expected))
    assert health["windows"]["dropped"] == 0
    eeg = health["streams"]["eeg"]
    assert eeg["gaps"] == 0 and eeg["dropped_samples"] == 0 and eeg["samples"] == short_session.n_times
    assert all(w.quality.eeg_coverage == 1.0 for w in windows)


def test_channel_count_or_rate_mismatch_is_refused_at_start(short_session, unique_prefix):
    with SessionPlayer(short_session, speed=1, prefix=unique_prefix):
        config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=5, expected_eeg_channels=32)
        with pytest.raises(StreamMismatchError, match=r"has 33 channels; the configuration expects 32"):
            Acquisition(config).start()
        config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=5, expected_eeg_rate=500)
        with pytest.raises(StreamMismatchError, match=r"sampled at 250 Hz; the configuration expects 500 Hz"):
            Acquisition(config).start()


def test_missing_stream_error_lists_what_was_seen(short_session, unique_prefix):
    with SessionPlayer(short_session, speed=1, prefix=unique_prefix):
        config = AcquisitionConfig(
            eeg=StreamQuery(name=f"{unique_prefix}-EEG"),
            fmri=StreamQuery(name="no-such-fMRI"),
            resolve_timeout=1.5,
        )
        with pytest.raises(StreamNotFoundError) as info:
            Acquisition(config).start()
    message = str(info.value)
    assert "no LSL stream matching name='no-such-fMRI' within 1.5 s" in message
    assert f"name='{unique_prefix}-fMRI' type='fMRI'" in message
