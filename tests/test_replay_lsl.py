"""Replay over real LSL outlets and inlets on loopback."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from simulators.replay import SessionPlayer
from simulators.session import read_session

pytestmark = pytest.mark.lsl
RESOLVE_TIMEOUT = 5.0
PROJECT = Path(__file__).resolve().parents[1]


def open_inlet(source_id: str, max_buflen: int = 360) -> pylsl.StreamInlet:
    """Resolve one stream by source_id (time-bounded) and open it."""
    found = pylsl.resolve_byprop("source_id", source_id, 1, RESOLVE_TIMEOUT)
    assert found, f"stream {source_id} not found within {RESOLVE_TIMEOUT} s"
    inlet = pylsl.StreamInlet(found[0], max_buflen=max_buflen, recover=False)
    inlet.open_stream(timeout=RESOLVE_TIMEOUT)
    return inlet


def pull_until(inlet: pylsl.StreamInlet, n_samples: int, timeout: float) -> tuple[np.ndarray, np.ndarray]:
    """Pull chunks until ``n_samples`` arrived or ``timeout`` passed."""
    data, stamps = [], []
    deadline = time.monotonic() + timeout
    received = 0
    while received < n_samples and time.monotonic() < deadline:
        chunk, times = inlet.pull_chunk(timeout=0.2, max_samples=8192)
        if times:
            data.extend(chunk)
            stamps.extend(times)
            received += len(times)
    return np.array(data, dtype=object if data and isinstance(data[0][0], str) else float), np.array(stamps)


@pytest.fixture(scope="module")
def short_session(short_dataset):
    return read_session(short_dataset, "99", "sleep-1")


def connect(player: SessionPlayer, kinds: tuple[str, ...]) -> dict[str, pylsl.StreamInlet]:
    return {kind: open_inlet(player.streams[kind].source_id) for kind in kinds}


def test_every_eeg_sample_arrives_in_order_with_exact_timestamps(short_session, unique_prefix):
    kinds = ("EEG", "fMRI", "Triggers", "Truth")
    with SessionPlayer(
        short_session, speed=math.inf, with_truth=True, prefix=unique_prefix, wait_for_consumers=5
    ) as player:
        inlets = connect(player, kinds)
        data, stamps = pull_until(inlets["EEG"], short_session.n_times, timeout=30)
        fmri, fmri_stamps = pull_until(inlets["fMRI"], short_session.n_volumes, timeout=10)
        triggers, trigger_stamps = pull_until(inlets["Triggers"], short_session.n_volumes, timeout=10)
        truth, truth_stamps = pull_until(inlets["Truth"], short_session.scoring.n_epochs, timeout=10)
        assert player.wait(10) and player.error is None

    # Every EEG sample, in order, none twice (the SampleIndex channel counts them).
    np.testing.assert_array_equal(data[:, -1], np.arange(short_session.n_times))
    np.testing.assert_allclose(np.diff(stamps), 1 / short_session.sfreq, atol=1e-6)
    np.testing.assert_allclose(data[:100, :32], short_session.eeg_samples(0, 100)[:, :32], rtol=1e-6)

    # One R128 per volume, at the volume's acquisition time on the EEG clock.
    assert len(triggers) == short_session.n_volumes
    assert set(triggers[:, 0]) == {"R128"}
    eeg_start = stamps[0]
    np.testing.assert_allclose(trigger_stamps - eeg_start, short_session.volume_times, atol=1e-6)

    # fMRI: one sample per volume, index then region means, stamped at acquisition.
    assert fmri.shape == (short_session.n_volumes, 1 + short_session.parcellation.n_regions)
    np.testing.assert_array_equal(fmri[:, 0], np.arange(short_session.n_volumes))
    np.testing.assert_allclose(fmri[:, 1:], short_session.roi_means, rtol=1e-6)
    np.testing.assert_allclose(fmri_stamps, trigger_stamps, atol=1e-6)

    # Truth: the scored stage at each epoch start, matching the TSV.
    assert list(truth[:, 0]) == ["W", "N1", "unscored", "N3"]
    np.testing.assert_allclose(truth_stamps - eeg_start, short_session.stage_onsets, atol=1e-6)


def effective_rate(inlet: pylsl.StreamInlet, seconds: float) -> float:
    """Samples per wall-clock second, between the first and the last chunk received."""
    inlet.pull_chunk(timeout=1.0)  # discard the backlog from before the measurement
    first = None
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _, times = inlet.pull_chunk(timeout=0.5, max_samples=100_000)
        if times:
            now = time.monotonic()
            if first is None:
                first = now
            else:
                count += len(times)
                last = now
    return count / (last - first)


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_effective_rate_follows_the_speed_factor(short_session, unique_prefix, speed):
    with SessionPlayer(short_session, speed=speed, prefix=unique_prefix) as player:
        inlet = open_inlet(player.streams["EEG"].source_id)
        rate = effective_rate(inlet, seconds=5.0)
    expected = short_session.sfreq * speed
    assert rate == pytest.approx(expected, rel=0.01)


def test_fmri_lag_delays_delivery_but_not_the_timestamp(short_session, unique_prefix):
    lag = 1.5
    with SessionPlayer(short_session, speed=1.0, fmri_lag=lag, prefix=unique_prefix) as player:
        triggers = open_inlet(player.streams["Triggers"].source_id)
        fmri = open_inlet(player.streams["fMRI"].source_id)
        _, trigger_stamp = triggers.pull_sample(timeout=6.0)
        trigger_arrival = pylsl.local_clock()
        sample, fmri_stamp = fmri.pull_sample(timeout=6.0)
        fmri_arrival = pylsl.local_clock()
    assert sample is not None and trigger_stamp is not None
    index = int(sample[0])
    first_trigger_index = round((trigger_stamp - fmri_stamp) / short_session.tr) + index
    # The first volume seen on each stream may differ; compare like with like.
    assert fmri_stamp == pytest.approx(
        trigger_stamp - (first_trigger_index - index) * short_session.tr, abs=1e-3
    )
    assert fmri_arrival - fmri_stamp == pytest.approx(lag, abs=0.15)
    assert trigger_arrival - trigger_stamp < 0.15


def test_looping_continues_timestamps_and_volume_index(short_dataset, unique_prefix):
    session = read_session(short_dataset, "99", "rest-1")  # 60 s scored, 63 s of EEG
    speed = 40.0
    with SessionPlayer(session, speed=speed, loop=True, prefix=unique_prefix) as player:
        eeg = open_inlet(player.streams["EEG"].source_id)
        fmri = open_inlet(player.streams["fMRI"].source_id)
        data, stamps = pull_until(eeg, int(1.5 * session.n_times), timeout=10)
        volumes, _ = pull_until(fmri, 10**6, timeout=0.5)
    assert player.loops_completed >= 1
    assert np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(np.diff(stamps), 1 / session.sfreq, atol=1e-6)
    index = data[:, -1]
    wrap = np.flatnonzero(np.diff(index) < 0)
    assert wrap.size >= 1 and index[wrap[0]] == session.n_times - 1 and index[wrap[0] + 1] == 0
    assert volumes[:, 0].max() >= session.n_volumes  # the volume index keeps counting
    assert np.all(np.diff(volumes[:, 0]) == 1)


def test_two_replays_side_by_side_do_not_mix(short_dataset, unique_prefix):
    sessions = {
        "a": read_session(short_dataset, "99", "sleep-1"),
        "b": read_session(short_dataset, "99", "rest-1"),
    }
    kinds = ("EEG", "fMRI", "Triggers", "Truth")
    players = {
        key: SessionPlayer(
            session, speed=20, prefix=f"{unique_prefix}-{key}", with_truth=True, wait_for_consumers=10
        )
        for key, session in sessions.items()
    }
    try:
        for player in players.values():
            player.start()
        names = {s.name() for s in pylsl.resolve_streams(2.0)}
        assert {f"{unique_prefix}-{key}-{kind}" for key in players for kind in kinds} <= names
        inlets = {key: connect(player, kinds) for key, player in players.items()}
        truth = {
            key: pull_until(inlets[key]["Truth"], sessions[key].scoring.n_epochs, timeout=15)[0]
            for key in players
        }
        eeg = {key: pull_until(inlets[key]["EEG"], 500, timeout=5)[0] for key in players}
        infos = {key: inlets[key]["EEG"].info(timeout=RESOLVE_TIMEOUT) for key in players}
    finally:
        for player in players.values():
            player.stop()
    assert players["a"].streams["EEG"].source_id != players["b"].streams["EEG"].source_id
    assert infos["a"].desc().child("session").child_value("task") == "sleep"
    assert infos["b"].desc().child("session").child_value("task") == "rest"
    # Each truth stream carries exactly its own session's scoring.
    assert list(truth["a"][:, 0]) == list(sessions["a"].scoring.stages)
    assert list(truth["b"][:, 0]) == list(sessions["b"].scoring.stages)
    # Each EEG stream carries its own recording, sample for sample.
    for key, data in eeg.items():
        first = int(data[0, -1])
        np.testing.assert_array_equal(data[:, -1], np.arange(first, first + len(data)))
        expected = sessions[key].eeg_samples(first, first + len(data))[:, :30]
        np.testing.assert_allclose(data[:, :30], expected, rtol=1e-6)


def test_third_party_pylsl_client_reads_metadata(short_session, unique_prefix):
    with SessionPlayer(short_session, speed=1, prefix=unique_prefix) as player:
        streams = [s for s in pylsl.resolve_streams(2.0) if s.name().startswith(unique_prefix)]
        by_type = {s.type(): s for s in streams}
        assert set(by_type) == {"EEG", "fMRI", "Markers"}
        eeg = pylsl.StreamInlet(by_type["EEG"])
        info = eeg.info(timeout=RESOLVE_TIMEOUT)
        fmri_info = pylsl.StreamInlet(by_type["fMRI"]).info(timeout=RESOLVE_TIMEOUT)
        sample, stamp = eeg.pull_sample(timeout=5)
    assert info.nominal_srate() == 250.0 and info.channel_format() == pylsl.cf_float32
    assert info.get_channel_labels() == short_session.ch_names
    assert info.get_channel_types() == list(short_session.ch_types)
    assert info.get_channel_units()[:32] == ["microvolts"] * 32
    assert info.desc().child("session").child_value("subject") == "99"
    assert fmri_info.get_channel_labels() == ["volume", *short_session.parcellation.names]
    assert fmri_info.nominal_srate() == pytest.approx(1 / 2.1)
    assert float(fmri_info.desc().child("session").child_value("tr")) == 2.1
    assert sample is not None and stamp > 0
    assert player.streams["EEG"].name == f"{unique_prefix}-EEG"


def test_third_party_mne_lsl_client_reads_channels_and_data(short_session, unique_prefix):
    from mne_lsl.stream import StreamLSL

    with SessionPlayer(short_session, speed=1, prefix=unique_prefix) as player:
        stream = StreamLSL(
            bufsize=2.0, name=player.streams["EEG"].name, source_id=player.streams["EEG"].source_id
        )
        stream.connect(timeout=RESOLVE_TIMEOUT)
        try:
            deadline = time.monotonic() + 10
            while stream.n_new_samples < 250 and time.monotonic() < deadline:
                time.sleep(0.1)
            data, _ = stream.get_data(winsize=1.0)
            ch_types = stream.get_channel_types()
            ch_names = stream.ch_names
            units = stream.get_channel_units()
        finally:
            stream.disconnect()
    assert ch_names == short_session.ch_names
    assert ch_types[:30] == ["eeg"] * 30 and ch_types[30:] == ["eog", "ecg", "misc"]
    assert data.shape == (33, 250)
    index = data[-1]
    np.testing.assert_array_equal(np.diff(index), 1)  # consecutive samples
    # Values arrive as pushed, and mne-lsl knows they are microvolts (V, 10^-6).
    assert [int(u[1]) for u in units[:32]] == [-6] * 32 and int(units[32][0]) == -1
    expected = short_session.eeg_samples(int(index[0]), int(index[0]) + 250)[:, :30].T
    np.testing.assert_allclose(data[:30], expected, rtol=1e-5)


def test_cli_replay_prints_stream_names_and_stops_cleanly(short_dataset, unique_prefix):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LSLAPICFG", None)  # the CLI must set the loopback configuration itself
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "run_stream.py"), "replay", "--session", str(short_dataset),
         "--subject", "99", "--run", "sleep-1", "--with-truth", "--prefix", unique_prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        for kind in ("EEG", "fMRI", "Triggers", "Truth"):
            assert f"name={unique_prefix}-{kind}" in output
        found = pylsl.resolve_byprop("name", f"{unique_prefix}-EEG", 1, RESOLVE_TIMEOUT)
        assert found and found[0].channel_count() == 33
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Stopping." in out
    assert not pylsl.resolve_byprop("name", f"{unique_prefix}-EEG", 1, 1.0)


def test_player_rejects_bad_arguments(short_session):
    with pytest.raises(ValueError, match="speed must be > 0"):
        SessionPlayer(short_session, speed=0)
    with pytest.raises(ValueError, match="fmri_lag must be between 0 and 60 s"):
        SessionPlayer(short_session, fmri_lag=-1)
