"""Extraction of many recordings into a feature dataset on a real Dask LocalCluster (loopback, 2 workers).

The distributed extraction must give exactly the serial table, skip what is up to date, report a
corrupt recording without stopping the others, and lose nothing when a worker is killed mid-task.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from cli.recording_source import resolve_sources
from model.contract import ContractError
from model.dataset import read_feature_table
from pipeline.batch_extraction import EXTRACTED, FAILED, SKIPPED, ExtractionSettings, extract_into
from pipeline.cluster import dask_client
from pipeline.feature_dataset import PARTIAL_PREFIX, dataset_contract
from pipeline.offline import extract_recordings
from pipeline.settings import Settings
from simulators.surrogate import write_surrogate_run
from tests.cli import run_cli

SUBJECTS = ("97", "98", "99")
BOUND = 120.0  # seconds: only guards against hanging
# Each sleep run 8 epochs (4 min), each rest run 2: tasks of about a second, so a worker can be
# caught in the middle of one.
SCORING = "session\tepoch_start_time_sec\t30-sec_epoch_sleep_stage\r\n" + "".join(
    f"task-sleep_run-1\t{30 * k}\t{stage}\r\n" for k, stage in enumerate("W12332RW")
) + "task-rest_run-1\t0\tW\r\ntask-rest_run-1\t30\tW\r\n"  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Three surrogate subjects, a sleep and a rest run each (six recordings)."""
    root = tmp_path_factory.mktemp("batch")
    scoring = root / "scoring.tsv"
    scoring.write_text(SCORING)
    for seed, subject in enumerate(SUBJECTS):
        for run in ("sleep-1", "rest-1"):
            write_surrogate_run(root, subject, run, scoring_source=scoring, seed=seed)
    return root


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 single-threaded worker processes, on loopback."""
    with dask_client(workers=2, dashboard_address="127.0.0.1:0") as running:
        yield running


def settings_for(session: str | Path) -> ExtractionSettings:
    defaults = Settings()
    return ExtractionSettings(defaults.features, defaults.window, defaults.artefacts, False, str(session))


def test_distributed_extraction_gives_exactly_the_serial_table(dataset, client, tmp_path):
    sources = resolve_sources(str(dataset))
    results = extract_into(sources.jobs, tmp_path / "dataset", settings_for(dataset), client=client)
    assert [r.status for r in results] == [EXTRACTED] * 6, results
    assert len(list((tmp_path / "dataset").glob("*.parquet"))) == 6

    serial, _ = extract_recordings(sources.loaders, progress=False, yasa=False)
    serial.to_parquet(tmp_path / "serial.parquet", index=False)
    distributed = read_feature_table(tmp_path / "dataset")
    pd.testing.assert_frame_equal(distributed, read_feature_table(tmp_path / "serial.parquet"))
    assert len(distributed) == sum(r.windows for r in results)
    assert [r.scored for r in results if r.name.endswith("sleep_run-1")] == [
        len(serial.query("subject == @s and task == 'sleep' and stage.notna() and stage != 'unscored'"))
        for s in SUBJECTS
    ]

    contract = dataset_contract(tmp_path / "dataset")
    assert contract["data"]["subjects"] == list(SUBJECTS) and contract["data"]["kind"] == "surrogate"
    assert contract["eeg_rate_range"] == [250.0, 250.0]


def test_a_rerun_skips_everything_and_changed_settings_extract_again(dataset, client, tmp_path):
    sources = resolve_sources(str(dataset))
    folder = tmp_path / "dataset"
    extract_into(sources.jobs, folder, settings_for(dataset), client=client, progress=False)
    written = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}

    again = extract_into(sources.jobs, folder, settings_for(dataset), client=client, progress=False)
    assert [r.status for r in again] == [SKIPPED] * 6
    assert all(r.windows > 0 for r in again)  # from the files' metadata
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")} == written

    # Touching one recording's EEG re-extracts it alone; other feature settings re-extract all.
    eeg = next(dataset.glob("sub-98/eeg/sub-98_task-rest_run-1_eeg.eeg"))
    os.utime(eeg, ns=(eeg.stat().st_atime_ns, eeg.stat().st_mtime_ns + 1_000_000_000))
    touched = extract_into(sources.jobs, folder, settings_for(dataset), client=client, progress=False)
    assert {r.name for r in touched if r.status == EXTRACTED} == {"sub-98_task-rest_run-1"}
    log_power = dataclasses.replace(
        settings_for(dataset), features=dataclasses.replace(Settings().features, power_scale="log")
    )
    default_settings_file = (folder / "sub-97_task-rest_run-1.parquet").read_bytes()
    redone = extract_into(sources.jobs, folder, log_power, client=client, progress=False)
    assert [r.status for r in redone] == [EXTRACTED] * 6

    # A file left from other settings makes the dataset's contract refuse the folder, naming it.
    (folder / "sub-96_task-rest_run-1.parquet").write_bytes(default_settings_file)
    with pytest.raises(ContractError, match=r"sub-96_task-rest_run-1\.parquet .* different features"):
        dataset_contract(folder)


def test_a_corrupt_recording_is_reported_and_the_others_extracted(dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    header = broken / "sub-98" / "eeg" / "sub-98_task-sleep_run-1_eeg.vhdr"
    header.write_text("this is not a BrainVision header\n")
    (broken / "sourcedata" / "sub-99-sleep-stage.tsv").unlink()  # subject 99 has no scoring
    out = tmp_path / "features.v1"  # a folder: named with a trailing separator the first time
    done = run_cli(
        "extract", str(broken), "-o", f"{out}/", "--workers", "2", "--dashboard", "127.0.0.1:0", "--no-yasa"
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "1 recording(s) failed: sub-98_task-sleep_run-1" in done.stderr
    assert "2 worker(s)" in done.stdout and "dashboard http://127.0.0.1:" in done.stdout
    assert "extracting" in done.stderr  # the progress bar
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("sub-")}
    assert rows["sub-98_task-sleep_run-1"].split()[1] == FAILED and "vhdr" in rows["sub-98_task-sleep_run-1"]
    assert all(rows[n].split()[1] == EXTRACTED for n in rows if n != "sub-98_task-sleep_run-1")
    assert "no scoring" in rows["sub-99_task-sleep_run-1"]
    assert "5 extracted, 0 skipped, 1 failed" in done.stdout
    summary = pd.read_csv(out / "extraction-summary.tsv", sep="\t")
    assert summary.set_index("name").loc["sub-98_task-sleep_run-1", "status"] == FAILED
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(
        f"{name}.parquet" for name in rows if name != "sub-98_task-sleep_run-1"
    )

    # Mended, the rerun extracts that one and skips the rest.
    shutil.copy(dataset / "sub-98" / "eeg" / header.name, header)
    mended = run_cli("extract", str(broken), "-o", str(out), "--workers", "0", "--no-yasa")
    assert mended.returncode == 0, mended.stderr
    assert "1 extracted, 5 skipped, 0 failed" in mended.stdout
    assert read_feature_table(out)["subject"].nunique() == 3


def _executing(dask_worker) -> list[str]:
    return [str(task.key) for task in dask_worker.state.executing]


def _suspicious(dask_scheduler, key: str) -> int:
    task = dask_scheduler.tasks.get(key)
    return -1 if task is None else int(task.suspicious)


def test_a_worker_killed_mid_task_loses_nothing(dataset, tmp_path):
    sources = resolve_sources(str(dataset))
    folder = tmp_path / "dataset"
    killed: dict[str, object] = {}

    def kill_a_busy_worker(client) -> None:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and "key" not in killed:
            busy = {address: keys for address, keys in client.run(_executing).items() if keys}
            if busy:
                address, keys = next(iter(busy.items()))
                killed["before"] = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed["key"] = keys[0]
            time.sleep(0.05)
        while time.monotonic() < deadline and "key" in killed:  # the scheduler notices the loss
            if client.run_on_scheduler(_suspicious, key=killed["key"]) != 0:
                killed["suspicious"] = client.run_on_scheduler(_suspicious, key=killed["key"])
                return
            time.sleep(0.05)

    with dask_client(workers=2, dashboard_address="127.0.0.1:0") as client:
        killer = threading.Thread(target=kill_a_busy_worker, args=(client,), daemon=True)
        killer.start()
        results = extract_into(sources.jobs, folder, settings_for(dataset), client=client, progress=False)
        killer.join(BOUND)
    assert "key" in killed, "no task was caught running"
    # The killed task was rescheduled (the scheduler counted its worker's death), then completed.
    assert killed.get("suspicious", 0) >= 1, killed
    assert [r.status for r in results] == [EXTRACTED] * 6, results
    files = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
    assert len(files) == 6 and not list(folder.glob(f"{PARTIAL_PREFIX}*"))
    # What was written before the kill is still there, untouched (not lost, not written twice).
    assert all(files[name] == mtime for name, mtime in killed["before"].items())
    serial, _ = extract_recordings(sources.loaders, progress=False, yasa=False)
    serial.to_parquet(tmp_path / "serial.parquet", index=False)
    pd.testing.assert_frame_equal(read_feature_table(folder), read_feature_table(tmp_path / "serial.parquet"))


@pytest.mark.slow
def test_cross_validation_folds_run_side_by_side_on_the_cluster(client):
    from model.fitting import prepare
    from model.training import TrainConfig, cross_validate
    from pipeline.cluster import fold_map
    from tests.feature_tables import surrogate_feature_table

    table = surrogate_feature_table(subjects=("04", "09", "15", "19"), runs_per_subject=1)
    config = TrainConfig(labels="wake-sleep", context=2, folds=2, epochs=3, patience=2)
    data = prepare(table, config)
    in_turn = cross_validate(data, config, progress=False)
    side_by_side = cross_validate(data, config, progress=False, fold_map=fold_map(client))
    assert side_by_side["fold_subjects"] == in_turn["fold_subjects"]
    assert side_by_side["contexts"] == in_turn["contexts"]
    # The baselines' figures are the same to the last digit; the networks, trained in other processes,
    # only up to TensorFlow's round-off (which compounds over training), so they are checked whole.
    for name in ("logistic_regression", "majority"):
        assert side_by_side["per_fold"][name] == in_turn["per_fold"][name]
        assert side_by_side["models"][name] == in_turn["models"][name]
    for name in ("fusion", "eeg_only", "fmri_only"):
        assert len(side_by_side["per_fold"][name]) == 2
        pooled = side_by_side["models"][name]["window"]
        assert pooled["n"] == len(data.y) and 0 <= pooled["balanced_accuracy"] <= 1
        assert set(pooled["per_subject"]) == {"04", "09", "15", "19"}
