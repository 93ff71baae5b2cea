"""The scanner side of live fMRI: volumes written into a folder at TR pace, read back over LSL."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pylsl
import pytest

from recordings.regions import compute_epi_mask, grid_parcellation, region_means
from scanner.config import SourceConfig
from scanner.errors import FmriSourceError, IncompleteVolumeError
from scanner.folder_watcher import VolumeFolderWatcher, natural_key
from scanner.source import FmriSource
from scanner.volume_files import GIVEN_TR_ORIGIN, read_volume, resolve_tr

PROJECT = Path(__file__).resolve().parents[1]
HAXBY = Path(__file__).parent / "data" / "haxby2001"
TR = 0.3
# Bounds that only guard against hanging: every wait below ends on its event (a stream found, a
# consumer connected, a sample received, a thread done).
BOUND = 60.0


@pytest.fixture(scope="module")
def haxby() -> tuple[np.ndarray, np.ndarray]:
    """The first 10 volumes of the real Haxby BOLD run (int16, as stored) and its affine."""
    image = nib.load(HAXBY / "sub001_task001_run001_bold_25mm.nii.gz")
    return np.asarray(image.dataobj[..., :10]), image.affine


def nifti_bytes(data: np.ndarray, affine: np.ndarray, *, tr: float | None = TR, gz: bool = True) -> bytes:
    """One 3-D volume as a scanner export would write it, TR in pixdim[4] with unit seconds."""
    image = nib.Nifti1Image(data, affine)
    if tr is not None:
        image.header.set_xyzt_units("mm", "sec")
        image.header["pixdim"][4] = tr
    else:
        image.header["pixdim"][4] = 0
    raw = image.to_bytes()
    return gzip.compress(raw) if gz else raw


def simulator_means(volumes: list[np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Region means as the simulators compute them, mask and grid from the first volume."""
    bold = np.stack([v.astype(np.float32) for v in volumes], axis=-1)
    parcellation = grid_parcellation(compute_epi_mask(bold[..., 0]))
    return region_means(bold, parcellation), parcellation.names


class LookLog:
    """Start and end, on the source's clock, of every look the source takes at its folder.

    Each look (:meth:`FmriSource.step`) reads the clock, lists the folder and stamps the files
    it sees for the first time with that reading. So a file created after ``before`` and
    complete at ``after`` (same clock) is stamped no earlier than the start of the last look
    begun by ``before`` and no later than the end of the first look begun after ``after``.
    """

    def __init__(self, source: FmriSource) -> None:
        self.looks: list[tuple[float, float]] = []
        self._changed = threading.Condition()
        step, clock = source.step, source.clock

        def logged_step() -> int:
            start = clock()
            try:
                return step()
            finally:
                end = clock()
                with self._changed:
                    self.looks.append((start, end))
                    self._changed.notify_all()

        source.step = logged_step

    def wait_for_more(self, count: int, timeout: float = BOUND) -> None:
        """Return after ``count`` more looks have ended."""
        with self._changed:
            target = len(self.looks) + count
            assert self._changed.wait_for(lambda: len(self.looks) >= target, timeout), "the source stopped"

    def detection_bounds(self, before: float, after: float) -> tuple[float, float]:
        """Earliest and latest detection stamp of a file written between ``before`` and ``after``."""
        with self._changed:
            looks = list(self.looks)
        low = max((start for start, _ in looks if start <= before), default=-np.inf)
        high = min((end for start, end in looks if start >= after), default=None)
        assert high is not None, "no look at the folder after the file was written"
        return low, high


@contextmanager
def running_source(folder: Path, config: SourceConfig) -> Iterator[tuple[FmriSource, list, LookLog]]:
    """An FmriSource polling in a background thread; stopped (and its outlet closed) on exit."""
    published: list = []
    source = FmriSource(folder, config, on_volume=published.append)
    looks = LookLog(source)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            source.run(stop)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=target, name="fmri-source-test", daemon=True)
    thread.start()
    try:
        yield source, published, looks
    finally:
        stop.set()
        thread.join(BOUND)
        source.close()
    assert not thread.is_alive()
    assert not errors, errors


