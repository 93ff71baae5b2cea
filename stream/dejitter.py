"""Gap-aware timestamp dejittering for regularly sampled streams.

A sample's LSL timestamp carries transport and scheduling jitter; its true time
is close to ``t0 + k * period`` for the k-th sample since the stream (re)started.
:class:`RegularClock` fits that line by exponentially weighted least squares
(half-life 90 s, as liblsl's own ``proc_dejitter``) and returns the fitted
times. Unlike liblsl's filter, it restarts the fit at every gap (a jump forward
beyond ``gap_tolerance`` periods) so a dropout is reported, not smeared over
minutes, and it reports a jump backward beyond ``backward_jump_reset`` seconds
as a restart of the stream on another timeline. The fitted period gives the
stream's effective rate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

HALFTIME_SECONDS = 90.0
MIN_FIT_SECONDS = 2.0
MAX_RATE_DEVIATION = 0.1


@dataclass
class Gap:
    """A dropout: no samples between ``start`` and ``end`` (seconds, LSL clock)."""

    start: float
    end: float
    missing_samples: int


@dataclass
class ClockUpdate:
    """Result of dejittering one chunk.

    Attributes
    ----------
    times : np.ndarray
        Dejittered timestamps, strictly increasing within a timeline.
    gaps : list of Gap
        Dropouts detected before or inside the chunk.
    restarted : bool
        The chunk jumped backwards: the stream restarted on another timeline,
        and ``times`` belong to the new one.
    non_monotonic : int
        Raw timestamps not later than their predecessor (kept, re-timed).
    """

    times: np.ndarray
    gaps: list[Gap] = field(default_factory=list)
    restarted: bool = False
    non_monotonic: int = 0


class RegularClock:
    """Dejitter the timestamps of one regular-rate stream, chunk by chunk.

    Parameters
    ----------
    nominal_rate : float
        The stream's nominal sampling rate in Hz.
    gap_tolerance : float
        A forward jump beyond this many periods (plus ``jitter_allowance``) is a gap.
    backward_jump_reset : float
        A backward jump beyond this many seconds is a restart.
    jitter_allowance : float
        Seconds of timestamp jitter tolerated before a jump counts as a gap.
    halftime : float
        Half-life of the least-squares weights, in seconds of data.
    """

    def __init__(
        self,
        nominal_rate: float,
        *,
        gap_tolerance: float = 2.5,
        backward_jump_reset: float = 1.0,
        jitter_allowance: float = 0.02,
        halftime: float = HALFTIME_SECONDS,
    ) -> None:
        if not nominal_rate > 0:
            raise ValueError(f"a regular clock needs a nominal rate > 0, got {nominal_rate}")
        self.nominal_period = 1.0 / nominal_rate
        self.gap_threshold = gap_tolerance * self.nominal_period + jitter_allowance
        self.backward_jump_reset = backward_jump_reset
        self._decay = 0.5 ** (self.nominal_period / halftime)
        self.period = self.nominal_period
        self._origin: float | None = None
        self._next_k = 0
        self._sums = np.zeros(5)  # S0, Sk, Skk, Sy, Sky
        self._offset = 0.0
        self._last_raw = -np.inf
        self.last_time: float | None = None

    @property
    def effective_rate(self) -> float:
        """Rate given by the fitted period, in Hz."""
        return 1.0 / self.period

    def reset(self) -> None:
        """Forget the timeline (e.g. after reconnecting to a new outlet)."""
        self._origin = None
        self._last_raw = -np.inf
        self.last_time = None

    def restart_points(self, raw: np.ndarray) -> list[int]:
        """Indices inside a chunk (> 0) where its timestamps jump back by more than ``backward_jump_reset``.

        :meth:`process` recognises a restart at a chunk's first sample; a jump further in
        (chunks as pulled need not start where the sender's clock was reset) is found here:
        process the chunk in pieces split at these indices.

        Parameters
        ----------
        raw : np.ndarray, shape (n,)
            Timestamps of one chunk as received.

        Returns
        -------
        points : list of int
            Increasing indices; empty when the chunk holds one timeline.
        """
        raw = np.asarray(raw, dtype=float)
        points: list[int] = []
        start = 0
        while raw.size - start > 1:
            piece = raw[start:]
            back = np.flatnonzero(piece[1:] < np.maximum.accumulate(piece)[:-1] - self.backward_jump_reset)
            if not back.size:
                break
            start += int(back[0]) + 1
            points.append(start)
        return points

    def process(self, raw: np.ndarray) -> ClockUpdate:
        """Dejitter one chunk of raw (clock-corrected) timestamps.

        Parameters
        ----------
        raw : np.ndarray, shape (n,)
            Timestamps of consecutive samples as received.

        Returns
        -------
        update : ClockUpdate
        """
        raw = np.asarray(raw, dtype=float)
        update = ClockUpdate(times=np.empty(raw.size))
        if raw.size == 0:
            return update
        if self._origin is not None and raw[0] < self._last_raw - self.backward_jump_reset:
            update.restarted = True
            self._origin = None
            self._last_raw = -np.inf
        previous = np.concatenate([[self._last_raw], raw[:-1]])
        update.non_monotonic = int(np.count_nonzero(raw <= previous))
        # Split where the raw timestamps jump forward by more than a gap.
        jumps = np.flatnonzero(np.diff(raw) > self.gap_threshold) + 1
        bounds = [0, *jumps.tolist(), raw.size]
        for start, stop in itertools.pairwise(bounds):
            update.times[start:stop] = self._fit_piece(raw[start:stop], update)
        self._last_raw = max(self._last_raw, float(raw.max()))
        self.last_time = float(update.times[-1])
        return update

    def _fit_piece(self, raw: np.ndarray, update: ClockUpdate) -> np.ndarray:
        if self._origin is not None:
            predicted = self._origin + self._offset + self.period * self._next_k
            if raw[0] - predicted > self.gap_threshold:
                missing = round((raw[0] - predicted) / self.period)
                update.gaps.append(
                    Gap(start=float(self.last_time or predicted), end=float(raw[0]), missing_samples=missing)
                )
                self._origin = None
        if self._origin is None:
            self._origin = float(raw[0])
            self._next_k = 0
            self._sums[:] = 0.0
            self._offset = 0.0
        n = raw.size
        k = self._next_k + np.arange(n, dtype=float)
        y = raw - self._origin
        weights = self._decay ** np.arange(n - 1, -1, -1, dtype=float)
        self._sums *= self._decay**n
        self._sums += [weights.sum(), weights @ k, weights @ (k * k), weights @ y, weights @ (k * y)]
        s0, sk, skk, sy, sky = self._sums
        denominator = s0 * skk - sk * sk
        span = (self._next_k + n) * self.nominal_period
        if span >= MIN_FIT_SECONDS and denominator > 0:
            period = (s0 * sky - sk * sy) / denominator
            if abs(period / self.nominal_period - 1) <= MAX_RATE_DEVIATION:
                self.period = float(period)
        self._offset = float((sy - self.period * sk) / s0)
        self._next_k += n
        times = self._origin + self._offset + self.period * k
        if self.last_time is not None and not update.restarted:
            # A refit may move the line slightly; never step back in time.
            floor = self.last_time + 0.5 * self.period
            times = np.maximum(times, floor + self.period * np.arange(n))
        self.last_time = float(times[-1])
        return times
