"""Figures on the scoring's own grid: epochs of windows, per-epoch aggregation, nested choice of K."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from model.epochs import aggregate_to_epochs, realign_labels, window_epochs
from model.labels import make_labels
from recordings.scoring import read_scoring
from simulators.surrogate import SHIPPED_DATASET
from tests.feature_tables import surrogate_feature_table


def random_windows(seed: int = 3) -> pd.DataFrame:
    """Windows of two subjects x two runs sharing the same epoch onsets, some without an epoch."""
    rng = np.random.default_rng(seed)
    rows = []
    for subject in ("01", "02"):
        for task, run in (("rest", 1), ("sleep", 1)):
            for window in range(60):
                onset = float(rng.integers(0, 8) * 30)
                rows.append(
                    {
                        "subject": subject,
                        "task": task,
                        "run": run,
                        "window": window,
                        "epoch_start": np.nan if rng.random() < 0.1 else onset,
                    }
                )
    return pd.DataFrame(rows)


def test_epoch_aggregation_matches_an_explicit_groupby():
    table = random_windows()
    rng = np.random.default_rng(4)
    proba = rng.dirichlet(np.ones(3), size=len(table))
    y = rng.integers(0, 3, size=len(table))
    epochs = window_epochs(table)
    assert epochs.source == "epoch_start"
    result = aggregate_to_epochs(epochs.ids, y, proba, table["subject"].to_numpy())

    frame = table.assign(p0=proba[:, 0], p1=proba[:, 1], p2=proba[:, 2], y=y).dropna(subset=["epoch_start"])
    grouped = frame.groupby(["subject", "task", "run", "epoch_start"])
    expected = grouped[["p0", "p1", "p2"]].mean()
    assert result.ids.size == len(expected) == grouped.ngroups
    # Match each aggregated epoch to its group through a row of it.
    first_rows = (
        pd.Series(np.arange(len(table)))[epochs.ids >= 0].groupby(epochs.ids[epochs.ids >= 0]).first()
    )
    for k, epoch_id in enumerate(result.ids):
        row = table.iloc[first_rows[epoch_id]]
        key = (row["subject"], row["task"], row["run"], row["epoch_start"])
        np.testing.assert_allclose(result.proba[k], expected.loc[key].to_numpy(), rtol=1e-12)
        members = grouped.get_group(key)
        assert result.windows[k] == len(members)
        assert result.subjects[k] == row["subject"]
        counts = np.bincount(members["y"], minlength=3)
        assert counts[result.y[k]] == counts.max()  # the most frequent label
    assert result.label_conflicts == sum((np.bincount(g["y"]) > 0).sum() > 1 for _, g in grouped)


def test_epochs_never_mix_runs_or_subjects():
    table = random_windows()
    for candidate in (table, table.drop(columns="epoch_start").assign(start=table["window"] * 2.1)):
        if "start" in candidate:
            candidate = candidate.assign(end=candidate["start"] + 30)
        epochs = window_epochs(candidate)
        known = epochs.ids >= 0
        identity = candidate["subject"] + "|" + candidate["task"] + "|" + candidate["run"].astype(str)
        per_epoch = pd.Series(identity[known].to_numpy()).groupby(epochs.ids[known]).nunique()
        assert (per_epoch == 1).all()
        onsets = pd.Series(epochs.onsets[known]).groupby(epochs.ids[known]).nunique()
        assert (onsets == 1).all()
        # The same onset in another run or subject is another epoch.
        assert pd.Series(epochs.ids[known]).nunique() == len(
            set(zip(identity[known], epochs.onsets[known], strict=True))
        )
    assert window_epochs(table.drop(columns="epoch_start")).source is None


def test_midpoint_epochs_hold_the_majority_of_the_window_and_labels_follow_them():
    # A table without epoch_start, written by the rule "stage of the epoch in which the window ends".
    table = surrogate_feature_table(subjects=("04", "09"), runs_per_subject=2)
    epochs = window_epochs(table)
    assert epochs.source == "window midpoint"
    inside = np.minimum(table["end"], epochs.onsets + 30) - np.maximum(table["start"], epochs.onsets)
    assert (inside >= 15).all()  # the midpoint epoch holds at least half of the window's EEG
    labels = realign_labels(table, make_labels(table, "stages"))
    truth = []
    for _, row in table.iterrows():
        scoring = read_scoring(SHIPPED_DATASET / "sourcedata" / f"sub-{row['subject']}-sleep-stage.tsv")
        truth.append(scoring[(row["task"], row["run"])].stage_at((row["start"] + row["end"]) / 2))
    expected = make_labels(pd.DataFrame({"stage": truth}), "stages")
    labelled = labels >= 0
    assert labelled.mean() > 0.9
    np.testing.assert_array_equal(labels[labelled], expected[labelled])
    assert (labels != make_labels(table, "stages")).mean() > 0.05  # the old rule differed


@pytest.fixture(scope="module")
def small_table() -> pd.DataFrame:
    return surrogate_feature_table(subjects=("04", "09", "15", "19", "24"), runs_per_subject=1)


def test_the_nested_choice_of_k_never_sees_the_test_subjects(small_table):
    from model.context_choice import choose_context
    from model.fitting import prepare
    from model.splits import subject_folds
    from model.training import TrainConfig

    config = TrainConfig(
        context=0, context_candidates=(1, 3), inner_folds=2, inner_epochs=2, epochs=2, patience=1
    )
    data = prepare(small_table, config)
    train, test = subject_folds(data.subjects, 2, seed=5)[0]
    choice = choose_context(data, train, config)
    assert set(choice.subjects) == set(data.subjects[train].tolist())
    assert set(choice.subjects).isdisjoint(data.subjects[test].tolist())
    assert choice.chosen in (1, 3) and set(choice.scores) == {1, 3}
    assert choice.level == "epoch" and choice.inner_folds == 2
    for score in choice.scores.values():
        assert len(score["folds"]) == 2
    with pytest.raises(ValueError, match="at least 2 training subjects, found 1"):
        choose_context(data, data.subjects == "04", config)


def test_train_config_checks_the_nested_choice_settings():
    from model.training import TrainConfig

    assert TrainConfig(context=0).chooses_context and not TrainConfig().chooses_context
    assert TrainConfig(context_candidates=[2, 4]).context_candidates == (2, 4)  # a TOML list
    for values, message in (
        ({"context": -1}, "context must be 0 (choose by nested cross-validation) or >= 1, got -1"),
        ({"context_candidates": ()}, "context_candidates must be distinct integers >= 1"),
        ({"context_candidates": (2, 2)}, "context_candidates must be distinct integers >= 1"),
        ({"inner_folds": 1}, "inner_folds must be >= 2, got 1"),
        ({"inner_epochs": 0}, "inner_epochs must be >= 1, got 0"),
    ):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            TrainConfig(**values)


@pytest.mark.slow
def test_training_with_a_chosen_k_records_every_choice_and_its_inner_scores(small_table, tmp_path):
    from model.bundle import load_bundle
    from model.training import TrainConfig, train_and_report

    config = TrainConfig(
        context=0, context_candidates=(1, 3), inner_folds=2, inner_epochs=2, folds=2, epochs=3, patience=1
    )
    bundle = train_and_report(small_table, config, tmp_path, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    cv = report["cross_validation"]
    assert len(cv["contexts"]) == len(cv["context_choices"]) == 2
    for tested, context, choice in zip(
        cv["fold_subjects"], cv["contexts"], cv["context_choices"], strict=True
    ):
        assert choice["chosen"] == context and context in (1, 3)
        assert set(choice["subjects"]).isdisjoint(tested)
        assert set(choice["scores"]) == {"1", "3"}
    final = report["context_choice"]
    assert set(final["subjects"]) == set(bundle.training["train_subjects"])
    assert set(final["subjects"]).isdisjoint(report["test"]["subjects"])
    assert report["context"] == final["chosen"] == bundle.context
    assert load_bundle(tmp_path).context == final["chosen"]
    assert bundle.training["context_choice"]["chosen"] == final["chosen"]
    text = (tmp_path / "report.md").read_text()
    assert f"Final model: K = {final['chosen']} chosen by inner 2-fold cross-validation" in text
    assert "- Fold 1: K = " in text and "- Fold 2: K = " in text