def start_writer(
    folder: Path, files: list[tuple[str, bytes]], pace: float = TR
) -> tuple[threading.Thread, dict[str, tuple[float, float]]]:
    """Write each file in turn, ``pace`` seconds apart; record the LSL times each write began and ended."""
    written: dict[str, tuple[float, float]] = {}

    def target() -> None:
        for name, payload in files:
            began = pylsl.local_clock()
            (folder / name).write_bytes(payload)
            written[name] = (began, pylsl.local_clock())
            time.sleep(pace)

    thread = threading.Thread(target=target, name="scanner-export", daemon=True)
    thread.start()
    return thread, written


def open_inlet(name: str) -> pylsl.StreamInlet:
    """An open inlet on the stream ``name``; its samples keep the stamps they were pushed with."""
    found = pylsl.resolve_byprop("name", name, 1, BOUND)
    assert found, f"stream {name} not found within {BOUND} s"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(BOUND)
    return inlet


def pull(inlet: pylsl.StreamInlet, n: int, timeout: float = BOUND) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` samples within ``timeout`` seconds: (samples, timestamps)."""
    samples, stamps = [], []
    deadline = time.monotonic() + timeout
    while len(samples) < n and time.monotonic() < deadline:
        chunk, times = inlet.pull_chunk(timeout=0.2, max_samples=n - len(samples))
        samples.extend(chunk)
        stamps.extend(times)
    return np.array(samples, dtype=np.float64), np.array(stamps)


# -- pieces without LSL ----------------------------------------------------------------------------


def test_natural_order_puts_numbers_in_numeric_order():
    names = ["img-10.nii.gz", "img-9.nii.gz", "IMG-100.nii", "001_000002_000001.dcm", "001_000010_000001.dcm"]
    assert sorted(names, key=natural_key) == [
        "001_000002_000001.dcm",
        "001_000010_000001.dcm",
        "img-9.nii.gz",
        "img-10.nii.gz",
        "IMG-100.nii",
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_watcher_hands_out_each_complete_file_once_in_order(tmp_path):
    clock = FakeClock()
    (tmp_path / "old-1.nii").write_bytes(b"x" * 10)
    (tmp_path / "notes.txt").write_text("not a volume")
    watcher = VolumeFolderWatcher(tmp_path, existing="skip", settle=0.2, clock=clock)
    assert watcher.poll() == [] and watcher.skipped_at_start == 1
    (tmp_path / "vol-10.nii").write_bytes(b"x" * 10)
    (tmp_path / "vol-9.nii").write_bytes(b"x" * 5)
    (tmp_path / ".vol-11.nii.part").write_bytes(b"x")  # a temporary name: ignored
    # vol-9 is complete at once: a later file (vol-10) has appeared. vol-10 must first be stable.
    (released,) = watcher.poll()
    assert released.path.name == "vol-9.nii" and released.ordinal == 0 and released.detected == 100.0
    clock.now += 0.1
    with (tmp_path / "vol-10.nii").open("ab") as handle:
        handle.write(b"more")  # still being written: its stability clock restarts
    assert watcher.poll() == []
    clock.now += 0.15
    assert watcher.poll() == []
    clock.now += 0.1
    (released,) = watcher.poll()
    assert released.path.name == "vol-10.nii" and released.ordinal == 1
    clock.now += 1.0
    assert watcher.poll() == []  # each file once
    (tmp_path / "empty-12.nii").write_bytes(b"")
    watcher.poll()
    clock.now += 1.0
    assert watcher.poll() == []  # an empty file is never complete by stability alone


def test_watcher_processes_existing_files_in_natural_order_stamped_by_modification_time(tmp_path):
    clock = FakeClock()
    wall = 1_700_000_000.0  # the wall clock when watching starts; whole seconds are exact in st_mtime
    for number, age in ((2, 3), (10, 1), (1, 4)):
        path = tmp_path / f"rt{number}.nii.gz"
        path.write_bytes(b"x")
        modified = int(wall - age) * 1_000_000_000
        os.utime(path, ns=(modified, modified))
    watcher = VolumeFolderWatcher(
        tmp_path, existing="process", settle=0.0, clock=clock, wall_clock=lambda: wall
    )
    released = watcher.poll()
    assert [f.path.name for f in released] == ["rt1.nii.gz", "rt2.nii.gz", "rt10.nii.gz"]
    assert [f.ordinal for f in released] == [0, 1, 2]
    assert all(f.preexisting for f in released)
    # Modification times mapped onto the watcher's clock: its reading minus each file's age.
    assert [f.detected for f in released] == [96.0, 97.0, 99.0]


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_volume_is_refused_and_complete_volume_read_as_stored(tmp_path, haxby, gz):
    data, affine = haxby
    payload = nifti_bytes(data[..., 0], affine, gz=gz)
    path = tmp_path / ("v.nii.gz" if gz else "v.nii")
    for cut in (100, len(payload) // 2, len(payload) - 1):
        path.write_bytes(payload[:cut])
        with pytest.raises(IncompleteVolumeError, match=path.name):
            read_volume(path)
    path.write_bytes(payload)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, data[..., 0].astype(np.float32))
    assert volume.data.dtype == np.float32
    assert volume.tr == pytest.approx(TR) and "pixdim[4]" in volume.tr_origin


def test_tr_from_flag_header_or_sidecar_and_a_clear_error_without(tmp_path, haxby):
    data, affine = haxby
    with_tr = tmp_path / "a.nii.gz"
    with_tr.write_bytes(nifti_bytes(data[..., 0], affine, tr=2.5))
    assert resolve_tr(None, read_volume(with_tr))[0] == pytest.approx(2.5)
    assert resolve_tr(1.5, read_volume(with_tr)) == (1.5, GIVEN_TR_ORIGIN)
    # pixdim[4] in milliseconds is converted.
    image = nib.Nifti1Image(data[..., 0], affine)
    image.header.set_xyzt_units("mm", "msec")
    image.header["pixdim"][4] = 2100
    msec = tmp_path / "ms.nii"
    msec.write_bytes(image.to_bytes())
    assert resolve_tr(None, read_volume(msec))[0] == pytest.approx(2.1)
    # No TR in the header: the JSON sidecar's RepetitionTime.
    without = tmp_path / "b.nii.gz"
    without.write_bytes(nifti_bytes(data[..., 0], affine, tr=None))
    volume = read_volume(without)
    assert volume.tr is None
    with pytest.raises(FmriSourceError, match=r"no repetition time for b\.nii\.gz.*--tr"):
        resolve_tr(None, volume)
    (tmp_path / "b.json").write_text(json.dumps({"RepetitionTime": 2.1}))
    assert resolve_tr(None, volume) == (2.1, "RepetitionTime of b.json")
    (tmp_path / "b.json").write_text(json.dumps({"RepetitionTime": 2100}))
    with pytest.raises(FmriSourceError, match="not in"):
        resolve_tr(None, volume)
    # nibabel's default pixdim[4] of 1 on a 3-D image without a time unit is not a TR.
    default = tmp_path / "c.nii"
    nib.save(nib.Nifti1Image(data[..., 0], affine), default)
    assert read_volume(default).tr is None


def test_dicom_without_pydicom_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if not installed
    path = tmp_path / "001_000001_000001.dcm"
    path.write_bytes(b"\0" * 200)
    with pytest.raises(FmriSourceError, match=r"pip install pydicom"):
        read_volume(path)
    # The source treats it as fatal (every volume would fail), not as a skipped file.
    source = FmriSource(tmp_path, SourceConfig(existing="process", settle=0), clock=time.monotonic)
    with pytest.raises(FmriSourceError, match=r"001_000001_000001\.dcm.*pip install pydicom"):
        source.step()


def test_siemens_mosaic_dicom_is_read_as_a_volume_with_its_tr(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    sample = Path(nib.__file__).parent / "nicom" / "tests" / "data" / "siemens_dwi_0.dcm.gz"
    if not sample.is_file():
        pytest.skip("nibabel's test data are not installed")
    # A real Siemens mosaic header (48 slices of 128 x 128 in 7 x 7 tiles, TR 6600 ms); its pixels are
    # all zero, so known values go in: slice k in tile k, row by row.
    dataset = pydicom.dcmread(io.BytesIO(gzip.decompress(sample.read_bytes())))
    assert (dataset.Rows, dataset.Columns, dataset.BitsAllocated) == (896, 896, 16)
    expected = np.random.default_rng(3).integers(0, 4096, size=(128, 128, 48), dtype=np.uint16)
    mosaic = np.zeros((896, 896), dtype=np.uint16)
    for k in range(48):
        row, column = divmod(k, 7)
        mosaic[128 * row : 128 * (row + 1), 128 * column : 128 * (column + 1)] = expected[..., k]
    dataset.PixelData = mosaic.tobytes()
    path = tmp_path / "vol1.dcm"
    dataset.save_as(path)
    volume = read_volume(path)
    assert volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, expected.astype(np.float32))
    assert volume.tr == 6600 / 1000 and volume.tr_origin == "DICOM RepetitionTime (6600 ms)"


# -- the source over LSL ---------------------------------------------------------------------------


@pytest.mark.lsl
def test_volumes_at_tr_pace_arrive_once_in_order_with_the_simulators_region_means(
    tmp_path, haxby, unique_prefix
):
    data, affine = haxby
    volumes = [data[..., i] for i in range(8)]
    # 8..15: natural order differs from the lexicographic one (img-10 < img-8).
    files = [(f"img-{8 + i}.nii.gz", nifti_bytes(v, affine)) for i, v in enumerate(volumes)]
    # The first volume is held until this test's inlet is connected, however long that takes.
    config = SourceConfig(prefix=unique_prefix, delay=0.05, interval=0.05, wait_for_consumers=2 * BOUND)
    expected, names = simulator_means(volumes)
    with running_source(tmp_path, config) as (source, published, looks):
        writer, written = start_writer(tmp_path, files)
        inlet = open_inlet(f"{unique_prefix}-fMRI")
        samples, stamps = pull(inlet, len(volumes))
        writer.join(BOUND)
        looks.wait_for_more(3)  # a file handed out twice would have been published by now
        extra, _ = inlet.pull_chunk(timeout=0.0)
        info = inlet.info(BOUND)
    # Each volume once, in natural order (the source has stopped: `published` is all it pushed).
    assert [p.path.name for p in published] == [name for name, _ in files]
    assert [p.index for p in published] == list(range(len(volumes))) and extra == []
    np.testing.assert_array_equal(samples[:, 0], np.arange(len(volumes)))
    np.testing.assert_allclose(samples[:, 1:], expected, rtol=1e-6)  # float32 on the stream
    # The stream is laid out as the replayed one.
    assert info.type() == "fMRI" and info.source_id() == source.identity.source_id
    assert info.source_id().startswith(f"{unique_prefix}-fMRI-")
    assert info.nominal_srate() == pytest.approx(1 / TR)  # TR from the NIfTI header
    assert info.get_channel_labels() == ["volume", *names]
    assert info.desc().child("session").child_value("tr") == "0.3"
    # Stamps: as pushed, the detection time on the LSL clock minus the export delay...
    detected = np.array([p.detected for p in published])
    np.testing.assert_array_equal(stamps, [p.stamp for p in published])
    np.testing.assert_array_equal(stamps, detected - 0.05)
    # ... and the detection is that of the look at the folder that first listed the file.
    for (name, _), when in zip(files, detected, strict=True):
        low, high = looks.detection_bounds(*written[name])
        assert low <= when <= high, (name, low, when, high)
    assert np.all(np.diff(stamps) >= 0)  # two files seen in one look share its stamp


@pytest.mark.lsl
def test_half_written_truncated_and_wrong_shape_volumes_never_stop_the_stream(
    tmp_path, haxby, unique_prefix, caplog
):
    data, affine = haxby
    good = [data[..., i] for i in range(4)]
    payloads = [nifti_bytes(v, affine, gz=False) for v in good]
    wrong_shape = nifti_bytes(data[:5, ..., 4], affine, gz=False)
    truncated = nifti_bytes(data[..., 5], affine, gz=False)
    # The test takes each look at the folder itself, on a clock it sets: settling, retrying and
    # stamping are decided on that clock, never on how fast this machine runs.
    clock = FakeClock()
    inlets: list[pylsl.StreamInlet] = []
    published: list = []
    config = SourceConfig(prefix=unique_prefix, settle=0.15, retry_for=1.5, wait_for_consumers=2 * BOUND)
    source = FmriSource(
        tmp_path,
        config,
        on_volume=published.append,
        # The outlet opens with the first volume: connect before that volume is pushed.
        on_stream=lambda outlet: inlets.append(open_inlet(outlet.identity.name)),
        clock=clock,
    )

    def look(after: float = 0.05) -> int:
        clock.now += after
        return source.step()

    caplog.set_level(logging.ERROR, logger="scanner.source")
    with source:
        (tmp_path / "v01.nii").write_bytes(payloads[0])
        assert look() == 0  # seen, not settled yet (no later file)
        seen = {"v01.nii": clock.now}
        assert look(0.2) == 1  # size unchanged for longer than settle: read and published
        with (tmp_path / "v02.nii").open("wb") as handle:  # half, a pause longer than settle, the rest
            half = len(payloads[1]) // 2
            handle.write(payloads[1][:half])
            handle.flush()
            assert look() == 0
            seen["v02.nii"] = clock.now
            assert look(0.2) == 0  # looks complete, reads incomplete: retried
            assert look(0.5) == 0
            handle.write(payloads[1][half:])
        completed = clock.now
        assert look() == 1  # complete now: published, with the stamp of its first sight
        (tmp_path / "v03.nii").write_bytes(wrong_shape)
        assert look() == 0 and look(0.2) == 0  # read, refused: another grid
        assert source.skipped == 1
        (tmp_path / "v04.nii").write_bytes(truncated[: len(truncated) // 2])  # never completed
        (tmp_path / "v05.nii").write_bytes(payloads[2])
        (tmp_path / "v06.nii").write_bytes(payloads[3])
        assert look() == 0  # v04 retried; v05 waits behind it (volumes go out in order)
        seen["v05.nii"] = seen["v06.nii"] = clock.now
        assert look(1.0) == 0
        assert look(0.5) == 2  # v04 given up after retry_for: v05 and v06 go out
        assert source.skipped == 2
        (inlet,) = inlets
        samples, stamps = pull(inlet, 4)
    # Indices keep the folder's sequence: the gap shows the two lost volumes.
    np.testing.assert_array_equal(samples[:, 0], [0, 1, 4, 5])
    expected, _ = simulator_means(good)
    np.testing.assert_allclose(samples[:, 1:], expected, rtol=1e-6)  # float32 on the stream
    # The half-written file went out only once complete, with its full content (above), stamped
    # when it first appeared; every stamp is the reading of the look that first listed the file.
    assert [p.path.name for p in published] == ["v01.nii", "v02.nii", "v05.nii", "v06.nii"]
    assert published[1].published > completed
    np.testing.assert_array_equal(stamps, [seen[p.path.name] for p in published])
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "v03.nii" in m and "skipped" in m and "(5, 10, 10)" in m and "(6, 10, 10)" in m for m in messages
    )
    assert any("v04.nii" in m and "still incomplete after 1.5 s" in m for m in messages)


@pytest.mark.lsl
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_publishes_new_volumes_and_stops_cleanly(tmp_path, haxby, unique_prefix, stop_signal):
    data, affine = haxby
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "stale-0.nii.gz").write_bytes(nifti_bytes(data[..., 9], affine))  # from an earlier run
    mask = HAXBY / "sub001_brain_mask_25mm.nii.gz"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LSLAPICFG", None)  # the CLI must set the loopback configuration itself
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "run_stream.py"), "fmri-source", "--watch", str(folder),
         "--mask", str(mask), "--tr", str(TR), "--prefix", unique_prefix, "--interval", "0.05"],
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
        header = "".join(lines)
        assert f"name={unique_prefix}-fMRI" in header and f"source_id={unique_prefix}-fMRI-" in header
        assert "skipping the 1 volume file(s) already there" in header
        # --mask and --tr fix the layout and the rate: the stream exists before any volume.
        inlet = open_inlet(f"{unique_prefix}-fMRI")
        writer, _ = start_writer(
            folder, [(f"vol{i}.nii.gz", nifti_bytes(data[..., i], affine)) for i in range(3)]
        )
        samples, _ = pull(inlet, 3)
        channels = inlet.channel_count
        writer.join(BOUND)
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(BOUND)
    assert process.returncode == 0, err
    np.testing.assert_array_equal(samples[:, 0], [0, 1, 2])
    assert channels == 1 + grid_parcellation(nib.load(mask).get_fdata() > 0).n_regions
    for i in range(3):
        assert f"volume {i:5d}  vol{i}.nii.gz" in out
    assert "Stopping." in out and "Done: 3 volume(s) published, 0 skipped." in out


def test_cli_refuses_a_missing_folder_and_a_bad_tr(tmp_path):
    from tests.cli import run_cli

    missing = run_cli("fmri-source", "--watch", str(tmp_path / "nope"), timeout=2 * BOUND)
    assert missing.returncode != 0 and "nope" in missing.stderr
    bad = run_cli("fmri-source", "--watch", str(tmp_path), "--tr", "0", timeout=2 * BOUND)
    assert bad.returncode == 2 and "--tr" in bad.stderr


@pytest.mark.lsl
def test_acquisition_consumes_the_source_with_a_replayed_eeg_stream(
    tmp_path, haxby, short_dataset, unique_prefix
):
    from recordings.session import read_session
    from simulators.replay import SessionPlayer
    from stream.acquisition import Acquisition
    from stream.config import AcquisitionConfig, StreamQuery, WindowConfig

    data, affine = haxby
    volumes = [data[..., i] for i in range(10)]
    expected, names = simulator_means(volumes)
    session = read_session(short_dataset, "99", "sleep-1")
    eeg_prefix, scanner_prefix = f"{unique_prefix}-replay", f"{unique_prefix}-scanner"
    # A window waits for the volume of its end (max_fmri_wait only guards against hanging), so every
    # volume lands in a window however late this machine delivers it.
    window = WindowConfig(eeg_window=1.0, fmri_window=1.0, hop=0.5, max_fmri_wait=BOUND)
    config = AcquisitionConfig(
        eeg=StreamQuery(name=f"{eeg_prefix}-EEG"), fmri=StreamQuery(name=f"{scanner_prefix}-fMRI"),
        resolve_timeout=BOUND, window=window,
    )  # fmt: skip
    # Volume 0 is held until the acquisition is connected, however long its resolves take.
    source_config = SourceConfig(prefix=scanner_prefix, interval=0.05, wait_for_consumers=3 * BOUND)
    windows = []
    with running_source(tmp_path, source_config), SessionPlayer(session, prefix=eeg_prefix):
        writer, _ = start_writer(
            tmp_path, [(f"{i}.nii.gz", nifti_bytes(v, affine)) for i, v in enumerate(volumes)]
        )
        with Acquisition(config) as acquisition:  # resolves the fMRI stream once it opens with volume 0
            deadline = time.monotonic() + BOUND
            while time.monotonic() < deadline and not (
                windows and windows[-1].fmri_indices.size and windows[-1].fmri_indices[-1] >= 8
            ):
                try:
                    windows.append(acquisition.queue.get(timeout=0.2))
                except TimeoutError:
                    continue
            health = acquisition.health()
        writer.join(BOUND)
    fmri = health["streams"]["fmri"]
    assert fmri["connected"] and fmri["samples"] >= 9 and fmri["nominal_rate"] == pytest.approx(1 / TR)
    assert windows and windows[-1].region_names == names and windows[-1].tr == pytest.approx(TR)
    seen = {}
    for w in windows:
        for index, values in zip(w.fmri_indices, w.fmri, strict=True):
            seen[int(index)] = values
    # Volume 0 may come before the first window; from there on every volume is in a window.
    assert sorted(seen) == list(range(min(seen), max(seen) + 1)) and max(seen) >= 8, sorted(seen)
    for index, values in seen.items():
        np.testing.assert_allclose(values, expected[index], rtol=1e-6)
