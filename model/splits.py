"""Subject-grouped splits: no subject is ever on both sides."""

from __future__ import annotations

import numpy as np


def subject_folds(subjects: np.ndarray, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped k-fold: each subject's rows are in exactly one test fold.

    Parameters
    ----------
    subjects : np.ndarray
        Subject of every row.
    n_folds : int
        Number of folds (at most the number of subjects).
    seed : int
        Shuffles the subjects before dealing them to folds.

    Returns
    -------
    folds : list of (train_rows, test_rows)
        Boolean masks over the rows.
    """
    unique = np.unique(subjects)
    if n_folds < 2 or n_folds > unique.size:
        raise ValueError(f"{n_folds} folds need between 2 and {unique.size} subjects (found {unique.size})")
    order = np.random.default_rng(seed).permutation(unique)
    folds = []
    for k in range(n_folds):
        test_subjects = order[k::n_folds]
        test = np.isin(subjects, test_subjects)
        folds.append((~test, test))
    return folds


def train_validation_test(
    subjects: np.ndarray, test_fraction: float = 0.2, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows by subject into train, validation and test masks.

    At least one subject goes to each part; needs three subjects or more.
    """
    unique = np.random.default_rng(seed).permutation(np.unique(subjects))
    if unique.size < 3:
        raise ValueError(f"a train/validation/test split by subject needs 3 subjects, found {unique.size}")
    n_test = max(1, round(test_fraction * unique.size))
    n_validation = max(1, round(validation_fraction * (unique.size - n_test)))
    test = np.isin(subjects, unique[:n_test])
    validation = np.isin(subjects, unique[n_test : n_test + n_validation])
    return ~(test | validation), validation, test


def assert_disjoint_subjects(subjects: np.ndarray, *masks: np.ndarray) -> None:
    """Raise if any subject has rows in two of the masks."""
    seen: set = set()
    for mask in masks:
        part = set(np.unique(subjects[mask]).tolist())
        shared = part & seen
        if shared:
            raise AssertionError(f"subjects {sorted(shared)} appear in two splits")
        seen |= part
