"""A model bundle applied to a table of feature rows: predictions, scores and permutation importance.

Rows are consecutive windows in table order, grouped into runs (:func:`run_groups`). Each row is
predicted with its K-window causal context (:func:`model.dataset.context_sequences`): at the start of
a group the group's first row is repeated to fill the context, exactly as training does and as the
live :class:`model.inference.Predictor` does after a (re)start.

The table comes as plain columns: a feature matrix in :data:`features.names.FEATURE_NAMES` order and
``metadata``, a mapping of column name (``subject``, ``task``, ``run``, ``stage``, ``label``) to the
row values as text, for the columns present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.stages import SLEEP_STAGES, canonical_stage
from features.names import FEATURE_NAMES
from model.bundle import ModelBundle
from model.dataset import context_sequences
from model.evaluation import balanced_accuracy
from model.labels import label_names as scheme_names
from model.labels import make_labels

Metadata = Mapping[str, Sequence[str]]
"""Column name -> the text value of every row."""

GROUP_COLUMNS: tuple[str, ...] = ("subject", "task", "run")
IMPORTANCE_SEED = 0


def run_groups(metadata: Metadata, n_rows: int) -> tuple[np.ndarray, list[str]]:
    """The run group of every row, and the group names.

    A new group starts wherever the values of the ``subject``, ``task`` and ``run`` columns (those
    present) differ from the row before; rows with the same values belong to the same group.

    Parameters
    ----------
    metadata : Mapping of str to sequence of str
        The table's metadata columns.
    n_rows : int
        Number of rows (one group, ``"all rows"``, when no group column is present).

    Returns
    -------
    groups : np.ndarray of int64, shape (n_rows,)
        Index into ``names`` of every row.
    names : list of str
        The values of each group, joined by ``" / "``, in order of first appearance.
    """
    keys = [metadata[column] for column in GROUP_COLUMNS if column in metadata]
    if not keys:
        return np.zeros(n_rows, dtype=np.int64), ["all rows"]
    joined = [" / ".join(values) for values in zip(*keys, strict=True)]
    codes, names = pd.factorize(pd.Series(joined, dtype=object))
    return codes.astype(np.int64), [str(name) for name in names]


def predict_table(bundle: ModelBundle, features: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Class probabilities of every row, with its causal K-window context within its group.

    Parameters
    ----------
    bundle : ModelBundle
        The model, its scaler and its context K.
    features : np.ndarray, shape (n_rows, 11)
        Unscaled features in :data:`features.names.FEATURE_NAMES` order.
    groups : np.ndarray, shape (n_rows,)
        Run group of every row (:func:`run_groups`).

    Returns
    -------
    probabilities : np.ndarray of float64, shape (n_rows, n_classes)
    """
    sequences = context_sequences(features, groups, bundle.context)
    return np.asarray(bundle.predict_sequences(sequences), dtype=np.float64)


def scored_labels(
    metadata: Metadata, scheme: str, label_names: tuple[str, ...]
) -> tuple[np.ndarray, str] | None:
    """Class index of every row from a scored column (-1 where unscored), and the column's name.

    A ``label`` column holding the bundle's class names (any case) is used first; otherwise
    ``stage`` (aliases as in :func:`core.stages.canonical_stage`) for the stage-based schemes, or
    ``task`` for the ``task`` scheme, mapped by :func:`model.labels.make_labels`.

    Parameters
    ----------
    metadata : Mapping of str to sequence of str
        The table's metadata columns.
    scheme, label_names : str, tuple of str
        The bundle's label scheme and class names.

    Returns
    -------
    scored : tuple of (np.ndarray of int, str), or None
        None when no row has a usable label. The stage in its own classes is :func:`scored_stages`.
    """
    if "label" in metadata:
        index = {name.lower(): i for i, name in enumerate(label_names)}
        labels = np.array([index.get(value.lower(), -1) for value in metadata["label"]], dtype=int)
        if (labels >= 0).any():
            return labels, "label"
    column = "task" if scheme == "task" else "stage"
    if column not in metadata:
        return None
    if column == "task":
        values = [v.lower().replace("task-", "") for v in metadata["task"]]
    else:
        values = [canonical_stage(v) for v in metadata["stage"]]
    try:
        labels = make_labels(pd.DataFrame({column: values}), scheme)
    except ValueError:
        return None
    return (labels, column) if (labels >= 0).any() else None


