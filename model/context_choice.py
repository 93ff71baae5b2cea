"""Nested choice of the context K: an inner subject-grouped cross-validation on training subjects.

For each candidate K, the fusion model is trained on the inner folds' training subjects (validation
subjects carved out of them for early stopping) and scored on the inner test subjects, all of them
subjects of the outer training set: the outer test subjects are never seen. The score is the
balanced accuracy per scored epoch (per window when the table has no epochs); the smallest K whose
mean inner score is within one standard error of the best one is chosen (a longer context costs
start-up delay and rarely helps beyond noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from model.dataset import Scaler
from model.epochs import aggregate_to_epochs
from model.evaluation import balanced_accuracy
from model.fitting import Prepared, fit_network, split_validation
from model.splits import subject_folds

if TYPE_CHECKING:
    from model.training import TrainConfig


@dataclass(frozen=True)
class ContextChoice:
    """The chosen K and the inner scores behind it."""

    chosen: int
    level: str  # "epoch" or "window": what the inner score is computed on
    scores: dict[int, dict[str, Any]]  # K -> mean, sd, se and the per-fold values
    subjects: tuple[str, ...]  # every subject the choice trained or scored on
    inner_folds: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "chosen": self.chosen,
            "metric": f"balanced accuracy per {self.level}, mean over inner folds",
            "rule": "smallest K within one standard error of the best mean",
            "inner_folds": self.inner_folds,
            "subjects": list(self.subjects),
            "scores": {str(k): v for k, v in self.scores.items()},
            **({"note": self.note} if self.note else {}),
        }


def choose_context(data: Prepared, train: np.ndarray, config: TrainConfig) -> ContextChoice:
    """Choose K among ``config.context_candidates`` using only the rows of ``train``.

    Parameters
    ----------
    data : Prepared
        The trainable rows.
    train : np.ndarray of bool
        The outer training rows; nothing else is read.
    config : TrainConfig
        ``context_candidates``, ``inner_folds``, ``inner_epochs``, ``seed`` and the budget.

    Returns
    -------
    choice : ContextChoice

    Raises
    ------
    ValueError
        If the training rows hold fewer than two subjects.
    """
    subjects = data.subjects[train]
    unique = np.unique(subjects)
    if unique.size < 2:
        raise ValueError(
            f"choosing the context K needs at least 2 training subjects, found {unique.size}: "
            "set a fixed context (e.g. context = 4)"
        )
    rows = np.flatnonzero(train)
    n_folds = min(config.inner_folds, unique.size)
    folds = subject_folds(subjects, n_folds, config.seed + 1)
    level = "epoch" if data.epoch_source is not None else "window"
    used: set[str] = set()
    scores: dict[int, dict[str, Any]] = {}
    for context in config.context_candidates:
        sequences = data.sequences(context)
        values = []
        for inner_train, inner_test in folds:
            fit_rows = np.zeros(train.size, dtype=bool)
            fit_rows[rows[inner_train]] = True
            test_rows = np.zeros(train.size, dtype=bool)
            test_rows[rows[inner_test]] = True
            fit_rows, val_rows = split_validation(data.subjects, fit_rows, config.seed)
            used.update(str(s) for s in np.unique(data.subjects[fit_rows | val_rows | test_rows]))
            scaler = Scaler.fit(data.current[fit_rows])
            network = fit_network(
                scaler.transform(sequences[fit_rows]), data.y[fit_rows],
                scaler.transform(sequences[val_rows]), data.y[val_rows],
                len(data.names), config, epochs=config.inner_epochs,
            )  # fmt: skip
            proba = np.asarray(network.predict(scaler.transform(sequences[test_rows]), verbose=0))
            values.append(_score(data, test_rows, proba, level))
        finite = np.array([v for v in values if np.isfinite(v)])
        mean = float(finite.mean()) if finite.size else float("nan")
        sd = float(finite.std()) if finite.size else float("nan")
        se = sd / np.sqrt(finite.size) if finite.size else float("nan")
        scores[context] = {"mean": mean, "sd": sd, "se": float(se), "folds": values}
    chosen, note = _one_standard_error(scores)
    return ContextChoice(
        chosen=chosen,
        level=level,
        scores=scores,
        subjects=tuple(sorted(used)),
        inner_folds=n_folds,
        note=note,
    )


def _score(data: Prepared, rows: np.ndarray, proba: np.ndarray, level: str) -> float:
    y = data.y[rows]
    if level == "epoch":
        epochs = aggregate_to_epochs(data.epochs[rows], y, proba, data.subjects[rows])
        y, proba = epochs.y, epochs.proba
    if y.size == 0 or np.unique(y).size < 2:
        return float("nan")  # one class only: balanced accuracy says nothing
    return balanced_accuracy(y, proba.argmax(axis=1))


def _one_standard_error(scores: dict[int, dict[str, Any]]) -> tuple[int, str]:
    """The smallest K within one standard error of the best mean score."""
    scored = {k: s for k, s in scores.items() if np.isfinite(s["mean"])}
    if not scored:
        smallest = min(scores)
        return smallest, f"no inner fold held two classes: the smallest candidate K = {smallest} was taken"
    best = max(scored, key=lambda k: scored[k]["mean"])
    bound = scored[best]["mean"] - (scored[best]["se"] if np.isfinite(scored[best]["se"]) else 0.0)
    return min(k for k, s in scored.items() if s["mean"] >= bound), ""
