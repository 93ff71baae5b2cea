"""The written report of a training or an evaluation: JSON, Markdown and PNG plots.

Figures per scored epoch come first, then per window; each with the spread across subjects and a
per-subject table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from model.evaluation import LEVELS, YASA_RULE

_LEVEL_TITLES = {"epoch": "Per scored 30-s epoch", "window": "Per window"}


def write_report(report: dict, folder: str | Path, hypnogram: dict | None = None) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``folder``.

    Parameters
    ----------
    report : dict
        As built by :mod:`model.training`: ``label_names``, ``epochs``, ``test`` (each model's
        figures per level and the ``roc`` curves), ``cross_validation`` and more.
    folder : path-like
        Output folder.
    hypnogram : dict | None
        ``{"run", "level", "time", "true", "predicted"}`` of a held-out run.

    Returns
    -------
    written : list of Path
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "report.json", folder / "report.md"]
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    (folder / "report.md").write_text(markdown(report))
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
        mean, sd = value["mean"], value["sd"]
        if mean is None or not np.isfinite(mean):  # e.g. a ROC AUC of a stager without probabilities
            return "n/a"
        return f"{mean:.3f} ± {sd:.3f}"
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _spread(spread: dict) -> str:
    if not spread["subjects"]:
        return "n/a"
    return (
        f"{spread['mean']:.3f} ± {spread['sd']:.3f} ({spread['min']:.3f}–{spread['max']:.3f}, "
        f"{spread['subjects']} subject{'s' if spread['subjects'] > 1 else ''})"
    )


def _levels(models: dict) -> list[str]:
    first = next(iter(models.values()))
    return [level for level in LEVELS if level in first]


def _model_table(models: dict, level: str, over_folds: bool) -> list[str]:
    figures = "mean ± SD over folds" if over_folds else "pooled"
    lines = [
        f"| model ({figures}) | accuracy | balanced accuracy | Cohen's kappa | ROC AUC | "
        "balanced accuracy across subjects: mean ± SD (min–max) |",
        "|---|---|---|---|---|---|",
    ]
    for name, levels in models.items():
        if level not in levels:  # YASA: per epoch only, or not applicable
            continue
        m = levels[level].get("over_folds", levels[level]) if over_folds else levels[level]
        lines.append(
            f"| {name} | {_fmt(m['accuracy'])} | {_fmt(m['balanced_accuracy'])} | {_fmt(m['cohen_kappa'])} | "
            f"{_fmt(m['roc_auc'])} | {_spread(levels[level]['subject_spread']['balanced_accuracy'])} |"
        )
    return lines


def _subject_table(models: dict, level: str) -> list[str]:
    unit = "epochs" if level == "epoch" else "windows"
    names = [name for name in models if level in models[name]]
    subjects = list(models[names[0]][level]["per_subject"])
    lines = [
        f"Per subject ({unit}; balanced accuracy / Cohen's kappa, n/a where a subject has one class only):",
        "",
        f"| subject | {unit} | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for subject in subjects:
        cells = []
        n = models[names[0]][level]["per_subject"][subject]["n"]
        for name in names:
            m = models[name][level]["per_subject"].get(subject)
            fewer = "" if m is None or m["n"] == n else f" ({m['n']} {unit})"  # YASA: staged epochs only
            cells.append(
                "n/a" if m is None else f"{_fmt(m['balanced_accuracy'])} / {_fmt(m['cohen_kappa'])}{fewer}"
            )
        lines.append(f"| {subject} | {n} | " + " | ".join(cells) + " |")
    return lines


def _header(report: dict) -> list[str]:
    names = report["label_names"]
    data = report["data"]
    epochs = report.get("epochs", {})
    counted = f" in {data['epochs']} scored epochs" if "epochs" in data else ""
    lines = [
        f"# Evaluation report — labels `{report['labels']}` ({', '.join(names)}), "
        f"context K = {report['context']}",
        "",
        report.get("note", ""),
        "",
        f"Data: {data['windows']} labelled windows{counted}, {data['subjects']} subjects, "
        f"{data['runs']} runs; class counts (windows) {data['class_counts']}.",
        "",
    ]
    if epochs.get("source"):
        delay = epochs.get("final_after_epoch_end_s")
        final = "" if delay is None else f"; an epoch's prediction is final {delay:.1f} s after it ends"
        lines += [
            f"Epochs (from {epochs['source']}): {epochs['rule']}{final}.",
            *([f"Note: {epochs['note']}."] if "note" in epochs else []),
            "",
        ]
    elif epochs:
        lines += [f"Note: {epochs['note']}.", ""]
    if "context_choice" in report:
        lines += [_choice_line("Final model", report["context_choice"]), ""]
    return lines


def _choice_line(what: str, choice: dict) -> str:
    scores = ", ".join(f"K={k}: {_fmt(s)}" for k, s in choice["scores"].items())
    return (
        f"{what}: K = {choice['chosen']} chosen by inner {choice['inner_folds']}-fold cross-validation on "
        f"its training subjects only ({choice['metric']}; {choice['rule']}): {scores}."
    )


def _test_lines(report: dict) -> list[str]:
    test, names = report["test"], report["label_names"]
    models = test["models"]
    lines = [f"## Held-out test subjects ({', '.join(test['subjects'])})", ""]
    if "baselines" in test:
        lines += [f"Baselines: {test['baselines']}.", ""]
    levels = _levels(models)
    for level in levels:
        unit = models["fusion"][level]["n"]
        lines += [f"### {_LEVEL_TITLES[level]} ({unit})", "", *_model_table(models, level, False), ""]
    lines += [*_subject_table(models, levels[0]), "", *_yasa_lines(models, confusion=True)]
    fusion = models["fusion"][levels[0]]
    lines += [
        f"Per class (fusion model, {_LEVEL_TITLES[levels[0]].lower()}):",
        "",
        "| class | precision | sensitivity | specificity | F1 | n |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in fusion["per_class"].items():
        lines.append(
            f"| {name} | {values['precision']:.3f} | {values['recall_sensitivity']:.3f} | "
            f"{_fmt(values['specificity'])} | {values['f1']:.3f} | {values['support']} |"
        )
    lines += ["", f"Confusion matrix ({levels[0]}s; rows true, columns predicted; {', '.join(names)}):", ""]
    lines += [f"    {row}" for row in fusion["confusion_matrix"]]
    return [*lines, ""]


def _cross_validation_lines(cv: dict) -> list[str]:
    lines = [f"## Grouped {cv['folds']}-fold cross-validation (no subject in both train and test)", ""]
    choices = cv.get("context_choices") or []
    for k, choice in enumerate(choices):
        if choice:
            lines.append(f"- {_choice_line(f'Fold {k + 1}', choice)}")
    if any(choices):
        lines.append("")
    models = cv["models"]
    levels = _levels(models)
    for level in levels:
        lines += [f"### {_LEVEL_TITLES[level]}", "", *_model_table(models, level, True), ""]
    lines += ["Out-of-fold predictions: every subject tested once, by a model that never saw it.", ""]
    lines += [*_subject_table(models, levels[0]), "", *_yasa_lines(models, confusion=False)]
    return lines


def _yasa_lines(models: dict, confusion: bool) -> list[str]:
    """How YASA's row was made, the epochs it could not stage, and its confusion matrix when asked."""
    yasa = models.get("yasa")
    if yasa is None:
        return []
    if "epoch" not in yasa:
        return [f"YASA: {yasa['note']}.", ""]
    figures = yasa["epoch"]
    lines = [
        f"YASA: {YASA_RULE}. {figures['staged_epochs']} epochs staged, {figures['unstaged_epochs']} "
        "not staged (left out of YASA's row).",
        "",
    ]
    if confusion:
        shown = list(figures["per_class"])
        lines += [f"YASA's confusion matrix (epochs; rows true, columns predicted; {', '.join(shown)}):", ""]
        lines += [f"    {row}" for row in figures["confusion_matrix"]]
        lines.append("")
    return lines


