"""The real scanner-side source, left at ``delay`` 0, stamping volumes 3 s after their triggers.

A scanner session in real time: EEG and R128 volume triggers on two LSL outlets, and a real
:class:`scanner.source.FmriSource` watching a folder into which each volume's NIfTI file is written
3 s after that volume's trigger (a real-time export's latency). The source stamps a volume when it
sees its file, so every stamp is about 3 s (more than two TRs) after its trigger. The acquisition
starts before the scanner (more than 4 TR of EEG before the first trigger): each volume must sit at
its own trigger's time, checked by volume index, and the windows must say the latency is high.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pylsl
import pytest

from core.layouts import VOLUME_TRIGGER, new_identity
from core.problems import ProblemCode
from recordings.regions import grid_parcellation, region_means
from scanner.config import SourceConfig
from scanner.source import FmriSource
from stream.acquisition import Acquisition
from stream.config import AcquisitionConfig, StreamQuery, WindowConfig

pytestmark = [pytest.mark.lsl, pytest.mark.slow]

PATIENCE = 60.0  # seconds; every wait ends on its event, this only guards against a hang
SFREQ = 100.0
TR = 1.3  # 3 s is 2.3 TRs: the nearest trigger to a stamp is two or three volumes later
LATENCY = 3.0  # seconds from a volume's trigger to its file in the folder
FIRST_TRIGGER = 6.37  # seconds of EEG before the scanner starts: more than 4 TR of silence
VOLUMES = 15
TAIL = 8.0  # seconds of EEG after the last volume's file; the test stops the session earlier
GRID = (12, 12, 12)
ROUNDING = 1e-4  # windows and the health table give the latency rounded to 4 decimals


def nifti_bytes(data: np.ndarray) -> bytes:
    """One 3-D float32 volume as a NIfTI-1 file."""
    return nib.Nifti1Image(data.astype(np.float32), np.eye(4)).to_bytes()


class ScannerSession:
    """EEG and triggers on LSL, and each volume's file written ``LATENCY`` s after its trigger.

    Volume ``k`` is ``(k + 1) * template``: its region means are ``k + 1`` times the template's.
    """

    def __init__(self, prefix: str, folder: Path, template: np.ndarray) -> None:
        self.folder = folder
        self.template = template
        eeg = new_identity(prefix, "EEG")
        info = pylsl.StreamInfo(eeg.name, "EEG", 3, SFREQ, "float32", eeg.source_id)
        info.set_channel_labels(["Fz", "Cz", "Pz"])
        info.set_channel_types(["eeg", "eeg", "eeg"])
        triggers = new_identity(prefix, "Triggers")
        self.eeg = pylsl.StreamOutlet(info)
        self.triggers = pylsl.StreamOutlet(
            pylsl.StreamInfo(triggers.name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", triggers.source_id)
        )
        self.names = {"EEG": eeg.name, "Triggers": triggers.name}
        self.trigger_times = FIRST_TRIGGER + np.arange(VOLUMES) * TR  # seconds after the first EEG sample
        self.duration = self.trigger_times[-1] + LATENCY + TAIL
        self.written: list[float] = []  # LSL clock when each volume's file appeared in the folder
        self.sent_eeg = 0
        self.rng = np.random.default_rng(5)
        self.stop = threading.Event()
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
        for outlet in (self.eeg, self.triggers):
            outlet.wait_for_consumers(PATIENCE)
        t0 = pylsl.local_clock()
        sent_eeg = sent_triggers = written = 0
        total = int(self.duration * SFREQ)
        while sent_eeg < total and not self.stop.is_set():
            now = pylsl.local_clock() - t0
            due = min(total, int(now * SFREQ) + 1)
            if due > sent_eeg:
                chunk = self.rng.normal(0, 10, (due - sent_eeg, 3)).astype(np.float32)
                self.eeg.push_chunk(chunk, t0 + np.arange(sent_eeg, due) / SFREQ)
                sent_eeg = self.sent_eeg = due
            while sent_triggers < VOLUMES and self.trigger_times[sent_triggers] <= now:
                self.triggers.push_sample([VOLUME_TRIGGER], t0 + self.trigger_times[sent_triggers])
                sent_triggers += 1
            while written < VOLUMES and self.trigger_times[written] + LATENCY <= now:
                # Written under a name the source ignores, then renamed: the file appears complete.
                partial = self.folder / f"vol{written:03d}.nii.part"
                partial.write_bytes(nifti_bytes((written + 1) * self.template))
                os.replace(partial, self.folder / f"vol{written:03d}.nii")
                self.written.append(pylsl.local_clock())
                written += 1
            time.sleep(0.005)


@contextmanager
def running_source(folder: Path, config: SourceConfig) -> Iterator[FmriSource]:
    """An FmriSource polling its folder in a background thread; stopped and closed on exit."""
    source = FmriSource(folder, config)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            source.run(stop)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=target, name="fmri-source", daemon=True)
    thread.start()
    try:
        yield source
    finally:
        stop.set()
        thread.join(PATIENCE)
        source.close()
    assert not thread.is_alive() and not errors, errors


def collect_windows(acquisition: Acquisition, scanner: ScannerSession) -> list:
    """Windows until one holds the last volume, or until all the EEG pushed has been windowed."""
    windows: list = []
    drained_after: int | None = None  # the pass after which every EEG sample pushed is windowed
    deadline = time.monotonic() + 2 * PATIENCE
    while time.monotonic() < deadline:
        if windows and windows[-1].fmri_indices.size and windows[-1].fmri_indices[-1] == VOLUMES - 1:
            break
        if drained_after is None and scanner.done.is_set():
            if acquisition.eeg.health.samples >= scanner.sent_eeg:
                drained_after = acquisition.passes
        elif drained_after is not None and acquisition.passes > drained_after and not len(acquisition.queue):
            break  # the session is over and no window holds the last volume: the checks below say why
        try:
            windows.append(acquisition.queue.get(timeout=0.2))
        except TimeoutError:
            continue
    return windows


def nearest_within_half_tr(stamp: float, triggers: np.ndarray) -> int | None:
    """The trigger the old rule paired a volume with: the nearest to its stamp, if within TR/2."""
    nearest = int(np.argmin(np.abs(triggers - stamp)))
    return nearest if abs(triggers[nearest] - stamp) <= TR / 2 else None


def test_fmri_source_volumes_3_s_late_sit_on_their_own_triggers(tmp_path: Path, unique_prefix: str) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    mask = np.zeros(GRID, dtype=np.uint8)
    mask[2:10, 2:10, 2:10] = 1
    mask_file = tmp_path / "mask.nii"  # outside the watched folder
    nib.save(nib.Nifti1Image(mask, np.eye(4)), mask_file)
    template = np.random.default_rng(3).uniform(500, 1500, GRID).astype(np.float32)
    template_means = region_means(template[..., np.newaxis], grid_parcellation(mask > 0))[0]

    scanner = ScannerSession(unique_prefix, folder, template)
    # As a lab leaves it: no export delay subtracted. TR and mask given, so the stream exists
    # before the first volume and the acquisition connects before the scan.
    source_config = SourceConfig(
        prefix=f"{unique_prefix}-scanner", tr=TR, mask=mask_file, wait_for_consumers=2 * PATIENCE
    )
    assert source_config.delay == 0.0
    window = WindowConfig(eeg_window=4.0, fmri_window=10.0, hop=1.0, max_fmri_wait=PATIENCE)
    config = AcquisitionConfig(
        eeg=StreamQuery(name=scanner.names["EEG"]),
        fmri=StreamQuery(name=f"{unique_prefix}-scanner-fMRI"),
        triggers=StreamQuery(name=scanner.names["Triggers"]),
        resolve_timeout=PATIENCE,
        window=window,
    )
    pusher = threading.Thread(target=scanner.run, name="scanner-session", daemon=True)
    try:
        with running_source(folder, source_config) as source, Acquisition(config) as acquisition:
            pusher.start()
            windows = collect_windows(acquisition, scanner)
            health = acquisition.health()
            assert acquisition.triggers is not None
            triggers = np.concatenate([stamps for stamps, _ in acquisition.triggers.history])
            received = [(stamps, data) for stamps, data in acquisition.fmri.history]
            published, skipped = source.published, source.skipped
    finally:
        scanner.stop.set()
    assert scanner.done.wait(PATIENCE) and scanner.error is None
    assert len(scanner.written) == VOLUMES and published == VOLUMES and skipped == 0
    assert triggers.size == VOLUMES
    stamps = np.concatenate([s for s, _ in received])
    indices = np.concatenate([d[:, 0] for _, d in received]).astype(int)
    np.testing.assert_array_equal(indices, np.arange(VOLUMES))

    # The source stamps each volume when it sees its file: more than two TRs after its trigger.
    latencies = stamps - triggers
    assert np.all(latencies >= LATENCY - 0.01), latencies
    # The old rule (nearest trigger within TR/2 of the stamp) pairs no volume with its own
    # trigger, and every volume followed by three more triggers with a later one, as matched.
    old_rule = [nearest_within_half_tr(stamp, triggers) for stamp in stamps]
    assert all(paired != index for index, paired in enumerate(old_rule)), old_rule
    assert all((old_rule[i] or -1) > i for i in range(VOLUMES - 3)), old_rule

    with_volumes = [w for w in windows if w.fmri_indices.size]
    assert with_volumes
    seen: set[int] = set()
    for w in with_volumes:
        seen.update(int(i) for i in w.fmri_indices)
        # Each volume at its own trigger's time, and its values those of its own file.
        np.testing.assert_array_equal(w.fmri_times, triggers[w.fmri_indices])
        np.testing.assert_allclose(w.fmri, (w.fmri_indices[:, None] + 1) * template_means, rtol=1e-5)
        assert w.quality.fmri_unmatched == 0 and w.quality.fmri_pairing == "run_start"
        # The latency measured is the median of recent volumes' (stamp - trigger), rounded to 1e-4 s:
        # about 3 s, late by at most the poll interval (0.1 s) and this machine's scheduling.
        latency = w.quality.trigger_latency
        assert latencies.min() - ROUNDING <= latency <= latencies.max() + ROUNDING
        assert latency == pytest.approx(LATENCY, abs=0.6)
        codes = {p.code for p in w.quality.problems}
        assert ProblemCode.TRIGGER_LATENCY_HIGH in codes, w.quality.problems
        assert ProblemCode.TRIGGER_PAIRING_UNVERIFIED not in codes
        if np.ptp(latencies) <= TR / 2:  # no latency can then have moved by more than TR/2
            assert ProblemCode.TRIGGER_LATENCY_CHANGED not in codes
    assert seen == set(range(VOLUMES)) and with_volumes[-1].fmri_indices[-1] == VOLUMES - 1

    fmri = health["streams"]["fmri"]
    assert fmri["pairing"] == "run_start"
    assert latencies.min() - ROUNDING <= fmri["trigger_latency"] <= latencies.max() + ROUNDING
    assert "trigger_latency_high" in [p["code"] for p in fmri["problem_codes"]]
