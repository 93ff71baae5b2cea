"""Place fMRI volumes on the EEG clock through their R128 volume triggers.

An fMRI sample carries its volume index; its own timestamp comes from the
scanner side and is late by the **export latency** (a real-time export arrives one
TR or more after its trigger unless the source subtracts it). The R128 trigger of
the same volume is recorded by the EEG amplifier, on the EEG clock, to the sample.
:class:`VolumePlacer` places volume ``v`` at the time of trigger ``v - offset``.

Trigger ordinals count TRs, not triggers: a trigger that comes two TRs after the
previous one takes the ordinal after next, so a missed trigger leaves the mapping
intact. The offset (volume index minus trigger ordinal) is locked, in this order of
trust:

1. **By order from a run's first trigger** (pairing ``"run_start"``): a trigger that
   follows at least ``RUN_SILENCE_TRS`` TRs without any trigger and without any volume
   stamped in the silence's last TRs (or the first trigger, when the EEG had already
   run that long without one) starts a run. The first volume stamped after it is the
   run's first exported volume and belongs to trigger ``run start + dummy_scans``.
   Then any export latency is paired right.
2. **By a configured expected latency** (``"expected_latency"``): each volume with the
   trigger nearest its stamp minus that latency (within TR/2), e.g. when joining mid-run.
3. **Assumed** (``"assumed"``): without either, the latency is taken to be within TR/2
   of 0, as the old rule did. Windows holding such volumes are flagged
   (``TRIGGER_PAIRING_UNVERIFIED``): a latency of one TR or more would pair every
   volume with a later trigger.

Once locked, volumes are paired by order. The latency (stamp minus trigger time) is
measured on every paired volume; a latency more than TR/2 from the expected one (0
unless configured) is flagged as high; a latency that moves by more than TR/2 for
``LATENCY_CONFIRM`` volumes in a row is a change: the pairing by order is kept, the
estimate re-locked on the new value, and windows holding the volume where it changed
are flagged. The offset is re-locked when the volume numbering goes back (a restarted
source), when a new run starts, or when a volume's mapped trigger never came but a
trigger sits where the latency says its trigger is (the trigger grid broke, e.g. a
replay that loops): by the latency measured so far. A volume whose trigger never came
is used at its stamp minus the latency and counted as unmatched.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

RUN_SILENCE_TRS = 4.0
"""TRs without a trigger (and without a volume) before a trigger that starts a run."""
LATENCY_CONFIRM = 2
"""Volumes in a row whose latency moved by more than TR/2 before it counts as changed."""
LATENCY_SAMPLES = 8
"""Recent paired volumes the latency estimate (their median) is taken over."""

Pairing = Literal["run_start", "expected_latency", "assumed"]


@dataclass
class PlacedVolume:
    """One fMRI volume on the EEG clock.

    Attributes
    ----------
    index : int
        Volume index as sent by the fMRI stream.
    time : float
        Its trigger's time (matched), else its stamp minus the latency estimate.
    stamp : float
        Its own timestamp.
    values : np.ndarray
        Region means.
    matched : bool
        Paired with a trigger.
    pairing : str | None
        How the mapping that paired it was locked (None: unmatched).
    latency_change : tuple of (float, float) | None
        (previous, new) latency when the export latency was found to change at this volume.
    """

    index: int
    time: float
    stamp: float
    values: np.ndarray
    matched: bool
    pairing: str | None = None
    latency_change: tuple[float, float] | None = None


class _Wait:
    """A volume whose trigger may still come: pairing it waits."""


_WAIT = _Wait()
_Paired = tuple[float, tuple[float, float] | None]  # (trigger time, latency change)


class VolumePlacer:
    """Match fMRI volumes to triggers and keep the recent ones.

    Parameters
    ----------
    tr : float
        Repetition time in seconds (from the fMRI stream's nominal rate).
    capacity : int
        Volumes and triggers kept.
    tolerance : float | None
        Largest accepted difference between a volume's stamp minus the latency and its
        trigger's time; TR/2 by default.
    use_triggers : bool
        False when no trigger stream exists: volumes are placed at their own
        timestamps at once.
    dummy_scans : int
        Triggers at a run's start that have no exported volume (dummy scans).
    expected_latency : float | None
        Export latency (stamp minus trigger time) to pair by when a run's start is not
        seen; None when unknown.
    """

    def __init__(
        self,
        tr: float,
        capacity: int,
        tolerance: float | None = None,
        *,
        use_triggers: bool = True,
        dummy_scans: int = 0,
        expected_latency: float | None = None,
    ) -> None:
        self.tr = tr
        self.use_triggers = use_triggers
        self.tolerance = tr / 2 if tolerance is None else tolerance
        self.dummy_scans = dummy_scans
        self.expected_latency = expected_latency
        self._capacity = capacity
        self._triggers: deque[tuple[int, float]] = deque(maxlen=capacity)
        self._run_starts: deque[tuple[int, float]] = deque(maxlen=4)
        self._dummies: deque[int] = deque(maxlen=64)  # ordinals of dummy-scan triggers (no volume)
        self._placed: deque[PlacedVolume] = deque(maxlen=capacity)
        self._pending: dict[int, tuple[float, np.ndarray]] = {}
        self._observed_from: float | None = None
        self._next_ordinal = 0
        self._last_index: int | None = None
        self._samples: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._deviating: list[float] = []
        self.offset: int | None = None
        self._last_offset: int | None = None
        self.pairing: Pairing | None = None
        self.latency: float | None = None
        self.latency_changes = 0
        self.last_latency_change: tuple[float, float] | None = None
        self.remaps = 0

    def reset(self) -> None:
        """Forget every trigger and volume (a stream restarted on another timeline)."""
        self._triggers.clear()
        self._run_starts.clear()
        self._dummies.clear()
        self._placed.clear()
        self._pending.clear()
        self._observed_from = None
        self._last_index = None
        self._samples.clear()
        self._deviating.clear()
        self.offset = self._last_offset = None
        self.pairing = None
        self.latency = None

    def observe_from(self, time: float) -> None:
        """Triggers are watched from ``time`` on (the first EEG sample): earlier silence is unknown."""
        if self._observed_from is None:
            self._observed_from = time

    # -- input ---------------------------------------------------------------
    def add_triggers(self, times: np.ndarray) -> None:
        """Record volume triggers (EEG clock), in time order."""
        silence = RUN_SILENCE_TRS * self.tr
        for time in np.asarray(times, dtype=float):
            time = float(time)
            if self._triggers:
                last_ordinal, last_time = self._triggers[-1]
                steps = max(1, round((time - last_time) / self.tr))
                ordinal = last_ordinal + steps
                starts_run = time - last_time >= silence
            else:
                ordinal = self._next_ordinal
                starts_run = self._observed_from is not None and time - self._observed_from >= silence
            self._triggers.append((ordinal, time))
            self._next_ordinal = ordinal + 1
            if starts_run:
                self._run_starts.append((ordinal, time))
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
        # Bound the pending set: the oldest are used unmatched.
        while len(self._pending) > self._capacity:
            oldest = min(self._pending)
            stamp, row = self._pending.pop(oldest)
            self._store(PlacedVolume(oldest, self._unmatched_time(stamp), stamp, row, matched=False))

    # -- queries -------------------------------------------------------------
    @property
    def latency_high(self) -> bool:
        """Whether the measured latency is more than TR/2 from the expected one (0 unless configured)."""
        return self.latency is not None and abs(self.latency - self.expected_reference) > self.tolerance

    @property
    def expected_reference(self) -> float:
        """The latency volumes are expected to have: the configured one, else 0."""
        return self.expected_latency if self.expected_latency is not None else 0.0

    def latest_trigger_before(self, time: float) -> tuple[int, float] | None:
        """(ordinal, time) of the newest trigger at or before ``time``."""
        for ordinal, stamp in reversed(self._triggers):
            if stamp <= time and ordinal not in self._dummies:
                return ordinal, stamp
        return None

    def triggers_between(self, start: float, stop: float) -> int:
        """Number of volume triggers (dummy scans' excluded) with ``start < time <= stop``."""
        return sum(1 for o, stamp in self._triggers if start < stamp <= stop and o not in self._dummies)

    def has_volume_for(self, ordinal: int, trigger_time: float) -> bool:
        """Whether the volume of trigger ``ordinal`` has arrived."""
        if any(v.matched and v.time == trigger_time for v in reversed(self._placed)):
            return True
        if self.offset is not None:
            index = ordinal + self.offset
            if index in self._pending or any(v.index == index for v in reversed(self._placed)):
                return True
        latency = self.latency if self.latency is not None else self.expected_reference
        after = trigger_time + latency - self.tolerance
        return any(stamp >= after for stamp, _ in self._pending.values()) or any(
            v.stamp >= after for v in self._placed
        )

    def volumes_between(self, start: float, stop: float) -> list[PlacedVolume]:
        """Volumes placed (or pending, unmatched) with ``start < time <= stop``."""
        volumes = [v for v in self._placed if start < v.time <= stop]
        for index, (stamp, row) in self._pending.items():
            time = self._unmatched_time(stamp)
            if start < time <= stop:
                volumes.append(PlacedVolume(index, time, stamp, row, matched=False))
        return sorted(volumes, key=lambda v: v.time)

    def latest_volume_stamp(self) -> float | None:
        """Own timestamp of the newest volume received, or None."""
        stamps = [v.stamp for v in self._placed] + [stamp for stamp, _ in self._pending.values()]
        return max(stamps) if stamps else None

    # -- matching --------------------------------------------------------------
    def _unmatched_time(self, stamp: float) -> float:
        return stamp - self.latency if self.latency is not None and self.use_triggers else stamp

    def _trigger_time(self, ordinal: int) -> float | None:
        if not self._triggers or not self._triggers[0][0] <= ordinal <= self._triggers[-1][0]:
            return None
        for held, time in self._triggers:  # ordinals increase; a missed trigger leaves a hole
            if held == ordinal:
                return time
            if held > ordinal:
                return None
        return None

    def _nearest_trigger(self, time: float) -> tuple[int, float] | None:
        if not self._triggers:
            return None
        ordinal, found = min(self._triggers, key=lambda trigger: abs(trigger[1] - time))
        return (ordinal, found) if abs(found - time) <= self.tolerance else None

    def _place_pending(self) -> None:
        for index in sorted(self._pending):
            stamp, row = self._pending[index]
            placed = self._pair(index, stamp)
            if isinstance(placed, _Wait):
                break  # later volumes are paired after this one: they wait too
            del self._pending[index]
            self._last_index = index
            if placed is None:
                self._store(PlacedVolume(index, self._unmatched_time(stamp), stamp, row, matched=False))
            else:
                time, change = placed
                self._store(PlacedVolume(index, time, stamp, row, True, self.pairing, change))

    def _pair(self, index: int, stamp: float) -> _Paired | _Wait | None:
        """(trigger time, latency change) of volume ``index``; None: its trigger never came; or wait."""
        if not self._triggers:
            return _WAIT
        if self.offset is not None and self._last_index is not None and index <= self._last_index:
            self.offset = None  # the numbering went back: the source restarted
        run_start = self._run_start_for(stamp)
        if run_start is not None:
            ordinal = run_start[0] + self.dummy_scans
            if self._triggers[-1][0] < ordinal:
                return _WAIT  # the dummy scans' triggers and this volume's are still to come
            self._dummies.extend(o for o in range(run_start[0], ordinal) if o not in self._dummies)
            self._lock(index - ordinal, "run_start")
        if self.offset is None:
            return self._lock_by_latency(index, stamp)
        ordinal = index - self.offset
        time = self._trigger_time(ordinal)
        if time is None:
            if self._triggers[-1][0] < ordinal:
                return _WAIT
            # Its trigger never came, or the trigger grid broke (a gap of no whole number of TRs).
            latency = self.latency if self.latency is not None else self.expected_reference
            nearest = self._nearest_trigger(stamp - latency)
            if nearest is None or self._is_paired(nearest[1]):
                return None
            self._lock(index - nearest[0], self.pairing or "assumed")
            time = nearest[1]
        return time, self._measure(stamp - time)

    def _lock_by_latency(self, index: int, stamp: float) -> _Paired | _Wait | None:
        """First lock without a run start: by the configured latency, the latency so far, or 0 (assumed)."""
        pairing: Pairing
        if self.expected_latency is not None:
            latency, pairing = self.expected_latency, "expected_latency"
        elif self.latency is not None and self.pairing is not None:
            latency, pairing = self.latency, self.pairing
        else:
            latency, pairing = 0.0, "assumed"
        if self._triggers[-1][1] < stamp - latency - self.tolerance:
            return _WAIT  # the trigger it belongs to may still come
        nearest = self._nearest_trigger(stamp - latency)
        if nearest is None:
            return None
        self._lock(index - nearest[0], pairing)
        return nearest[1], self._measure(stamp - nearest[1])

    def _lock(self, offset: int, pairing: Pairing) -> None:
        if self._last_offset is not None and offset != self._last_offset:
            self.remaps += 1
        self.offset = self._last_offset = offset
        self.pairing = pairing
        self._deviating.clear()

    def _run_start_for(self, stamp: float) -> tuple[int, float] | None:
        """The run-start trigger whose run's first exported volume this is, if any."""
        for ordinal, time in reversed(self._run_starts):
            if stamp < time - self.tolerance:
                continue  # a volume of an earlier run
            earlier = [v for v in self._placed if time - self.tolerance <= v.stamp < stamp]
            if earlier:
                return None  # this run's first volume has been paired already
            silent_from = time - (RUN_SILENCE_TRS - 2) * self.tr
            if any(silent_from < v.stamp < time - self.tolerance for v in self._placed):
                return None  # volumes came while no trigger did: the triggers were lost, not a new run
            return ordinal, time
        return None

    def _is_paired(self, trigger_time: float) -> bool:
        return any(v.matched and v.time == trigger_time for v in reversed(self._placed))

    def _measure(self, latency: float) -> tuple[float, float] | None:
        """Account for one paired volume's latency; (previous, new) when the latency changed."""
        if self.latency is not None and abs(latency - self.latency) > self.tolerance:
            self._deviating.append(latency)
            if len(self._deviating) < LATENCY_CONFIRM:
                return None
            previous = self.latency
            self._samples.clear()
            self._samples.extend(self._deviating)
            self._deviating.clear()
            self.latency = float(np.median(self._samples))
            self.latency_changes += 1
            self.last_latency_change = (previous, self.latency)
            return self.last_latency_change
        self._deviating.clear()
        self._samples.append(latency)
        self.latency = float(np.median(self._samples))
        return None

    def _store(self, volume: PlacedVolume) -> None:
        self._placed.append(volume)
