"""Stream faults injected into a replay: a small, typed, validated schedule.

Each fault is a frozen dataclass active from ``start`` to ``end`` seconds of
*replay time* (session time since the replay started, continuing across loops;
at ``speed`` 10 a 10 s fault lasts 1 s of wall-clock time). Pass them to
:class:`simulators.replay.SessionPlayer` as ``faults=(...)``:

>>> from simulators.faults import EegOutletLoss, FmriStall
>>> faults = (EegOutletLoss(start=40, end=50), FmriStall(start=60, end=90))

- :class:`EegOutletLoss`: the EEG outlet is destroyed (the stream leaves the
  network) and created again at ``end`` with the same name and source_id, as an
  amplifier's connector restarting; the samples of the outage are never sent.
- :class:`FmriStall`: the scanner's export stalls; the volumes it should have
  delivered meanwhile arrive in one burst at ``end``, still stamped with their
  acquisition times (a stalled export catches up, it does not drop volumes).
- :class:`TriggersStop`: no ``R128`` marker acquired in the span is sent.
- :class:`EegClockJump`: EEG timestamps are ``seconds`` earlier in the span (a
  clock reset); with the default ``end`` (never), from ``start`` on.
- :class:`BadChannels`: some channels hold a constant (flat), others NaN.
- :class:`EegRateError`: the EEG is produced and stamped at ``factor`` times its
  nominal rate while the stream declares the nominal rate (a fast or slow
  amplifier clock); it covers the whole replay.

:class:`FaultSchedule` validates a set of faults against a session and answers
the replay's questions (is the EEG outlet down now, which timestamps, which
values, which events when).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np

# (due time, timestamp, outlet kind, value) of a marker (its text) or fMRI sample (its values), as in the
# replay.
Event = tuple[float, float, str, str | np.ndarray]


@dataclass(frozen=True)
class Fault:
    """A fault active while ``start <= t < end`` (seconds of replay time).

    Parameters
    ----------
    start : float
        When the fault begins (>= 0).
    end : float
        When it ends (> start); ``math.inf`` for never.
    """

    start: float
    end: float = math.inf
    kind: ClassVar[str] = "fault"
    needs_end: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and self.start >= 0):
            raise ValueError(f"{self.kind}: start must be a finite time >= 0 s, got {self.start!r}")
        if not self.end > self.start:
            raise ValueError(f"{self.kind}: end ({self.end!r}) must be after start ({self.start!r})")
        if self.needs_end and not math.isfinite(self.end):
            raise ValueError(f"{self.kind}: needs a finite end")

    def active(self, t: float) -> bool:
        """Whether the fault is in effect at replay time ``t``."""
        return self.start <= t < self.end

    def mask(self, times: np.ndarray) -> np.ndarray:
        """Which of ``times`` (replay time) the fault covers."""
        return (times >= self.start) & (times < self.end)

    def describe(self) -> str:
        """One line, e.g. ``fMRI stall from 60 s to 90 s``."""
        until = "on" if math.isinf(self.end) else f"to {self.end:g} s"
        return f"{self.kind} from {self.start:g} s {until}"


F = TypeVar("F", bound=Fault)


@dataclass(frozen=True)
class EegOutletLoss(Fault):
    """The EEG outlet is destroyed at ``start`` and comes back at ``end`` (same name and source_id)."""

    kind: ClassVar[str] = "EEG outlet lost"
    needs_end: ClassVar[bool] = True


@dataclass(frozen=True)
class FmriStall(Fault):
    """fMRI samples due during the span are held and delivered in one burst at ``end``."""

    kind: ClassVar[str] = "fMRI stall"
    needs_end: ClassVar[bool] = True


@dataclass(frozen=True)
class TriggersStop(Fault):
    """No volume trigger acquired during the span is sent (``end`` = never: for good)."""

    kind: ClassVar[str] = "triggers stop"


@dataclass(frozen=True)
class EegClockJump(Fault):
    """EEG samples of the span are stamped ``seconds`` earlier (a clock reset).

    Parameters
    ----------
    seconds : float
        How far back the EEG clock jumps (> 0).
    """

    seconds: float = 5.0
    kind: ClassVar[str] = "EEG clock jump"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"{self.kind}: seconds must be > 0, got {self.seconds!r}")

    def describe(self) -> str:
        """One line, with the size of the jump."""
        return f"{super().describe()}, {self.seconds:g} s back"


@dataclass(frozen=True)
class BadChannels(Fault):
    """During the span, channels ``flat`` hold ``flat_value`` µV and channels ``nan`` carry NaN.

    Parameters
    ----------
    flat, nan : tuple of str
        Channel names (at least one in all, none in both).
    flat_value : float
        The constant of the flat channels, in µV.
    """

    flat: tuple[str, ...] = ()
    nan: tuple[str, ...] = ()
    flat_value: float = 0.0
    kind: ClassVar[str] = "bad channels"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "flat", tuple(self.flat))
        object.__setattr__(self, "nan", tuple(self.nan))
        if not self.flat and not self.nan:
            raise ValueError(f"{self.kind}: name at least one flat or NaN channel")
        if set(self.flat) & set(self.nan):
            raise ValueError(f"{self.kind}: {sorted(set(self.flat) & set(self.nan))} both flat and NaN")
        if not math.isfinite(self.flat_value):
            raise ValueError(f"{self.kind}: flat_value must be finite, got {self.flat_value!r}")

    def describe(self) -> str:
        """One line, with the channels."""
        parts = [
            f"flat {', '.join(self.flat)}" if self.flat else "",
            f"NaN {', '.join(self.nan)}" if self.nan else "",
        ]
        return f"{super().describe()}: {'; '.join(p for p in parts if p)}"


@dataclass(frozen=True)
class EegRateError(Fault):
    """The EEG runs at ``factor`` x its nominal rate for the whole replay (``start`` 0, no end).

    Parameters
    ----------
    factor : float
        Real rate over nominal rate (1.02: 2 % fast), between 0.5 and 1.5, not 1.
    """

    start: float = 0.0
    factor: float = 1.02
    kind: ClassVar[str] = "EEG rate error"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.start != 0 or math.isfinite(self.end):
            raise ValueError(
                f"{self.kind}: an amplifier's clock is off for the whole replay (start 0, no end)"
            )
        if not (0.5 <= self.factor <= 1.5) or self.factor == 1:
            raise ValueError(f"{self.kind}: factor must be in [0.5, 1.5] and not 1, got {self.factor!r}")

    def describe(self) -> str:
        """One line, with the error in percent."""
        return f"{self.kind}: {self.factor - 1:+.1%} of the nominal rate"


class FaultSchedule:
    """The faults of one replay, validated, as the replay applies them.

    Parameters
    ----------
    faults : iterable of Fault
        The faults (any order).
    ch_names : sequence of str
        The EEG channel names of the session (channels of :class:`BadChannels` must exist).

    Raises
    ------
    TypeError
        If an item is not a :class:`Fault`.
    ValueError
        If a channel does not exist, two EEG outlet losses overlap, or there is more
        than one rate error.
    """

    def __init__(self, faults: Iterable[Fault], ch_names: Sequence[str]) -> None:
        self.faults = tuple(faults)
        for fault in self.faults:
            if not isinstance(fault, Fault) or type(fault) is Fault:
                raise TypeError(f"not a fault of simulators.faults: {fault!r}")
        self.outages = self._of(EegOutletLoss)
        self.stalls = self._of(FmriStall)
        self.trigger_stops = self._of(TriggersStop)
        self.clock_jumps = self._of(EegClockJump)
        self.bad_channels = self._of(BadChannels)
        rate_errors = self._of(EegRateError)
        if len(rate_errors) > 1:
            raise ValueError("at most one EEG rate error per replay")
        ordered = sorted(self.outages, key=lambda fault: fault.start)
        for first, second in itertools.pairwise(ordered):
            if second.start < first.end:
                raise ValueError(f"EEG outlet losses overlap: {first.describe()} and {second.describe()}")
        index = {name: i for i, name in enumerate(ch_names)}
        for fault in self.bad_channels:
            unknown = [name for name in (*fault.flat, *fault.nan) if name not in index]
            if unknown:
                raise ValueError(f"{fault.kind}: no channel {unknown} in the session ({len(index)} channels)")
        self._rows = {
            fault: (
                np.array([index[n] for n in fault.flat], dtype=int),
                np.array([index[n] for n in fault.nan], dtype=int),
            )
            for fault in self.bad_channels
        }
        self.rate_factor = rate_errors[0].factor if rate_errors else 1.0
        #: Whether EEG samples need their own timestamps (not derived by liblsl at the nominal rate).
        self.retimes_eeg = bool(rate_errors or self.clock_jumps)

    def _of(self, cls: type[F]) -> tuple[F, ...]:
        return tuple(fault for fault in self.faults if isinstance(fault, cls))

    def __bool__(self) -> bool:
        return bool(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    # -- EEG ---------------------------------------------------------------------
    def eeg_outlet_down(self, t: float) -> bool:
        """Whether the EEG outlet is gone at replay time ``t``."""
        return any(fault.active(t) for fault in self.outages)

    def eeg_breaks(self) -> list[float]:
        """Replay times where the EEG outlet goes or comes back (EEG chunks are split there)."""
        return sorted({t for fault in self.outages for t in (fault.start, fault.end)})

    def eeg_clock_shift(self, times: np.ndarray) -> np.ndarray:
        """Seconds to add to the timestamps of samples at replay ``times`` (negative: jumped back)."""
        shift = np.zeros(times.shape)
        for fault in self.clock_jumps:
            shift[fault.mask(times)] -= fault.seconds
        return shift

    def corrupt_eeg(self, chunk: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The chunk (samples x channels) with flat and NaN channels where a fault covers ``times``."""
        for fault in self.bad_channels:
            covered = fault.mask(times)
            if not covered.any():
                continue
            chunk = np.array(chunk, dtype=np.float32)  # a copy: never write into the session's data
            flat, nan = self._rows[fault]
            chunk[np.ix_(covered, flat)] = fault.flat_value
            chunk[np.ix_(covered, nan)] = np.nan
        return chunk

    # -- markers and fMRI ----------------------------------------------------------
    def reschedule(self, events: list[Event], offset: float) -> list[Event]:
        """Drop the triggers of a stop, delay the fMRI samples of a stall; sorted by due time.

        Parameters
        ----------
        events : list of (due, stamp, kind, value)
            One pass of the session, times in seconds of that pass.
        offset : float
            Replay time of the pass's start.
        """
        if not (self.stalls or self.trigger_stops):
            return events
        kept = [self._delayed(event, offset) for event in events if not self._dropped(event, offset)]
        return sorted(kept, key=lambda event: event[0])

    def _dropped(self, event: Event, offset: float) -> bool:
        due, _, kind, _ = event
        return kind == "Triggers" and any(fault.active(offset + due) for fault in self.trigger_stops)

    def _delayed(self, event: Event, offset: float) -> Event:
        due, stamp, kind, value = event
        if kind == "fMRI":
            for fault in self.stalls:
                if fault.active(offset + due):
                    due = fault.end - offset
        return due, stamp, kind, value
