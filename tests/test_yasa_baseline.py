"""YASA's pretrained stager as the baseline: its derivation, its epochs on the scoring's, its figures."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from core.stages import SLEEP_STAGES
from model.epochs import window_epochs
from model.evaluation import YASA_COLUMN, assess_yasa, yasa_cross_validation
from model.labels import label_names, make_labels
from model.report import markdown
from pipeline.yasa_baseline import (
    Derivation,
    YasaUnavailableError,
    add_yasa_column,
    import_yasa,
    yasa_derivation,
    yasa_epoch_stages,
)
from recordings.montage import CHANNEL_TYPES, CHANNELS

pytest.importorskip("yasa")

SFREQ = 100.0
CHANNELS_2 = ["C4", "EOG"]
TYPES_2 = ["eeg", "eog"]


# ---------------------------------------------------------------- derivation


def test_derivation_on_the_ds003768_montage_is_c4_against_tp9_with_the_eog():
    derivation = yasa_derivation(CHANNELS, CHANNEL_TYPES)
    assert derivation == Derivation("C4", "TP9", "EOG", "TP10")
    assert derivation.eeg == "C4-TP9" and derivation.eog_label == "EOG-TP10"


def test_derivation_falls_back_to_c3_against_tp10_without_c4():
    names = [n for n in CHANNELS if n != "C4"]
    types = [t for n, t in zip(CHANNELS, CHANNEL_TYPES, strict=True) if n != "C4"]
    assert yasa_derivation(names, types) == Derivation("C3", "TP10", "EOG", "TP9")


def test_derivation_prefers_a_true_mastoid_over_tp9():
    names = ["F3", "C4", "TP9", "A1", "E1"]
    assert yasa_derivation(names, ["eeg", "eeg", "eeg", "eeg", "eog"]) == Derivation("C4", "A1", "E1")


def test_derivation_on_sleep_edf_is_its_central_bipolar_channel():
    names = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "Resp oro-nasal", "EMG submental", "Event marker"]
    # Sleep-EDF files read by MNE type every signal "eeg": the EOG is found by its name.
    derivation = yasa_derivation(names, ["eeg", "eeg", "eeg", "misc", "emg", "misc"])
    assert derivation == Derivation("EEG Fpz-Cz", None, "EOG horizontal")
    assert yasa_derivation(names[1:], ["eeg", "eeg", "misc", "emg", "misc"]).eeg == "EEG Pz-Oz"


def test_derivation_of_single_channels():
    assert yasa_derivation(["Fz"], ["eeg"]) == Derivation("Fz", None, None)
    assert yasa_derivation(["Fz", "Cz", "Pz"], ["eeg"] * 3) == Derivation("Cz", None, None)
    with pytest.raises(ValueError, match="no EEG channel"):
        yasa_derivation(["ECG"], ["ecg"])


# ---------------------------------------------------------------- epochs


def _night(minutes: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 10.0, (2, int(minutes * 60 * SFREQ)))
    data[1] *= 3.0
    return data


def test_yasa_epochs_are_the_scorings_epochs_for_an_offset_start():
    """Epoch i of the scoring is YASA's epoch i of the data cropped at the first onset."""
    data = _night(11.0, seed=1)
    onsets = 30.0 * np.arange(22)
    reference = yasa_epoch_stages(data, CHANNELS_2, TYPES_2, SFREQ, onsets)
    assert reference.staged == 22 and reference.notes == []
    assert set(reference.stages) <= set(SLEEP_STAGES)
    np.testing.assert_allclose(np.nansum(reference.proba, axis=1), 1.0, atol=1e-6)

    lead = 7.3  # seconds of other signal before the first scored epoch
    padded = np.hstack([_night(lead / 60, seed=2) * 5.0, data])
    shifted = yasa_epoch_stages(padded, CHANNELS_2, TYPES_2, SFREQ, lead + onsets)
    assert shifted.stages == reference.stages
    np.testing.assert_allclose(shifted.proba, reference.proba, atol=1e-9)

    # One second off the grid gives other epochs and other probabilities.
    misaligned = yasa_epoch_stages(padded, CHANNELS_2, TYPES_2, SFREQ, lead + 1.0 + onsets[:-1])
    assert np.abs(misaligned.proba - reference.proba[:-1]).max() > 0.01


