"""Replay over real LSL outlets and inlets on loopback.

The pylsl inlets here are opened without clock post-processing: they receive the stamps the
replay pushed, bit for bit, so stamps are compared exactly. Waits end on their event
(samples received, a stream found); their bound only guards against hanging. How
fast samples travel is measured by ``benchmarks/latency.py``, not asserted here.
"""

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

from recordings.session import read_session
from simulators.replay import SessionPlayer

pytestmark = pytest.mark.lsl
RESOLVE_TIMEOUT = 60.0  # seconds; a look-up returns as soon as its stream answers
PATIENCE = 60.0  # seconds to wait for samples that are sure to come
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
        short_session, speed=math.inf, with_truth=True, prefix=unique_prefix, wait_for_consumers=PATIENCE
    ) as player:
        inlets = connect(player, kinds)  # the replay starts once all four are connected
        data, stamps = pull_until(inlets["EEG"], short_session.n_times, timeout=PATIENCE)
        fmri, fmri_stamps = pull_until(inlets["fMRI"], short_session.n_volumes, timeout=PATIENCE)
        triggers, trigger_stamps = pull_until(inlets["Triggers"], short_session.n_volumes, timeout=PATIENCE)
        truth, truth_stamps = pull_until(inlets["Truth"], short_session.scoring.n_epochs, timeout=PATIENCE)
        assert player.wait(PATIENCE) and player.error is None

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


def pull_with_arrivals(
    inlet: pylsl.StreamInlet, n_samples: int, player: SessionPlayer | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, set]:
    """Pull ``n_samples``; also the LSL clock when each chunk was in hand, and the player's progress seen."""
    data, stamps, arrivals, progress = [], [], [], set()
    deadline = time.monotonic() + PATIENCE
    while len(stamps) < n_samples and time.monotonic() < deadline:
        chunk, times = inlet.pull_chunk(timeout=0.2, max_samples=8192)
        arrived = pylsl.local_clock()
        if times:
            data.extend(chunk)
            stamps.extend(times)
            arrivals.extend([arrived] * len(times))
        if player is not None and player.progress is not None:
            progress.add(player.progress)
    return np.array(data, dtype=float), np.array(stamps), np.array(arrivals), progress


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_replay_keeps_to_the_speed_factor_on_its_clock(short_session, unique_prefix, speed):
    """At speed s, by LSL time c the replay has sent exactly the samples of ``(c - start) * s`` seconds.

    Checked on the replay's own clock readings, and at a consumer: no sample arrives before it
    is due, and its stamp is its session time. How late samples arrive depends on the machine's
    load: ``benchmarks/latency.py`` measures it.
    """
    sfreq = short_session.sfreq
    n_samples = int(3.0 * speed * sfreq)  # three seconds of wall time
    with SessionPlayer(short_session, speed=speed, prefix=unique_prefix) as player:
        inlet = open_inlet(player.streams["EEG"].source_id)
        data, stamps, arrivals, progress = pull_with_arrivals(inlet, n_samples, player)
    start = player.start_clock
    assert len(stamps) >= n_samples
    index = data[:, -1]
    np.testing.assert_array_equal(index, np.arange(index[0], index[0] + len(index)))
    # Stamps are session time from the start, whatever the speed.
    np.testing.assert_allclose(stamps - start, index / sfreq, rtol=0, atol=1e-9)
    # Sample k is sent once (clock - start) * speed reaches k / sfreq: never earlier.
    assert np.all((arrivals - start) * speed * sfreq >= index)
    # Each step of the replay has sent exactly the samples due by its clock reading.
    assert len(progress) >= 10
    for clock, sent in sorted(progress):
        assert sent == min(short_session.n_times, math.floor((clock - start) * speed * sfreq) + 1)


