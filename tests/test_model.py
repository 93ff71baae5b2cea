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
    for level in ("epoch", "window"):
        assert test["fusion"][level]["balanced_accuracy"] > test["majority"][level]["balanced_accuracy"] + 0.2
        assert test["fusion"][level]["accuracy"] > test["majority"][level]["accuracy"]
    cv = report["cross_validation"]["models"]
    fusion, majority = cv["fusion"]["epoch"]["over_folds"], cv["majority"]["epoch"]["over_folds"]
    assert fusion["balanced_accuracy"]["mean"] > majority["balanced_accuracy"]["mean"]
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


MODELS = {"fusion", "eeg_only", "fmri_only", "logistic_regression", "majority"}
SUMMARY = ("accuracy", "balanced_accuracy", "cohen_kappa", "roc_auc")


def assert_every_figure(models: dict, names: set[str], subjects: set[str], cross_validated: bool = False):
    """Per epoch and per window, pooled, per subject and their spread, for every model named."""
    assert set(models) == names
    for name, levels in models.items():
        assert list(levels) == ["epoch", "window"], name
        for level, figures in levels.items():
            assert all(np.isfinite(figures[key]) for key in ("accuracy", "balanced_accuracy")), (name, level)
            assert set(figures["per_subject"]) == subjects
            for key in SUMMARY:
                spread = figures["subject_spread"][key]
                assert set(spread) == {"mean", "sd", "min", "max", "subjects"}
            accuracies = [m["accuracy"] for m in figures["per_subject"].values()]
            assert figures["subject_spread"]["accuracy"]["min"] == pytest.approx(min(accuracies))
            assert figures["subject_spread"]["accuracy"]["max"] == pytest.approx(max(accuracies))
            if cross_validated:
                assert set(figures["over_folds"]) == set(SUMMARY)
        assert levels["epoch"]["n"] < levels["window"]["n"] / 5  # about 14 windows per epoch
        assert levels["epoch"]["label_conflicts"] == 0


def test_the_report_gives_every_figure_per_epoch_window_and_subject(trained, table):
    _, folder = trained
    report = json.loads((folder / "report.json").read_text())
    assert report["epochs"]["source"] == "window midpoint"  # the fixture table has no epoch_start
    assert 14 < report["epochs"]["final_after_epoch_end_s"] <= 15  # half a 30-s window
    assert_every_figure(report["test"]["models"], MODELS, set(report["test"]["subjects"]))
    cv = report["cross_validation"]
    assert_every_figure(cv["models"], MODELS, set(table["subject"]), cross_validated=True)
    assert cv["contexts"] == [4, 4] and cv["context_choices"] == [None, None]
    text = (folder / "report.md").read_text()
    assert text.index("### Per scored 30-s epoch") < text.index("### Per window")
    assert "Per subject (epochs; balanced accuracy / Cohen's kappa" in text
    assert "an epoch's prediction is final" in text


