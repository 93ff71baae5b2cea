"""Place fMRI volumes on the EEG clock through their R128 volume triggers.

An fMRI sample carries its volume index; its own timestamp comes from the
scanner-side computer and may be off by tens of milliseconds or more. The R128
trigger of the same volume is recorded by the EEG amplifier, on the EEG clock,
to the sample. :class:`VolumePlacer` therefore places volume ``v`` at the time
of trigger ``v - offset``, where ``offset`` (volume index minus trigger ordinal)
is anchored once, on the trigger nearest the first volume's timestamp, and
re-anchored whenever a volume's timestamp and its trigger disagree by more than
``tolerance`` (a missed trigger, a new run, a restarted stream). A volume whose
trigger has not arrived is kept pending; if a window needs it before its trigger
comes, it is used at its own timestamp and counted as unmatched.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class PlacedVolume:
    """One fMRI volume on the EEG clock."""

    index: int
    time: float
    stamp: float
    values: np.ndarray
    matched: bool


class VolumePlacer:
    """Match fMRI volumes to triggers and keep the recent ones.

    Parameters
    ----------
    tr : float
        Repetition time in seconds (from the fMRI stream's nominal rate).
    capacity : int
        Volumes and triggers kept.
    tolerance : float | None
        Largest accepted difference between a volume's timestamp and its
        trigger's time; TR/2 by default.
    use_triggers : bool
        False when no trigger stream exists: volumes are placed at their own
        timestamps at once.
    """

    def __init__(
        self, tr: float, capacity: int, tolerance: float | None = None, *, use_triggers: bool = True
    ) -> None:
        self.tr = tr
        self.use_triggers = use_triggers
        self.tolerance = tr / 2 if tolerance is None else tolerance
        self._triggers: deque[tuple[int, float]] = deque(maxlen=capacity)
        self._next_ordinal = 0
        self._placed: deque[PlacedVolume] = deque(maxlen=capacity)
        self._pending: dict[int, tuple[float, np.ndarray]] = {}
        self._capacity = capacity
        self.offset: int | None = None
        self.remaps = 0

    def reset(self) -> None:
        """Forget every trigger and volume (a stream restarted on another timeline)."""
        self._triggers.clear()
        self._placed.clear()
        self._pending.clear()
        self.offset = None

    # -- input ---------------------------------------------------------------
    def add_triggers(self, times: np.ndarray) -> None:
        """Record volume triggers (EEG clock), in time order."""
        for time in np.asarray(times, dtype=float):
            self._triggers.append((self._next_ordinal, float(time)))
            self._next_ordinal += 1
        self._place_pending()

    def add_volumes(self, indices: np.ndarray, stamps: np.ndarray, values: np.ndarray) -> None:
        """Record fMRI samples: volume indices, their own timestamps and region values."""
        for index, stamp, row in zip(indices, stamps, values, strict=True):
            if not self.use_triggers:
                self._store(
                    PlacedVolume(round(index), float(stamp), float(stamp), np.asarray(row, np.float32), False)
                )
                continue
            self._pending[round(index)] = (float(stamp), np.asarray(row, dtype=np.float32))
        self._place_pending()
        # Bound the pending set: the oldest are placed at their own timestamps.
        while len(self._pending) > self._capacity:
            oldest = min(self._pending)
            stamp, row = self._pending.pop(oldest)
            self._store(PlacedVolume(oldest, stamp, stamp, row, matched=False))

    # -- queries -------------------------------------------------------------
    def latest_trigger_before(self, time: float) -> tuple[int, float] | None:
        """(ordinal, time) of the newest trigger at or before ``time``."""
        for ordinal, stamp in reversed(self._triggers):
            if stamp <= time:
                return ordinal, stamp
        return None

    def triggers_between(self, start: float, stop: float) -> int:
        """Number of triggers with ``start < time <= stop``."""
        return sum(1 for _, stamp in self._triggers if start < stamp <= stop)

    def has_volume_for(self, ordinal: int, trigger_time: float) -> bool:
        """Whether the volume of trigger ``ordinal`` has arrived."""
        if self.offset is not None:
            index = ordinal + self.offset
            return index in self._pending or any(v.index == index for v in reversed(self._placed))
        return any(stamp >= trigger_time - self.tolerance for stamp, _ in self._pending.values()) or any(
            v.stamp >= trigger_time - self.tolerance for v in self._placed
        )

    def volumes_between(self, start: float, stop: float) -> list[PlacedVolume]:
        """Volumes placed (or pending, at their own stamp) with ``start < time <= stop``."""
        volumes = [v for v in self._placed if start < v.time <= stop]
        volumes += [
            PlacedVolume(index, stamp, stamp, row, matched=False)
            for index, (stamp, row) in self._pending.items()
            if start < stamp <= stop
        ]
        return sorted(volumes, key=lambda v: v.time)

    def latest_volume_stamp(self) -> float | None:
        """Own timestamp of the newest volume received, or None."""
        stamps = [v.stamp for v in self._placed] + [stamp for stamp, _ in self._pending.values()]
        return max(stamps) if stamps else None

    # -- matching --------------------------------------------------------------
    def _trigger_time(self, ordinal: int) -> float | None:
        if not self._triggers or ordinal < self._triggers[0][0] or ordinal > self._triggers[-1][0]:
            return None
        return self._triggers[ordinal - self._triggers[0][0]][1]

    def _nearest_trigger(self, stamp: float) -> tuple[int, float] | None:
        if not self._triggers:
            return None
        ordinal, time = min(self._triggers, key=lambda trigger: abs(trigger[1] - stamp))
        return (ordinal, time) if abs(time - stamp) <= self.tolerance else None

    def _place_pending(self) -> None:
        for index in sorted(self._pending):
            stamp, row = self._pending[index]
            if self._triggers and stamp < self._triggers[0][1] - self.tolerance:
                # Older than every trigger held: its trigger was never received.
                del self._pending[index]
                self._store(PlacedVolume(index, stamp, stamp, row, matched=False))
                continue
            time = self._trigger_of(index, stamp)
            if time is not None:
                del self._pending[index]
                self._store(PlacedVolume(index, time, stamp, row, matched=True))

    def _trigger_of(self, index: int, stamp: float) -> float | None:
        """Time of volume ``index``'s trigger, re-anchoring the mapping when it is off; None if unknown."""
        if self.offset is not None:
            time = self._trigger_time(index - self.offset)
            if time is not None and abs(time - stamp) <= self.tolerance:
                return time
            # Its trigger is "not yet here" and no trigger has reached its time: wait for it.
            overtaken = bool(self._triggers) and self._triggers[-1][1] >= stamp - self.tolerance
            if time is None and not overtaken:
                return None
        # No mapping yet, or the mapped trigger is not this volume's. A trigger at the volume's
        # time says the mapping is off (a missed trigger, a new run, a restarted stream): re-anchor
        # on it. None says this volume's own trigger never came (triggers stopped): the mapping
        # stays, or every later call would re-anchor again until the volume is dropped.
        nearest = self._nearest_trigger(stamp)
        if nearest is None:
            return None
        if self.offset is not None:
            self.remaps += 1
        self.offset = index - nearest[0]
        return nearest[1]

    def _store(self, volume: PlacedVolume) -> None:
        self._placed.append(volume)
