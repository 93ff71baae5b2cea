"""Feature tables in, model inputs out: causal context sequences, scaling, subject groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.names import EEG_FEATURES, FEATURE_NAMES, FMRI_FEATURES

# The origin app's column names, mapped to ours.
ORIGIN_COLUMNS = {
    "Subject": "subject",
    "Run": "run",
    "Task": "task",
    "Delta Power": "eeg_delta_power",
    "Theta Power": "eeg_theta_power",
    "Alpha Power": "eeg_alpha_power",
    "Beta Power": "eeg_beta_power",
    "Gamma Power": "eeg_gamma_power",
    "Spectral Entropy": "eeg_spectral_entropy",
    "Mean Coherence": "eeg_mean_coherence",
    "BOLD Mean": "bold_mean",
    "BOLD Variance": "bold_variance",
    "ALFF Mean": "alff_mean",
    "ALFF Variance": "alff_variance",
}


def dataset_files(folder: str | Path) -> list[Path]:
    """The recording files of a feature dataset folder, sorted by name (hidden partial files excluded)."""
    return sorted(p for p in Path(folder).glob("*.parquet") if not p.name.startswith("."))


def read_feature_table(path: str | Path) -> pd.DataFrame:
    """Read a feature table (CSV, Parquet, or a dataset folder of Parquet files), ours or the origin app's.

    A folder is a feature dataset written by ``run_stream.py extract SESSION -o FOLDER/`` (one file
    per recording, see :mod:`pipeline.feature_dataset`): its files' rows, in file-name order.

    Raises
    ------
    ValueError
        If the file is of another type or lacks columns, or the folder holds no Parquet file.
    """
    path = Path(path)
    if path.is_dir():
        files = dataset_files(path)
        if not files:
            raise ValueError(f"{path}: a feature dataset folder must hold the recordings' .parquet files")
        table = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    elif not path.is_file():
        raise FileNotFoundError(f"{path}: feature table not found")
    elif path.suffix == ".csv":
        table = pd.read_csv(path)
    elif path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: a feature table must be .csv or .parquet")
    table = table.rename(columns={k: v for k, v in ORIGIN_COLUMNS.items() if k in table.columns})
    if "task" in table:
        # The origin wrote tasks as e.g. "task-rest" or "Sleep".
        table["task"] = table["task"].astype(str).str.lower().str.replace("task-", "", regex=False)
    missing = [name for name in ("subject", *FEATURE_NAMES) if name not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    for column in ("task", "run", "window"):
        if column not in table:
            table[column] = 0 if column != "task" else "unknown"
    table["subject"] = table["subject"].astype(str)
    return table.sort_values(["subject", "task", "run", "window"], kind="stable").reset_index(drop=True)


FMRI_COLUMNS = slice(len(EEG_FEATURES), len(EEG_FEATURES) + len(FMRI_FEATURES))
"""Where the fMRI features sit among the 11."""
MODEL_INPUTS = len(FEATURE_NAMES) + 1
"""Width of the model's input per window: the 11 scaled features and the fMRI-present indicator."""
FMRI_DROPOUT = 0.3
"""Modality dropout of the fusion model by default: the share of training sequences whose fMRI is
masked (all of it, or from or up to a random window; :class:`model.architecture.ModalityDropout`)."""


def fmri_present(features: np.ndarray) -> np.ndarray:
    """Whether each window's fMRI features are all finite (the model may use them).

    Parameters
    ----------
    features : np.ndarray, shape (..., 11)
        Unscaled features; NaN or infinite fMRI features mean no usable fMRI.

    Returns
    -------
    present : np.ndarray of bool, shape (...)
    """
    return np.asarray(np.isfinite(np.asarray(features, dtype=np.float64)[..., FMRI_COLUMNS]).all(axis=-1))


