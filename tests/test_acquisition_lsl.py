"""Acquisition against real replays over LSL on loopback.

Every check derives from stream clocks, sample numbers (the replay's SampleIndex
channel, the fMRI volume-index channel) and events the acquisition exposes. Waits
end on their event; their bound (``PATIENCE``) only guards against hanging.

Where a check compares two streams' clock-corrected stamps (a window's end on the
EEG clock against a volume trigger or a truth marker), it relies on liblsl's clock
synchronisation: every inlet estimates the outlet's clock offset from the probe with
the smallest round trip, so two inlets on one machine disagree by at most half such a
round trip (microseconds on loopback; milliseconds if every probe is delayed by
load). The replay geometry keeps every such comparison ``SYNC_MARGIN`` or more away
from a tie (asserted), so the expectation follows exactly from sample numbers.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.problems import ProblemCode
from core.windows import MIN_FMRI_VOLUMES
from recordings.session import read_session
from simulators.replay import SessionPlayer
from stream.acquisition import BACKLOG_WINDOWS, Acquisition
from stream.config import AcquisitionConfig, StreamQuery, WindowConfig
from stream.discovery import StreamMismatchError, StreamNotFoundError

pytestmark = pytest.mark.lsl
PROJECT = Path(__file__).resolve().parents[1]
PATIENCE = 60.0  # seconds; every wait ends on its event, this only stops a hang
SYNC_MARGIN = 0.05  # seconds between a window bound and any trigger or epoch onset (see the docstring)


@pytest.fixture(scope="module")
def short_session(short_dataset):
    return read_session(short_dataset, "99", "sleep-1")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Return once ``condition()`` holds; fail (naming ``what``) if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.01)


def collect(acquisition: Acquisition, until: Callable[[list], bool], timeout: float = PATIENCE) -> list:
    """Take windows until ``until(windows)`` is true (or ``timeout`` passes: the caller asserts)."""
    windows: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(windows):
        try:
            windows.append(acquisition.queue.get(timeout=0.2))
        except TimeoutError:
            continue
    return windows


def drain(acquisition: Acquisition) -> list:
    """Every window queued now, without waiting."""
    windows = []
    while len(acquisition.queue):
        windows.append(acquisition.queue.get(timeout=0))
    return windows


def wait_until_windowed(acquisition: Acquisition, samples: dict[str, int]) -> None:
    """Wait until each stream has delivered ``samples[kind]`` samples and a full pass has cut windows."""
    readers = {reader.kind: reader for reader in acquisition.readers}
    wait_for(
        lambda: all(readers[kind].health.samples >= n for kind, n in samples.items()),
        f"acquisition receiving {samples}",
    )
    passes = acquisition.passes
    wait_for(lambda: acquisition.passes > passes, "an acquisition pass after the last sample")


def whole_run(session, *, truth: bool = False) -> dict[str, int]:
    """Samples each stream of a finite replay of ``session`` delivers."""
    counts = {"eeg": session.n_times, "fmri": session.n_volumes, "triggers": session.n_volumes}
    if truth:
        counts["truth"] = session.scoring.n_epochs
    return counts


def expected_window_count(session, window: WindowConfig) -> int:
    """Windows of a finite (non-looping) replay.

    The last window of the run ends more than a TR after the last volume trigger: it waits for
    a volume that never comes, and the EEG stops before the wait is over, so it is not emitted.
    """
    last_sample = (session.n_times - 1) / session.sfreq
    return math.floor((last_sample - window.eeg_window) / window.hop + 1e-9)


def received_trigger_stamps(acquisition: Acquisition) -> np.ndarray:
    """Trigger stamps as the acquisition received them (its inlet opened before the replay started)."""
    return np.concatenate([stamps for stamps, _ in acquisition.triggers.history])


def codes(window) -> set[ProblemCode]:
    """The problem codes of a window."""
    return {p.code for p in window.quality.problems}


def end_in_session(window, session) -> float:
    """Session time of a window's end: its last EEG sample's number (SampleIndex) over the rate."""
    return float(window.eeg[-1, -1]) / session.sfreq


def newest_volume_due(session, end: float) -> int:
    """Index of the latest volume acquired at or before session time ``end`` (sample arithmetic)."""
    k = int(np.searchsorted(session.volume_times, end, side="right")) - 1
    nearest = np.abs(session.volume_times - end).min()
    assert nearest >= SYNC_MARGIN, f"a window ends {nearest:.3f} s from a trigger: the check would be a tie"
    return k


def test_fast_replay_gives_every_window_aligned_and_labelled(short_session, unique_prefix):
    # The wait for each window's volume ends when the volume arrives; its limit (30 s of wall time
    # at 20x) only guards against hanging, so every window holds exactly the volumes of its triggers.
    # (A window before any trigger has nothing to wait for: the first trigger is sent 28 s of EEG,
    # 1.4 s of wall time, before the first window ends.)
    window_config = WindowConfig(max_fmri_wait=600.0)
    config = AcquisitionConfig.for_replay(
        unique_prefix, with_truth=True, resolve_timeout=PATIENCE, window=window_config
    )
    player = SessionPlayer(
        short_session,
        speed=20,
        with_truth=True,
        prefix=unique_prefix,
        wait_for_consumers=PATIENCE,
        fmri_stamp_error=0.2,
    )
    expected = expected_window_count(short_session, config.window)
    assert expected <= config.queue_size  # so none is dropped whatever the consumer's pace
    with player, Acquisition(config) as acquisition:
        windows = collect(acquisition, lambda w: len(w) >= expected)
        assert player.wait(PATIENCE) and player.error is None
        wait_until_windowed(acquisition, whole_run(short_session, truth=True))
        windows += drain(acquisition)
        health = acquisition.health()
        triggers = received_trigger_stamps(acquisition)
        markers = [stage for _, stage in acquisition.windower.truth.items()]
    assert [w.index for w in windows] == list(range(expected))
    assert markers == list(short_session.scoring.stages)  # every scored epoch reached the windower
    assert len(triggers) == short_session.n_volumes
    sfreq = short_session.sfreq
    scoring = short_session.scoring
    labels: dict[int, list] = {}  # per scored epoch, the labels of the windows ending in it, in order
    for window in windows:
        assert window.eeg.shape == (33, 7500)
        first = int(window.eeg[-1, 0])
        np.testing.assert_array_equal(window.eeg[-1], np.arange(first, first + 7500))
        end = end_in_session(window, short_session)
        # The volumes whose triggers fall in the fMRI window, by sample arithmetic ...
        newest = newest_volume_due(short_session, end)
        oldest = newest_volume_due(short_session, end - config.window.fmri_window) + 1
        np.testing.assert_array_equal(window.fmri_indices, np.arange(oldest, newest + 1))
        # ... each placed exactly at the stamp of its own trigger (by volume index), not at its
        # own timestamp (0.2 s off on average).
        assert window.quality.fmri_unmatched == 0
        np.testing.assert_array_equal(window.fmri_times, triggers[window.fmri_indices])
        np.testing.assert_allclose(window.fmri, short_session.roi_means[window.fmri_indices], rtol=1e-6)
        # The label is the scored stage of the epoch holding the window's midpoint (most of its EEG).
        middle = end - config.window.eeg_window / 2 - short_session.volume_times[0]
        onsets = short_session.stage_onsets - short_session.volume_times[0]
        assert np.abs(middle - onsets).min() >= SYNC_MARGIN
        epoch = int(np.searchsorted(onsets, middle, side="right")) - 1
        labels.setdefault(epoch, []).append((window.stage, scoring.stage_at(middle)))
        if 0 <= epoch < onsets.size:
            # On the LSL clock: the marker's stamp, the EEG clock's reading at the epoch onset.
            onset_lsl = short_session.stage_onsets[epoch] + (window.end - end)
            assert window.epoch_start == pytest.approx(onset_lsl, abs=0.01)
        assert window.quality.usable, window.quality.problem_texts
    # Its marker travels on its own stream; a window waits for it (within max_fmri_wait, which
    # here only guards against hanging), so every window has the stage of its midpoint's epoch.
    for epoch in labels.values():
        assert all(label == stage for label, stage in epoch), epoch
    assert {w.stage for w in windows} - {None} <= {"W", "N1", "unscored", "N3"}
    eeg = health["streams"]["eeg"]
    # The fitted period of exactly spaced stamps; a clock-correction update of even 5 ms would move
    # it by less than 1e-4.
    assert eeg["effective_rate"] == pytest.approx(sfreq, rel=1e-3)
    assert eeg["gaps"] == 0 and eeg["dropped_samples"] == 0 and eeg["reconnects"] == 0
    assert health["streams"]["fmri"]["samples"] == short_session.n_volumes
    assert health["windows"]["emitted"] == expected and health["windows"]["dropped"] == 0


@pytest.mark.parametrize(("max_wait", "fresh"), [(60.0, True), (3.0, False)])
def test_a_late_fmri_volume_is_waited_for_up_to_the_limit(short_session, unique_prefix, max_wait, fresh):
    """Volumes arrive 10 s (of session time) after their trigger.

    Windows end 1.7 s after a trigger, so a window's volume is sent 8.3 s of EEG after its end.
    With a 60-s limit the window waits for it (the limit only guards against hanging: 10 s of
    wall time at 5x). With a 3-s limit it gives up 5.3 s of EEG (1 s of wall time) before the
    volume is even sent, and goes out stale.
    """
    lag = 10.0
    window_config = WindowConfig(eeg_window=10.0, fmri_window=30.0, max_fmri_wait=max_wait)
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=PATIENCE, window=window_config)
    player = SessionPlayer(
        short_session, speed=5, fmri_lag=lag, prefix=unique_prefix, wait_for_consumers=PATIENCE
    )
    with player, Acquisition(config) as acquisition:
        windows = collect(acquisition, lambda w: len(w) >= 8)
        triggers = received_trigger_stamps(acquisition)
    assert len(windows) >= 8
    tr = short_session.tr
    stale = []
    for window in windows:
        quality = window.quality
        newest = newest_volume_due(short_session, end_in_session(window, short_session))
        if window.fmri_indices.size and window.fmri_indices[-1] == newest:
            # Holds the volume of its last trigger, placed on that trigger.
            assert window.fmri_times[-1] == triggers[newest]
            assert quality.fmri_staleness < tr and ProblemCode.FMRI_STALE not in codes(window)
        else:
            stale.append(window)
            assert window.fmri_indices.size == 0 or window.fmri_indices[-1] < newest
            assert codes(window) & {ProblemCode.FMRI_STALE, ProblemCode.FEW_FMRI_VOLUMES}
            # Gave up after exactly the limit (or never held back, when EEG came in one chunk).
            assert quality.fmri_waited in (0.0, max_wait)
        assert 0.0 <= quality.fmri_waited <= max_wait
    if fresh:
        assert not stale, "a window went out without the volume it was waiting for"
        # Fresh windows are usable once their fMRI window holds the volumes the features need.
        assert all(w.quality.usable == (w.quality.fmri_volumes >= MIN_FMRI_VOLUMES) for w in windows)
        assert any(w.quality.usable for w in windows)
        # 8.3 s of EEG (1.7 s of wall time) pass between a window's end and its volume: at least
        # one window saw its end before its volume.
        assert any(w.quality.fmri_waited > 0 for w in windows)
    else:
        assert any(w.quality.fmri_waited == max_wait for w in stale), "no window gave up at the limit"
        assert any(w.quality.fmri_staleness is not None and w.quality.fmri_staleness > tr for w in stale)


def start_replay_process(dataset: Path, prefix: str, speed: float) -> subprocess.Popen:
    """Start ``run_stream.py replay --loop``; it starts its clock once every stream has a consumer."""
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "run_stream.py"), "replay", "--session", str(dataset),
         "--subject", "99", "--run", "sleep-1", "--loop", "--speed", str(speed), "--prefix", prefix,
         "--wait-for-consumers", str(PATIENCE)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=PROJECT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.startswith("Press Ctrl-C"):
            break
    return process


def stop_processes(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(PATIENCE)


def kill_and_wait_for_loss(process: subprocess.Popen, acquisition: Acquisition) -> None:
    """Kill the replay; return once the acquisition has seen the EEG stream lost and windowed the rest."""
    process.send_signal(signal.SIGKILL)
    process.wait(PATIENCE)
    wait_for(lambda: not acquisition.eeg.health.connected, "the acquisition seeing the EEG stream lost")
    passes = acquisition.passes
    wait_for(lambda: acquisition.passes > passes, "an acquisition pass after the loss")


def test_killed_and_restarted_fast_replay_resumes_by_itself(short_dataset, unique_prefix):
    """The new replay starts its stream time at 0 when it is started, far behind the old one.

    The old replay ran at 20x for 100 s of stream time (5 s of wall time): its last stamp is 95 s
    ahead of the LSL clock when it is killed. The new one's first stamp is the LSL clock when it
    starts (it waits for the acquisition to reconnect), so the timeline jumps back unless killing,
    starting and reconnecting take 94 s.
    """
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=PATIENCE)
    first = start_replay_process(short_dataset, unique_prefix, speed=20)
    second = None
    try:
        with Acquisition(config) as acquisition:
            before = collect(acquisition, lambda w: acquisition.eeg.health.samples >= 100 * 250)
            assert acquisition.eeg.health.samples >= 100 * 250 and len(before) >= 5
            kill_and_wait_for_loss(first, acquisition)
            lost = acquisition.health()["streams"]["eeg"]
            drain(acquisition)
            second = start_replay_process(short_dataset, unique_prefix, speed=20)
            after = collect(acquisition, lambda w: len(w) >= 1)
            health = acquisition.health()["streams"]["eeg"]
    finally:
        stop_processes(first, second)
    assert not lost["connected"] and "lost" in lost["error"]
    assert after, "no window after the replay came back"
    assert after[0].quality.restarted and ProblemCode.STREAM_RESTARTED in codes(after[0])
    assert health["connected"] and health["reconnects"] == 1 and health["restarts"] == 1


def test_real_time_dropout_is_flagged_as_a_gap(short_dataset, unique_prefix):
    """A replay killed and started again at real time: the stream clock goes on, with a hole.

    The hole lasts from the last sample before the kill to the first after the restart, however
    long the restart took; every window overlapping it reports exactly its overlap.
    """
    window = WindowConfig(eeg_window=4.0, fmri_window=10.0, hop=0.5, max_fmri_wait=1.0)
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=PATIENCE, window=window)
    first = start_replay_process(short_dataset, unique_prefix, speed=1)
    second = None
    try:
        with Acquisition(config) as acquisition:
            before = collect(acquisition, lambda w: len(w) >= 2)
            kill_and_wait_for_loss(first, acquisition)
            last_before = acquisition.eeg.health.last_timestamp  # dejittered time of the last sample
            period = acquisition.eeg.clock.period  # the fitted period the gap will be measured in
            before += drain(acquisition)
            second = start_replay_process(short_dataset, unique_prefix, speed=1)

            def past_the_gap(windows: list) -> bool:  # a flagged window, then a clean one
                flagged = [i for i, w in enumerate(windows) if w.quality.gaps]
                return bool(flagged) and any(not w.quality.gaps for w in windows[flagged[0] :])

            after = collect(acquisition, past_the_gap)
            health = acquisition.health()["streams"]["eeg"]
    finally:
        stop_processes(first, second)
    sfreq = 250.0
    assert len(before) >= 2 and past_the_gap(after), "the windows around the gap did not come"
    assert all(not w.quality.gaps for w in before)
    times = np.concatenate([w.eeg_times for w in after])
    first_after = float(times[times > last_before].min())
    hole = first_after - last_before
    assert hole > window.gap_tolerance / sfreq
    # The gap is measured to the raw stamp of the first sample after it; ``first_after`` is that
    # sample's dejittered time. They differ by the offset of the line fitted to that first chunk,
    # whose stamps the replay spaced exactly: far below SLACK (1 % of a sample period).
    slack = 0.01 / sfreq
    for w in after:
        overlap = min(first_after, w.end) - max(last_before, w.start)
        if abs(overlap) <= slack:
            continue  # touches the hole: either reading is right
        if overlap > 0:
            assert w.quality.gaps == 1 and w.quality.gap_seconds == pytest.approx(overlap, abs=slack)
            gaps = [p for p in w.quality.problems if p.code is ProblemCode.EEG_GAPS]
            assert gaps and gaps[0].params["count"] == 1
        else:
            assert w.quality.gaps == 0 and w.quality.gap_seconds == 0.0
    assert health["gaps"] == 1 and health["reconnects"] == 1 and health["restarts"] == 0
    # The samples the hole holds, in the period fitted before it (either neighbour within 1 % of a tie).
    missing = hole / period - 1
    assert health["dropped_samples"] in {math.floor(missing + 0.5 - 0.01), math.floor(missing + 0.5 + 0.01)}


def test_async_iteration_and_a_consumer_that_never_reads(short_session, unique_prefix):
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=PATIENCE, queue_size=3)
    player = SessionPlayer(short_session, speed=40, prefix=unique_prefix, wait_for_consumers=PATIENCE)
    with player, Acquisition(config) as acquisition:
        # Nobody reads: acquisition goes on, the queue keeps the newest three.
        assert player.wait(PATIENCE) and player.error is None
        wait_until_windowed(acquisition, whole_run(short_session))
        health = acquisition.health()

        async def take_three():
            taken = []
            async for window in acquisition.windows():
                taken.append(window)
                if len(taken) == 3:
                    return taken
            return taken

        taken = asyncio.run(asyncio.wait_for(take_three(), timeout=PATIENCE))
    expected = expected_window_count(short_session, config.window)
    assert health["windows"]["emitted"] == expected
    assert health["windows"]["dropped"] == expected - 3
    assert [w.index for w in taken] == [expected - 3, expected - 2, expected - 1]


def test_a_backlog_pauses_pulls_briefly_and_loses_nothing(short_session, unique_prefix):
    """While the consumer has BACKLOG_WINDOWS to take, pulls pause, but only for a while.

    Nobody reads during the replay: the queue (64) takes every window of the run (44), so a
    backlog forms once 8 are queued, after 45 s of the 123-s run. Pulls take at most 16 s of EEG
    each, so the rest can only be pulled if pauses end although the backlog stays.
    """
    config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=PATIENCE, queue_size=64)
    expected = expected_window_count(short_session, config.window)
    assert BACKLOG_WINDOWS < expected <= config.queue_size
    player = SessionPlayer(short_session, speed=20, prefix=unique_prefix, wait_for_consumers=PATIENCE)
    with player:
        acquisition = Acquisition(config).connect()  # streams open; nothing pulled yet
        try:
            wait_for(lambda: acquisition.eeg.samples_waiting() > 0, "EEG samples waiting in the inlet")
            assert acquisition.eeg.health.samples == 0
            acquisition.start()
            assert player.wait(PATIENCE) and player.error is None
            wait_until_windowed(acquisition, whole_run(short_session))
            queued = len(acquisition.queue)
            pauses = acquisition.backlog_pauses, acquisition.backlog_pauses_ended_by_limit
            windows = drain(acquisition)
            health = acquisition.health()
        finally:
            acquisition.stop()
    assert queued == expected
    assert pauses[0] >= 1, "no pause although a backlog formed"
    assert pauses[1] >= 1, "no pause ended at its limit although the backlog stayed"
    assert [w.index for w in windows] == list(range(expected))
    assert health["windows"]["dropped"] == 0
    eeg = health["streams"]["eeg"]
    assert eeg["gaps"] == 0 and eeg["dropped_samples"] == 0 and eeg["samples"] == short_session.n_times
    assert all(w.quality.eeg_coverage == 1.0 for w in windows)


def test_channel_count_or_rate_mismatch_is_refused_at_start(short_session, unique_prefix):
    with SessionPlayer(short_session, speed=1, prefix=unique_prefix):
        config = AcquisitionConfig.for_replay(
            unique_prefix, resolve_timeout=PATIENCE, expected_eeg_channels=32
        )
        with pytest.raises(StreamMismatchError, match=r"has 33 channels; the configuration expects 32"):
            Acquisition(config).start()
        config = AcquisitionConfig.for_replay(unique_prefix, resolve_timeout=PATIENCE, expected_eeg_rate=500)
        with pytest.raises(StreamMismatchError, match=r"sampled at 250 Hz; the configuration expects 500 Hz"):
            Acquisition(config).start()


def test_missing_stream_error_lists_what_was_seen(short_session, unique_prefix):
    """The error names the query and lists the streams that answered its last look-up.

    Which streams answer a look-up of a second depends on the machine's load, so it is tried
    again until this replay's three streams are listed; every try must raise a not-found error.
    """
    config = AcquisitionConfig(
        eeg=StreamQuery(name=f"{unique_prefix}-EEG"),
        fmri=StreamQuery(name="no-such-fMRI"),
        resolve_timeout=1.5,
    )
    header = "no LSL stream matching name='no-such-fMRI' within 1.5 s. Streams seen:\n"
    with SessionPlayer(short_session, speed=1, prefix=unique_prefix) as player:
        listed = [
            f"name='{s.name}' type='{s.stype}' source_id='{s.source_id}'" for s in player.streams.values()
        ]
        deadline = time.monotonic() + PATIENCE
        while True:
            with pytest.raises(StreamNotFoundError) as info:
                Acquisition(config).start()
            message = str(info.value)
            complete = message.startswith(header) and all(line in message for line in listed)
            if complete or time.monotonic() > deadline:
                break
    assert message.startswith(header), message
    assert all(line in message for line in listed), message
    assert "name='no-such-fMRI'" not in message.removeprefix(header)