def test_an_irregular_grid_is_staged_run_by_run_and_short_runs_are_not():
    data = _night(25.0, seed=3)
    first = 30.0 * np.arange(12)  # 6 minutes
    second = 400.0 + 30.0 * np.arange(20)  # a gap, then 10 minutes off the first run's grid
    last = 1200.0 + 30.0 * np.arange(4)  # 2 minutes: too short for YASA
    beyond = np.array([1495.0])  # not covered by the data
    onsets = np.concatenate([first, second, last, beyond])
    staging = yasa_epoch_stages(data, CHANNELS_2, TYPES_2, SFREQ, onsets)
    assert [s is not None for s in staging.stages] == [True] * 32 + [False] * 5
    assert any("shorter than YASA's 5 minutes" in note for note in staging.notes)
    assert any("not fully covered" in note for note in staging.notes)
    alone = yasa_epoch_stages(data[:, int(400 * SFREQ) :], CHANNELS_2, TYPES_2, SFREQ, second - 400.0)
    np.testing.assert_allclose(staging.proba[12:32], alone.proba, atol=1e-9)


def test_a_derivation_against_the_mastoid_is_what_yasa_stages():
    rng = np.random.default_rng(5)
    # Multiples of 1/8 µV: the subtraction is exact, so both ways give YASA the same numbers.
    c4, tp9, eog = np.round(rng.normal(0, 10, (3, int(6 * 60 * SFREQ))) * 8) / 8
    common = np.round(rng.normal(0, 40, c4.size) * 8) / 8
    montage = np.vstack([c4 + common, tp9 + common, eog])
    staging = yasa_epoch_stages(
        montage, ["C4", "TP9", "EOG"], ["eeg", "eeg", "eog"], SFREQ, 30.0 * np.arange(12)
    )
    direct = yasa_epoch_stages(
        np.vstack([c4 - tp9, eog]), ["C4-TP9", "EOG"], TYPES_2, SFREQ, 30.0 * np.arange(12)
    )
    assert staging.derivation == Derivation("C4", "TP9", "EOG")
    np.testing.assert_allclose(staging.proba, direct.proba, atol=1e-9)


def test_too_little_data_or_rate_gives_no_stage_and_a_reason():
    data = _night(4.0, seed=6)
    short = yasa_epoch_stages(data, CHANNELS_2, TYPES_2, SFREQ, 30.0 * np.arange(8))
    assert short.stages == [None] * 8 and np.isnan(short.proba).all()
    assert "shorter than YASA's 5 minutes" in short.notes[0]
    slow = yasa_epoch_stages(data[:, ::2], CHANNELS_2, TYPES_2, 50.0, 30.0 * np.arange(8))
    assert slow.staged == 0 and "more than 80 Hz" in slow.notes[0]
    no_eeg = yasa_epoch_stages(data[1:], ["EOG"], ["eog"], SFREQ, 30.0 * np.arange(8))
    assert no_eeg.derivation is None and no_eeg.staged == 0


def test_the_yasa_column_follows_each_windows_epoch():
    data = _night(6.0, seed=7)
    origin = 4.0  # the run's first volume, on the data's clock
    onsets = origin + 30.0 * np.arange(11)
    staging = yasa_epoch_stages(np.hstack([_night(origin / 60, 8), data]), CHANNELS_2, TYPES_2, SFREQ, onsets)
    table = pd.DataFrame({"epoch_start": [0.0, 0.0, 30.0, 300.0, np.nan, 330.0]})
    column = add_yasa_column(table, staging, offset=origin)[YASA_COLUMN].tolist()
    assert column == [staging.stages[0], staging.stages[0], staging.stages[1], staging.stages[10], None, None]
    with pytest.raises(ValueError, match="epoch_start"):
        add_yasa_column(table.rename(columns={"epoch_start": "start"}), staging)


def test_missing_yasa_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "yasa", None)  # what ``import yasa`` meets when it is not installed
    with pytest.raises(YasaUnavailableError, match=r"pip install 'sleepstream\[yasa\]'"):
        import_yasa()
    with pytest.raises(YasaUnavailableError):
        yasa_epoch_stages(_night(6.0, 9), CHANNELS_2, TYPES_2, SFREQ, 30.0 * np.arange(12))


# ---------------------------------------------------------------- evaluation


def _scored_windows(seed: int = 11) -> pd.DataFrame:
    """Windows of three subjects, several per epoch, with a scored stage and YASA's stage per epoch."""
    rng = np.random.default_rng(seed)
    rows = []
    for subject in ("01", "02", "03"):
        for epoch in range(40):
            stage = str(rng.choice(SLEEP_STAGES[:4]))
            agree = rng.random() < 0.6
            yasa = stage if agree else str(rng.choice(SLEEP_STAGES))
            if rng.random() < 0.1:
                yasa = None  # not staged
            for window in range(int(rng.integers(2, 5))):
                rows.append(
                    {
                        "subject": subject,
                        "task": "sleep",
                        "run": 1,
                        "window": epoch * 5 + window,
                        "epoch_start": 30.0 * epoch,
                        "stage": stage,
                        YASA_COLUMN: yasa,
                    }
                )
    return pd.DataFrame(rows)


