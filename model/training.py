"""Training with subject-grouped splits, cross-validation and baselines; evaluation of bundles.

Every figure is given per scored 30-s epoch (window predictions averaged over the epoch's windows,
:mod:`model.epochs`) and per window, pooled and per subject with the spread across subjects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.stages import EPOCH_SECONDS
from model.bundle import ModelBundle
from model.context_choice import ContextChoice, choose_context
from model.contract import unknown_contract
from model.dataset import FMRI_DROPOUT, Scaler
from model.epochs import aggregate_to_epochs
from model.evaluation import (
    SUMMARY_KEYS,
    YASA_COLUMN,
    assess,
    assess_yasa,
    logistic_baseline,
    majority_baseline,
    summarise_folds,
    yasa_cross_validation,
)
from model.fitting import Prepared, fit_network, prepare, split_validation
from model.labels import label_names
from model.report import write_report
from model.splits import assert_disjoint_subjects, subject_folds, train_validation_test

__all__ = ["Prepared", "TrainConfig", "evaluate_bundle", "fit_network", "prepare", "train_and_report"]

SURROGATE_NOTE = (
    "Accuracy on surrogate (synthetic) sessions says nothing about real brains: the surrogate's "
    "features follow stage by construction."
)
BASELINE_FOLDS = 5
"""Folds of the baselines' cross-validation when a table holds none of a bundle's training subjects."""
MODELS = ("fusion", "eeg_only", "fmri_only", "logistic_regression", "majority")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the ``[train]`` section of the configuration.

    Parameters
    ----------
    labels : str
        ``wake-sleep`` (default), ``stages`` or ``task``.
    context : int
        K, windows per prediction (4 by default); 0 chooses K among ``context_candidates`` by an
        inner subject-grouped cross-validation on the training subjects of each split (nested:
        the test subjects never take part in the choice).
    context_candidates : tuple of int
        The K values a choice (``context = 0``) tries.
    inner_folds : int
        Folds of the inner cross-validation (fewer if there are fewer training subjects).
    inner_epochs : int
        Most epochs of each inner fit (the fusion model only; early stopping as usual).
    folds : int
        Grouped cross-validation folds (0 = none).
    epochs, batch_size, patience : int
        Optimisation budget; early stopping on the validation loss.
    seed : int
        Seeds NumPy, Python and TensorFlow, and the subject shuffles.
    fmri_dropout : float
        Modality dropout of the fusion model: the share of training sequences whose fMRI is masked
        (:class:`model.architecture.ModalityDropout`), so that the model also predicts without fMRI.
    """

    labels: str = "wake-sleep"
    context: int = 4
    context_candidates: tuple[int, ...] = (1, 2, 4, 8)
    inner_folds: int = 3
    inner_epochs: int = 20
    folds: int = 5
    epochs: int = 60
    batch_size: int = 128
    patience: int = 8
    seed: int = 0
    fmri_dropout: float = FMRI_DROPOUT

    def __post_init__(self) -> None:
        try:
            label_names(self.labels)
        except ValueError as err:
            raise ValueError(f"TrainConfig.labels: {err}") from None
        candidates = tuple(self.context_candidates)
        checks = {
            "context": (self.context >= 0, "0 (choose by nested cross-validation) or >= 1"),
            "context_candidates": (
                len(candidates) > 0 and all(isinstance(k, int) and k >= 1 for k in candidates)
                and len(set(candidates)) == len(candidates),
                "distinct integers >= 1, at least one",
            ),
            "inner_folds": (self.inner_folds >= 2, ">= 2"),
            "inner_epochs": (self.inner_epochs >= 1, ">= 1"),
            "folds": (self.folds == 0 or self.folds >= 2, "0 (none) or >= 2"),
            "epochs": (self.epochs >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "patience": (self.patience >= 0, ">= 0"),
            "fmri_dropout": (0 <= self.fmri_dropout < 1, "in [0, 1)"),
        }  # fmt: skip
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {allowed}, got {getattr(self, name)!r}")
        object.__setattr__(self, "context_candidates", candidates)

    @property
    def chooses_context(self) -> bool:
        """Whether K is chosen by nested cross-validation rather than fixed."""
        return self.context == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the bundle and the report)."""
        return {**self.__dict__, "context_candidates": list(self.context_candidates)}


def context_for(data: Prepared, train: np.ndarray, config: TrainConfig) -> tuple[int, ContextChoice | None]:
    """The fixed K, or the K chosen on the training rows alone."""
    if not config.chooses_context:
        return config.context, None
    choice = choose_context(data, train, config)
    return choice.chosen, choice


def compare_models(
    data: Prepared, train: np.ndarray, test: np.ndarray, config: TrainConfig, context: int, progress: bool
) -> dict[str, tuple[np.ndarray, Any, Scaler | None]]:
    """Fusion model, EEG-only, fMRI-only, logistic regression and majority on one split.

    Returns
    -------
    results : dict
        Model name to (probabilities on the test rows, the network and scaler if any).
    """
    fit_rows, val_rows = split_validation(data.subjects, train, config.seed)
    assert_disjoint_subjects(data.subjects, fit_rows | val_rows, test)
    scaler = Scaler.fit(data.current[fit_rows])
    x = scaler.transform(data.sequences(context))
    n_classes = len(data.names)
    results: dict[str, tuple[np.ndarray, Any, Scaler | None]] = {}
    for name, branches in (("fusion", "both"), ("eeg_only", "eeg"), ("fmri_only", "fmri")):
        network = fit_network(
            x[fit_rows], data.y[fit_rows], x[val_rows], data.y[val_rows], n_classes, config, branches,
            progress=f"{name:>9}" if progress else None,
        )  # fmt: skip
        results[name] = (np.asarray(network.predict(x[test], verbose=0)), network, scaler)
    current = scaler.transform(data.current)
    results["logistic_regression"] = (
        logistic_baseline(current[train], data.y[train], current[test], n_classes),
        None,
        None,
    )
    results["majority"] = (majority_baseline(data.y[train], int(test.sum()), n_classes), None, None)
    return results


def _assess(data: Prepared, rows: np.ndarray, proba: np.ndarray) -> dict:
    return assess(
        data.y[rows], proba, data.subjects[rows], data.epochs[rows], data.names, data.epoch_source is not None
    )


def _without_subjects(levels: dict) -> dict:
    return {
        level: {k: v for k, v in figures.items() if k not in ("per_subject", "subject_spread")}
        for level, figures in levels.items()
    }


@dataclass
class FoldOutcome:
    """One fold of a cross-validation: its K (and how it was chosen) and every model's probabilities."""

    context: int
    choice: dict | None
    probabilities: dict[str, np.ndarray]


