"""Scored 30-s epochs of windows, and window predictions aggregated to them.

Each window belongs to the scored epoch that holds the majority of its EEG: the table's
``epoch_start`` column (seconds, the run's time base) when present, otherwise the epoch holding
the window's midpoint ``(start + end) / 2`` (the same epoch for a window of at most 30 s). An
epoch's prediction is the mean of the class probabilities of its windows; the last of them ends at
most half a window after the epoch ends, so that is the delay at which the prediction is final.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.stages import EPOCH_SECONDS

EPOCH_COLUMN = "epoch_start"


@dataclass(frozen=True)
class WindowEpochs:
    """The epoch of every row of a table.

    Attributes
    ----------
    ids : np.ndarray of int
        One id per (subject, task, run, epoch start); -1 where the row has no epoch.
    onsets : np.ndarray of float
        The epoch's onset (seconds, the run's time base); NaN where the row has no epoch.
    source : str | None
        ``"epoch_start"`` (the table's column), ``"window midpoint"`` (derived from ``start`` and
        ``end``) or None (neither: per-window figures only).
    """

    ids: np.ndarray
    onsets: np.ndarray
    source: str | None

    @property
    def known(self) -> bool:
        """Whether epochs are known at all."""
        return self.source is not None


def window_epochs(table: pd.DataFrame) -> WindowEpochs:
    """The scored epoch of every row of a feature table, never shared by two runs or subjects.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``subject``, ``task``, ``run`` and ``epoch_start`` or ``start`` and ``end``.

    Returns
    -------
    epochs : WindowEpochs
    """
    if EPOCH_COLUMN in table:
        onset = pd.to_numeric(table[EPOCH_COLUMN], errors="coerce").to_numpy(dtype=float)
        source: str | None = "epoch_start"
    elif "start" in table and "end" in table:
        middle = (table["start"].to_numpy(dtype=float) + table["end"].to_numpy(dtype=float)) / 2
        onset = np.floor(middle / EPOCH_SECONDS) * EPOCH_SECONDS
        source = "window midpoint"
    else:
        return WindowEpochs(
            ids=np.full(len(table), -1, dtype=int), onsets=np.full(len(table), np.nan), source=None
        )
    keys = pd.DataFrame(
        {
            "subject": table["subject"].astype(str).to_numpy(),
            "task": table["task"].astype(str).to_numpy(),
            "run": table["run"].astype(str).to_numpy(),
            "onset": np.round(onset, 3),
        }
    )
    known = np.isfinite(onset)
    ids = np.full(len(table), -1, dtype=int)
    if known.any():
        ids[known] = keys[known].groupby(["subject", "task", "run", "onset"], sort=False).ngroup().to_numpy()
    return WindowEpochs(ids=ids, onsets=np.where(known, onset, np.nan), source=source)


def realign_labels(table: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    """Labels of a table without ``epoch_start``, moved to the epoch holding each window's midpoint.

    Such tables gave each window the stage of the epoch in which it ends, so the stage of epoch
    ``e`` is read from the windows of the same run that end in ``e``; a window whose midpoint epoch
    has no such window (the end of a run) gets -1.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``subject``, ``task``, ``run``, ``start`` and ``end``.
    labels : np.ndarray of int
        The table's own label of every row (-1: none).

    Returns
    -------
    labels : np.ndarray of int
    """
    run = (
        table["subject"].astype(str) + "|" + table["task"].astype(str) + "|" + table["run"].astype(str)
    ).to_numpy()
    end = table["end"].to_numpy(dtype=float)
    middle = (table["start"].to_numpy(dtype=float) + end) / 2
    ending = pd.DataFrame({"run": run, "onset": np.floor(end / EPOCH_SECONDS), "label": labels})
    ending = ending[ending["label"] >= 0]
    stage_of = ending.groupby(["run", "onset"])["label"].agg(lambda s: s.value_counts().index[0])
    wanted = pd.MultiIndex.from_arrays([run, np.floor(middle / EPOCH_SECONDS)], names=["run", "onset"])
    return stage_of.reindex(wanted).fillna(-1).to_numpy(dtype=int)


@dataclass(frozen=True)
class EpochPredictions:
    """Window predictions aggregated to epochs.

    Attributes
    ----------
    ids : np.ndarray of int
        The epoch ids, in increasing order.
    y : np.ndarray of int
        The epoch's class: the label of its windows (their most frequent one if they disagree).
    proba : np.ndarray, shape (n_epochs, n_classes)
        Mean class probabilities of the epoch's windows.
    subjects : np.ndarray
        The epoch's subject.
    windows : np.ndarray of int
        Windows averaged per epoch.
    label_conflicts : int
        Epochs whose windows carry different labels (0 when the table has ``epoch_start``).
    """

    ids: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    subjects: np.ndarray
    windows: np.ndarray
    label_conflicts: int


def aggregate_to_epochs(
    epoch_ids: np.ndarray, y: np.ndarray, proba: np.ndarray, subjects: np.ndarray
) -> EpochPredictions:
    """Mean class probabilities of the windows of each epoch; rows without an epoch are left out.

    Parameters
    ----------
    epoch_ids : np.ndarray of int
        Epoch of every window (-1: none), from :func:`window_epochs`.
    y : np.ndarray of int
        Window labels.
    proba : np.ndarray, shape (n_windows, n_classes)
        Window class probabilities.
    subjects : np.ndarray
        Window subjects.

    Returns
    -------
    epochs : EpochPredictions
    """
    keep = epoch_ids >= 0
    ids, inverse, counts = np.unique(epoch_ids[keep], return_inverse=True, return_counts=True)
    n_classes = proba.shape[1]
    sums = np.zeros((ids.size, n_classes))
    np.add.at(sums, inverse, proba[keep])
    votes = np.zeros((ids.size, max(n_classes, int(y.max(initial=0)) + 1)), dtype=int)
    np.add.at(votes, (inverse, y[keep]), 1)
    first = np.zeros(ids.size, dtype=int)
    first[inverse[::-1]] = np.flatnonzero(keep)[::-1]  # a row of each epoch, for its subject
    return EpochPredictions(
        ids=ids,
        y=votes.argmax(axis=1),
        proba=sums / counts[:, None],
        subjects=subjects[first] if ids.size else subjects[:0],
        windows=counts,
        label_conflicts=int(((votes > 0).sum(axis=1) > 1).sum()),
    )
