"""Over LSL: an in-scanner recording replayed at 5 kHz is corrected live exactly as offline.

The replay's EEG stream says it is in the scanner, so the acquisition's correction (``auto``) turns
on by itself; its windows must equal those the offline extraction cuts from the same file (one code
path), the health report must show the correction's state, and the corrected windows must be close
to the clean EEG written beside the run. Assertions are on windows and stream times, never on
wall-clock timing.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from features.extractor import FeatureExtractor
from pipeline.offline import session_windows
from recordings.bids import RunPaths
from recordings.open import read_recording
from recordings.session import read_session
from simulators.replay import SessionPlayer
from simulators.surrogate import CLEAN_DERIVATIVE
from stream.acquisition import Acquisition
from stream.config import AcquisitionConfig, ArtefactConfig, WindowConfig
from stream.discovery import StreamMismatchError

pytestmark = [pytest.mark.lsl, pytest.mark.timeout(900)]
SPEED = 8.0
HANG_SECONDS = 600.0  # wall seconds the replay may take: only a hang guard
WARM_UP = 45.0  # seconds: windows ending later are compared with the clean EEG


def live_windows(session, prefix: str) -> tuple[list, dict]:
    """Replay ``session`` over LSL and cut its windows live; also the last health report."""
    config = AcquisitionConfig.for_replay(
        prefix, resolve_timeout=60, queue_size=4096, inlet_buffer_seconds=360
    )
    player = SessionPlayer(session, speed=SPEED, prefix=prefix, wait_for_consumers=60)
    expected = int((session.duration - WindowConfig().eeg_window) / WindowConfig().hop)
    windows = []
    with player, Acquisition(config) as acquisition:
        deadline = time.monotonic() + HANG_SECONDS
        while len(windows) < expected - 2 and time.monotonic() < deadline:
            window = acquisition.queue.get(timeout=5.0) if len(acquisition.queue) else None
            if window is None:
                time.sleep(0.05)
                continue
            windows.append(window)
        health = acquisition.health()
    return windows, health


def test_in_scanner_replay_is_corrected_live_as_offline(scanner_dataset, unique_prefix):
    session = read_session(scanner_dataset, "98", "sleep-1")
    assert session.in_scanner and session.sfreq == 5000.0 and session.slices_per_volume == 35
    windows, health = live_windows(session, unique_prefix)
    assert health["artefacts"] is not None, "the replay says in_scanner: the correction must be on"
    gradient, bcg = health["artefacts"]["gradient"], health["artefacts"]["bcg"]
    assert gradient["template_ready"] and gradient["volumes_averaged"] >= 4
    assert abs(gradient["tr_estimate"] - 2.1) < 1e-3
    assert bcg["template_ready"] and bcg["ecg_quality"] == "good" and 45 < bcg["heart_rate_bpm"] < 80
    assert windows and all(w.sfreq == 250.0 for w in windows)

    # The same grid live and offline (a window every hop from the first sample): match by index.
    offline = {w.index: w for w in session_windows(session)}
    compared = 0
    for window in windows:
        twin = offline.get(window.index)
        if twin is None or window.eeg_first_sample != twin.eeg_first_sample:
            continue
        np.testing.assert_allclose(window.eeg, twin.eeg, atol=1e-3)
        assert {p.code for p in window.quality.problems} == {p.code for p in twin.quality.problems}
        compared += 1
    assert compared >= len(windows) - 2

    # Against the clean EEG written beside the run: the corrected windows' band powers.
    header = RunPaths(scanner_dataset, "98", "sleep", 1).eeg_header.relative_to(scanner_dataset)
    clean = read_recording(scanner_dataset / CLEAN_DERIVATIVE / header)
    clean_windows = {w.index: w for w in session_windows(clean, artefacts=ArtefactConfig(correction="off"))}
    extractor = FeatureExtractor()
    checked = 0
    for index, window in offline.items():
        if window.end < WARM_UP or index not in clean_windows:
            continue
        corrected = extractor.compute(window).values[:4]  # delta, theta, alpha, beta power
        truth = extractor.compute(clean_windows[index]).values[:4]
        np.testing.assert_allclose(corrected, truth, rtol=0.10)
        checked += 1
    assert checked >= 10


def test_an_ecg_channel_the_stream_lacks_is_named_at_connection(scanner_dataset, unique_prefix):
    session = read_session(scanner_dataset, "98", "sleep-1")
    config = AcquisitionConfig.for_replay(
        unique_prefix, resolve_timeout=60, artefacts=ArtefactConfig(correction="on", ecg_channel="EKG")
    )
    with SessionPlayer(session, speed=1, prefix=unique_prefix):
        acquisition = Acquisition(config)
        with pytest.raises(
            StreamMismatchError, match="ECG channel 'EKG' is not among the EEG stream's channels"
        ):
            acquisition.connect()
        assert not any(reader.connected for reader in acquisition.readers)
