"""Metrics, baselines and the written report (JSON, Markdown, PNG plots)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


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


def write_report(report: dict, folder: str | Path, hypnogram: dict | None = None) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``folder``.

    Parameters
    ----------
    report : dict
        As built by :mod:`model.training`: ``label_names``, ``test`` (metrics
        and ``roc`` curves of the model), ``cross_validation`` and more.
    folder : path-like
        Output folder.
    hypnogram : dict | None
        ``{"run": label, "end": [...], "true": [...], "predicted": [...]}`` of a held-out run.

    Returns
    -------
    written : list of Path
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "report.json", folder / "report.md"]
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    (folder / "report.md").write_text(_markdown(report))
    written += _plots(report, folder, hypnogram)
    return written


def _jsonable(value: object) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def _fmt(value: object) -> str:
    if isinstance(value, dict):
        return f"{value['mean']:.3f} ± {value['sd']:.3f}"
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _markdown(report: dict) -> str:
    names = report["label_names"]
    lines = [
        f"# Evaluation report — labels `{report['labels']}` ({', '.join(names)}), "
        f"context K = {report['context']}",
        "",
        report.get("note", ""),
        "",
        f"Data: {report['data']['windows']} labelled windows, {report['data']['subjects']} subjects, "
        f"{report['data']['runs']} runs; class counts {report['data']['class_counts']}.",
        "",
    ]
    if "test" in report:
        lines += [
            f"## Held-out test subjects ({', '.join(report['test']['subjects'])})",
            "",
            "| model | accuracy | balanced accuracy | Cohen's kappa | ROC AUC |",
            "|---|---|---|---|---|",
        ]
        for name, metrics in report["test"]["models"].items():
            lines.append(
                f"| {name} | {_fmt(metrics['accuracy'])} | {_fmt(metrics['balanced_accuracy'])} | "
                f"{_fmt(metrics['cohen_kappa'])} | {_fmt(metrics['roc_auc'])} |"
            )
        fusion = report["test"]["models"]["fusion"]
        lines += [
            "",
            "Per class (fusion model):",
            "",
            "| class | precision | sensitivity | specificity | F1 | n |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for name, values in fusion["per_class"].items():
            lines.append(
                f"| {name} | {values['precision']:.3f} | {values['recall_sensitivity']:.3f} | "
                f"{_fmt(values['specificity'])} | {values['f1']:.3f} | {values['support']} |"
            )
        lines += ["", f"Confusion matrix (rows true, columns predicted; {', '.join(names)}):", ""]
        lines += [f"    {row}" for row in fusion["confusion_matrix"]]
        lines.append("")
    if "cross_validation" in report:
        cv = report["cross_validation"]
        lines += [
            f"## Grouped {cv['folds']}-fold cross-validation (no subject in both train and test)",
            "",
            "| model | accuracy | balanced accuracy | Cohen's kappa | ROC AUC |",
            "|---|---|---|---|---|",
        ]
        for name, summary in cv["models"].items():
            lines.append(
                f"| {name} | {_fmt(summary['accuracy'])} | {_fmt(summary['balanced_accuracy'])} | "
                f"{_fmt(summary['cohen_kappa'])} | {_fmt(summary['roc_auc'])} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def _plots(report: dict, folder: Path, hypnogram: dict | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = report["label_names"]
    if "test" in report:
        confusion = np.array(report["test"]["models"]["fusion"]["confusion_matrix"])
        figure, axes = plt.subplots(figsize=(4 + len(names) * 0.5, 3.5 + len(names) * 0.5))
        axes.imshow(confusion, cmap="Blues")
        for i in range(len(names)):
            for j in range(len(names)):
                axes.text(j, i, str(confusion[i, j]), ha="center", va="center")
        axes.set_xticks(range(len(names)), names)
        axes.set_yticks(range(len(names)), names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true (expert scoring)")
        axes.set_title("Confusion matrix, held-out subjects")
        figure.tight_layout()
        written.append(folder / "confusion_matrix.png")
        figure.savefig(written[-1], dpi=100)
        plt.close(figure)

        figure, axes = plt.subplots(figsize=(5, 4.5))
        for name, curve in report["test"].get("roc", {}).items():
            axes.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {curve['auc']:.2f})")
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
        axes.set_xlabel("false positive rate")
        axes.set_ylabel("true positive rate")
        axes.set_title("ROC, held-out subjects")
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        written.append(folder / "roc.png")
        figure.savefig(written[-1], dpi=100)
        plt.close(figure)
    if hypnogram is not None:
        figure, axes = plt.subplots(figsize=(9, 3))
        axes.step(hypnogram["end"], hypnogram["true"], where="post", label="expert scoring", linewidth=2)
        axes.step(hypnogram["end"], hypnogram["predicted"], where="post", label="predicted", alpha=0.8)
        axes.set_yticks(range(len(names)), names)
        axes.invert_yaxis()
        axes.set_xlabel("time in run (s)")
        axes.set_title(f"Hypnogram of a held-out run: {hypnogram['run']}")
        axes.legend(loc="upper right", fontsize=8)
        figure.tight_layout()
        written.append(folder / "hypnogram.png")
        figure.savefig(written[-1], dpi=100)
        plt.close(figure)
    return written