def markdown(report: dict) -> str:
    """The report as Markdown: per-epoch figures first, then per window, then per subject."""
    lines = _header(report)
    if "test" in report:
        lines += _test_lines(report)
    elif "test_note" in report:
        lines += [f"Held-out test: {report['test_note']}.", ""]
    if "cross_validation" in report:
        lines += _cross_validation_lines(report["cross_validation"])
    return "\n".join(lines) + "\n"


def _plots(report: dict, folder: Path, hypnogram: dict | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = report["label_names"]
    if "test" in report:
        fusion = report["test"]["models"]["fusion"]
        level = _levels(report["test"]["models"])[0]
        confusion = np.array(fusion[level]["confusion_matrix"])
        figure, axes = plt.subplots(figsize=(4 + len(names) * 0.5, 3.5 + len(names) * 0.5))
        axes.imshow(confusion, cmap="Blues")
        for i in range(len(names)):
            for j in range(len(names)):
                axes.text(j, i, str(confusion[i, j]), ha="center", va="center")
        axes.set_xticks(range(len(names)), names)
        axes.set_yticks(range(len(names)), names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true (expert scoring)")
        axes.set_title(f"Confusion matrix per {level}, held-out subjects")
        figure.tight_layout()
        written.append(folder / "confusion_matrix.png")
        figure.savefig(written[-1], dpi=100)
        plt.close(figure)

        roc = report["test"]["roc"]
        figure, axes = plt.subplots(figsize=(5, 4.5))
        for name, curve in roc["curves"].items():
            axes.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {curve['auc']:.2f})")
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
        axes.set_xlabel("false positive rate")
        axes.set_ylabel("true positive rate")
        axes.set_title(f"ROC per {roc['level']}, held-out subjects")
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        written.append(folder / "roc.png")
        figure.savefig(written[-1], dpi=100)
        plt.close(figure)
    if hypnogram is not None:
        per_epoch = hypnogram["level"] == "epoch"
        figure, axes = plt.subplots(figsize=(9, 3))
        axes.step(hypnogram["time"], hypnogram["true"], where="post", label="expert scoring", linewidth=2)
        axes.step(hypnogram["time"], hypnogram["predicted"], where="post", label="predicted", alpha=0.8)
        axes.set_yticks(range(len(names)), names)
        axes.invert_yaxis()
        axes.set_xlabel("epoch onset in run (s)" if per_epoch else "window end in run (s)")
        axes.set_title(f"Hypnogram per {hypnogram['level']} of a held-out run: {hypnogram['run']}")
        axes.legend(loc="upper right", fontsize=8)
        figure.tight_layout()
        written.append(folder / "hypnogram.png")
        figure.savefig(written[-1], dpi=100)
        plt.close(figure)
    return written