def _expected(table: pd.DataFrame, scheme: str) -> tuple[pd.DataFrame, int]:
    """YASA's and the scoring's class per staged epoch, computed from the table directly."""
    names = label_names(scheme)
    epochs = table.groupby(["subject", "epoch_start"]).first().reset_index()
    epochs = epochs.assign(y=make_labels(epochs, scheme))
    staged = epochs[epochs[YASA_COLUMN].notna()]
    as_stage = staged.assign(stage=staged[YASA_COLUMN])
    yasa = make_labels(as_stage, scheme)
    yasa[(yasa < 0)] = len(names)  # R under a scheme without R: an error
    return staged.assign(yasa=yasa), int(epochs[YASA_COLUMN].isna().sum())


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # sklearn's, on YASA's R
@pytest.mark.parametrize("scheme", ["wake-sleep", "stages"])
def test_yasa_figures_are_sklearns_on_the_epoch_table(scheme):
    table = _scored_windows()
    names = label_names(scheme)
    y = make_labels(table, scheme)
    epochs = window_epochs(table)
    result = assess_yasa(table[YASA_COLUMN].to_numpy(), y, table["subject"].to_numpy(), epochs.ids, names)[
        "epoch"
    ]
    expected, unstaged = _expected(table, scheme)
    assert result["staged_epochs"] == len(expected) and result["unstaged_epochs"] == unstaged > 0
    assert result["cohen_kappa"] == pytest.approx(
        cohen_kappa_score(expected["y"], expected["yasa"]), abs=1e-12
    )
    assert result["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(expected["y"], expected["yasa"]), abs=1e-12
    )
    for subject, rows in expected.groupby("subject"):
        figures = result["per_subject"][subject]
        assert figures["n"] == len(rows)
        assert figures["cohen_kappa"] == pytest.approx(cohen_kappa_score(rows["y"], rows["yasa"]), abs=1e-12)
    kappas = [cohen_kappa_score(rows["y"], rows["yasa"]) for _, rows in expected.groupby("subject")]
    spread = result["subject_spread"]["cohen_kappa"]
    assert spread["mean"] == pytest.approx(np.mean(kappas)) and spread["sd"] == pytest.approx(np.std(kappas))
    assert spread["min"] == pytest.approx(min(kappas)) and spread["max"] == pytest.approx(max(kappas))


def test_yasa_rows_in_the_report_and_notes_where_it_does_not_apply():
    table = _scored_windows()
    names = label_names("wake-sleep")
    y = make_labels(table, "wake-sleep")
    subjects = table["subject"].to_numpy()
    ids = window_epochs(table).ids
    stages = table[YASA_COLUMN].to_numpy()
    yasa = assess_yasa(stages, y, subjects, ids, names)
    folds = [subjects == s for s in ("01", "02", "03")]
    cv_yasa = yasa_cross_validation(stages, y, subjects, ids, names, folds)
    per_fold = [
        assess_yasa(stages[f], y[f], subjects[f], ids[f], names)["epoch"]["cohen_kappa"] for f in folds
    ]
    assert cv_yasa["epoch"]["over_folds"]["cohen_kappa"]["mean"] == pytest.approx(np.mean(per_fold))

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(2), size=y.size)
    from model.evaluation import assess

    fusion = assess(y, proba, subjects, ids, names)
    report = {
        "labels": "wake-sleep",
        "label_names": list(names),
        "context": 4,
        "data": {"windows": y.size, "subjects": 3, "runs": 3, "class_counts": {}},
        "test": {"subjects": ["01", "02", "03"], "models": {"fusion": fusion, "yasa": yasa}, "roc": {}},
    }
    text = markdown(report)
    kappa = f"{yasa['epoch']['cohen_kappa']:.3f}"
    assert any(line.startswith("| yasa |") and kappa in line for line in text.splitlines())
    assert f"{yasa['epoch']['unstaged_epochs']} not staged" in text
    window_table = text.split("### Per window")[1]
    assert "| yasa |" not in window_table.split("Per subject")[0]  # YASA is per epoch only

    assert "not sleep stages" in assess_yasa(stages, y, subjects, ids, label_names("task"))["note"]
    absent = assess_yasa(None, y, subjects, ids, names)
    assert "no 'yasa_stage' column" in absent["note"]
    report["test"]["models"]["yasa"] = absent
    assert "YASA: the table has no 'yasa_stage' column" in markdown(report)
