"""`run_stream.py extract` over a run, a subject and a whole dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.names import FEATURE_NAMES
from tests.cli import run_cli

PROJECT = Path(__file__).resolve().parents[1]


def test_extract_whole_dataset_to_csv_and_one_run_to_parquet(short_dataset, tmp_path):
    everything = run_cli("extract", str(short_dataset), "-o", str(tmp_path / "all.csv"))
    assert everything.returncode == 0, everything.stderr
    assert "wrote 61 windows of 2 recording(s)" in everything.stdout
    assert "extracting" in everything.stderr  # the progress bar
    table = pd.read_csv(tmp_path / "all.csv")
    assert list(table.columns[:6]) == ["subject", "task", "run", "window", "start", "end"]
    assert set(FEATURE_NAMES) <= set(table.columns)
    assert {"usable", "eeg_coverage", "bad_channels", "fmri_staleness", "problems", "stage"} <= set(
        table.columns
    )
    assert sorted(table.groupby(["task", "run"]).size().items()) == [(("rest", 1), 16), (("sleep", 1), 45)]
    sleep = table[table.task == "sleep"]
    np.testing.assert_allclose(np.diff(sleep["end"]), 2.1, atol=1e-6)
    assert sleep["start"].iloc[0] == -2.0  # EEG starts 2 s before the first volume
    assert set(sleep["stage"].dropna()) == {"W", "N1", "unscored", "N3"}
    assert np.isfinite(table[list(FEATURE_NAMES)].to_numpy()).all()

    one = run_cli(
        "extract",
        str(short_dataset),
        "--subject",
        "99",
        "--run",
        "sleep-1",
        "-o",
        str(tmp_path / "one.parquet"),
    )
    assert one.returncode == 0, one.stderr
    parquet = pd.read_parquet(tmp_path / "one.parquet")
    np.testing.assert_allclose(parquet[list(FEATURE_NAMES)], sleep[list(FEATURE_NAMES)], rtol=1e-9)


def test_extract_errors_are_clear(short_dataset, tmp_path):
    wrong = run_cli("extract", str(short_dataset), "-o", str(tmp_path / "table.xlsx"))
    assert wrong.returncode != 0 and "or end in .csv or .parquet" in wrong.stderr
    missing = run_cli("extract", str(tmp_path / "nowhere"), "-o", str(tmp_path / "t.csv"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    one_table = run_cli("extract", str(short_dataset), "--workers", "2", "-o", str(tmp_path / "t.parquet"))
    assert one_table.returncode != 0 and "give a folder to -o" in one_table.stderr
    unreachable = run_cli(
        "extract", str(short_dataset), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"
    )  # fmt: skip
    assert unreachable.returncode != 0 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in (
        unreachable.stderr
    )
    assert "Traceback" not in unreachable.stderr
    nothing = run_cli("extract", str(short_dataset), "--subject", "42", "-o", str(tmp_path / "t.csv"))
    assert nothing.returncode != 0 and "no run in" in nothing.stderr


def test_extract_with_dummy_scans(short_dataset, tmp_path):
    import shutil

    from recordings.bids import RunPaths
    from tests.test_session import drop_first_volumes

    root = tmp_path / "ds"
    shutil.copytree(short_dataset, root)
    drop_first_volumes(RunPaths(root, "99", "sleep", 1), 3)
    output = str(tmp_path / "t.csv")
    refused = run_cli("extract", str(root), "--run", "sleep-1", "-o", output)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert (
        "57 'R128' volume triggers for the 54 volumes" in refused.stderr and "--dummy-scans" in refused.stderr
    )
    done = run_cli("extract", str(root), "--run", "sleep-1", "--dummy-scans", "3", "-o", output)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(output)
    # Times from the first volume, which comes 3 TR later than in the whole run.
    assert table["start"].iloc[0] == pytest.approx(-2.0 - 3 * 2.1, abs=1e-6)
    assert (table["sfreq"] == 250.0).all() and (table["tr"] == 2.1).all()
    labelled = table.dropna(subset=["epoch_start"])
    assert set(labelled["epoch_start"]) <= {0.0, 30.0, 60.0, 90.0}
    middle = (labelled["start"] + labelled["end"]) / 2
    assert ((labelled["epoch_start"] <= middle) & (middle < labelled["epoch_start"] + 30)).all()
    # The replay reads the run the same way (it fails before publishing anything).
    replay = run_cli("replay", "--session", str(root), "--subject", "99", "--run", "sleep-1")
    assert replay.returncode != 0 and "Traceback" not in replay.stderr and "--dummy-scans" in replay.stderr
    bad = run_cli("extract", str(root), "--dummy-scans", "-1", "-o", output)
    assert bad.returncode == 2 and "--dummy-scans" in bad.stderr