def stage_mapping(scheme: str, label_names: tuple[str, ...]) -> dict[str, str | None]:
    """The bundle's class each scored stage counts as (None: the stage has no class in the scheme).

    The mapping of :func:`model.labels.make_labels`: for ``wake-sleep`` W is wake and N1, N2, N3 are
    sleep (R too); for ``stages`` each stage is its own class (a stage the bundle has no class for maps
    to None); for the ``task`` scheme (labelled by the task column) every stage maps to None.

    Parameters
    ----------
    scheme, label_names : str, tuple of str
        The bundle's label scheme and class names.

    Returns
    -------
    mapping : dict
        Every stage of :data:`core.stages.SLEEP_STAGES` to a class name or None.
    """
    if scheme == "task":
        return dict.fromkeys(SLEEP_STAGES)
    classes = make_labels(pd.DataFrame({"stage": list(SLEEP_STAGES)}), scheme)
    names = scheme_names(scheme)
    # A class the bundle lacks (R of a four-stage bundle of an older format) maps to None.
    return {
        stage: names[c] if c >= 0 and names[c] in label_names else None
        for stage, c in zip(SLEEP_STAGES, classes, strict=True)
    }


def scored_stages(
    metadata: Metadata, predicted: np.ndarray, scheme: str, label_names: tuple[str, ...]
) -> dict[str, Any] | None:
    """The scored stage of every row in its own classes, and how each stage was predicted.

    Parameters
    ----------
    metadata : Mapping of str to sequence of str
        The table's metadata columns; ``stage`` is read (aliases as in
        :func:`core.stages.canonical_stage`).
    predicted : numpy.ndarray
        Predicted class index (into ``label_names``) of every row.
    scheme, label_names : str, tuple of str
        The bundle's label scheme and class names.

    Returns
    -------
    stages : dict or None
        ``column`` ("stage"); ``names``: the stages present, in the order W, N1, N2, N3, R; ``index``:
        the stage of every row (index into ``names``, -1 where the row has no known stage);
        ``counts`` per stage; ``unscored_rows``; ``confusion``: rows per stage (rows of the table, in
        the order of ``names``) and predicted class (columns, in the order of ``label_names``);
        ``maps_to``: the bundle's class each present stage counts as in the accuracy (None: not
        counted). None when there is no stage column or no row with a known stage.
    """
    if "stage" not in metadata:
        return None
    values = [canonical_stage(v) for v in metadata["stage"]]
    present = set(values)
    names = [stage for stage in SLEEP_STAGES if stage in present]
    if not names:
        return None
    position = {stage: i for i, stage in enumerate(names)}
    index = np.array([position.get(v, -1) for v in values], dtype=np.int64)
    confusion = np.zeros((len(names), len(label_names)), dtype=np.int64)
    scored = index >= 0
    np.add.at(confusion, (index[scored], np.asarray(predicted)[scored]), 1)
    mapping = stage_mapping(scheme, label_names)
    return {
        "column": "stage",
        "names": names,
        "index": index.tolist(),
        "counts": {stage: int(np.sum(index == i)) for i, stage in enumerate(names)},
        "unscored_rows": int(np.sum(~scored)),
        "confusion": confusion.tolist(),
        "maps_to": {stage: mapping[stage] for stage in names},
    }


def accuracy_description(column: str, scheme: str, label_names: tuple[str, ...]) -> str:
    """What the accuracy against a scored column is measured against, in words.

    Parameters
    ----------
    column : str
        The scored column (:func:`scored_labels`).
    scheme, label_names : str, tuple of str
        The bundle's label scheme and class names.

    Returns
    -------
    description : str
        E.g. "against the scored stage mapped to the bundle's classes (W → wake; N1, N2, N3 → sleep)".
    """
    classes = " / ".join(label_names)
    if column != "stage":
        return f"against the {column} column, in the bundle's classes ({classes})"
    groups: dict[str, list[str]] = {}
    for stage, name in stage_mapping(scheme, label_names).items():
        if name is not None:
            groups.setdefault(name, []).append(stage)
    mapped = "; ".join(f"{', '.join(stages)} → {name}" for name, stages in groups.items())
    return f"against the scored stage mapped to the bundle's classes ({mapped})"


