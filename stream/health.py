"""Per-stream health figures, ready for the viewer."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.problems import ProblemCode, problem

if TYPE_CHECKING:
    from stream.volumes import VolumePlacer

ARRIVAL_WINDOW_SECONDS = 5.0


@dataclass
class StreamHealth:
    """What is known of one stream's condition.

    Attributes
    ----------
    kind : str
        ``"eeg"``, ``"fmri"``, ``"triggers"`` or ``"truth"``.
    name, stype, source_id : str
        The connected stream (empty before the first connection).
    nominal_rate : float
        Declared rate (0 for irregular streams).
    connected : bool
        An inlet is open and delivering.
    samples : int
        Samples received since the start.
    effective_rate : float | None
        Rate on the stream's own clock (fitted period of regular streams).
    arrival_rate : float | None
        Samples per wall-clock second over the last few seconds (speed x rate in a fast replay).
    lag : float | None
        LSL clock minus the newest timestamp, at the last pull (negative in a fast replay).
    last_timestamp : float | None
        Newest (dejittered) timestamp.
    gaps, dropped_samples : int
        Dropouts detected and the samples they lost.
    non_monotonic : int
        Timestamps not later than their predecessor.
    restarts : int
        Backward jumps of the timeline (stream restarted on another clock).
    reconnects : int
        Times the stream was lost and found again.
    seconds_since_data : float | None
        Wall-clock seconds since data last arrived.
    error : str | None
        Last problem (lost stream, refused stream), cleared when data flows again.
    trigger_latency : float | None
        fMRI stream with triggers: estimated export latency (a volume's stamp minus its
        trigger's time), in seconds.
    pairing : str | None
        fMRI stream with triggers: how volumes are paired with triggers (``run_start``,
        ``expected_latency``, ``assumed``).
    latency_changes : int
        fMRI stream with triggers: times the export latency changed by more than TR/2.
    problem_codes : list of dict
        fMRI stream with triggers: the pairing's current problems (latency high, pairing
        unverified, latency changed), as ``Problem.as_dict()`` records.
    """

    kind: str
    name: str = ""
    stype: str = ""
    source_id: str = ""
    nominal_rate: float = 0.0
    connected: bool = False
    samples: int = 0
    effective_rate: float | None = None
    arrival_rate: float | None = None
    lag: float | None = None
    last_timestamp: float | None = None
    gaps: int = 0
    dropped_samples: int = 0
    non_monotonic: int = 0
    restarts: int = 0
    reconnects: int = 0
    seconds_since_data: float | None = None
    error: str | None = None
    trigger_latency: float | None = None
    pairing: str | None = None
    latency_changes: int = 0
    problem_codes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._arrivals: deque[tuple[float, int]] = deque()
        self._arrived_in_window = 0  # samples in _arrivals after the first entry
        self._last_arrival: float | None = None

    def record_arrival(self, n_samples: int, last_timestamp: float, lsl_now: float) -> None:
        """Account for ``n_samples`` just received."""
        now = time.monotonic()
        self.samples += n_samples
        self.last_timestamp = last_timestamp
        self.lag = lsl_now - last_timestamp
        self._last_arrival = now
        self._arrivals.append((now, n_samples))
        if len(self._arrivals) > 1:
            self._arrived_in_window += n_samples
        while len(self._arrivals) > 1 and self._arrivals[0][0] < now - ARRIVAL_WINDOW_SECONDS:
            self._arrivals.popleft()
            self._arrived_in_window -= self._arrivals[0][1]  # the new first entry no longer counts
        if len(self._arrivals) > 1:
            span = self._arrivals[-1][0] - self._arrivals[0][0]
            if span > 0.5:
                self.arrival_rate = self._arrived_in_window / span
        self.connected = True
        self.error = None

    def record_pairing(self, placer: VolumePlacer) -> None:
        """Copy the volume/trigger pairing's state (fMRI stream) and flag what is wrong with it."""
        self.trigger_latency = None if placer.latency is None else round(placer.latency, 4)
        self.pairing = placer.pairing
        self.latency_changes = placer.latency_changes
        problems = []
        if placer.pairing == "assumed":
            problems.append(problem(ProblemCode.TRIGGER_PAIRING_UNVERIFIED, limit=placer.tolerance))
        if placer.latency_high and placer.latency is not None:
            limit = placer.expected_reference + placer.tolerance
            problems.append(problem(ProblemCode.TRIGGER_LATENCY_HIGH, latency=placer.latency, limit=limit))
        if placer.last_latency_change is not None:
            previous, latency = placer.last_latency_change
            problems.append(problem(ProblemCode.TRIGGER_LATENCY_CHANGED, previous=previous, latency=latency))
        self.problem_codes = [p.as_dict() for p in problems]

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready figures, with the time since data computed now."""
        if self._last_arrival is not None:
            self.seconds_since_data = round(time.monotonic() - self._last_arrival, 3)
        record = asdict(self)
        for key in ("effective_rate", "arrival_rate", "lag", "seconds_since_data"):
            if record[key] is not None:
                record[key] = round(record[key], 4)
        return record
