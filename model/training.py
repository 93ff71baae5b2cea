"""Training with subject-grouped splits, cross-validation and baselines; evaluation of bundles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.bundle import ModelBundle
from model.dataset import Scaler, context_sequences, feature_matrix, run_identity, trainable_rows
from model.evaluation import (
    classification_metrics,
    logistic_baseline,
    majority_baseline,
    summarise_folds,
    write_report,
)
from model.labels import label_names, make_labels
from model.splits import assert_disjoint_subjects, subject_folds, train_validation_test

SURROGATE_NOTE = (
    "Accuracy on surrogate (synthetic) sessions says nothing about real brains: the surrogate's "
    "features follow stage by construction."
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the ``[train]`` section of the configuration.

    Parameters
    ----------
    labels : str
        ``wake-sleep`` (default), ``stages`` or ``task``.
    context : int
        K, windows per prediction (4 by default, chosen by grouped cross-validation:
        ``docs/benchmarks.md``).
    folds : int
        Grouped cross-validation folds (0 = none).
    epochs, batch_size, patience : int
        Optimisation budget; early stopping on the validation loss.
    seed : int
        Seeds NumPy, Python and TensorFlow, and the subject shuffles.
    """

    labels: str = "wake-sleep"
    context: int = 4
    folds: int = 5
    epochs: int = 60
    batch_size: int = 128
    patience: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            label_names(self.labels)
        except ValueError as err:
            raise ValueError(f"TrainConfig.labels: {err}") from None
        checks = {
            "context": (self.context >= 1, ">= 1"),
            "folds": (self.folds == 0 or self.folds >= 2, "0 (none) or >= 2"),
            "epochs": (self.epochs >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "patience": (self.patience >= 0, ">= 0"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {allowed}, got {getattr(self, name)!r}")


@dataclass
class Prepared:
    """Model-ready rows of a feature table."""

    table: pd.DataFrame
    sequences: np.ndarray  # (n, K, 11), unscaled, only trainable rows
    current: np.ndarray  # (n, 11), the current window
    y: np.ndarray
    subjects: np.ndarray
    names: tuple[str, ...]


def prepare(table: pd.DataFrame, config: TrainConfig) -> Prepared:
    """Labels, causal context sequences and subjects of the trainable rows."""
    labels = make_labels(table, config.labels)
    features = feature_matrix(table)
    sequences = context_sequences(features, run_identity(table), config.context)
    keep = trainable_rows(table, labels)
    if keep.sum() == 0:
        raise ValueError(f"no row of the feature table has a '{config.labels}' label and finite features")
    return Prepared(
        table=table[keep].reset_index(drop=True),
        sequences=sequences[keep],
        current=features[keep],
        y=labels[keep],
        subjects=table["subject"].to_numpy()[keep],
        names=label_names(config.labels),
    )


class _EpochBar:
    """A tqdm bar over epochs, as a Keras callback."""

    def __init__(self, description: str, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        from model.keras_env import import_keras

        keras = import_keras()
        bar = tqdm(total=total, desc=description, unit="epoch", disable=not enabled, leave=False)
        base: Any = keras.callbacks.Callback

        class Callback(base):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                bar.update(1)
                if logs:
                    bar.set_postfix(loss=f"{logs.get('loss', 0):.3f}", val=f"{logs.get('val_loss', 0):.3f}")

            def on_train_end(self, logs: dict[str, float] | None = None) -> None:
                bar.close()

        self.callback = Callback()


def fit_network(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    branches: str = "both",
    progress: str | None = None,
) -> Any:
    """Train one network with class weights and early stopping; return it (best weights)."""
    from model.architecture import build_fusion_model
    from model.keras_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(config.seed)
    counts = np.bincount(y_train, minlength=n_classes)
    weights = {k: (y_train.size / (n_classes * counts[k]) if counts[k] else 0.0) for k in range(n_classes)}
    network = build_fusion_model(config.context, n_classes, branches=branches)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    ]
    if progress:
        callbacks.append(_EpochBar(progress, config.epochs, enabled=True).callback)
    network.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=weights,
        callbacks=callbacks,
        verbose=0,
        shuffle=True,
    )
    return network


def split_validation(subjects: np.ndarray, train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve validation subjects out of a training mask (all of them if only one subject)."""
    train_subjects = np.random.default_rng(seed).permutation(np.unique(subjects[train]))
    if train_subjects.size < 2:
        return train, train
    n_val = max(1, round(0.2 * train_subjects.size))
    val = train & np.isin(subjects, train_subjects[:n_val])
    return train & ~val, val


def compare_models(
    data: Prepared, train: np.ndarray, test: np.ndarray, config: TrainConfig, progress: bool
) -> dict[str, tuple[np.ndarray, Any, Scaler | None]]:
    """Fusion model, EEG-only, fMRI-only, logistic regression and majority on one split.

    Returns
    -------
    results : dict
        Model name to (probabilities on the test rows, the fusion network and scaler if any).
    """
    fit_rows, val_rows = split_validation(data.subjects, train, config.seed)
    assert_disjoint_subjects(data.subjects, fit_rows | val_rows, test)
    scaler = Scaler.fit(data.current[fit_rows])
    x = scaler.transform(data.sequences)
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


def cross_validate(data: Prepared, config: TrainConfig, progress: bool = True) -> dict:
    """Grouped k-fold cross-validation of the model and its baselines."""
    per_model: dict[str, list[dict]] = {}
    folds = subject_folds(data.subjects, config.folds, config.seed)
    for k, (train, test) in enumerate(folds):
        assert_disjoint_subjects(data.subjects, train, test)
        if progress:
            print(f"fold {k + 1}/{len(folds)}: test subjects {sorted(set(data.subjects[test]))}", flush=True)
        for name, (proba, _, _) in compare_models(data, train, test, config, progress).items():
            per_model.setdefault(name, []).append(classification_metrics(data.y[test], proba, data.names))
    return {
        "folds": config.folds,
        "models": {name: summarise_folds(folds_metrics) for name, folds_metrics in per_model.items()},
        "per_fold": per_model,
    }


def _roc_curves(y: np.ndarray, probabilities: dict[str, np.ndarray], names: tuple[str, ...]) -> dict:
    """ROC curves (one-vs-rest for more than two classes) of each model given."""
    from sklearn.metrics import auc, roc_curve

    curves = {}
    classes = [len(names) - 1] if len(names) == 2 else list(range(len(names)))
    for model_name, proba in probabilities.items():
        for k in classes:
            if (y == k).any() and (y != k).any():
                fpr, tpr, _ = roc_curve(y == k, proba[:, k])
                curves[f"{model_name}: {names[k]}"] = {
                    "fpr": fpr.tolist(),
                    "tpr": tpr.tolist(),
                    "auc": float(auc(fpr, tpr)),
                }
    return curves


def _data_summary(data: Prepared) -> dict:
    runs = data.table.groupby(["subject", "task", "run"]).ngroups
    counts = np.bincount(data.y, minlength=len(data.names))
    return {
        "windows": int(data.y.size),
        "subjects": int(np.unique(data.subjects).size),
        "runs": int(runs),
        "class_counts": {name: int(c) for name, c in zip(data.names, counts, strict=True)},
    }


def _hypnogram(data: Prepared, test: np.ndarray, proba: np.ndarray) -> dict | None:
    rows = np.flatnonzero(test)
    if rows.size == 0:
        return None
    table = data.table.iloc[rows]
    keys = table["subject"].astype(str) + " " + table["task"].astype(str) + "-" + table["run"].astype(str)
    chosen = keys.value_counts().index[0]
    pick = (keys == chosen).to_numpy()
    end = table["end"].to_numpy()[pick] if "end" in table else np.arange(pick.sum())
    return {
        "run": f"sub-{chosen}",
        "end": end.tolist(),
        "true": data.y[rows][pick].tolist(),
        "predicted": proba.argmax(axis=1)[pick].tolist(),
    }


def train_and_report(
    table: pd.DataFrame, config: TrainConfig, output: str | Path, note: str = "", progress: bool = True
) -> ModelBundle:
    """Cross-validate, train the final model on a subject split, write the bundle and its report."""
    data = prepare(table, config)
    report: dict = {
        "labels": config.labels,
        "label_names": list(data.names),
        "context": config.context,
        "note": note,
        "data": _data_summary(data),
        "config": config.__dict__,
    }
    if config.folds:
        report["cross_validation"] = cross_validate(data, config, progress)
    _, _, test = train_validation_test(data.subjects, seed=config.seed)
    results = compare_models(data, ~test, test, config, progress)
    report["test"] = {
        "subjects": sorted(str(s) for s in set(data.subjects[test])),
        "models": {
            name: classification_metrics(data.y[test], proba, data.names)
            for name, (proba, _, _) in results.items()
        },
        "roc": _roc_curves(
            data.y[test], {name: results[name][0] for name in ("fusion", "logistic_regression")}, data.names
        ),
    }
    _, network, scaler = results["fusion"]
    assert scaler is not None  # the networks are trained on scaled features
    bundle = ModelBundle(
        model=network,
        scaler=scaler,
        labels=config.labels,
        label_names=data.names,
        context=config.context,
        training={
            **report["data"],
            "train_subjects": sorted(str(s) for s in set(data.subjects[~test])),
            "test_subjects": report["test"]["subjects"],
            "config": config.__dict__,
            "note": note,
        },
        metrics={
            "test": {
                k: report["test"]["models"]["fusion"][k]
                for k in ("accuracy", "balanced_accuracy", "cohen_kappa", "roc_auc")
            }
        },
    )
    bundle.save(output)
    write_report(report, output, _hypnogram(data, test, results["fusion"][0]))
    return bundle


def evaluate_bundle(
    bundle: ModelBundle, table: pd.DataFrame, output: str | Path, folds: int = 5, progress: bool = True
) -> dict:
    """Evaluate a bundle on a feature table, with grouped cross-validated baselines in the same run.

    The bundle is scored only on subjects it was not trained on; the table's
    subjects also feed a grouped cross-validation of the same architecture and
    of the baselines.
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
        "bundle": bundle.identity,
    }
    proba = None
    if unseen.any():
        proba = bundle.predict_sequences(data.sequences[unseen])
        y = data.y[unseen]
        train_rows = ~unseen if (~unseen).any() else unseen
        report["test"] = {
            "subjects": sorted(str(s) for s in set(data.subjects[unseen])),
            "models": {
                "fusion": classification_metrics(y, proba, data.names),
                "majority": classification_metrics(
                    y, majority_baseline(data.y[train_rows], int(y.size), len(data.names)), data.names
                ),
            },
            "roc": _roc_curves(y, {"fusion": proba}, data.names),
        }
    else:
        report["test_note"] = (
            "every subject of this table was used to train the bundle: no unbiased test possible"
        )
    if folds and np.unique(data.subjects).size >= folds:
        report["cross_validation"] = cross_validate(data, config, progress)
    hypnogram = _hypnogram(data, unseen, proba) if proba is not None else None
    write_report(report, output, hypnogram)
    return report