def agreement(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy and balanced accuracy of the predictions on the labelled rows.

    Parameters
    ----------
    labels : np.ndarray of int
        Class index of every row, -1 where unlabelled (at least one row labelled).
    predicted : np.ndarray of int
        Predicted class index of every row.

    Returns
    -------
    agreement : dict
        ``labelled_rows``, ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present
        among the labels, :func:`model.evaluation.balanced_accuracy`).
    """
    labelled = labels >= 0
    return {
        "labelled_rows": int(labelled.sum()),
        "accuracy": float(np.mean(predicted[labelled] == labels[labelled])),
        "balanced_accuracy": balanced_accuracy(labels[labelled], predicted[labelled]),
    }


def permutation_importance(
    bundle: ModelBundle,
    features: np.ndarray,
    groups: np.ndarray,
    labels: np.ndarray | None,
    *,
    max_rows: int,
    repeats: int,
    seed: int = IMPORTANCE_SEED,
) -> dict[str, Any]:
    """Importance of each feature to the model's predictions on these rows.

    A feature's column is shuffled across the rows (so every context window that contains it sees
    shuffled values), the rows are predicted again, and the damage is measured: with scored labels,
    the drop in balanced accuracy from the unshuffled baseline; without, the mean absolute change in
    the predicted class probabilities.

    Parameters
    ----------
    bundle : ModelBundle
        The model.
    features : np.ndarray, shape (n_rows, 11)
        Unscaled features in :data:`features.names.FEATURE_NAMES` order.
    groups : np.ndarray, shape (n_rows,)
        Run group of every row (:func:`run_groups`).
    labels : np.ndarray of int, or None
        Class index of every row, -1 where unlabelled; None (or no row labelled): label-free measure.
    max_rows : int
        Most rows measured on (drawn at random when there are more, the same for every feature).
    repeats : int
        Shuffles per feature.
    seed : int
        Seed of the draws and the shuffles.

    Returns
    -------
    importance : dict
        ``method``, ``description``, ``baseline`` (balanced accuracy, or None), ``repeats``,
        ``rows_used``, and per feature ``mean`` and ``sd`` over the repeats.
    """
    rng = np.random.default_rng(seed)
    n = features.shape[0]
    labelled = np.flatnonzero(labels >= 0) if labels is not None else np.empty(0, dtype=np.int64)
    candidates = labelled if labelled.size else np.arange(n)
    rows = candidates
    if rows.size > max_rows:
        rows = np.sort(rng.choice(candidates, max_rows, replace=False))
    truth = labels[rows] if labels is not None and labelled.size else None
    # Which rows feed each row's context: the same padding as the predictions themselves.
    index = context_sequences(np.arange(n).reshape(-1, 1), groups, bundle.context)[..., 0][rows]
    baseline_probabilities = bundle.predict_sequences(features[index])
    baseline = balanced_accuracy(truth, baseline_probabilities.argmax(1)) if truth is not None else None
    mean, sd = {}, {}
    for j, name in enumerate(FEATURE_NAMES):
        batches = []
        for _ in range(repeats):
            permuted = features.copy()
            permuted[:, j] = rng.permutation(features[:, j])
            batches.append(permuted[index])
        probabilities = bundle.predict_sequences(np.concatenate(batches)).reshape(repeats, rows.size, -1)
        if truth is not None and baseline is not None:
            scores = [baseline - balanced_accuracy(truth, p.argmax(1)) for p in probabilities]
        else:
            scores = [float(np.mean(np.abs(p - baseline_probabilities))) for p in probabilities]
        mean[name] = float(np.mean(scores))
        sd[name] = float(np.std(scores, ddof=1)) if repeats > 1 else 0.0
    if baseline is not None:
        description = (
            "drop in balanced accuracy against the scored labels when the feature is shuffled "
            f"(mean ± sd over {repeats} shuffles; baseline {baseline:.3f})"
        )
    else:
        description = (
            "mean absolute change in the predicted class probabilities when the feature is shuffled "
            f"(mean ± sd over {repeats} shuffles; the file has no scored labels)"
        )
    return {
        "method": "balanced_accuracy_drop" if baseline is not None else "mean_abs_probability_change",
        "description": description,
        "baseline": baseline,
        "repeats": repeats,
        "rows_used": int(rows.size),
        "mean": mean,
        "sd": sd,
    }
