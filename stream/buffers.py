"""Fixed-size ring buffers: memory stays flat however long the night."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import DTypeLike


class SampleRingBuffer:
    """The latest ``capacity`` samples of a multichannel stream with their times.

    Every sample is written twice, ``capacity`` apart, so that any run of up to
    ``capacity`` consecutive samples is one contiguous slice: windows are cut
    without reordering. Samples are stored channels first, as the window checks
    and the features read them (along time, channel by channel): a chunk is
    transposed once when it arrives, not once per overlapping window.

    Parameters
    ----------
    capacity : int
        Samples kept.
    n_channels : int
        Channels per sample.
    dtype : numpy dtype
        Sample type (float32 by default).
    """

    def __init__(self, capacity: int, n_channels: int, dtype: DTypeLike = np.float32) -> None:
        if capacity < 1 or n_channels < 1:
            raise ValueError(f"capacity and n_channels must be >= 1, got {capacity}, {n_channels}")
        self.capacity = capacity
        self.n_channels = n_channels
        self._times = np.full(2 * capacity, np.nan)
        self._data = np.zeros((n_channels, 2 * capacity), dtype=dtype)
        self._head = 0  # position of the next write in [0, capacity)
        self.count = 0  # samples held (<= capacity)
        self.total = 0  # samples ever written

    def clear(self) -> None:
        """Drop every sample held."""
        self._head = 0
        self.count = 0

    def append(self, times: np.ndarray, data: np.ndarray) -> None:
        """Append samples (oldest are overwritten when full).

        Parameters
        ----------
        times : np.ndarray, shape (n,)
            Increasing timestamps.
        data : np.ndarray, shape (n, n_channels)
            Samples.
        """
        n = len(times)
        if n == 0:
            return
        if data.shape != (n, self.n_channels):
            raise ValueError(f"expected data of shape ({n}, {self.n_channels}), got {data.shape}")
        if n > self.capacity:
            times, data = times[-self.capacity :], data[-self.capacity :]
            self.total += n - self.capacity
            n = self.capacity
        first = min(n, self.capacity - self._head)
        for offset in (0, self.capacity):
            start = self._head + offset
            self._times[start : start + first] = times[:first]
            self._data[:, start : start + first] = data[:first].T
            if first < n:
                rest = n - first
                self._times[offset : offset + rest] = times[first:]
                self._data[:, offset : offset + rest] = data[first:].T
        self._head = (self._head + n) % self.capacity
        self.count = min(self.capacity, self.count + n)
        self.total += n

    def _view(self) -> tuple[np.ndarray, np.ndarray]:
        start = self._head + self.capacity - self.count
        stop = self._head + self.capacity
        return self._times[start:stop], self._data[:, start:stop]

    @property
    def latest_time(self) -> float | None:
        """Timestamp of the newest sample, or None when empty."""
        return float(self._times[self._head + self.capacity - 1]) if self.count else None

    @property
    def earliest_time(self) -> float | None:
        """Timestamp of the oldest sample held, or None when empty."""
        return float(self._view()[0][0]) if self.count else None

    def between(self, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the samples with ``start < time <= stop``.

        Returns
        -------
        times : np.ndarray, shape (n,)
        data : np.ndarray, shape (n, n_channels)
        """
        times, data, _ = self.between_numbered(start, stop)
        return times, data

    def between_numbered(
        self, start: float, stop: float, *, channels_first: bool = False
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Like :meth:`between`, plus the sequence number of the first sample returned.

        Samples are numbered 0, 1, 2... in the order they were appended since the
        buffer was created, so the same sample has the same number in every window.

        Parameters
        ----------
        start, stop : float
            Bounds, ``start < time <= stop``.
        channels_first : bool
            Return the data as a C-contiguous ``(n_channels, n)`` array (a plain
            copy, the buffer's own layout) instead of ``(n, n_channels)`` (a
            transposing copy).
        """
        times, data = self._view()
        first = int(np.searchsorted(times, start, side="right"))
        last = int(np.searchsorted(times, stop, side="right"))
        picked = data[:, first:last]
        picked = picked.copy() if channels_first else np.ascontiguousarray(picked.T)
        return times[first:last].copy(), picked, self.total - self.count + first

    def count_between(self, start: float, stop: float) -> int:
        """Number of samples with ``start < time <= stop`` (nothing copied)."""
        times, _ = self._view()
        return int(np.searchsorted(times, stop, side="right") - np.searchsorted(times, start, side="right"))

    def first_after(self, time: float) -> float | None:
        """Timestamp of the oldest sample later than ``time``, or None."""
        times, _ = self._view()
        index = int(np.searchsorted(times, time, side="right"))
        return float(times[index]) if index < times.size else None


Payload = TypeVar("Payload")


class EventBuffer(Generic[Payload]):
    """The latest events (timestamp and payload), in arrival order, bounded."""

    def __init__(self, capacity: int) -> None:
        self._events: deque[tuple[float, Payload]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        """Drop every event held."""
        self._events.clear()

    def append(self, time: float, payload: Payload) -> None:
        """Add one event."""
        self._events.append((time, payload))

    def latest_before(self, time: float) -> tuple[float, Payload] | None:
        """The newest event with timestamp <= ``time``, or None."""
        for stamp, payload in reversed(self._events):
            if stamp <= time:
                return stamp, payload
        return None

    def between(self, start: float, stop: float) -> list[tuple[float, Payload]]:
        """Events with ``start < time <= stop``, in time order."""
        return sorted((e for e in self._events if start < e[0] <= stop), key=lambda e: e[0])

    def items(self) -> list[tuple[float, Payload]]:
        """Every event held, in arrival order."""
        return list(self._events)
