"""The commands that run whole sessions, as subprocesses: demo, live, serve, config."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from websockets.sync.client import connect

from simulators.scoring import UNSCORED
from stream.recorder import read_predictions
from tests.cli import PROJECT, CliProcess, run_cli
from viewer.server import free_port

pytestmark = pytest.mark.lsl
SCHEMAS = {
    path.stem: json.loads(path.read_text()) for path in (PROJECT / "viewer" / "schemas").glob("*.json")
}


def predictions_from(port: int, count: int, timeout: float) -> list[dict]:
    """The first ``count`` prediction messages of the feed at ``port``."""
    messages = []
    deadline = time.monotonic() + timeout
    with connect(f"ws://127.0.0.1:{port}/ws?types=prediction") as ws:
        while len(messages) < count and time.monotonic() < deadline:
            try:
                message = json.loads(ws.recv(timeout=max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                break
            jsonschema.validate(message, SCHEMAS[message["type"]])
            if message["type"] == "prediction":
                messages.append(message)
    assert len(messages) == count, f"{len(messages)} of {count} predictions within {timeout} s"
    return messages


def streams_named(prefix: str, timeout: float = 2.0) -> list[str]:
    import pylsl

    return [
        info.name() for info in pylsl.resolve_streams(wait_time=timeout) if info.name().startswith(prefix)
    ]


def assert_complete_record(root) -> list[dict]:
    (folder,) = root.iterdir()
    recorded = read_predictions(folder / "predictions.jsonl")
    assert recorded and [r["window"] for r in recorded] == list(range(len(recorded)))
    meta = json.loads((folder / "session.json").read_text())
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
        demo.wait_for(lambda line: line.startswith(f"Viewer: http://127.0.0.1:{port}/"), timeout=120)
        prefix = next(line.split()[-1] for line in demo.lines if line.startswith("Predictions on LSL:"))
        prefix = prefix.rsplit("-", 1)[0]  # <demo prefix>-prediction-Label -> <demo prefix>-prediction
        predictions_from(port, 3, timeout=60)
        assert streams_named(prefix), "the prediction streams are published while the demo runs"
        children = demo.children()
        status = demo.stop(signal.SIGINT)
    finally:
        demo.kill()
    output = "\n".join(demo.lines)
    assert status == 0, output[-3000:]
    assert "Stopping." in output and "predicted=" in output and "Traceback" not in output
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "no process is left behind"
    assert not streams_named(prefix), "the prediction outlets are closed"
    assert_complete_record(tmp_path / "sessions")


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
            demo.wait_for(lambda line: line.startswith("window"), timeout=120)
        demo.stop(signal.SIGKILL)  # no chance to close anything
    finally:
        demo.kill()
    (folder,) = (tmp_path / "sessions").iterdir()
    recorded = read_predictions(folder / "predictions.jsonl")
    assert len(recorded) >= 12  # everything printed before the kill was already on disk
    assert [r["window"] for r in recorded] == list(range(len(recorded)))
    assert json.loads((folder / "session.json").read_text())["model"]["context"] == 4


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
        replay.wait_for(lambda line: line.startswith("Press Ctrl-C"), timeout=60)
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
        )
        live.wait_for(lambda line: line.startswith(f"Viewer: http://127.0.0.1:{port}/"), timeout=120)
        predictions = predictions_from(port, 20, timeout=60)
        # Joining a running replay, the stages scored before it connected are not known; later ones are.
        stages = {p["stage"] for p in predictions} - {None, UNSCORED}  # the run ends 3 s after its last epoch
        assert stages and stages <= {"W", "N1", "N2", "N3"}
        assert live.stop(signal.SIGINT) == 0, "\n".join(live.lines[-40:])
    finally:
        if live is not None:
            live.kill()
        replay.stop(signal.SIGINT)
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
        serve.wait_for(lambda line: line.startswith("Showing 7 recorded predictions"), timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/history?since=0&limit=5", timeout=10) as r:
            first = json.loads(r.read())
        since = first[-1]["stream_time"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/history?since={since}", timeout=10) as r:
            rest = json.loads(r.read())
        assert serve.stop(signal.SIGINT) == 0
    finally:
        serve.kill()
    assert [m["window"] for m in first + rest] == list(range(7))


def test_config_prints_every_setting_and_reads_it_back(tmp_path):
    printed = run_cli("config", timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert "[window]\n" in printed.stdout and "hop = 2.1" in printed.stdout
    edited = tmp_path / "lab.toml"
    edited.write_text(printed.stdout.replace("hop = 2.1", "hop = 3.0").replace("port = 8000", "port = 8123"))
    again = run_cli("--config", str(edited), "config", timeout=60)
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
    result = run_cli("--config", str(path), "config", timeout=60)
    assert result.returncode != 0
    assert str(path) in result.stderr and message in result.stderr
