"""The live page in chromium: predictions arrive, the hypnogram grows, it reconnects, memory stays bounded."""

from __future__ import annotations

import time

import pytest

from model.prediction import Prediction
from tests.sessions import live_session
from viewer.app import ServerState
from viewer.server import LiveServer, free_port

pytestmark = pytest.mark.browser
PROJECT_BUNDLE = "model/default_bundle"


@pytest.fixture(scope="module")
def bundle():
    from model.bundle import load_bundle
    from tests.cli import PROJECT

    return load_bundle(PROJECT / PROJECT_BUNDLE)


def live_value(page, expression: str):
    return page.evaluate(f"window.sleepstreamLive.{expression}")


def wait_until(page, condition: str, timeout_s: float) -> None:
    page.wait_for_function(f"window.sleepstreamLive && ({condition})", timeout=timeout_s * 1000)


def synthetic_message(window: int, stage: str | None = "N2") -> dict:
    """A valid prediction message (the server does not check what it relays)."""
    sleep = 0.2 + 0.6 * (window % 5) / 4
    features = {name: 1.0 + window % 7 for name in (
        "eeg_delta_power", "eeg_theta_power", "eeg_alpha_power", "eeg_beta_power", "eeg_gamma_power",
        "eeg_spectral_entropy", "eeg_mean_coherence", "bold_mean", "bold_variance", "alff_mean",
        "alff_variance")}  # fmt: skip
    return Prediction(
        window=window,
        stream_time=1000.0 + 2.1 * window,
        wall_time=time.time(),
        label="sleep" if sleep > 0.5 else "wake",
        probabilities={"wake": 1 - sleep, "sleep": sleep},
        features=features,
        quality={"usable": window % 10 != 3, "problems": [], "feature_problems": []},
        stage=stage,
        latency_ms=3.0,
    ).to_message()


@pytest.mark.lsl
def test_during_a_replay_predictions_arrive_and_the_hypnogram_grows(
    page, short_dataset, unique_prefix, bundle
):
    player, acquisition, state = live_session(short_dataset, unique_prefix, bundle, speed=10)
    try:
        with LiveServer(state) as server:
            page.goto(f"{server.url}/")
            wait_until(page, "window.sleepstreamLive.windows() >= 3", 60)
            first = live_value(page, "hypnogramLength()")
            wait_until(page, f"window.sleepstreamLive.hypnogramLength() >= {first + 5}", 60)
            wait_until(page, "document.querySelector('#health tbody tr[data-stream=eeg]') !== null", 10)
            assert live_value(page, "connection()") == "connected"
            assert page.text_content("#state-label") in {"wake", "sleep"}
            assert live_value(page, "scoredLength()") > 0  # the replay carries the expert scoring
            eeg_row = page.text_content("#health tbody tr[data-stream=eeg]")
            assert "connected" in eeg_row and "250.00" in eeg_row
            for chart in ("probability", "hypnogram", "bands", "fmri"):
                assert page.locator(f"#chart-{chart} canvas").count() >= 1
            assert int(page.text_content("#window-count")) == live_value(page, "windows()")
    finally:
        acquisition.stop()
        player.stop()
    assert page.console_errors == []


def test_the_page_reconnects_by_itself_and_fills_in_what_it_missed(page, bundle):
    port = free_port()
    first_state = ServerState(bundle=bundle, session={"name": "before"})
    with LiveServer(first_state, port=port) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        for window in range(4):
            server.publish(synthetic_message(window))
        wait_until(page, "window.sleepstreamLive.windows() === 4", 20)
    wait_until(page, "window.sleepstreamLive.connection() === 'reconnecting'", 20)
    assert "retrying" in page.text_content("#connection")
    second_state = ServerState(bundle=bundle, session={"name": "after"})
    with LiveServer(second_state, port=port) as server:
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 30)
        for window in range(4, 9):
            server.publish(synthetic_message(window))
        wait_until(page, "window.sleepstreamLive.windows() === 9", 20)
        assert page.text_content("#window-count") == "9"
    real_errors = [
        e for e in page.console_errors if "ERR_CONNECTION_REFUSED" not in e and "WebSocket" not in e
    ]
    assert real_errors == []


def test_the_page_keeps_a_bounded_history(page, bundle):
    with LiveServer(ServerState(bundle=bundle, session={"name": "long night"})) as server:
        page.goto(f"{server.url}/?keep_hours=0.05")  # 86 windows
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        limit = live_value(page, "maxPoints") + live_value(page, "trimSlack")
        for window in range(400):
            server.publish(synthetic_message(window))
            if window % 100 == 99:  # let the browser keep up: a healthy client is not cut off
                wait_until(page, f"window.sleepstreamLive.windows() === {window + 1}", 20)
        assert live_value(page, "windows()") == 400
        assert 0 < live_value(page, "hypnogramLength()") <= limit
    assert page.console_errors == []
