"""The fusion model: labels, grouped splits, training versus baselines, bundles and inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.names import FEATURE_NAMES
from model.dataset import ORIGIN_COLUMNS, context_sequences, read_feature_table
from model.labels import make_labels
from model.splits import assert_disjoint_subjects, subject_folds, train_validation_test
from tests.cli import run_cli
from tests.feature_tables import surrogate_feature_table

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return surrogate_feature_table(subjects=("04", "09", "15", "19", "24"), runs_per_subject=2)


@pytest.fixture(scope="module")
def trained(table, tmp_path_factory):
    """One small bundle trained once for the module (K=4, wake-sleep)."""
    from model.training import TrainConfig, train_and_report

    folder = tmp_path_factory.mktemp("bundle")
    config = TrainConfig(labels="wake-sleep", context=4, folds=2, epochs=12, patience=4)
    bundle = train_and_report(table, config, folder, note="test bundle", progress=False)
    return bundle, folder


def test_labels_follow_the_scoring_and_exclude_unscored():
    table = pd.DataFrame(
        {"stage": ["W", "N1", "N2", "N3", "unscored", None], "task": ["rest"] * 3 + ["sleep"] * 3}
    )
    assert make_labels(table, "wake-sleep").tolist() == [0, 1, 1, 1, -1, -1]
    assert make_labels(table, "stages").tolist() == [0, 1, 2, 3, -1, -1]
    assert make_labels(table, "task").tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="unknown label scheme 'rem'"):
        make_labels(table, "rem")
    with pytest.raises(ValueError, match="no 'stage' column"):
        make_labels(table.drop(columns="stage"), "stages")


def test_context_is_causal_and_never_crosses_runs():
    features = np.arange(6, dtype=float)[:, None] * np.ones((1, 11))
    runs = np.array([0, 0, 0, 1, 1, 1])
    sequences = context_sequences(features, runs, context=3)
    assert sequences[:, :, 0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [3, 3, 4], [3, 4, 5]]


def test_grouped_splits_never_share_a_subject(table):
    subjects = table["subject"].to_numpy()
    folds = subject_folds(subjects, 5, seed=1)
    tested = np.zeros(len(subjects), dtype=int)
    for train, test in folds:
        assert not set(subjects[train]) & set(subjects[test])
        tested += test
    assert (tested == 1).all()  # every row is tested exactly once
    train, validation, test = train_validation_test(subjects, seed=2)
    assert_disjoint_subjects(subjects, train, validation, test)
    assert (train | validation | test).all()
    with pytest.raises(AssertionError, match="appear in two splits"):
        assert_disjoint_subjects(subjects, subjects == "04", np.isin(subjects, ["04", "09"]))
    with pytest.raises(ValueError, match="between 2 and 5 subjects"):
        subject_folds(subjects, 6)


def test_training_beats_the_majority_baseline_on_held_out_subjects(trained):
    bundle, folder = trained
    report = json.loads((folder / "report.json").read_text())
    test = report["test"]["models"]
    assert set(report["test"]["subjects"]).isdisjoint(bundle.training["train_subjects"])
    assert test["fusion"]["balanced_accuracy"] > test["majority"]["balanced_accuracy"] + 0.2
    assert test["fusion"]["accuracy"] > test["majority"]["accuracy"]
    cv = report["cross_validation"]["models"]
    assert cv["fusion"]["balanced_accuracy"]["mean"] > cv["majority"]["balanced_accuracy"]["mean"]
    assert set(cv) == {"fusion", "eeg_only", "fmri_only", "logistic_regression", "majority"}
    for name in (
        "report.md",
        "confusion_matrix.png",
        "roc.png",
        "hypnogram.png",
        "model.keras",
        "model.tflite",
    ):
        assert (folder / name).stat().st_size > 0
    assert "Grouped 2-fold cross-validation" in (folder / "report.md").read_text()


def test_bundle_round_trip_gives_identical_predictions(trained, table):
    from model.bundle import load_bundle

    bundle, folder = trained
    loaded = load_bundle(folder, context=4)
    sequences = context_sequences(table[list(FEATURE_NAMES)].to_numpy(float)[:300], np.zeros(300, int), 4)
    np.testing.assert_array_equal(loaded.predict_sequences(sequences), bundle.predict_sequences(sequences))
    assert loaded.label_names == ("wake", "sleep") and loaded.labels == "wake-sleep"
    assert loaded.training["train_subjects"] == bundle.training["train_subjects"]


def break_bundle(folder: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "bundle.json").read_text())
    edit(meta)
    (copy / "bundle.json").write_text(json.dumps(meta))
    return copy


def test_mismatched_bundles_are_refused_clearly(trained, tmp_path):
    from model.bundle import BundleError, load_bundle

    _, folder = trained
    with pytest.raises(BundleError, match=r"uses a context of K=4 windows, expected K=8"):
        load_bundle(folder, context=8)
    with pytest.raises(BundleError, match="was trained on features"):
        load_bundle(folder, feature_names=tuple(reversed(FEATURE_NAMES)))
    old_keras = break_bundle(folder, tmp_path / "a", lambda m: m["versions"].update(keras="2.15.0"))
    with pytest.raises(BundleError, match=r"saved with Keras 2\.15\.0"):
        load_bundle(old_keras)
    wrong_k = break_bundle(folder, tmp_path / "b", lambda m: m.update(context=6))
    with pytest.raises(BundleError, match=r"model input shape \(None, 4, 11\) does not match context 6"):
        load_bundle(wrong_k)
    damaged = tmp_path / "c"
    shutil.copytree(folder, damaged)
    (damaged / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"bundle.json: invalid JSON"):
        load_bundle(damaged)
    (damaged / "model.keras").unlink()
    with pytest.raises(BundleError, match=r"model.keras: missing from the model bundle"):
        load_bundle(damaged)


@pytest.mark.parametrize("backend", ["tf-function", "litert"])
def test_live_predictors_match_the_batched_keras_model(trained, table, backend):
    from model.inference import Predictor

    bundle, folder = trained
    features = table[list(FEATURE_NAMES)].to_numpy(float)[:60]
    batched = bundle.predict_sequences(context_sequences(features, np.zeros(60, int), 4))
    predictor = Predictor(bundle if backend == "tf-function" else folder, backend=backend)
    live = np.array([predictor.predict(row) for row in features])
    np.testing.assert_allclose(live, batched, atol=1e-6)
    predictor.reset()
    np.testing.assert_allclose(
        predictor.predict(features[10]),
        bundle.predict_sequences(np.stack([features[10]] * 4)[None])[0],
        atol=1e-6,
    )


@pytest.mark.slow
def test_origin_per_run_table_trains_and_evaluates_with_task_labels(tmp_path):
    # The origin's layout: one row per whole run, its column names, the run's task as the label.
    table = surrogate_feature_table(subjects=("04", "09", "15", "19", "24", "27"), runs_per_subject=5)
    per_run = table.groupby(["subject", "task", "run"])[list(FEATURE_NAMES)].mean().reset_index()
    names = {ours: theirs for theirs, ours in ORIGIN_COLUMNS.items()}
    origin = per_run.rename(columns=names)
    origin["Task"] = "task-" + origin["Task"]
    origin.to_csv(tmp_path / "origin.csv", index=False)
    assert read_feature_table(tmp_path / "origin.csv")["task"].tolist() == per_run["task"].tolist()

    options = ["--labels", "task", "--folds", "2", "--context", "1", "--epochs", "5"]
    trained = run_cli("train", str(tmp_path / "origin.csv"), "-o", str(tmp_path / "bundle"), *options)
    assert trained.returncode == 0, trained.stderr[-2000:]
    report = (tmp_path / "bundle" / "report.md").read_text()
    assert "labels `task` (rest, sleep)" in report
    assert "| majority |" in report and "Grouped 2-fold cross-validation" in report

    evaluated = run_cli("evaluate", str(tmp_path / "bundle"), str(tmp_path / "origin.csv"), "--folds", "2")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "| majority |" in (tmp_path / "bundle" / "evaluation" / "report.md").read_text()


def test_the_shipped_default_bundle_loads_and_predicts_on_both_backends():
    from model.bundle import load_bundle
    from model.inference import Predictor

    folder = PROJECT / "model" / "default_bundle"
    bundle = load_bundle(folder, context=4)
    assert bundle.labels == "wake-sleep" and "surrogate" in bundle.training["note"]
    assert set(bundle.training["train_subjects"]).isdisjoint(bundle.training["test_subjects"])
    features = bundle.scaler.mean + bundle.scaler.scale * np.linspace(-1, 1, 11)
    keras_path, lean_path = Predictor(bundle), Predictor(folder, backend="litert")
    for _ in range(3):
        np.testing.assert_allclose(keras_path.predict(features), lean_path.predict(features), atol=1e-6)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 2_000_000  # a few hundred kB, not MB
