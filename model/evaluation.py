"""Metrics and baselines, per window and per scored epoch, pooled and per subject."""

from __future__ import annotations

import numpy as np

from model.epochs import aggregate_to_epochs


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``: scikit-learn's balanced accuracy.

    The value of ``sklearn.metrics.balanced_accuracy_score``, computed as its definition (the macro
    average of the recalls of the true classes) by ``recall_score``: a predicted class that never
    occurs in ``y_true`` has no recall and is left out, without the warning ``balanced_accuracy_score``
    prints then (a warning filter would not be thread-safe, and the server scores in worker threads).

    Parameters
    ----------
    y_true, y_pred : np.ndarray of int
        True and predicted class indices of the same rows (at least one).

    Returns
    -------
    balanced_accuracy : float
    """
    from sklearn import metrics

    return float(metrics.recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro"))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, label_names: tuple[str, ...]) -> dict:
    """Accuracy, balanced accuracy, kappa, per-class precision/recall/F1/specificity, ROC AUC, confusion.

    Parameters
    ----------
    y_true : np.ndarray of int
        True class indices.
    proba : np.ndarray, shape (n, n_classes)
        Predicted probabilities.
    label_names : tuple of str
        Class names.
    """
    from sklearn import metrics

    n_classes = len(label_names)
    y_pred = proba.argmax(axis=1)
    labels = list(range(n_classes))
    confusion = metrics.confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {}
    for k, name in enumerate(label_names):
        negatives = confusion.sum() - confusion[k].sum()
        true_negatives = negatives - (confusion[:, k].sum() - confusion[k, k])
        per_class[name] = {
            "precision": float(precision[k]),
            "recall_sensitivity": float(recall[k]),
            "specificity": float(true_negatives / negatives) if negatives else float("nan"),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
    present = np.unique(y_true)
    try:
        if n_classes == 2:
            auc = float(metrics.roc_auc_score(y_true, proba[:, 1])) if present.size == 2 else float("nan")
        else:
            auc = float(
                metrics.roc_auc_score(y_true, proba[:, present], multi_class="ovr", labels=present)
                if present.size > 2
                else float("nan")
            )
    except ValueError:
        auc = float("nan")
    return {
        "n": int(y_true.size),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred) if present.size > 1 else float("nan"),
        "cohen_kappa": float(metrics.cohen_kappa_score(y_true, y_pred, labels=labels))
        if present.size > 1
        else float("nan"),
        "roc_auc": auc,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def majority_baseline(y_train: np.ndarray, n_test: int, n_classes: int) -> np.ndarray:
    """Always the most frequent training class (probability 1)."""
    majority = np.bincount(y_train, minlength=n_classes).argmax()
    proba = np.zeros((n_test, n_classes))
    proba[:, majority] = 1.0
    return proba


def logistic_baseline(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int
) -> np.ndarray:
    """Class-balanced logistic regression on the current window's 11 scaled features."""
    from sklearn.linear_model import LogisticRegression

    if np.unique(y_train).size < 2:  # one class only: nothing to separate
        return majority_baseline(y_train, x_test.shape[0], n_classes)
    classifier = LogisticRegression(class_weight="balanced", max_iter=2000)
    classifier.fit(x_train, y_train)
    proba = np.zeros((x_test.shape[0], n_classes))
    proba[:, classifier.classes_] = classifier.predict_proba(x_test)
    return proba


SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "cohen_kappa", "roc_auc")


def summarise_folds(folds: list[dict]) -> dict:
    """Mean and standard deviation over folds of each summary metric."""
    summary = {}
    for key in SUMMARY_KEYS:
        values = np.array([fold[key] for fold in folds], dtype=float)
        summary[key] = {"mean": float(np.nanmean(values)), "sd": float(np.nanstd(values))}
    return summary


LEVELS = ("epoch", "window")
"""The levels every figure is given at, the scoring's own grid first."""


