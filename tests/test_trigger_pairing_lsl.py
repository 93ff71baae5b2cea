"""Volumes stamped by a scanner-side source seconds after their triggers, over real LSL.

A small scanner session is published on three LSL outlets, as a lab's streams: EEG, the R128
volume triggers, and an fMRI stream (declaring no stamp latency, like ``fmri-source`` with
``--delay 0``) whose every volume is stamped, and sent, ``latency`` seconds after its trigger.
The acquisition starts before the scanner (the run's first trigger follows silence), so each
volume must sit at its own trigger's time, checked by volume index.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl
import pytest

from core.layouts import VOLUME_TRIGGER, fmri_stream_info, new_identity
from core.problems import ProblemCode
from stream.acquisition import Acquisition
from stream.config import AcquisitionConfig, StreamQuery, WindowConfig

pytestmark = pytest.mark.lsl

PATIENCE = 60.0  # seconds; every wait ends on its event, this only guards against a hang
SFREQ = 100.0
TR = 1.2  # so that the 0.5-s latency is clearly below TR/2 and 3 s clearly above
FIRST_TRIGGER = 6.37  # seconds of EEG before the scanner starts: more than 4 TR of silence
VOLUMES = 40
SPEED = 10.0  # stamps run ahead of the clock, as in a fast replay
REGIONS = ("r1", "r2")


class ScannerSession:
    """EEG, triggers and late-stamped volumes pushed as their stream time falls due."""

    def __init__(self, prefix: str, latency: float, dummy_scans: int = 0) -> None:
        self.latency = latency
        eeg = new_identity(prefix, "EEG")
        info = pylsl.StreamInfo(eeg.name, "EEG", 3, SFREQ, "float32", eeg.source_id)
        info.set_channel_labels(["Fz", "Cz", "Pz"])
        info.set_channel_types(["eeg", "eeg", "eeg"])
        triggers = new_identity(prefix, "Triggers")
        fmri = new_identity(prefix, "fMRI")
        self.outlets = {
            "EEG": pylsl.StreamOutlet(info),
            "Triggers": pylsl.StreamOutlet(
                pylsl.StreamInfo(
                    triggers.name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", triggers.source_id
                )
            ),
            "fMRI": pylsl.StreamOutlet(fmri_stream_info(fmri, REGIONS, TR, {"regions": "test"})),
        }
        self.names = {
            kind: identity.name for kind, identity in (("EEG", eeg), ("Triggers", triggers), ("fMRI", fmri))
        }
        self.trigger_times = FIRST_TRIGGER + np.arange(VOLUMES + dummy_scans) * TR  # stream time
        self.volume_triggers = self.trigger_times[dummy_scans:]
        self.duration = self.trigger_times[-1] + latency + 20.0
        self.rng = np.random.default_rng(1)
        self.t0: float | None = None
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # reported to the test
            self.error = err
        finally:
            self.done.set()

    def _run(self) -> None:
        for outlet in self.outlets.values():
            outlet.wait_for_consumers(PATIENCE)
        t0 = self.t0 = pylsl.local_clock()
        sent_eeg = sent_triggers = sent_volumes = 0
        total = int(self.duration * SFREQ)
        while sent_eeg < total:
            now = (pylsl.local_clock() - t0) * SPEED
            due = min(total, int(now * SFREQ) + 1)
            if due > sent_eeg:
                chunk = self.rng.normal(0, 10, (due - sent_eeg, 3)).astype(np.float32)
                stamps = t0 + np.arange(sent_eeg, due) / SFREQ
                self.outlets["EEG"].push_chunk(chunk, stamps)
                sent_eeg = due
            while sent_triggers < self.trigger_times.size and self.trigger_times[sent_triggers] <= now:
                self.outlets["Triggers"].push_sample([VOLUME_TRIGGER], t0 + self.trigger_times[sent_triggers])
                sent_triggers += 1
            while sent_volumes < VOLUMES and self.volume_triggers[sent_volumes] + self.latency <= now:
                stamp = t0 + self.volume_triggers[sent_volumes] + self.latency
                sample = [float(sent_volumes), 1000.0 + sent_volumes, 2000.0 + sent_volumes]
                self.outlets["fMRI"].push_sample(sample, stamp)
                sent_volumes += 1
            time.sleep(0.005)


@pytest.mark.parametrize(("latency", "dummy_scans"), [(3.0, 0), (0.5, 0), (3.0, 2)])
def test_volumes_stamped_late_sit_on_their_own_triggers(unique_prefix, latency, dummy_scans):
    scanner = ScannerSession(unique_prefix, latency, dummy_scans)
    window = WindowConfig(
        eeg_window=4.0, fmri_window=10.0, hop=1.0, max_fmri_wait=PATIENCE, dummy_scans=dummy_scans
    )
    config = AcquisitionConfig(
        eeg=StreamQuery(name=scanner.names["EEG"]),
        fmri=StreamQuery(name=scanner.names["fMRI"]),
        triggers=StreamQuery(name=scanner.names["Triggers"]),
        resolve_timeout=PATIENCE,
        window=window,
    )
    pusher = threading.Thread(target=scanner.run, name="scanner-session", daemon=True)
    windows: list = []
    with Acquisition(config) as acquisition:
        pusher.start()
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and not (
            windows and windows[-1].fmri_indices.size and windows[-1].fmri_indices[-1] == VOLUMES - 1
        ):
            try:
                windows.append(acquisition.queue.get(timeout=0.2))
            except TimeoutError:
                continue
        health = acquisition.health()
        triggers = np.concatenate([stamps for stamps, _ in acquisition.triggers.history])
    assert scanner.done.wait(PATIENCE) and scanner.error is None
    assert triggers.size == VOLUMES + dummy_scans
    with_volumes = [w for w in windows if w.fmri_indices.size]
    assert with_volumes and with_volumes[-1].fmri_indices[-1] == VOLUMES - 1
    for w in with_volumes:
        # Each volume at its own trigger (the trigger dummy_scans after the run's first, plus its index).
        np.testing.assert_array_equal(w.fmri_times, triggers[dummy_scans + w.fmri_indices])
        assert w.quality.fmri_unmatched == 0 and w.quality.fmri_pairing == "run_start"
        assert w.quality.trigger_latency == pytest.approx(latency, abs=0.01)
        codes = {p.code for p in w.quality.problems}
        assert (ProblemCode.TRIGGER_LATENCY_HIGH in codes) == (latency > TR / 2)
        assert not codes & {ProblemCode.TRIGGER_PAIRING_UNVERIFIED, ProblemCode.TRIGGER_LATENCY_CHANGED}
        np.testing.assert_array_equal(w.fmri[:, 0], 1000.0 + w.fmri_indices)
    fmri = health["streams"]["fmri"]
    assert fmri["pairing"] == "run_start" and fmri["trigger_latency"] == pytest.approx(latency, abs=0.01)
    flagged = [p["code"] for p in fmri["problem_codes"]]
    assert flagged == (["trigger_latency_high"] if latency > TR / 2 else [])