def test_fmri_lag_delays_delivery_but_not_the_timestamp(short_session, unique_prefix):
    """Volume k (its index channel) is stamped with the stamp of trigger k (the k-th received).

    All inlets are connected before the replay starts, so the k-th trigger received is volume k's.
    """
    lag, speed, n_volumes = 1.5, 4.0, 4
    player = SessionPlayer(
        short_session, speed=speed, fmri_lag=lag, prefix=unique_prefix, wait_for_consumers=PATIENCE
    )
    with player:
        inlets = connect(player, ("EEG", "fMRI", "Triggers"))
        fmri, fmri_stamps, fmri_arrivals, _ = pull_with_arrivals(inlets["fMRI"], n_volumes)
        triggers, trigger_stamps = pull_until(inlets["Triggers"], n_volumes, timeout=PATIENCE)
    start = player.start_clock
    assert len(fmri) >= n_volumes and len(triggers) >= n_volumes
    fmri, fmri_stamps, fmri_arrivals = fmri[:n_volumes], fmri_stamps[:n_volumes], fmri_arrivals[:n_volumes]
    assert list(triggers[:n_volumes, 0]) == ["R128"] * n_volumes
    index = fmri[:, 0].astype(int)
    np.testing.assert_array_equal(index, np.arange(n_volumes))
    acquired = short_session.volume_times[index]
    # The timestamp is the acquisition time: that of the volume's own trigger, exactly.
    np.testing.assert_array_equal(fmri_stamps, trigger_stamps[index])
    np.testing.assert_allclose(fmri_stamps - start, acquired, rtol=0, atol=1e-9)
    # Delivery: no volume arrives before ``lag`` seconds of session time after its acquisition.
    assert np.all((fmri_arrivals - start) * speed >= acquired + lag)


def test_looping_continues_timestamps_and_volume_index(short_dataset, unique_prefix):
    session = read_session(short_dataset, "99", "rest-1")  # 60 s scored, 63 s of EEG
    with SessionPlayer(
        session, speed=40.0, loop=True, prefix=unique_prefix, wait_for_consumers=PATIENCE
    ) as player:
        inlets = connect(player, ("EEG", "fMRI", "Triggers"))  # from the first sample on
        data, stamps = pull_until(inlets["EEG"], int(1.5 * session.n_times), timeout=PATIENCE)
        volumes, volume_stamps = pull_until(inlets["fMRI"], session.n_volumes + 2, timeout=PATIENCE)
    assert player.loops_completed >= 1
    assert len(stamps) >= 1.5 * session.n_times and len(volumes) >= session.n_volumes + 2
    volumes, volume_stamps = volumes[: session.n_volumes + 2], volume_stamps[: session.n_volumes + 2]
    np.testing.assert_allclose(np.diff(stamps), 1 / session.sfreq, atol=1e-6)
    # The SampleIndex channel starts again at 0 after the last sample; the stamps go on.
    index = data[:, -1]
    np.testing.assert_array_equal(index, np.arange(len(index)) % session.n_times)
    # The volume index keeps counting, its stamps one run later.
    np.testing.assert_array_equal(volumes[:, 0], np.arange(session.n_volumes + 2))
    loop = session.n_volumes
    np.testing.assert_allclose(volume_stamps[loop:] - volume_stamps[:2], session.duration, atol=1e-6)
    np.testing.assert_allclose(volume_stamps[:loop] - stamps[0], session.volume_times, atol=1e-6)


def test_two_replays_side_by_side_do_not_mix(short_dataset, unique_prefix):
    sessions = {
        "a": read_session(short_dataset, "99", "sleep-1"),
        "b": read_session(short_dataset, "99", "rest-1"),
    }
    kinds = ("EEG", "fMRI", "Triggers", "Truth")
    players = {
        key: SessionPlayer(
            session, speed=20, prefix=f"{unique_prefix}-{key}", with_truth=True, wait_for_consumers=PATIENCE
        )
        for key, session in sessions.items()
    }
    try:
        for player in players.values():
            player.start()
        # Each name leads to its own player's stream.
        for key, player in players.items():
            for kind in kinds:
                found = pylsl.resolve_byprop("name", f"{unique_prefix}-{key}-{kind}", 1, RESOLVE_TIMEOUT)
                assert [info.source_id() for info in found] == [player.streams[kind].source_id]
        inlets = {key: connect(player, kinds) for key, player in players.items()}
        truth = {
            key: pull_until(inlets[key]["Truth"], sessions[key].scoring.n_epochs, timeout=PATIENCE)[0]
            for key in players
        }
        eeg = {key: pull_until(inlets[key]["EEG"], 500, timeout=PATIENCE)[0] for key in players}
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
        assert len(data) >= 500
        first = int(data[0, -1])
        np.testing.assert_array_equal(data[:, -1], np.arange(first, first + len(data)))
        expected = sessions[key].eeg_samples(first, first + len(data))[:, :30]
        np.testing.assert_allclose(data[:, :30], expected, rtol=1e-6)


