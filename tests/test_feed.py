"""The websocket feed and REST API, with a real replay, real uvicorn and real websocket clients."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.sessions import live_session
from viewer.app import ServerState
from viewer.feed import Broadcaster
from viewer.server import LiveServer

pytestmark = pytest.mark.lsl
PROJECT = Path(__file__).resolve().parents[1]
SCHEMAS = {
    path.stem: json.loads(path.read_text()) for path in (PROJECT / "viewer" / "schemas").glob("*.json")
}


@pytest.fixture(scope="module")
def bundle():
    from model.bundle import load_bundle

    return load_bundle(PROJECT / "model" / "default_bundle")


def get_json(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


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
    player, acquisition, state = live_session(short_dataset, unique_prefix, bundle, speed=10)
    try:
        with LiveServer(state) as server:
            base = f"ws://127.0.0.1:{server.port}/ws"
            with connect(f"{base}?types=prediction,session") as first, connect(base) as second:
                expected = 45  # (123 s of EEG - 30 s) / 2.1 s + 1
                got = [receive_until(ws, lambda m: sum(x["type"] == "prediction" for x in m) >= expected, 40)
                       for ws in (first, second)]  # fmt: skip
            status = get_json(f"{server.url}/api/status")
            history = get_json(f"{server.url}/api/history?since=0")
            model = get_json(f"{server.url}/api/model")
            assert get_json(f"{server.url}/healthz") == {"ok": True}
            openapi = get_json(f"{server.url}/openapi.json")
    finally:
        acquisition.stop()
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
    assert model["labels"] == "wake-sleep" and model["context"] == 4
    assert {"/api/status", "/api/config", "/api/history", "/api/model", "/healthz"} <= set(openapi["paths"])


def test_token_is_required_beyond_loopback_and_checked_when_set(short_dataset, unique_prefix, bundle):
    with pytest.raises(ValueError, match="requires a token"):
        LiveServer(ServerState(), host="0.0.0.0")
    player, acquisition, state = live_session(short_dataset, unique_prefix, bundle, token="s3cret-token")
    try:
        with LiveServer(state) as server:
            with pytest.raises(urllib.error.HTTPError) as refused:
                get_json(f"{server.url}/api/status")
            assert refused.value.code == 401
            assert get_json(f"{server.url}/api/status", token="s3cret-token")["pipeline"]["running"]
            with pytest.raises(InvalidStatus) as refused_ws:
                connect(f"ws://127.0.0.1:{server.port}/ws?token=wrong")
            assert refused_ws.value.response.status_code == 403  # refused at the handshake
            with connect(f"ws://127.0.0.1:{server.port}/ws?token=s3cret-token") as ws:
                assert json.loads(ws.recv(timeout=5))["event"] == "connected"
    finally:
        acquisition.stop()
        player.stop()


def test_bad_client_messages_get_errors_and_the_connection_survives(short_dataset, unique_prefix, bundle):
    player, acquisition, state = live_session(short_dataset, unique_prefix, bundle)
    try:
        with LiveServer(state) as server, connect(f"ws://127.0.0.1:{server.port}/ws?types=session") as ws:
            assert json.loads(ws.recv(timeout=5))["event"] == "connected"
            for bad in ("not json", json.dumps({"subscribe": ["gossip"]}), "x" * 10_000, b"\x00\xff binary"):
                ws.send(bad)
                reply = json.loads(ws.recv(timeout=5))
                assert reply["type"] == "error", reply
                jsonschema.validate(reply, SCHEMAS["error"])
            ws.send(json.dumps({"subscribe": ["prediction"]}))
            assert json.loads(ws.recv(timeout=5))["event"] == "subscribed"
            assert json.loads(ws.recv(timeout=30))["type"] == "prediction"
        with LiveServer(state) as server, connect(f"ws://127.0.0.1:{server.port}/ws?types=gossip") as ws:
            assert "unknown message type" in json.loads(ws.recv(timeout=5))["error"]
    finally:
        acquisition.stop()
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


def test_predictions_are_published_on_lsl_for_labrecorder(short_dataset, unique_prefix, bundle):
    import pylsl

    from viewer.lsl_output import PredictionOutlet

    player, acquisition, state = live_session(short_dataset, unique_prefix, bundle)
    outlet = PredictionOutlet(bundle.label_names, prefix=f"{unique_prefix}-out")
    state.pipeline.add_sink(outlet)
    inlets = [
        pylsl.StreamInlet(
            pylsl.resolve_byprop("name", name, 1, 5.0)[0], processing_flags=pylsl.proc_clocksync
        )
        for name in outlet.names
    ]
    for inlet in inlets:
        inlet.open_stream(timeout=5)
    try:
        with LiveServer(state):
            deadline = time.monotonic() + 30
            while state.pipeline.predictions < 45 and time.monotonic() < deadline:
                time.sleep(0.1)
            player.stop()  # no more windows: the two outlets now hold the same predictions
            time.sleep(1.0)
            probabilities, stamps = inlets[0].pull_chunk(timeout=2.0)
            labels, _ = inlets[1].pull_chunk(timeout=2.0)
    finally:
        acquisition.stop()
        player.stop()
    history = list(state.pipeline.history)
    assert len(probabilities) == len(labels) == len(history) >= 45
    assert inlets[0].info().get_channel_labels() == ["wake", "sleep"]
    for values, stamp, label, prediction in zip(probabilities, stamps, labels, history, strict=False):
        assert stamp == pytest.approx(prediction.stream_time, abs=1e-3)
        assert values == pytest.approx(
            [prediction.probabilities["wake"], prediction.probabilities["sleep"]], abs=1e-6
        )
        assert label == [prediction.label]


def test_a_busy_port_is_refused_with_a_clear_message():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot listen on 127.0.0.1:{port} .*choose another port"):
            LiveServer(ServerState(), port=port)
