"""The commands that run whole sessions, as subprocesses: demo, live, serve, config."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request

import jsonschema
import pandas as pd
import pytest
from websockets.sync.client import connect

from model.bundle import DEFAULT_BUNDLE
from pipeline.recorder import read_predictions
from recordings.scoring import UNSCORED
from tests.cli import PROJECT, CliProcess, run_cli
from viewer.server import free_port

pytestmark = pytest.mark.lsl
SCHEMAS = {
    path.stem: json.loads(path.read_text()) for path in (PROJECT / "viewer" / "schemas").glob("*.json")
}
# Bounds that only guard against hanging: every wait below ends on its event (a line, a message, a stream).
BOUND = 120
PRINTED_WINDOW = re.compile(r"window\s+(\d+)\s+predicted=")  # the console line of each prediction
SYNTHETIC = "model trained on synthetic data: its predictions say nothing about real brains"


def predictions_from(port: int, count: int, timeout: float, until=lambda messages: True) -> list[dict]:
    """Prediction messages of the feed at ``port``: at least ``count``, and until ``until(messages)``."""
    messages = []
    deadline = time.monotonic() + timeout
    with connect(f"ws://127.0.0.1:{port}/ws?types=prediction", open_timeout=BOUND) as ws:
        while not (len(messages) >= count and until(messages)) and time.monotonic() < deadline:
            try:
                message = json.loads(ws.recv(timeout=max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                break
            jsonschema.validate(message, SCHEMAS[message["type"]])
            if message["type"] == "prediction":
                messages.append(message)
    assert len(messages) >= count and until(messages), f"{len(messages)} predictions within {timeout} s"
    return messages


def resolve(name: str, timeout: float = BOUND):
    """The stream called ``name``, as soon as it is found; fails after ``timeout`` seconds."""
    import pylsl

    found = pylsl.resolve_byprop("name", name, 1, timeout)
    assert found, f"no stream {name} within {timeout} s"
    return found[0]


def assert_complete_record(root) -> list[dict]:
    (folder,) = root.iterdir()
    recorded = read_predictions(folder / "predictions.jsonl")
    assert recorded and [r["window"] for r in recorded] == list(range(len(recorded)))
    meta = json.loads((folder / "session.json").read_text())
    # Closed on the way out: the stop time, the count and the Parquet copy are written only then.
    assert "stopped" in meta
    assert meta["model"]["labels"] == "wake-sleep" and meta["predictions"] == len(recorded)
    assert meta["configuration"]["window"]["hop"] == 2.1
    assert len(pd.read_parquet(folder / "predictions.parquet")) == len(recorded)
    return recorded


def test_demo_serves_predictions_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    demo = CliProcess(
        "demo",
        "--speed",
        "20",
        "--port",
        str(port),
        "--record",
        str(tmp_path / "sessions"),
        env={"SLEEPSTREAM_DATA_DIR": str(tmp_path / "data")},
    )
    try:
        demo.wait_for(lambda line: line.startswith(f"Viewer: http://127.0.0.1:{port}/"), timeout=BOUND)
        line = next(line for line in demo.lines if line.startswith("Predictions on LSL:"))
        names = line.removeprefix("Predictions on LSL:").strip().split(", ")
        predictions_from(port, 3, timeout=BOUND)
        # The prediction streams are published while the demo runs.
        assert [resolve(name).name() for name in names] == names
        status = demo.stop(signal.SIGINT, timeout=BOUND)
    finally:
        demo.kill()
    output = "\n".join(demo.lines)
    assert status == 0, output[-3000:]
    assert "Stopping." in output and "predicted=" in output and "Traceback" not in output
    # What a stop could leave unfinished is the record (the replay, the pipeline and the server are
    # threads of the process, so nothing outlives it): closed, and holding every window printed.
    recorded = assert_complete_record(tmp_path / "sessions")
    printed = [int(m[1]) for m in map(PRINTED_WINDOW.match, demo.lines) if m]
    assert printed and printed == [r["window"] for r in recorded][: len(printed)]
    assert f"Session recorded in {tmp_path / 'sessions'}" in output
    # The shipped bundle was trained on surrogate sessions: said at start, and recorded.
    assert_synthetic_model_announced(demo.lines)
    (folder,) = (tmp_path / "sessions").iterdir()
    assert SYNTHETIC in json.loads((folder / "session.json").read_text())["model"]["warnings"]


def assert_synthetic_model_announced(lines: list[str]) -> None:
    """The console said which bundle runs (the shipped one) and that it was trained on synthetic data."""
    model = [line for line in lines if line.startswith("Model: ")]
    assert model and "the shipped default bundle" in model[0] and "synthetic" in model[0], model
    assert f"warning: {SYNTHETIC}" in lines


def test_a_killed_demo_leaves_a_readable_record(tmp_path):
    demo = CliProcess(
        "demo",
        "--speed",
        "30",
        "--port",
        str(free_port()),
        "--record",
        str(tmp_path / "sessions"),
        env={"SLEEPSTREAM_DATA_DIR": str(tmp_path / "data")},
    )
    try:
        for _ in range(12):
            demo.wait_for(lambda line: line.startswith("window"), timeout=BOUND)
        demo.stop(signal.SIGKILL)  # no chance to close anything
    finally:
        demo.kill()
    (folder,) = (tmp_path / "sessions").iterdir()
    recorded = read_predictions(folder / "predictions.jsonl")
    assert len(recorded) >= 12  # everything printed before the kill was already on disk
    assert [r["window"] for r in recorded] == list(range(len(recorded)))
    shipped = json.loads((DEFAULT_BUNDLE / "bundle.json").read_text())
    assert json.loads((folder / "session.json").read_text())["model"]["context"] == shipped["context"]


def test_live_consumes_independently_started_replay_streams(short_dataset, unique_prefix, tmp_path):
    replay = CliProcess(
        "replay",
        "--session",
        str(short_dataset),
        "--subject",
        "99",
        "--run",
        "sleep-1",
        "--prefix",
        unique_prefix,
        "--with-truth",
        "--loop",
        "--speed",
        "10",
    )
    port = free_port()
    live = None
    try:
        replay.wait_for(lambda line: line.startswith("Press Ctrl-C"), timeout=BOUND)
        live = CliProcess(
            "live",
            "--eeg",
            f"name:{unique_prefix}-EEG",
            "--fmri",
            f"{unique_prefix}-fMRI",
            "--triggers",
            f"name:{unique_prefix}-Triggers",
            "--truth",
            f"name:{unique_prefix}-Truth",
            "--port",
            str(port),
            "--record",
            str(tmp_path / "sessions"),
            "--name",
            "night-1",
            "--wait",
            str(BOUND),  # per stream; found in well under a second unless the machine is overloaded
        )
        live.wait_for(lambda line: line.startswith(f"Viewer: http://127.0.0.1:{port}/"), timeout=BOUND)
        assert_synthetic_model_announced(live.lines)  # no silent fall-back to the shipped bundle

        # Joining a running replay, the stages scored before the truth stream was connected are not
        # known (how much of the replay that is depends on how fast this machine connects); the
        # stages of the epochs after are, so a scored window comes within one pass of the loop.
        def scored(messages: list[dict]) -> set[str]:
            return {m["stage"] for m in messages} - {None, UNSCORED}  # the run ends 3 s after its last epoch

        predictions = predictions_from(port, 20, timeout=BOUND, until=scored)
        assert scored(predictions) <= {"W", "N1", "N2", "N3"}
        assert live.stop(signal.SIGINT, timeout=BOUND) == 0, "\n".join(live.lines[-40:])
    finally:
        if live is not None:
            live.kill()
        replay.stop(signal.SIGINT, timeout=BOUND)
    recorded = assert_complete_record(tmp_path / "sessions")
    (folder,) = (tmp_path / "sessions").iterdir()
    assert folder.name.endswith("_night-1")
    meta = json.loads((folder / "session.json").read_text())
    assert meta["session"]["eeg"] == f"name:{unique_prefix}-EEG" and meta["session"]["mode"] == "live"
    assert len(recorded) >= 20


def test_live_names_a_missing_stream_and_exits(unique_prefix, tmp_path):
    result = run_cli(
        "live",
        "--eeg",
        f"name:{unique_prefix}-absent",
        "--wait",
        "1",
        "--port",
        str(free_port()),
        "--record",
        str(tmp_path),
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{unique_prefix}-absent" in result.stdout
    assert not list(tmp_path.iterdir()), "nothing is recorded for a session that never started"


def test_serve_shows_a_recorded_session(tmp_path):
    folder = tmp_path / "20260101T000000Z_night"
    folder.mkdir()
    messages = [
        {"type": "prediction", "version": 1, "window": i, "stream_time": 100.0 + 2.1 * i, "label": "sleep"}
        for i in range(7)
    ]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(m) + "\n" for m in messages))
    port = free_port()
    serve = CliProcess("serve", "--session", str(folder), "--port", str(port))
    try:
        serve.wait_for(lambda line: line.startswith("Showing 7 recorded predictions"), timeout=BOUND)
        history = f"http://127.0.0.1:{port}/api/history"
        with urllib.request.urlopen(f"{history}?since=0&limit=5", timeout=BOUND) as r:
            first = json.loads(r.read())
        since = first[-1]["stream_time"]
        with urllib.request.urlopen(f"{history}?since={since}", timeout=BOUND) as r:
            rest = json.loads(r.read())
        assert serve.stop(signal.SIGINT, timeout=BOUND) == 0
    finally:
        serve.kill()
    assert [m["window"] for m in first + rest] == list(range(7))


def test_config_prints_every_setting_and_reads_it_back(tmp_path):
    printed = run_cli("config", timeout=BOUND)
    assert printed.returncode == 0, printed.stderr
    assert "[window]\n" in printed.stdout and "hop = 2.1" in printed.stdout
    edited = tmp_path / "lab.toml"
    edited.write_text(printed.stdout.replace("hop = 2.1", "hop = 3.0").replace("port = 8000", "port = 8123"))
    again = run_cli("--config", str(edited), "config", timeout=BOUND)
    assert again.returncode == 0, again.stderr
    assert "hop = 3.0" in again.stdout and "port = 8123" in again.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[window]\nhopp = 2\n", "unknown key(s) ['hopp']"),
        ("[window]\nhop = 'fast'\n", "[window] hop = 'fast': expected float"),
        ("[window]\nhop = -1\n", "WindowConfig.hop = -1.0 is out of range"),
        ("[gossip]\n", "unknown key(s) ['gossip']"),
        ("[window\n", "is not valid TOML"),
    ],
)
def test_a_bad_configuration_file_is_refused_with_its_name_section_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run_cli("--config", str(path), "config", timeout=BOUND)
    assert result.returncode != 0
    assert str(path) in result.stderr and message in result.stderr