def with_epoch_start(table: pd.DataFrame) -> pd.DataFrame:
    """The table as ``extract`` writes it now: epoch_start, and the stage of that epoch."""
    from recordings.scoring import read_scoring
    from simulators.surrogate import SHIPPED_DATASET

    table = table.copy()
    table["epoch_start"] = ((table["start"] + table["end"]) / 2 // 30) * 30
    stages = []
    for (subject, task, run), rows in table.groupby(["subject", "task", "run"], sort=False):
        scoring = read_scoring(SHIPPED_DATASET / "sourcedata" / f"sub-{subject}-sleep-stage.tsv")
        stages += [scoring[(task, run)].stage_at(onset + 1) for onset in rows["epoch_start"]]
    table["stage"] = stages
    return table


def test_evaluation_averages_each_epochs_windows_and_fits_baselines_on_seen_subjects(
    trained, table, tmp_path
):
    from model.labels import make_labels

    bundle, _ = trained
    table = with_epoch_start(table)
    report = evaluate_bundle_quietly(bundle, table, tmp_path)
    assert report["epochs"]["source"] == "epoch_start"
    test = report["test"]
    assert "fitted on the table's rows of the bundle's training subjects" in test["baselines"]
    assert_every_figure(test["models"], {"fusion", "logistic_regression", "majority"}, set(test["subjects"]))
    # The fusion model's per-epoch figures against an explicit groupby of the bundle's predictions.
    keys = table["subject"] + "|" + table["task"] + "|" + table["run"].astype(str)
    sequences = context_sequences(table[list(FEATURE_NAMES)].to_numpy(float), pd.factorize(keys)[0], 4)
    picked = (
        table["subject"].isin(test["subjects"]) & table["stage"].isin(["W", "N1", "N2", "N3"])
    ).to_numpy()
    proba = bundle.predict_sequences(sequences[picked])
    frame = table[picked].assign(p_sleep=proba[:, 1], y=make_labels(table[picked], "wake-sleep"))
    epochs = frame.groupby(["subject", "task", "run", "epoch_start"])
    truth, mean_sleep = epochs["y"].first(), epochs["p_sleep"].mean()
    assert (epochs["y"].nunique() == 1).all()
    assert test["models"]["fusion"]["epoch"]["n"] == len(truth)
    expected = ((mean_sleep > 0.5).astype(int) == truth).mean()
    assert test["models"]["fusion"]["epoch"]["accuracy"] == pytest.approx(expected)


def evaluate_bundle_quietly(bundle, table: pd.DataFrame, folder: Path, folds: int = 0) -> dict:
    from model.training import evaluate_bundle

    return evaluate_bundle(bundle, table, folder, folds=folds, progress=False)


def test_evaluation_without_epochs_reports_per_window_figures_and_says_so(trained, table, tmp_path):
    bundle, _ = trained
    report = evaluate_bundle_quietly(bundle, table.drop(columns=["start", "end"]), tmp_path)
    assert report["epochs"]["source"] is None and "per-window figures only" in report["epochs"]["note"]
    for name, levels in report["test"]["models"].items():
        assert list(levels) == ["window"], name
        assert set(levels["window"]["per_subject"]) == set(report["test"]["subjects"])
    text = (tmp_path / "report.md").read_text()
    assert "per-window figures only" in text and "### Per window" in text and "Per scored" not in text


def test_evaluation_on_new_subjects_cross_validates_its_baselines_among_them(trained, tmp_path):
    bundle, _ = trained
    others = surrogate_feature_table(subjects=("11", "14", "16"), runs_per_subject=1, seed=2)
    report = evaluate_bundle_quietly(bundle, others, tmp_path)
    assert "cross_validation" not in report  # folds=0
    assert report["test"]["subjects"] == ["11", "14", "16"]
    assert "grouped 3-fold cross-validation over the unseen subjects" in report["test"]["baselines"]
    assert_every_figure(
        report["test"]["models"], {"fusion", "logistic_regression", "majority"}, set(others["subject"])
    )


def test_bundle_round_trip_gives_identical_predictions(trained, table):
    from model.bundle import load_bundle

    bundle, folder = trained
    loaded = load_bundle(folder, context=4)
    sequences = context_sequences(table[list(FEATURE_NAMES)].to_numpy(float)[:300], np.zeros(300, int), 4)
    np.testing.assert_array_equal(loaded.predict_sequences(sequences), bundle.predict_sequences(sequences))
    assert loaded.label_names == ("wake", "sleep") and loaded.labels == "wake-sleep"
    assert loaded.training["train_subjects"] == bundle.training["train_subjects"]
    assert loaded.contract == bundle.contract


def test_a_bundle_saves_and_loads_its_feature_contract(trained, tmp_path):
    import dataclasses

    from features.config import FeatureConfig
    from model.bundle import BundleError, load_bundle
    from model.contract import run_contract
    from stream.config import WindowConfig

    bundle, folder = trained
    # Trained on a table without a contract: the definitions are unknown, and say so.
    assert bundle.contract["feature_definitions"] is None and bundle.contract["data"]["kind"] == "unknown"
    assert bundle.identity["contract"]["description"] == "feature definitions unknown"
    contract = {
        **run_contract(FeatureConfig(power_scale="log").to_dict(), WindowConfig().geometry()),
        "eeg_rate_range": [250.0, 500.0],
        "tr_range": [2.0, 2.1],
        "data": {"kind": "real", "subjects": ["01", "02", "03"], "source": "/data/ds003768"},
    }
    dataclasses.replace(bundle, contract=contract).save(tmp_path / "with_contract")
    loaded = load_bundle(tmp_path / "with_contract")
    assert loaded.contract == contract
    assert "features.power_scale = 'log'" in loaded.identity["contract"]["description"]
    no_kind = break_bundle(folder, tmp_path / "d", lambda m: m["contract"]["data"].update(kind="simulated"))
    with pytest.raises(BundleError, match=r"data\.kind must be one of"):
        load_bundle(no_kind)
    no_contract = break_bundle(folder, tmp_path / "e", lambda m: m.pop("contract"))
    with pytest.raises(BundleError, match=r"missing key\(s\) \['contract'\]"):
        load_bundle(no_contract)


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
    with pytest.raises(BundleError, match=r"model input shape \(None, 4, 12\) does not match context 6"):
        load_bundle(wrong_k)
    # A bundle of format 2 has no fMRI-present input: refused, saying to retrain it.
    format_2 = break_bundle(folder, tmp_path / "f", lambda m: m.update(format=2))
    with pytest.raises(BundleError, match=r"bundle format 2 predates predictions without fMRI.*retrain"):
        load_bundle(format_2)
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
    bundle = load_bundle(folder)
    assert bundle.labels == "wake-sleep" and "surrogate" in bundle.training["note"]
    assert bundle.context == bundle.training["context_choice"]["chosen"]  # K from the nested choice
    data = bundle.contract["data"]
    assert data["kind"] == "surrogate" and set(bundle.training["train_subjects"]) <= set(data["subjects"])
    assert set(bundle.training["train_subjects"]).isdisjoint(bundle.training["test_subjects"])
    features = bundle.scaler.mean + bundle.scaler.scale * np.linspace(-1, 1, 11)
    keras_path, lean_path = Predictor(bundle), Predictor(folder, backend="litert")
    for _ in range(3):
        np.testing.assert_allclose(keras_path.predict(features), lean_path.predict(features), atol=1e-6)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 2_000_000  # a few hundred kB, not MB


def test_the_demo_and_the_analysis_sample_use_a_subject_the_default_bundle_never_saw():
    from model.bundle import load_bundle
    from simulators.surrogate import BUNDLED_SUBJECT
    from viewer.analysis_sample import SAMPLE_CSV

    bundle = load_bundle(PROJECT / "model" / "default_bundle")
    seen = set(bundle.contract["data"]["subjects"])
    sample_subjects = {str(s).zfill(2) for s in pd.read_csv(SAMPLE_CSV, dtype={"subject": str})["subject"]}
    assert sample_subjects == {BUNDLED_SUBJECT}
    assert BUNDLED_SUBJECT not in seen, f"the demo's sub-{BUNDLED_SUBJECT} is a training subject"


def test_the_default_bundle_report_gives_epoch_and_subject_figures_beside_the_baselines():
    report = json.loads((PROJECT / "model" / "default_bundle" / "report.json").read_text())
    for section in (report["test"]["models"], report["cross_validation"]["models"]):
        assert {"fusion", "logistic_regression", "majority"} <= set(section)
    for name in ("fusion", "logistic_regression", "majority"):
        for level in ("epoch", "window"):
            figures = report["test"]["models"][name][level]
            assert figures["per_subject"] and "subject_spread" in figures
        assert report["test"]["models"][name]["epoch"]["n"] < report["test"]["models"][name]["window"]["n"]
