from collections import Counter
from pathlib import Path

import mne
import numpy as np
import pytest

from core.stages import SLEEP_STAGES, UNSCORED
from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram, read_hypnogram
from recordings.scoring import read_scoring
from simulators.surrogate import SHIPPED_DATASET

SLEEP_EDF = Path(__file__).parent / "data" / "sleep-edf"
SC4001 = SLEEP_EDF / "SC4001EC-Hypnogram.edf"
SOURCEDATA = SHIPPED_DATASET / "sourcedata"
YASA_CODES = {"W": "0", "N1": "1", "N2": "2", "N3": "3", "R": "4", UNSCORED: "-2"}


def _epochs_by_description(path: Path) -> Counter:
    """Independent count: every annotation's duration in whole 30-s epochs."""
    counts: Counter = Counter()
    for duration, description in zip(
        mne.read_annotations(path).duration, mne.read_annotations(path).description, strict=True
    ):
        epochs = duration / 30.0
        assert epochs == int(epochs)
        counts[description] += int(epochs)
    return counts


@pytest.mark.parametrize("path", sorted(SLEEP_EDF.glob("*-Hypnogram.edf")), ids=lambda p: p.name[:8])
def test_sleep_edf_hypnograms_read_exactly(path):
    expected = _epochs_by_description(path)
    hypnogram = read_hypnogram(path)
    assert hypnogram.counts == {
        "W": expected["Sleep stage W"],
        "N1": expected["Sleep stage 1"],
        "N2": expected["Sleep stage 2"],
        "N3": expected["Sleep stage 3"] + expected["Sleep stage 4"],
        "R": expected["Sleep stage R"],
    }
    assert hypnogram.excluded == {
        "unscored": expected["Sleep stage ?"],
        "movement": expected["Movement time"],
        "artefact": 0,
    }
    # Nothing dropped: every annotated epoch is in the grid, in order, with its label.
    assert hypnogram.n_epochs == sum(expected.values())
    np.testing.assert_array_equal(hypnogram.onsets, np.arange(hypnogram.n_epochs) * 30.0)
    assert Counter(hypnogram.raw_labels) == expected
    annotations = mne.read_annotations(path)
    for onset, duration, description in zip(
        annotations.onset, annotations.duration, annotations.description, strict=True
    ):
        first, last = int(onset // 30), int((onset + duration) // 30) - 1
        assert hypnogram.raw_labels[first] == hypnogram.raw_labels[last] == description


def test_sc4001_counts_from_the_data_readme():
    hypnogram = read_hypnogram(SC4001)
    assert hypnogram.counts == {"W": 1997, "N1": 58, "N2": 250, "N3": 101 + 119, "R": 125}
    assert hypnogram.excluded["unscored"] == 230
    assert hypnogram.source == str(SC4001)


def test_movement_time_is_kept_unscored_with_its_label():
    hypnogram = read_hypnogram(SLEEP_EDF / "SC4091EC-Hypnogram.edf")
    movement = [i for i, label in enumerate(hypnogram.raw_labels) if label == "Movement time"]
    assert len(movement) == hypnogram.excluded["movement"] == 11
    assert {hypnogram.stages[i] for i in movement} == {UNSCORED}


def test_stage_at_follows_the_annotations():
    hypnogram = read_hypnogram(SC4001)
    annotations = mne.read_annotations(SC4001)
    # The second annotation is 'Sleep stage 1' from 30630 s for 120 s.
    assert annotations.description[1] == "Sleep stage 1"
    start, duration = annotations.onset[1], annotations.duration[1]
    assert hypnogram.stage_at(start - 0.01) == "W"
    assert hypnogram.stage_at(start) == hypnogram.stage_at(start + duration - 0.01) == "N1"
    assert hypnogram.stage_at(-1.0) is None
    assert hypnogram.stage_at(hypnogram.n_epochs * 30.0) is None


@pytest.mark.parametrize("form", ["txt", "csv", "letters"])
def test_yasa_style_files_round_trip_a_real_hypnogram(tmp_path, form):
    night = read_hypnogram(SC4001)
    if form == "txt":
        path = tmp_path / "hypno_30s.txt"
        path.write_text(
            "# 1 value per 30 seconds of data\n# 0: Wake, 1: N1, 2: N2, 3: N3, 4: REM\n"
            + "\n".join(YASA_CODES[stage] for stage in night.stages)
            + "\n"
        )
    elif form == "csv":
        path = tmp_path / "hypno.csv"
        path.write_text(
            "epoch,stage\n" + "".join(f"{i},{YASA_CODES[stage]}\n" for i, stage in enumerate(night.stages))
        )
    else:
        path = tmp_path / "hypno.txt"
        letters = {**dict(zip(SLEEP_STAGES, SLEEP_STAGES, strict=True)), "R": "REM", UNSCORED: "?"}
        path.write_text("Stage\n" + "\n".join(letters[stage] for stage in night.stages))
    back = read_hypnogram(path)
    assert back.stages == night.stages
    np.testing.assert_array_equal(back.onsets, night.onsets)
    assert back.counts == night.counts
    assert back.excluded == {
        "unscored": night.n_epochs - sum(night.counts.values()),
        "movement": 0,
        "artefact": 0,
    }


def test_text_epoch_length_and_artefact_codes(tmp_path):
    path = tmp_path / "hypno.txt"
    path.write_text("0\n-1\n2.0\n-2\n4\n")
    hypnogram = read_hypnogram(path, epoch_seconds=20.0)
    assert hypnogram.stages == ("W", UNSCORED, "N2", UNSCORED, "R")
    assert hypnogram.excluded == {"unscored": 1, "movement": 0, "artefact": 1}
    np.testing.assert_array_equal(hypnogram.onsets, [0.0, 20.0, 40.0, 60.0, 80.0])
    assert hypnogram.stage_at(45.0) == "N2"


def test_ds003768_scoring_per_run():
    path = SOURCEDATA / "sub-01-sleep-stage.tsv"
    expected = read_scoring(path)[("sleep", 3)]
    hypnogram = read_hypnogram(path, run=("sleep", 3))
    assert hypnogram.stages == expected.stages
    assert hypnogram.raw_labels == expected.raw_labels
    np.testing.assert_array_equal(hypnogram.onsets, expected.onsets)
    assert hypnogram.counts["R"] == 0
    assert sum(hypnogram.counts.values()) + sum(hypnogram.excluded.values()) == expected.n_epochs


def test_ds003768_uncertain_epochs_are_excluded_as_unscored():
    path = SOURCEDATA / "sub-23-sleep-stage.tsv"
    runs = read_scoring(path)
    unscored = sum(run.stages.count(UNSCORED) for run in runs.values())
    assert unscored > 0
    assert sum(read_hypnogram(path, run=key).excluded["unscored"] for key in runs) == unscored


def test_ds003768_needs_a_run_when_the_file_holds_several():
    path = SOURCEDATA / "sub-01-sleep-stage.tsv"
    with pytest.raises(
        DatasetFormatError, match=r"sub-01-sleep-stage.tsv: the file holds 5 runs.*'sleep', 3"
    ):
        read_hypnogram(path)
    with pytest.raises(DatasetFormatError, match=r"no run \('sleep', 9\)"):
        read_hypnogram(path, run=("sleep", 9))
    with pytest.raises(ValueError, match="applies only to ds003768"):
        read_hypnogram(SC4001, run=("sleep", 1))


def _edited(tmp_path: Path, old: bytes, new: bytes) -> Path:
    data = SC4001.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path = tmp_path / "edited-Hypnogram.edf"
    path.write_bytes(data.replace(old, new))
    return path


def test_edf_unknown_label_is_named(tmp_path):
    path = _edited(tmp_path, b"+30630\x15120\x14Sleep stage 1", b"+30630\x15120\x14Sleep stage X")
    with pytest.raises(
        DatasetFormatError, match=r"edited-Hypnogram.edf: annotation 2 \('Sleep stage X'.*unknown"
    ):
        read_hypnogram(path)


def test_edf_irregular_grid_is_named(tmp_path):
    path = _edited(tmp_path, b"+30630\x15120\x14", b"+30630\x15125\x14")
    with pytest.raises(
        DatasetFormatError, match=r"edited-Hypnogram.edf: annotation 2 .*irregular annotation grid"
    ):
        read_hypnogram(path)


def test_edf_overlap_is_named_and_a_gap_is_kept_unscored(tmp_path):
    path = _edited(tmp_path, b"+30630\x15120\x14", b"+30630\x15150\x14")
    with pytest.raises(DatasetFormatError, match=r"annotation 3 .*overlaps the previous annotation"):
        read_hypnogram(path)
    night = read_hypnogram(SC4001)
    gapped = read_hypnogram(_edited(tmp_path, b"+30630\x15120\x14", b"+30630\x15090\x14"))
    gap = (30630 + 90) // 30  # the epoch the shortened annotation no longer covers
    assert gapped.n_epochs == night.n_epochs
    assert (gapped.stages[gap], gapped.raw_labels[gap]) == (UNSCORED, "")
    assert gapped.stages[:gap] == night.stages[:gap] and gapped.stages[gap + 1 :] == night.stages[gap + 1 :]
    assert gapped.counts["N1"] == night.counts["N1"] - 1
    assert gapped.excluded["unscored"] == night.excluded["unscored"] + 1


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty file"),
        ("# only a comment\n\n", 1, "no epochs"),
        ("0\n1\n7\n", 3, "unknown label '7'"),
        ("W\nN2\nS\n", 3, "unknown label 'S'"),
        ("X\nW\n", 1, "unknown label 'X'"),
        ("stage\n", 1, "no epochs after the header"),
        ("epoch,onset\n0,0\n", 1, "header .* names no stage column"),
        ("epoch,stage\n0,2\n1\n", 3, "expected 2 field"),
        ("2\n2.5\n", 2, "unknown label '2.5'"),
    ],
)
def test_bad_text_files_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad-hypno.txt"
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=rf"bad-hypno.txt, line {line}: {message}"):
        read_hypnogram(path)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DatasetFormatError, match=r"absent.txt: hypnogram file not found"):
        read_hypnogram(tmp_path / "absent.txt")
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DatasetFormatError, match=r"binary.txt: not a UTF-8 text file"):
        read_hypnogram(path)
    truncated = tmp_path / "truncated-Hypnogram.edf"
    truncated.write_bytes(SC4001.read_bytes()[:300])
    with pytest.raises(DatasetFormatError, match=r"truncated-Hypnogram.edf: no annotations"):
        read_hypnogram(truncated)
    garbage = tmp_path / "garbage-Hypnogram.edf"
    garbage.write_bytes(b"0       " + b"x" * 400)
    with pytest.raises(DatasetFormatError, match=r"garbage-Hypnogram.edf: no annotations"):
        read_hypnogram(garbage)


def test_hypnogram_rejects_mismatched_fields():
    with pytest.raises(ValueError, match="expected one of each per epoch"):
        Hypnogram(np.zeros(2), ("W",), ("W",), "x")
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['S4'\]"):
        Hypnogram(np.zeros(1), ("S4",), ("4",), "x")