FoldMap = Callable[[Callable[..., FoldOutcome], list[tuple[Any, ...]]], list[FoldOutcome]]
"""Calls a function on each tuple of arguments and returns the results in order: the folds of a
cross-validation run one after the other by default, or side by side on a cluster
(:func:`pipeline.cluster.fold_map`)."""


def run_fold(
    data: Prepared, train: np.ndarray, test: np.ndarray, config: TrainConfig, title: str | None = None
) -> FoldOutcome:
    """Choose K on the training rows (if asked), fit every model, predict the test rows.

    With a ``title`` (e.g. "fold 1/5: test subjects [...]"), print it and a progress bar per model.
    """
    assert_disjoint_subjects(data.subjects, train, test)
    progress = title is not None
    if progress:
        print(title, flush=True)
    context, choice = context_for(data, train, config)
    results = compare_models(data, train, test, config, context, progress)
    probabilities = {name: proba for name, (proba, _, _) in results.items()}
    return FoldOutcome(context, choice.as_dict() if choice else None, probabilities)


def _in_turn(function: Callable[..., FoldOutcome], arguments: list[tuple[Any, ...]]) -> list[FoldOutcome]:
    return [function(*args) for args in arguments]


def cross_validate(
    data: Prepared, config: TrainConfig, progress: bool = True, fold_map: FoldMap | None = None
) -> dict:
    """Grouped k-fold cross-validation of the model and its baselines (K chosen per fold if asked).

    Every subject is tested exactly once, so the out-of-fold predictions give per-subject figures
    for every subject of the table.

    Parameters
    ----------
    data : Prepared
        The table's windows.
    config : TrainConfig
        The training settings (``folds``, ``seed``, ...).
    progress : bool
        Print the folds (and, run in this process, a progress bar per model).
    fold_map : callable | None
        Runs the folds (:data:`FoldMap`); one after the other in this process by default.
    """
    folds = subject_folds(data.subjects, config.folds, config.seed)
    fold_subjects = [sorted(str(s) for s in set(data.subjects[test])) for _, test in folds]
    titles = [f"fold {k + 1}/{len(folds)}: test subjects {tested}" for k, tested in enumerate(fold_subjects)]
    if fold_map is None:
        shown = titles if progress else [None] * len(folds)
        arguments = [(data, *fold, config, title) for fold, title in zip(folds, shown, strict=True)]
        outcomes = _in_turn(run_fold, arguments)
    else:
        if progress:
            print("\n".join(titles) + f"\n(the {len(folds)} folds run side by side)", flush=True)
        outcomes = fold_map(run_fold, [(data, *fold, config) for fold in folds])
    n_classes = len(data.names)
    out_of_fold = {name: np.full((data.y.size, n_classes), np.nan) for name in MODELS}
    per_fold: dict[str, list[dict]] = {name: [] for name in MODELS}
    for (_, test), outcome in zip(folds, outcomes, strict=True):
        for name, proba in outcome.probabilities.items():
            out_of_fold[name][test] = proba
            per_fold[name].append(_without_subjects(_assess(data, test, proba)))
    contexts = [outcome.context for outcome in outcomes]
    choices = [outcome.choice for outcome in outcomes]
    models = {}
    for name in MODELS:
        pooled = _assess(data, np.ones(data.y.size, dtype=bool), out_of_fold[name])
        models[name] = {
            level: {**figures, "over_folds": summarise_folds([fold[level] for fold in per_fold[name]])}
            for level, figures in pooled.items()
        }
    stages = _yasa_stages(data)
    if stages is not None:
        models["yasa"] = yasa_cross_validation(
            stages, data.y, data.subjects, data.epochs, data.names, [test for _, test in folds]
        )
    return {
        "folds": config.folds,
        "fold_subjects": fold_subjects,
        "contexts": contexts,
        "context_choices": choices,
        "models": models,
        "per_fold": per_fold,
    }


