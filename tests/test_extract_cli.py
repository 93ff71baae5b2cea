"""`run_stream.py extract` over a run, a subject and a whole dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.names import FEATURE_NAMES
from tests.cli import run_cli

PROJECT = Path(__file__).resolve().parents[1]


def test_extract_whole_dataset_to_csv_and_one_run_to_parquet(short_dataset, tmp_path):
    everything = run_cli("extract", str(short_dataset), "-o", str(tmp_path / "all.csv"))
    assert everything.returncode == 0, everything.stderr
    assert "wrote 61 windows of 2 run(s)" in everything.stdout
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
    assert wrong.returncode != 0 and "must end in .csv or .parquet" in wrong.stderr
    missing = run_cli("extract", str(tmp_path / "nowhere"), "-o", str(tmp_path / "t.csv"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    nothing = run_cli("extract", str(short_dataset), "--subject", "42", "-o", str(tmp_path / "t.csv"))
    assert nothing.returncode != 0 and "no run in" in nothing.stderr