def test_third_party_pylsl_client_reads_metadata(short_session, unique_prefix):
    with SessionPlayer(short_session, speed=1, prefix=unique_prefix) as player:
        # Returns as soon as the three streams of this replay answered.
        streams = pylsl.resolve_bypred(f"starts-with(name,'{unique_prefix}-')", 3, RESOLVE_TIMEOUT)
        by_type = {s.type(): s for s in streams}
        assert len(streams) == 3 and set(by_type) == {"EEG", "fMRI", "Markers"}
        eeg = pylsl.StreamInlet(by_type["EEG"])
        info = eeg.info(timeout=RESOLVE_TIMEOUT)
        fmri_info = pylsl.StreamInlet(by_type["fMRI"]).info(timeout=RESOLVE_TIMEOUT)
        sample, stamp = eeg.pull_sample(timeout=PATIENCE)
    assert info.nominal_srate() == 250.0 and info.channel_format() == pylsl.cf_float32
    assert info.get_channel_labels() == short_session.ch_names
    assert info.get_channel_types() == list(short_session.ch_types)
    assert info.get_channel_units()[:32] == ["microvolts"] * 32
    assert info.desc().child("session").child_value("subject") == "99"
    assert fmri_info.get_channel_labels() == ["volume", *short_session.parcellation.names]
    assert fmri_info.nominal_srate() == pytest.approx(1 / 2.1)
    assert float(fmri_info.desc().child("session").child_value("tr")) == 2.1
    # The sample is the recording's, stamped with its session time on the replay's clock.
    assert sample is not None
    k = int(sample[-1])
    np.testing.assert_allclose(sample[:32], short_session.eeg_samples(k, k + 1)[0, :32], rtol=1e-6)
    assert stamp - player.start_clock == pytest.approx(k / short_session.sfreq, abs=1e-9)
    assert player.streams["EEG"].name == f"{unique_prefix}-EEG"


def test_third_party_mne_lsl_client_reads_channels_and_data(short_session, unique_prefix):
    from mne_lsl.stream import StreamLSL

    with SessionPlayer(short_session, speed=1, prefix=unique_prefix) as player:
        stream = StreamLSL(
            bufsize=2.0, name=player.streams["EEG"].name, source_id=player.streams["EEG"].source_id
        )
        stream.connect(timeout=RESOLVE_TIMEOUT)
        try:
            deadline = time.monotonic() + PATIENCE
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
        deadline = time.monotonic() + PATIENCE
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
        out, err = process.communicate(timeout=PATIENCE)
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


def test_cli_replay_at_full_speed_delivers_its_last_sample(short_dataset, unique_prefix):
    """Without --loop the streams stay open after the end (--linger) until consumers have it all."""
    expected = read_session(short_dataset, "99", "rest-1").n_times
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "run_stream.py"), "replay", "--session", str(short_dataset),
         "--subject", "99", "--run", "rest-1", "--speed", "max", "--prefix", unique_prefix,
         "--wait-for-consumers", str(PATIENCE), "--linger", str(PATIENCE)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        inlets = {}
        for kind in ("EEG", "fMRI", "Triggers"):  # the replay starts once each stream has a consumer
            found = pylsl.resolve_byprop("name", f"{unique_prefix}-{kind}", 1, RESOLVE_TIMEOUT)
            assert found, f"{kind} stream not found"
            inlets[kind] = pylsl.StreamInlet(found[0], max_buflen=360, recover=False)
            inlets[kind].open_stream(timeout=RESOLVE_TIMEOUT)
        samples, _ = pull_until(inlets["EEG"], expected, PATIENCE)
        assert len(samples) == expected
        index = samples[:, -1]  # the SampleIndex channel: every sample, in order, to the last
        assert np.array_equal(index, np.arange(expected))
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Replay finished; streams open for" in out
