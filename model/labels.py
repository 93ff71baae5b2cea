"""Label schemes: what a model is trained to tell apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.stages import SLEEP_STAGES

TRAINED_STAGES: tuple[str, ...] = tuple(SLEEP_STAGES)
"""The stages a model learns: W, N1, N2, N3 and R (REM), always all five.

A stage absent from the training table (ds003768 has no REM) keeps its output: it gets no
class weight and is then rarely predicted; the bundle's ``training.class_counts`` show it with 0."""

SCHEMES: dict[str, tuple[str, ...]] = {
    "wake-sleep": ("wake", "sleep"),
    "stages": TRAINED_STAGES,
    "task": ("rest", "sleep"),
}
_STAGE_TO_WAKE_SLEEP = {stage: 0 if stage == "W" else 1 for stage in TRAINED_STAGES}
_STAGE_INDEX = {stage: i for i, stage in enumerate(TRAINED_STAGES)}
_TASK_INDEX = {"rest": 0, "sleep": 1}


def label_names(scheme: str) -> tuple[str, ...]:
    """Class names of a scheme, in class-index order."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}: choose one of {list(SCHEMES)}")
    return SCHEMES[scheme]


def make_labels(table: pd.DataFrame, scheme: str) -> np.ndarray:
    """Class index of every row, -1 where the row has no label under ``scheme``.

    ``wake-sleep``: W versus N1/N2/N3/R of the expert scoring; ``stages``: W, N1,
    N2, N3 and R (ds003768 has no REM, and N3 is rare there); ``task``: the run's task
    (rest versus sleep run), the origin app's scheme, kept for comparison.
    Unscored epochs and windows outside the scoring get -1 (excluded).
    """
    label_names(scheme)
    if scheme == "task":
        if "task" not in table:
            raise ValueError("the feature table has no 'task' column: --labels task needs it")
        mapping, column = _TASK_INDEX, table["task"]
    else:
        if "stage" not in table:
            raise ValueError(
                f"the feature table has no 'stage' column: --labels {scheme} needs the scored stage"
            )
        mapping = _STAGE_TO_WAKE_SLEEP if scheme == "wake-sleep" else _STAGE_INDEX
        column = table["stage"]
    return np.array([mapping.get(value, -1) if isinstance(value, str) else -1 for value in column], dtype=int)