def _level_predictions(
    data: Prepared, rows: np.ndarray, proba: np.ndarray
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray | None]:
    """Per epoch when epochs are known, else per window: (level, y, proba, epoch onsets or None)."""
    if data.epoch_source is None:
        return "window", data.y[rows], proba, None
    epochs = aggregate_to_epochs(data.epochs[rows], data.y[rows], proba, data.subjects[rows])
    onsets = pd.Series(data.epoch_onsets[rows]).groupby(data.epochs[rows]).first()
    return "epoch", epochs.y, epochs.proba, onsets.reindex(epochs.ids).to_numpy()


def _roc_curves(data: Prepared, rows: np.ndarray, probabilities: dict[str, np.ndarray]) -> dict:
    """ROC curves (one-vs-rest for more than two classes), per epoch when epochs are known."""
    from sklearn.metrics import auc, roc_curve

    names = data.names
    curves: dict[str, Any] = {}
    classes = [len(names) - 1] if len(names) == 2 else list(range(len(names)))
    level = "window"
    for model_name, window_proba in probabilities.items():
        level, y, proba, _ = _level_predictions(data, rows, window_proba)
        for k in classes:
            if (y == k).any() and (y != k).any():
                fpr, tpr, _ = roc_curve(y == k, proba[:, k])
                curves[f"{model_name}: {names[k]}"] = {
                    "fpr": fpr.tolist(),
                    "tpr": tpr.tolist(),
                    "auc": float(auc(fpr, tpr)),
                }
    return {"level": level, "curves": curves}


def _data_summary(data: Prepared) -> dict:
    runs = data.table.groupby(["subject", "task", "run"]).ngroups
    counts = np.bincount(data.y, minlength=len(data.names))
    summary = {
        "windows": int(data.y.size),
        "subjects": int(np.unique(data.subjects).size),
        "runs": int(runs),
        "class_counts": {name: int(c) for name, c in zip(data.names, counts, strict=True)},
    }
    if data.epoch_source is not None:
        summary["epochs"] = int(np.unique(data.epochs[data.epochs >= 0]).size)
    return summary


