"""The causal BOLD baseline of a run: each region's mean over the volumes received so far.

Windows overlap (a 120 s fMRI window every 2.1 s), so the volumes are kept by volume index and each
counts once. Only the trailing span is kept, in a ring of ``ceil(seconds / TR)`` rows: memory stays
bounded over a night.
"""

from __future__ import annotations

import math

import numpy as np


class RunBaseline:
    """Per-region mean of the run's volumes within a trailing span, up to the newest volume seen.

    Parameters
    ----------
    seconds : float
        The span: the volumes whose index lies within ``ceil(seconds / TR)`` indices up to and
        including the newest one (``newest - index < seconds / TR``).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.reset()

    def reset(self) -> None:
        """Forget every volume (a new run, or the streams restarted)."""
        self._rows: np.ndarray | None = None  # (capacity, regions); rows not held are 0
        self._index = np.empty(0, dtype=np.int64)
        self._held = np.empty(0, dtype=bool)
        self._newest: int | None = None
        self._tr = 0.0

    @property
    def volumes(self) -> int:
        """Volumes the baseline currently holds."""
        return int(np.count_nonzero(self._held))

    def update(self, values: np.ndarray, indices: np.ndarray, tr: float) -> np.ndarray | None:
        """Add the volumes of one window not seen yet; the baseline up to its newest volume.

        A window whose newest volume index lies below the newest seen so far starts a new run (the
        baseline is reset first); so does a change of region count or TR.

        Parameters
        ----------
        values : np.ndarray, shape (n_volumes, n_regions)
            Region means of the window's volumes.
        indices : np.ndarray of int, shape (n_volumes,)
            Their volume indices.
        tr : float
            Repetition time in seconds.

        Returns
        -------
        baseline : np.ndarray, shape (n_regions,) | None
            Each region's mean over the volumes held; None for a window without volumes.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return None
        newest = int(indices.max())
        regions = values.shape[1]
        if self._rows is None or (
            self._newest is not None
            and (newest < self._newest or regions != self._rows.shape[1] or tr != self._tr)
        ):
            self.reset()
            capacity = max(1, math.ceil(self.seconds / tr - 1e-9))
            self._rows = np.zeros((capacity, regions))
            self._index = np.full(capacity, -1, dtype=np.int64)
            self._held = np.zeros(capacity, dtype=bool)
            self._tr = tr
        rows = self._rows
        capacity = rows.shape[0]
        self._newest = newest
        oldest = newest - capacity + 1
        stale = self._held & (self._index < oldest)
        if stale.any():
            rows[stale] = 0.0
            self._held[stale] = False
        keep = np.flatnonzero(indices >= oldest)
        slots = indices[keep] % capacity
        fresh = ~(self._held[slots] & (self._index[slots] == indices[keep]))
        slots, keep = slots[fresh], keep[fresh]
        rows[slots] = values[keep]
        self._index[slots] = indices[keep]
        self._held[slots] = True
        # Rows not held are 0: a plain sum over the ring, exact every window (no running sum to drift).
        return np.add.reduce(rows, axis=0) / np.float64(np.count_nonzero(self._held))