def _spread(values: np.ndarray) -> dict:
    """Mean, SD, min and max of the finite values, and how many there are."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        nan = float("nan")
        return {"mean": nan, "sd": nan, "min": nan, "max": nan, "subjects": 0}
    return {
        "mean": float(finite.mean()),
        "sd": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "subjects": int(finite.size),
    }


def per_subject_metrics(
    y: np.ndarray, proba: np.ndarray, subjects: np.ndarray, label_names: tuple[str, ...]
) -> tuple[dict, dict]:
    """Summary metrics of each subject, and their spread across subjects.

    Parameters
    ----------
    y, proba, subjects : np.ndarray
        Labels, class probabilities and subjects of the same rows.
    label_names : tuple of str
        Class names.

    Returns
    -------
    per_subject : dict
        Subject to ``n`` and the :data:`SUMMARY_KEYS` (NaN where a subject has one class only).
    spread : dict
        Metric to ``mean``, ``sd``, ``min``, ``max`` over the subjects where it is defined, and
        ``subjects`` (how many).
    """
    per_subject = {}
    for subject in sorted(set(subjects.tolist()), key=str):
        rows = subjects == subject
        metrics = classification_metrics(y[rows], proba[rows], label_names)
        per_subject[str(subject)] = {"n": metrics["n"], **{key: metrics[key] for key in SUMMARY_KEYS}}
    spread = {
        key: _spread(np.array([m[key] for m in per_subject.values()], dtype=float)) for key in SUMMARY_KEYS
    }
    return per_subject, spread


def assess(
    y: np.ndarray,
    proba: np.ndarray,
    subjects: np.ndarray,
    epoch_ids: np.ndarray,
    label_names: tuple[str, ...],
    epochs_known: bool = True,
) -> dict:
    """Every figure of one model's predictions, per epoch (when epochs are known) and per window.

    Parameters
    ----------
    y, proba, subjects, epoch_ids : np.ndarray
        Labels, class probabilities, subjects and epoch ids (-1: none) of the same windows.
    label_names : tuple of str
        Class names.
    epochs_known : bool
        False when the table says nothing about epochs: per-window figures only.

    Returns
    -------
    levels : dict
        ``epoch`` and ``window``, each :func:`classification_metrics` plus ``per_subject`` and
        ``subject_spread``; ``epoch`` also has ``windows_per_epoch`` and ``label_conflicts``.
    """
    levels: dict = {}
    if epochs_known:
        epochs = aggregate_to_epochs(epoch_ids, y, proba, subjects)
        if epochs.ids.size:
            levels["epoch"] = _level(epochs.y, epochs.proba, epochs.subjects, label_names)
            levels["epoch"]["windows_per_epoch"] = float(epochs.windows.mean())
            levels["epoch"]["label_conflicts"] = epochs.label_conflicts
    levels["window"] = _level(y, proba, subjects, label_names)
    return levels


def _level(y: np.ndarray, proba: np.ndarray, subjects: np.ndarray, label_names: tuple[str, ...]) -> dict:
    per_subject, spread = per_subject_metrics(y, proba, subjects, label_names)
    return {
        **classification_metrics(y, proba, label_names),
        "per_subject": per_subject,
        "subject_spread": spread,
    }


YASA_COLUMN = "yasa_stage"
"""Feature-table column with YASA's stage (W, N1, N2, N3, R) of each window's scored epoch; empty where
YASA did not stage it (``pipeline.yasa_baseline`` fills it)."""

YASA_RULE = (
    "YASA's pretrained stager (yasa.SleepStaging) on the same scored 30-s epochs, from a central EEG "
    "derivation against a mastoid-like channel when there is one, plus an EOG; its stage mapped to the "
    "scheme's classes (wake-sleep: W versus the rest); a stage outside the scheme counts as an error; "
    "epochs YASA could not stage are left out of its row and counted; ROC AUC n/a (a hard stage)"
)
_OTHER = "other stage"


def _yasa_class(stage: object, label_names: tuple[str, ...]) -> int | None:
    """Class index of a YASA stage under a scheme; ``len(label_names)`` when outside it; None unstaged."""
    from core.stages import SLEEP_STAGES, canonical_stage

    if not isinstance(stage, str) or canonical_stage(stage) not in SLEEP_STAGES:
        return None
    stage = canonical_stage(stage)
    if tuple(label_names) == ("wake", "sleep"):
        return 0 if stage == "W" else 1
    canonical = [canonical_stage(name) for name in label_names]
    return canonical.index(stage) if stage in canonical else len(label_names)


def yasa_applicable(label_names: tuple[str, ...]) -> str | None:
    """None when YASA's stages map onto a scheme's classes, else why not."""
    from core.stages import SLEEP_STAGES, canonical_stage

    if tuple(label_names) == ("wake", "sleep") or all(
        canonical_stage(n) in SLEEP_STAGES for n in label_names
    ):
        return None
    return f"YASA stages sleep; the classes {', '.join(label_names)} are not sleep stages: not applicable"


def assess_yasa(
    yasa_stages: np.ndarray | None,
    y: np.ndarray,
    subjects: np.ndarray,
    epoch_ids: np.ndarray,
    label_names: tuple[str, ...],
) -> dict:
    """YASA's figures per scored epoch, on the epochs of these windows, beside the models' figures.

    Parameters
    ----------
    yasa_stages : np.ndarray | None
        The :data:`YASA_COLUMN` of the windows (None: the table has no such column).
    y, subjects, epoch_ids : np.ndarray
        Labels, subjects and epoch ids (-1: none) of the same windows.
    label_names : tuple of str
        The scheme's class names.

    Returns
    -------
    figures : dict
        ``{"epoch": ...}``: :func:`classification_metrics` of YASA's epochs (ROC AUC NaN), plus
        ``per_subject``, ``subject_spread``, ``staged_epochs`` and ``unstaged_epochs``; or
        ``{"note": ...}`` saying why there are none.
    """
    why = yasa_applicable(label_names)
    if why is not None:
        return {"note": why}
    if yasa_stages is None:
        return {"note": f"the table has no '{YASA_COLUMN}' column (extracted without YASA): no YASA figures"}
    n_classes = len(label_names)
    predicted = np.array([_yasa_class(s, label_names) for s in yasa_stages], dtype=object)
    unstaged = np.array([p is None for p in predicted])
    codes = np.where(unstaged, n_classes + 1, predicted).astype(int)  # n_classes: other; +1: unstaged
    one_hot = np.eye(n_classes + 2)[codes]
    epochs = aggregate_to_epochs(epoch_ids, y, one_hot, subjects)
    if epochs.ids.size == 0:
        return {"note": "no window of the table has a scored epoch: no YASA figures"}
    epoch_pred = epochs.proba.argmax(axis=1)
    staged = epoch_pred <= n_classes
    if not staged.any():
        return {
            "note": f"YASA staged none of the {epochs.ids.size} epochs",
            "unstaged_epochs": int(epochs.ids.size),
        }
    names = tuple(label_names) + ((_OTHER,) if (epoch_pred[staged] == n_classes).any() else ())
    proba = np.eye(len(names))[epoch_pred[staged]]
    y_epochs, subject_epochs = epochs.y[staged], epochs.subjects[staged]
    figures = classification_metrics(y_epochs, proba, names)
    figures["roc_auc"] = float("nan")
    per_subject, spread = per_subject_metrics(y_epochs, proba, subject_epochs, names)
    for values in per_subject.values():
        values["roc_auc"] = float("nan")
    spread["roc_auc"] = _spread(np.array([], dtype=float))
    figures.update(
        per_subject=per_subject,
        subject_spread=spread,
        staged_epochs=int(staged.sum()),
        unstaged_epochs=int((~staged).sum()),
    )
    return {"epoch": figures}


def yasa_cross_validation(
    yasa_stages: np.ndarray | None,
    y: np.ndarray,
    subjects: np.ndarray,
    epoch_ids: np.ndarray,
    label_names: tuple[str, ...],
    test_folds: list[np.ndarray],
) -> dict:
    """YASA's row of a cross-validation: :func:`assess_yasa` of all rows, with ``over_folds``.

    YASA is pretrained, so no fold trains it; its figures per fold are those of each fold's test
    rows (``test_folds``, boolean masks), summarised like the models' (:func:`summarise_folds`).
    """
    pooled = assess_yasa(yasa_stages, y, subjects, epoch_ids, label_names)
    if "epoch" not in pooled or yasa_stages is None:
        return pooled
    folds = []
    for test in test_folds:
        fold = assess_yasa(yasa_stages[test], y[test], subjects[test], epoch_ids[test], label_names)
        if "epoch" in fold:
            folds.append(fold["epoch"])
    summary = {}
    for key in SUMMARY_KEYS:  # as summarise_folds, without its warnings for YASA's ROC AUC (always NaN)
        values = np.array([fold[key] for fold in folds or [pooled["epoch"]]], dtype=float)
        values = values[np.isfinite(values)]
        summary[key] = (
            {"mean": float(values.mean()), "sd": float(values.std())}
            if values.size
            else {"mean": float("nan"), "sd": float("nan")}
        )
    pooled["epoch"]["over_folds"] = summary
    return pooled
