"""Sleep stages in AASM notation, the scoring epoch and the aliases other notations use."""

from __future__ import annotations

import numpy as np

EPOCH_SECONDS = 30.0
"""Length of one scored epoch (AASM, and every scoring this project reads)."""

SLEEP_STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "R")
"""The five AASM stages: wake, NREM 1-3 and REM."""

UNSCORED = "unscored"
"""An epoch the expert marked uncertain or unscorable, or left empty."""

_ALIASES = {
    "WAKE": "W",
    "1": "N1",
    "2": "N2",
    "3": "N3",
    "4": "N3",
    "S1": "N1",
    "S2": "N2",
    "S3": "N3",
    "S4": "N3",
    "REM": "R",
}


def canonical_stage(value: str) -> str:
    """A scored stage in AASM notation (``Wake`` -> ``W``, R&K ``4`` -> ``N3``, ``REM`` -> ``R``).

    Values that are not a known alias are returned upper-cased, as they are.

    Parameters
    ----------
    value : str
        Stage text in any common notation.

    Returns
    -------
    stage : str
        One of :data:`SLEEP_STAGES` when ``value`` names a stage.
    """
    upper = value.strip().upper()
    return _ALIASES.get(upper, upper)


def epoch_containing(onsets: np.ndarray, seconds: float, epoch_seconds: float = EPOCH_SECONDS) -> int | None:
    """Index of the epoch that contains ``seconds``, or None outside every epoch.

    Parameters
    ----------
    onsets : np.ndarray, shape (n_epochs,)
        Epoch start times in seconds, increasing.
    seconds : float
        Time on the same base.
    epoch_seconds : float
        Length of one epoch.

    Returns
    -------
    index : int | None
    """
    index = int(np.searchsorted(onsets, seconds, side="right")) - 1
    if index < 0 or seconds >= onsets[index] + epoch_seconds:
        return None
    return index