# Largest standard score given to the model: far beyond any real feature, small enough that the
# network's single-precision arithmetic cannot overflow (tested up to 1e308 on both backends).
MAX_STANDARD_SCORE = 1e4


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation fitted on training rows."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Scaler:
        """Fit on the finite values of each feature (a feature never finite: mean 0, scale 1)."""
        features = np.asarray(features, dtype=np.float64)
        finite = np.isfinite(features)
        count = finite.sum(axis=0)
        values = np.where(finite, features, 0.0)
        mean = values.sum(axis=0) / np.maximum(count, 1)
        scale = np.sqrt(np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1))
        return cls(mean=mean, scale=np.where(scale > 0, scale, 1.0))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """The model's input: the standardised features and the fMRI-present indicator.

        Shape ``(..., 11)`` in, ``(..., 12)`` out: the 11 standard scores, then 1 where the window's
        four fMRI features are all finite and 0 where they are not (:func:`fmri_present`; the
        model then leaves its fMRI branch out, :mod:`model.architecture`). Non-finite values
        become 0 (the training mean).

        Standard scores are clipped to ``±MAX_STANDARD_SCORE``: a huge finite feature (1e300, an
        overflowing computation upstream) would otherwise become infinite in single precision, or
        overflow inside the network, and turn the probabilities into NaN. Training data never
        comes near the bound (n rows cannot lie more than ``sqrt(n)`` standard deviations out). A
        finite value whose standard score overflows is clipped too, not taken for a missing one.
        """
        features = np.asarray(features, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.clip((features - self.mean) / self.scale, -MAX_STANDARD_SCORE, MAX_STANDARD_SCORE)
        scaled = np.where(np.isfinite(features), scaled, 0.0)
        present = fmri_present(features)[..., np.newaxis]
        return np.concatenate([scaled, present], axis=-1).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Scaler:
        """Inverse of :meth:`to_dict`."""
        return cls(mean=np.asarray(record["mean"], float), scale=np.asarray(record["scale"], float))


def context_sequences(features: np.ndarray, run_ids: np.ndarray, context: int) -> np.ndarray:
    """For every row, the features of it and its ``context - 1`` predecessors in the same run.

    Causal only. At the start of a run the first row is repeated to fill the context.

    Parameters
    ----------
    features : np.ndarray, shape (n_rows, n_features)
        Rows in time order within each run.
    run_ids : np.ndarray, shape (n_rows,)
        Run identity of each row.
    context : int
        K, the number of windows seen by the model.

    Returns
    -------
    sequences : np.ndarray, shape (n_rows, context, n_features)
    """
    n = features.shape[0]
    index = np.arange(n)
    starts = np.zeros(n, dtype=int)
    boundaries = np.flatnonzero(run_ids[1:] != run_ids[:-1]) + 1
    run_start = np.zeros(n, dtype=int)
    run_start[boundaries] = boundaries
    starts = np.maximum.accumulate(run_start)
    offsets = np.arange(-(context - 1), 1)
    rows = np.maximum(index[:, None] + offsets[None, :], starts[:, None])
    return features[rows]


def run_identity(table: pd.DataFrame) -> np.ndarray:
    """One integer per (subject, task, run)."""
    keys = table["subject"].astype(str) + "|" + table["task"].astype(str) + "|" + table["run"].astype(str)
    return pd.factorize(keys)[0]


def feature_matrix(table: pd.DataFrame) -> np.ndarray:
    """The 11 features in canonical order, float64."""
    return table[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)


# Window problems that make a window's EEG untrustworthy (core.problems codes).
_EEG_PROBLEMS = ("eeg_coverage_low", "no_usable_eeg_channel")


def trainable_rows(table: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    """Rows with a label, finite EEG features and (when known) a usable window.

    A row whose fMRI features are missing (no BOLD, too few volumes) is kept: the model learns
    to predict without fMRI from it. Such a window is unusable only for want of fMRI, unless its
    ``problem_codes`` name an EEG problem (low coverage, no usable EEG channel).
    """
    features = feature_matrix(table)
    ok = (labels >= 0) & np.isfinite(features[:, : len(EEG_FEATURES)]).all(axis=1)
    if "usable" in table:
        usable = table["usable"].astype(bool).to_numpy()
        without_fmri = ~fmri_present(features)
        if "problem_codes" in table:
            codes = table["problem_codes"].fillna("").astype(str)
            eeg_problem = np.zeros(len(table), dtype=bool)
            for code in _EEG_PROBLEMS:
                eeg_problem |= codes.str.contains(code, regex=False).to_numpy()
            without_fmri &= ~eeg_problem
        ok &= usable | without_fmri
    return ok