def _epoch_summary(data: Prepared) -> dict:
    """Where the epochs come from and when an epoch's prediction is final."""
    if data.epoch_source is None:
        return {
            "source": None,
            "note": "the table has neither 'epoch_start' nor window 'start' and 'end': "
            "per-window figures only",
        }
    summary: dict[str, Any] = {
        "source": data.epoch_source,
        "rule": "a window belongs to the scored 30-s epoch holding the majority of its EEG; an epoch's "
        "prediction is the mean of its windows' class probabilities",
    }
    if data.epoch_source == "window midpoint":
        summary["note"] = (
            "no 'epoch_start' column: each window's epoch is the one holding its midpoint, and its label "
            "that epoch's stage, read from the windows that end in it (the rule such tables were written by)"
        )
    if "end" in data.table:
        known = data.epochs >= 0
        late = data.table["end"].to_numpy(float)[known] - (data.epoch_onsets[known] + EPOCH_SECONDS)
        if late.size:
            summary["final_after_epoch_end_s"] = float(max(0.0, late.max()))
    return summary


def _hypnogram(data: Prepared, test: np.ndarray, proba: np.ndarray) -> dict | None:
    """True and predicted classes of the held-out run with most windows, per epoch when known."""
    rows = np.flatnonzero(test)
    if rows.size == 0:
        return None
    table = data.table.iloc[rows]
    keys = table["subject"].astype(str) + " " + table["task"].astype(str) + "-" + table["run"].astype(str)
    chosen = keys.value_counts().index[0]
    pick = (keys == chosen).to_numpy()
    mask = np.zeros(test.size, dtype=bool)
    mask[rows[pick]] = True
    level, y, run_proba, onsets = _level_predictions(data, mask, proba[pick])
    if onsets is not None:
        order = np.argsort(onsets)
        time, y, run_proba = onsets[order], y[order], run_proba[order]
    else:
        time = table["end"].to_numpy()[pick] if "end" in table else np.arange(pick.sum())
    return {
        "run": f"sub-{chosen}",
        "level": level,
        "time": np.asarray(time, float).tolist(),
        "true": np.asarray(y).tolist(),
        "predicted": run_proba.argmax(axis=1).tolist(),
    }


def _yasa_stages(data: Prepared) -> np.ndarray | None:
    """YASA's stage of each trainable row's epoch, when the table was extracted with YASA."""
    return data.table[YASA_COLUMN].to_numpy() if YASA_COLUMN in data.table else None


def _test_section(data: Prepared, test: np.ndarray, probabilities: dict[str, np.ndarray]) -> dict:
    stages = _yasa_stages(data)
    models = {name: _assess(data, test, proba) for name, proba in probabilities.items()}
    if stages is not None:  # a table extracted with YASA (see pipeline.offline.extract_recordings)
        models["yasa"] = assess_yasa(
            stages[test], data.y[test], data.subjects[test], data.epochs[test], data.names
        )
    return {
        "subjects": sorted(str(s) for s in set(data.subjects[test])),
        "models": models,
        "roc": _roc_curves(
            data, test, {k: probabilities[k] for k in ("fusion", "logistic_regression") if k in probabilities}
        ),
    }


def train_and_report(
    table: pd.DataFrame,
    config: TrainConfig,
    output: str | Path,
    note: str = "",
    progress: bool = True,
    contract: dict | None = None,
    fold_map: FoldMap | None = None,
) -> ModelBundle:
    """Cross-validate, train the final model on a subject split, write the bundle and its report.

    Parameters
    ----------
    table : pandas.DataFrame
        A feature table.
    config : TrainConfig
        The training settings.
    output : path-like
        The bundle folder.
    note : str
        A sentence stored in the bundle and its report.
    progress : bool
        Print the folds and a progress bar per model.
    contract : dict | None
        The feature contract stored in the bundle (:class:`model.bundle.ModelBundle`).
    fold_map : callable | None
        Runs the cross-validation's folds (see :func:`cross_validate`).

    Returns
    -------
    bundle : ModelBundle
    """
    data = prepare(table, config)
    report: dict = {
        "labels": config.labels,
        "label_names": list(data.names),
        "context": config.context,
        "note": note,
        "data": _data_summary(data),
        "epochs": _epoch_summary(data),
        "config": config.as_dict(),
    }
    if config.folds:
        report["cross_validation"] = cross_validate(data, config, progress, fold_map)
    _, _, test = train_validation_test(data.subjects, seed=config.seed)
    context, choice = context_for(data, ~test, config)
    report["context"] = context
    if choice is not None:
        report["context_choice"] = choice.as_dict()
    results = compare_models(data, ~test, test, config, context, progress)
    report["test"] = _test_section(data, test, {name: proba for name, (proba, _, _) in results.items()})
    _, network, scaler = results["fusion"]
    assert scaler is not None  # the networks are trained on scaled features
    fusion = report["test"]["models"]["fusion"]
    bundle = ModelBundle(
        model=network,
        scaler=scaler,
        labels=config.labels,
        label_names=data.names,
        context=context,
        training={
            **report["data"],
            "train_subjects": sorted(str(s) for s in set(data.subjects[~test])),
            "test_subjects": report["test"]["subjects"],
            "config": config.as_dict(),
            **({"context_choice": report["context_choice"]} if choice else {}),
            "note": note,
        },
        metrics={"test": {level: {key: fusion[level][key] for key in SUMMARY_KEYS} for level in fusion}},
        contract=unknown_contract() if contract is None else contract,
    )
    bundle.save(output)
    write_report(report, output, _hypnogram(data, test, results["fusion"][0]))
    return bundle


