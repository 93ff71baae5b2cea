"""The websocket feed and REST API, with a real replay, real uvicorn and real websocket clients."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from model.bundle import DEFAULT_BUNDLE
from pipeline.feed import Broadcaster
from tests.sessions import live_session
from viewer.app import ServerState
from viewer.server import LiveServer

pytestmark = pytest.mark.lsl
PROJECT = Path(__file__).resolve().parents[1]
SCHEMAS = {
    path.stem: json.loads(path.read_text()) for path in (PROJECT / "viewer" / "schemas").glob("*.json")
}
# Bounds that only guard against hanging: every wait below ends on its event (a message, a count).
REPLY_SECONDS = 60
RUN_SECONDS = 300


@pytest.fixture(scope="module")
def bundle():
    from model.bundle import load_bundle

    return load_bundle(PROJECT / "model" / "default_bundle")


def get_json(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=REPLY_SECONDS) as response:
        return json.loads(response.read())


def open_ws(url: str):
    """A websocket client connection; the handshake may take as long as any other reply."""
    return connect(url, open_timeout=REPLY_SECONDS)


def receive_until(ws, predicate, timeout: float) -> list[dict]:
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = json.loads(ws.recv(timeout=max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        messages.append(message)
        if predicate(messages):
            break
    return messages


def test_predictions_reach_every_healthy_client_and_match_the_schemas(short_dataset, unique_prefix, bundle):
    player, live, state = live_session(short_dataset, unique_prefix, bundle, speed=10)
    try:
        with LiveServer(state) as server:
            base = f"ws://127.0.0.1:{server.port}/ws"
            with open_ws(f"{base}?types=prediction,session") as first, open_ws(base) as second:
                expected = 45  # (123 s of EEG - 30 s) / 2.1 s + 1

                def enough(messages: list[dict]) -> bool:
                    return sum(m["type"] == "prediction" for m in messages) >= expected

                got = [receive_until(ws, enough, RUN_SECONDS) for ws in (first, second)]
            status = get_json(f"{server.url}/api/status")
            history = get_json(f"{server.url}/api/history?since=0")
            model = get_json(f"{server.url}/api/model")
            assert get_json(f"{server.url}/healthz") == {"ok": True}
            openapi = get_json(f"{server.url}/openapi.json")
    finally:
        live.close()
        player.stop()
    for messages in got:
        predictions = [m for m in messages if m["type"] == "prediction"][:expected]
        assert [p["window"] for p in predictions] == list(range(expected))  # none lost, in order
        for message in messages:
            jsonschema.validate(message, SCHEMAS[message["type"]])
        assert messages[0]["type"] == "session" and messages[0]["event"] == "connected"
        assert {p["stage"] for p in predictions} >= {"W", "N1", "N3"}
        assert set(predictions[-1]["probabilities"]) == {"wake", "sleep"}
    assert not any(m["type"] == "status" for m in got[0])  # subscribed to predictions and session only
    assert any(m["type"] == "status" for m in got[1])
    assert status["pipeline"]["predictions"] >= expected and status["health"]["streams"]["eeg"]["connected"]
    assert [h["window"] for h in history][:expected] == list(range(expected))
    shipped = json.loads((DEFAULT_BUNDLE / "bundle.json").read_text())
    assert model["labels"] == "wake-sleep" and model["context"] == shipped["context"]
    assert {"/api/status", "/api/config", "/api/history", "/api/model", "/healthz"} <= set(openapi["paths"])


def test_token_is_required_beyond_loopback_and_checked_when_set(short_dataset, unique_prefix, bundle):
    with pytest.raises(ValueError, match="requires a token"):
        LiveServer(ServerState(), host="0.0.0.0")
    player, live, state = live_session(short_dataset, unique_prefix, bundle, token="s3cret-token")
    try:
        with LiveServer(state) as server:
            with pytest.raises(urllib.error.HTTPError) as refused:
                get_json(f"{server.url}/api/status")
            assert refused.value.code == 401
            assert get_json(f"{server.url}/api/status", token="s3cret-token")["pipeline"]["running"]
            with pytest.raises(InvalidStatus) as refused_ws:
                open_ws(f"ws://127.0.0.1:{server.port}/ws?token=wrong")
            assert refused_ws.value.response.status_code == 403  # refused at the handshake
            with open_ws(f"ws://127.0.0.1:{server.port}/ws?token=s3cret-token") as ws:
                assert json.loads(ws.recv(timeout=REPLY_SECONDS))["event"] == "connected"
    finally:
        live.close()
        player.stop()


def test_bad_client_messages_get_errors_and_the_connection_survives(short_dataset, unique_prefix, bundle):
    player, live, state = live_session(short_dataset, unique_prefix, bundle)
    try:
        with LiveServer(state) as server, open_ws(f"ws://127.0.0.1:{server.port}/ws?types=session") as ws:
            assert json.loads(ws.recv(timeout=REPLY_SECONDS))["event"] == "connected"
            for bad in ("not json", json.dumps({"subscribe": ["gossip"]}), "x" * 10_000, b"\x00\xff binary"):
                ws.send(bad)
                reply = json.loads(ws.recv(timeout=REPLY_SECONDS))
                assert reply["type"] == "error", reply
                jsonschema.validate(reply, SCHEMAS["error"])
            ws.send(json.dumps({"subscribe": ["prediction"]}))
            assert json.loads(ws.recv(timeout=REPLY_SECONDS))["event"] == "subscribed"
            assert json.loads(ws.recv(timeout=RUN_SECONDS))["type"] == "prediction"
        with LiveServer(state) as server, open_ws(f"ws://127.0.0.1:{server.port}/ws?types=gossip") as ws:
            assert "unknown message type" in json.loads(ws.recv(timeout=REPLY_SECONDS))["error"]
    finally:
        live.close()
        player.stop()


def test_a_client_that_never_reads_never_slows_the_others():
    async def scenario():
        broadcaster = Broadcaster(queue_size=8, stall_seconds=0.2)
        stuck = broadcaster.subscribe()
        healthy = broadcaster.subscribe({"prediction"})
        received = []
        for window in range(50):
            broadcaster.publish({"type": "prediction", "window": window})
            received.append((await healthy.queue.get())["window"])
            await asyncio.sleep(0.01)
        return broadcaster, stuck, received

    broadcaster, stuck, received = asyncio.run(scenario())
    assert received == list(range(50))  # publishing never waited for the stuck client
    assert stuck.dropped > 0 and stuck.stalled.is_set()
    assert stuck.identifier not in broadcaster.clients and broadcaster.disconnected_stalled == 1


def wait_until(condition, timeout: float, what: str) -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds (a guard against hanging)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def pull_count(inlet, count: int, timeout: float) -> tuple[list, list]:
    """The first ``count`` samples of ``inlet`` and their stamps; fail after ``timeout`` seconds."""
    samples, stamps = [], []
    deadline = time.monotonic() + timeout
    while len(samples) < count:
        assert time.monotonic() < deadline, f"{len(samples)} of {count} samples within {timeout} s"
        chunk, times = inlet.pull_chunk(timeout=0.2, max_samples=count - len(samples))
        samples.extend(chunk)
        stamps.extend(times)
    return samples, stamps


def test_predictions_are_published_on_lsl_for_labrecorder(short_dataset, unique_prefix, bundle):
    import pylsl

    from pipeline.lsl_output import PredictionOutlet

    player, live, state = live_session(short_dataset, unique_prefix, bundle)
    outlet = PredictionOutlet(bundle.label_names, prefix=f"{unique_prefix}-out")
    state.pipeline.add_sink(outlet)
    inlets = []
    for name in outlet.names:
        (info,) = pylsl.resolve_byprop("name", name, 1, REPLY_SECONDS)
        # No clock post-processing: outlet and inlet share this machine's clock, so every stamp
        # arrives exactly as it was pushed.
        inlets.append(pylsl.StreamInlet(info))
    for inlet in inlets:
        inlet.open_stream(timeout=REPLY_SECONDS)  # before the pipeline runs: no prediction is missed
    try:
        with LiveServer(state):
            wait_until(lambda: state.pipeline.predictions >= 45, RUN_SECONDS, "45 predictions")
            # No more windows: the pipeline predicts those still queued, pushes them, and ends.
            live.close()
            wait_until(lambda: not state.pipeline.running, REPLY_SECONDS, "the pipeline to end")
            history = list(state.pipeline.history)
            probabilities, stamps = pull_count(inlets[0], len(history), REPLY_SECONDS)
            labels, label_stamps = pull_count(inlets[1], len(history), REPLY_SECONDS)
            # Nothing beyond one sample per prediction has arrived (a sample pushed twice would).
            assert inlets[0].samples_available() == inlets[1].samples_available() == 0
    finally:
        live.close()
        player.stop()
    assert len(history) >= 45 and [p.window for p in history] == list(range(len(history)))
    assert inlets[0].info().get_channel_labels() == ["wake", "sleep"]
    assert stamps == label_stamps == [p.stream_time for p in history]
    # float32 channels: the probabilities as float32, exactly.
    expected = np.array([[p.probabilities["wake"], p.probabilities["sleep"]] for p in history], np.float32)
    np.testing.assert_array_equal(np.array(probabilities, np.float32), expected)
    assert labels == [[p.label] for p in history]


def test_a_busy_port_is_refused_with_a_clear_message():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot listen on 127.0.0.1:{port} .*choose another port"):
            LiveServer(ServerState(), port=port)
