"""Per-channel checks of a window (non-finite values, flat stretches), each second computed once.

Consecutive windows overlap by most of their length (30 s windows, 2.1 s hop),
so the extremes of every whole second of EEG are computed once, when a window
first holds it, and reused by the following windows. Seconds are counted on the
buffer's sample numbers (``Window.eeg_first_sample``), so the same second has
the same extremes in every window that holds it.
"""

from __future__ import annotations

import numpy as np


class ChannelChecks:
    """Which channels of a window hold a non-finite value, or stay flat over a whole block.

    Parameters
    ----------
    block : int
        Samples per block (one second of EEG).
    flat_threshold : float
        A channel whose peak-to-peak amplitude over one whole block is below
        this is flat.
    """

    def __init__(self, block: int, flat_threshold: float) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1 sample, got {block}")
        self.block = block
        self.flat_threshold = flat_threshold
        # Extremes of the blocks numbered [_first, _first + len(_highest)), shape (n_blocks, n_channels).
        self._first = 0
        self._highest = self._lowest = np.empty((0, 0), dtype=np.float32)

    def clear(self) -> None:
        """Forget every block (after a restart)."""
        self._first = 0
        self._highest = self._lowest = np.empty((0, 0), dtype=np.float32)

    def __call__(self, eeg: np.ndarray, first_sample: int) -> tuple[np.ndarray, np.ndarray]:
        """Check one window.

        Parameters
        ----------
        eeg : np.ndarray, shape (n_channels, n_times)
            The window's samples, channels first.
        first_sample : int
            Sample number of ``eeg[:, 0]`` in the stream.

        Returns
        -------
        finite : np.ndarray of bool, shape (n_channels,)
            Every value of the channel is finite.
        flat : np.ndarray of bool, shape (n_channels,)
            The channel is flat over at least one whole block (a window shorter
            than a block is judged as a whole). A non-finite block is never flat.
        """
        n_times = eeg.shape[1]
        block = self.block
        first_block = -(-first_sample // block)
        stop_block = (first_sample + n_times) // block
        if stop_block <= first_block:  # no whole block: the window is judged as one
            highest, lowest = eeg.max(axis=1)[None], eeg.min(axis=1)[None]
            return self._finite(highest, lowest), self._flat(highest, lowest)

        highest, lowest = self._extremes(eeg, first_sample, first_block, stop_block)
        finite = self._finite(highest, lowest)
        # The samples before the first and after the last whole block count for finiteness only:
        # a sum is finite unless a value is not (in double precision no float32 sum overflows).
        head = first_block * block - first_sample
        tail = stop_block * block - first_sample
        for part in (eeg[:, :head], eeg[:, tail:]):
            if part.shape[1]:
                finite &= np.isfinite(np.add.reduce(part, axis=1, dtype=np.float64))
        return finite, self._flat(highest, lowest)

    def _extremes(
        self, eeg: np.ndarray, first_sample: int, first_block: int, stop_block: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-block maxima and minima of blocks ``[first_block, stop_block)``, new blocks only computed."""
        known_stop = self._first + self._highest.shape[0]
        if self._first <= first_block < known_stop and self._highest.shape[1] == eeg.shape[0]:
            keep = slice(first_block - self._first, min(known_stop, stop_block) - self._first)
            kept_highest, kept_lowest = self._highest[keep], self._lowest[keep]
            new_from = min(known_stop, stop_block)
        else:  # windows only move forwards: anything else is a fresh start
            kept_highest = kept_lowest = np.empty((0, eeg.shape[0]), dtype=eeg.dtype)
            new_from = first_block
        if new_from < stop_block:
            start, stop = new_from * self.block - first_sample, stop_block * self.block - first_sample
            blocks = eeg[:, start:stop].reshape(eeg.shape[0], -1, self.block)
            highest = np.concatenate([kept_highest, blocks.max(axis=2).T])
            lowest = np.concatenate([kept_lowest, blocks.min(axis=2).T])
        else:
            highest, lowest = kept_highest, kept_lowest
        self._first, self._highest, self._lowest = first_block, highest, lowest
        return highest, lowest

    @staticmethod
    def _finite(highest: np.ndarray, lowest: np.ndarray) -> np.ndarray:
        # A NaN or an infinity makes its block's extremes non-finite.
        return np.isfinite(highest).all(axis=0) & np.isfinite(lowest).all(axis=0)

    def _flat(self, highest: np.ndarray, lowest: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return (highest - lowest < self.flat_threshold).any(axis=0)
