from collections import Counter

import numpy as np
import pytest

from recordings.errors import DatasetFormatError
from recordings.scoring import UNSCORED, normalise_stage, read_scoring
from simulators.surrogate import SHIPPED_DATASET

SOURCEDATA = SHIPPED_DATASET / "sourcedata"


def test_every_shipped_scoring_file_reads_with_all_epochs_kept():
    runs, stages = 0, Counter()
    with pytest.warns(UserWarning, match=r"sub-32-sleep-stage.tsv, line 69"):
        for path in sorted(SOURCEDATA.glob("sub-*-sleep-stage.tsv")):
            scoring = read_scoring(path)
            runs += len(scoring)
            for run in scoring.values():
                stages.update(run.stages)
                assert len(run.raw_labels) == run.n_epochs
                np.testing.assert_array_equal(run.onsets, np.arange(run.n_epochs) * 30.0)
    assert runs == 255
    assert sum(stages.values()) == 6990
    # The real counts: W 3343 (+1 on the sub-32 line with a space), N1 2148, N2 1325, N3 42.
    assert stages == {"W": 3344, "N1": 2148, "N2": 1325, "N3": 42, UNSCORED: 131}


def test_sub01_extra_subject_column_and_crlf():
    raw = (SOURCEDATA / "sub-01-sleep-stage.tsv").read_bytes()
    assert raw.startswith(b"subject\t") and b"\r\n" in raw
    scoring = read_scoring(SOURCEDATA / "sub-01-sleep-stage.tsv")
    assert set(scoring) == {("rest", 1), ("rest", 2), ("sleep", 1), ("sleep", 2), ("sleep", 3)}
    assert scoring[("rest", 1)].stages[:2] == ("N2", "N2")
    assert scoring[("sleep", 3)].stages[-3:] == ("W", "N1", "W")


def test_uncertain_and_unscorable_labels_are_kept_as_unscored():
    scoring = read_scoring(SOURCEDATA / "sub-23-sleep-stage.tsv")
    labels = [(s, r) for run in scoring.values() for s, r in zip(run.stages, run.raw_labels, strict=True)]
    unscored = [raw for stage, raw in labels if stage == UNSCORED]
    assert "2 or 3 (unscorable)" in unscored and "W (uncertain)" in unscored
    assert all(("uncertain" in raw) or ("unscorable" in raw) for raw in unscored)


@pytest.mark.parametrize(
    ("label", "stage"),
    [("W", "W"), ("w", "W"), ("1", "N1"), ("2", "N2"), ("3", "N3"), ("", UNSCORED),
     ("Unscorable", UNSCORED), ("1 (uncertain)", UNSCORED), ("R", UNSCORED)],
)  # fmt: skip
def test_normalise_stage(label, stage):
    assert normalise_stage(label) == stage


def test_stage_at_run_time():
    run = read_scoring(SOURCEDATA / "sub-27-sleep-stage.tsv")[("sleep", 3)]
    assert run.stage_at(0.0) == "N2"
    assert run.stage_at(29.99) == "N2"
    assert run.stage_at(20 * 30 + 1) == "N3"
    assert run.stage_at(-1) is None
    assert run.stage_at(900.0) is None


HEADER = "session\tepoch_start_time_sec\t30-sec_epoch_sleep_stage\r\n"


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"", 1, "empty file"),
        (b"session\tstart\tstage\r\n", 1, "header lacks column"),
        ((HEADER + "task-rest_run-1\t0\tW\textra\r\n").encode(), 2, "expected 3 tab-separated fields"),
        ((HEADER + "task-rest_run-1\tzero\tW\r\n").encode(), 2, "is not a number of seconds"),
        ((HEADER + "rest-1\t0\tW\r\n").encode(), 2, "not of the form 'task-<name>_run-<N>'"),
        ((HEADER + "task-rest_run-1\t30\tW\r\ntask-rest_run-1\t0\tW\r\n").encode(), 3, "increasing"),
        ((HEADER + "task-rest_run-1\t-30\tW\r\n").encode(), 2, "finite number >= 0"),
        ((HEADER + "task-rest_run-1\tW\r\n").encode(), 2, "expected 3 tab-separated fields"),
        (HEADER.encode(), None, "no scored epochs"),
        (b"\xff\xfe\x00binary", None, "not a UTF-8 text file"),
    ],
)
def test_malformed_scoring_names_file_line_and_problem(tmp_path, content, line, message):
    path = tmp_path / "sub-77-sleep-stage.tsv"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_scoring(path)
    assert str(path) in str(info.value)
    assert info.value.line == line
    if line is not None:
        assert f"line {line}" in str(info.value)


def test_missing_scoring_file(tmp_path):
    with pytest.raises(DatasetFormatError, match="not found"):
        read_scoring(tmp_path / "sub-01-sleep-stage.tsv")
