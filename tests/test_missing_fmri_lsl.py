"""Over LSL: a session whose fMRI stalls for 5 minutes, or that has no fMRI stream, is predicted from the EEG.

The replay runs faster than real time; every assertion is on windows and stream times (the
session's clock), never on wall-clock timing.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.layouts import stream_name
from core.problems import ProblemCode
from model.bundle import DEFAULT_BUNDLE
from pipeline.pipeline import STALE_TRS
from pipeline.prediction import Prediction
from pipeline.settings import RecordingSettings, Settings, StreamSettings
from recordings.session import read_session
from simulators.faults import FmriStall
from simulators.replay import SessionPlayer
from simulators.surrogate import write_surrogate_run
from tests.sessions import replay_pipeline

pytestmark = [pytest.mark.lsl, pytest.mark.timeout(600)]
SPEED = 60.0
HOP = 2.1
FMRI_WINDOW = 120.0
STALL = FmriStall(start=140.0, end=440.0)  # five minutes without fMRI
EPOCHS = 16  # a 480 s run: the stall, 140 s before it, and 40 s after it
HANG_SECONDS = 300.0  # wall seconds a replay may take to reach its goal: only a hang guard
QUEUE = 4096  # windows: the test keeps every one, however slowly the machine runs


@pytest.fixture(scope="module")
def bundle():
    from model.bundle import load_bundle

    return load_bundle(DEFAULT_BUNDLE)


@pytest.fixture(scope="module")
def long_session(tmp_path_factory):
    """A 9-minute surrogate run (cycling W, N1, N2, N3) with its BOLD, long enough for a 5-minute stall."""
    root: Path = tmp_path_factory.mktemp("long")
    scoring = root / "long-scoring.tsv"
    lines = ["session\tepoch_start_time_sec\t30-sec_epoch_sleep_stage"]
    lines += [f"task-sleep_run-1\t{30 * k}\t{'W123'[k % 4]}" for k in range(EPOCHS)]
    scoring.write_text("\r\n".join(lines) + "\r\n")
    write_surrogate_run(root, "99", "sleep-1", scoring_source=scoring, seed=11)
    return read_session(root, "99", "sleep-1")


def run_until(live, player: SessionPlayer, done) -> list[Prediction]:
    """Run the pipeline (its own event loop, in a thread) until ``done(predictions)``; then stop it."""
    predictions: list[Prediction] = []
    live.pipeline.add_sink(predictions.append)
    thread = threading.Thread(target=asyncio.run, args=(live.pipeline.run(),), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + HANG_SECONDS
        while not done(predictions):
            assert time.monotonic() < deadline, f"hung: {len(predictions)} predictions in {HANG_SECONDS:g} s"
            assert player.error is None, player.error
            time.sleep(0.05)
        health = live.acquisition.health()
    finally:
        player.stop()
        live.close()
        thread.join(30)
    assert health["error"] is None and health["windows"]["dropped"] == 0, health
    assert live.pipeline.errors == 0
    # Every window cut has its prediction, in order, one hop apart on the stream clock.
    assert [p.window for p in predictions] == list(range(len(predictions)))
    np.testing.assert_allclose(np.diff([p.stream_time for p in predictions]), HOP, atol=1e-6)
    for prediction in predictions:
        assert all(math.isfinite(v) for v in prediction.probabilities.values())
        assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-4)
    return predictions


def flagged(prediction: Prediction) -> bool:
    codes = [p["code"] for p in prediction.quality["problem_codes"]]
    return ProblemCode.PREDICTED_WITHOUT_FMRI.value in codes


def test_a_five_minute_fmri_stall_is_predicted_from_the_eeg_and_flagged(long_session, unique_prefix, bundle):
    player = SessionPlayer(
        long_session, speed=SPEED, with_truth=False, prefix=unique_prefix, wait_for_consumers=60,
        faults=(STALL,),
    )  # fmt: skip
    player.start()
    live = replay_pipeline(unique_prefix, bundle, with_truth=False, queue_size=QUEUE)
    goal = STALL.end + 30.0

    def session_time(prediction: Prediction) -> float:
        """The window's end in seconds of the session (the replay's stream clock)."""
        assert player.start_clock is not None
        return prediction.stream_time - player.start_clock

    predictions = run_until(live, player, lambda made: bool(made) and session_time(made[-1]) >= goal)
    tr = long_session.tr
    ends = np.array([session_time(p) for p in predictions])
    used = np.array([p.fmri_used for p in predictions])
    # The flag, its problem code and the message field say the same, for every window.
    assert [flagged(p) for p in predictions] == [not u for u in used]
    assert all(p.message["fmri_used"] == u for p, u in zip(predictions, used, strict=True))
    # Before the stall, once the 120 s fMRI window is full: every window used fMRI.
    before = (ends >= FMRI_WINDOW) & (ends <= STALL.start)
    assert before.sum() >= 8 and used[before].all()
    # During the stall (after the last fresh volume has aged past the staleness limit, and before the
    # late volumes arrive in their burst): every window has a prediction, made without fMRI.
    during = (ends > STALL.start + (STALE_TRS + 1) * tr) & (ends < STALL.end - 4.0)
    assert during.sum() >= (STALL.end - STALL.start - 20) / HOP
    assert not used[during].any()
    for prediction in np.array(predictions, dtype=object)[during]:
        eeg = [prediction.features[name] for name in list(prediction.features)[:7]]
        assert all(math.isfinite(v) for v in eeg)
        reason = next(p for p in prediction.quality["problem_codes"] if p["code"] == "predicted_without_fmri")
        assert "fMRI" in reason["reason"]
    # Once the fMRI window holds no volume at all, the window says so too.
    empty = (ends > STALL.start + FMRI_WINDOW + tr) & during
    assert empty.any() and all(predictions[i].quality["fmri_volumes"] == 0 for i in np.flatnonzero(empty))
    # After the burst: fMRI is used again.
    after = ends > STALL.end + tr
    assert after.sum() >= 10 and used[after].all()


def test_a_session_without_an_fmri_stream_predicts_every_window_from_the_eeg(
    short_dataset, unique_prefix, bundle
):
    """An EEG-only session (``fmri = "none"``): it starts, never waits for fMRI, and flags every window."""
    from pipeline.factory import build_pipeline

    session = read_session(short_dataset, "99", "sleep-1")
    # Nobody consumes the replay's fMRI and trigger streams: start at once rather than wait for them.
    player = SessionPlayer(session, speed=20, loop=True, with_truth=True, prefix=unique_prefix)
    player.start()
    streams = StreamSettings(
        eeg=f"name:{stream_name(unique_prefix, 'EEG')}",
        fmri="none",
        truth=f"name:{stream_name(unique_prefix, 'Truth')}",
        resolve_timeout=60,
        queue_size=QUEUE,
    )
    settings = Settings(streams=streams, recording=RecordingSettings(enabled=False))
    config = settings.acquisition()
    assert config.fmri is None
    live = build_pipeline(settings, config, bundle=bundle, name=unique_prefix, outlet_prefix=None)
    assert any("EEG-only" in warning for warning in live.warnings)
    predictions = run_until(live, player, lambda made: len(made) >= 30)
    assert "fmri" not in live.acquisition.health()["streams"]
    for prediction in predictions:
        assert not prediction.fmri_used and flagged(prediction)
        reason = next(p for p in prediction.quality["problem_codes"] if p["code"] == "predicted_without_fmri")
        assert reason["reason"] == "no fMRI stream in this session"
        quality = prediction.quality
        # Never held back waiting for fMRI; no fMRI problem; usable on its EEG alone.
        assert quality["fmri_waited"] == 0 and quality["fmri_volumes"] == 0
        codes = {p["code"] for p in quality["problem_codes"]}
        assert not {"few_fmri_volumes", "fmri_volumes_missing"} & codes
        assert quality["usable"], quality["problems"]
    # The scoring still reaches the windows: an EEG-only session is evaluated like any other.
    assert {p.stage for p in predictions} - {None}