def _unseen_baselines(data: Prepared, unseen: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """Logistic regression and majority for the unseen rows, never fitted on them.

    Fitted on the table's rows of the bundle's training subjects when the table holds any (the
    bundle's own training data); otherwise by grouped cross-validation over the unseen subjects
    (up to :data:`BASELINE_FOLDS` folds; each subject scored by baselines fitted on other subjects).
    """
    n_classes = len(data.names)
    seen = ~unseen
    if seen.any():
        scaler = Scaler.fit(data.current[seen])
        current = scaler.transform(data.current)
        return {
            "logistic_regression": logistic_baseline(current[seen], data.y[seen], current[unseen], n_classes),
            "majority": majority_baseline(data.y[seen], int(unseen.sum()), n_classes),
        }, "logistic regression and majority fitted on the table's rows of the bundle's training subjects"
    subjects = data.subjects[unseen]
    n_folds = min(BASELINE_FOLDS, np.unique(subjects).size)
    if n_folds < 2:
        return {}, "one unseen subject and no training subject in the table: no baseline can be fitted"
    x, y = data.current[unseen], data.y[unseen]
    out = {name: np.zeros((y.size, n_classes)) for name in ("logistic_regression", "majority")}
    for train, test in subject_folds(subjects, n_folds, seed=0):
        scaler = Scaler.fit(x[train])
        out["logistic_regression"][test] = logistic_baseline(
            scaler.transform(x[train]), y[train], scaler.transform(x[test]), n_classes
        )
        out["majority"][test] = majority_baseline(y[train], int(test.sum()), n_classes)
    return out, (
        "the table holds none of the bundle's training subjects: logistic regression and majority by "
        f"grouped {n_folds}-fold cross-validation over the unseen subjects (each scored by baselines "
        "fitted on other subjects)"
    )


def evaluate_bundle(
    bundle: ModelBundle,
    table: pd.DataFrame,
    output: str | Path,
    folds: int = 5,
    progress: bool = True,
    fold_map: FoldMap | None = None,
) -> dict:
    """Evaluate a bundle on a feature table, with baselines and a grouped cross-validation.

    The bundle is scored only on subjects it was not trained on, beside logistic regression and
    majority baselines that never see those subjects (:func:`_unseen_baselines`); the table's
    subjects also feed a grouped cross-validation of the same architecture (the bundle's K) and of
    the baselines (its folds run by ``fold_map``, see :func:`cross_validate`).
    """
    config = TrainConfig(labels=bundle.labels, context=bundle.context, folds=folds)
    data = prepare(table, config)
    seen = set(bundle.training.get("train_subjects", []))
    unseen = ~np.isin(data.subjects.astype(str), list(seen))
    report: dict = {
        "labels": bundle.labels,
        "label_names": list(data.names),
        "context": bundle.context,
        "note": bundle.training.get("note", ""),
        "data": _data_summary(data),
        "epochs": _epoch_summary(data),
        "bundle": bundle.identity,
    }
    proba = None
    if unseen.any():
        proba = bundle.predict_sequences(data.sequences(bundle.context)[unseen])
        baselines, how = _unseen_baselines(data, unseen)
        report["test"] = _test_section(data, unseen, {"fusion": proba, **baselines})
        report["test"]["baselines"] = how
    else:
        report["test_note"] = (
            "every subject of this table was used to train the bundle: no unbiased test possible"
        )
    if folds and np.unique(data.subjects).size >= folds:
        report["cross_validation"] = cross_validate(data, config, progress, fold_map)
    hypnogram = _hypnogram(data, unseen, proba) if proba is not None else None
    write_report(report, output, hypnogram)
    return report
