"""One reader per LSL stream: connect, pull without blocking, notice loss, reconnect.

Inlets use liblsl's clock synchronisation (``proc_clocksync``): every timestamp
is mapped onto this machine's LSL clock. Regular streams are dejittered by
:class:`stream.dejitter.RegularClock` rather than liblsl's ``proc_dejitter``,
which smears dropouts over minutes. Inlets are opened with ``recover=False``:
a lost outlet is noticed at once (``LostError``) and the reader looks for the
stream again by its query, so a replacement with a new source_id is found too.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from stream.config import StreamQuery
from stream.dejitter import ClockUpdate, RegularClock
from stream.discovery import StreamMismatchError, xpath_predicate
from stream.health import StreamHealth

if TYPE_CHECKING:
    import pylsl

# What each reader passes on: EEG (times, samples, clock update), fMRI (volume indices, times, region
# means), markers (times, labels).
EegListener = Callable[[np.ndarray, np.ndarray, ClockUpdate], None]
FmriListener = Callable[[np.ndarray, np.ndarray, np.ndarray], None]
MarkerListener = Callable[[np.ndarray, list[str]], None]

MAX_CHUNK = 4096  # samples per pull of the EEG (16 s at 250 Hz)
MAX_SMALL_CHUNK = 64  # per pull of the slow streams (volumes, markers): a pull's cost grows with it
HISTORY_CHUNKS = 512
# An inlet with nothing to give is only pulled this often (a pull is what reports a lost stream);
# asking whether samples wait is much cheaper than an empty pull.
LOSS_CHECK_SECONDS = 0.05


class StreamReader:
    """Base reader: owns one inlet and the health record of one stream.

    Parameters
    ----------
    kind : str
        ``"eeg"``, ``"fmri"``, ``"triggers"`` or ``"truth"``.
    query : StreamQuery
        How to find the stream (and find it again after a loss).
    max_buflen : int
        Seconds of data the inlet may hold for a slow consumer.
    """

    keeps_history = True  # small streams keep their current connection's chunks
    max_chunk = MAX_SMALL_CHUNK  # samples per pull (pylsl prepares a buffer of this size every pull)

    def __init__(self, kind: str, query: StreamQuery, max_buflen: int = 360) -> None:
        self.kind = kind
        self.query = query
        self.max_buflen = max_buflen
        self.health = StreamHealth(kind=kind)
        self.info: pylsl.StreamInfo | None = None
        self._inlet: pylsl.StreamInlet | None = None
        self._resolver: pylsl.ContinuousResolver | None = None
        self._lost_uids: set[str] = set()
        self.connected_at = 0.0  # time.monotonic() of the current connection
        self.lost_at: float | None = None  # time.monotonic() of the last loss
        # Chunks received since the current connection (replayed after a timeline reset).
        self.history: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=HISTORY_CHUNKS)
        self._next_loss_check = 0.0  # LSL time of the next pull made even with nothing waiting

    @property
    def connected(self) -> bool:
        """Whether an inlet is open."""
        return self._inlet is not None

    def connect(self, info: pylsl.StreamInfo, open_timeout: float = 5.0) -> None:
        """Open an inlet on ``info`` (a resolved ``pylsl.StreamInfo``)."""
        import pylsl

        self.check(info)
        inlet = pylsl.StreamInlet(
            info, max_buflen=self.max_buflen, recover=False, processing_flags=pylsl.proc_clocksync
        )
        # The first clock-offset estimate takes several probes; get it now, before
        # subscribing, or the first pull would stall the acquisition loop for it.
        inlet.time_correction(timeout=open_timeout)
        inlet.open_stream(timeout=open_timeout)
        self.info = inlet.info(timeout=open_timeout)
        self._inlet = inlet
        self._resolver = None
        self.history.clear()
        self.connected_at = time.monotonic()
        health = self.health
        health.name, health.stype, health.source_id = info.name(), info.type(), info.source_id()
        health.nominal_rate = info.nominal_srate()
        health.connected = True
        health.error = None

    def check(self, info: pylsl.StreamInfo) -> None:
        """Refuse a stream that does not fit (overridden per kind)."""

    def samples_waiting(self) -> int:
        """Samples received by the inlet and not pulled yet (0 when not connected)."""
        return self._inlet.samples_available() if self._inlet is not None else 0

    def pull(self, lsl_now: float) -> int:
        """Pull what is available without waiting; return the number of samples."""
        if self._inlet is None:
            return 0
        if lsl_now < self._next_loss_check and not self._inlet.samples_available():
            return 0
        from pylsl.util import LostError

        self._next_loss_check = lsl_now + LOSS_CHECK_SECONDS
        try:
            data, stamps = self._inlet.pull_chunk(timeout=0.0, max_samples=self.max_chunk, as_numpy=True)
        except LostError:
            self.lost("the stream was lost (its outlet closed or stopped answering)")
            return 0
        if len(stamps) == 0:
            return 0
        stamps = np.asarray(stamps, dtype=float)
        if self.keeps_history:
            # Copies: the pulled arrays are views on buffers sized for max_chunk samples.
            self.history.append((stamps.copy(), data.copy()))
        self.handle(stamps, data, lsl_now)
        return len(stamps)

    def handle(self, stamps: np.ndarray, data: np.ndarray, lsl_now: float) -> None:
        """Use one chunk (overridden per kind)."""
        self.health.record_arrival(len(stamps), float(stamps[-1]), lsl_now)

    def lost(self, reason: str) -> None:
        """Close the inlet and start looking for the stream again."""
        if self.info is not None:
            self._lost_uids.add(self.info.uid())
        self._inlet = None
        self.lost_at = time.monotonic()
        self.health.connected = False
        self.health.error = reason

    def try_reconnect(self) -> bool:
        """Look (without blocking) for the stream again; reconnect if found."""
        import pylsl

        if self._inlet is not None:
            return False
        if self._resolver is None:
            self._resolver = pylsl.ContinuousResolver(pred=xpath_predicate(self.query), forget_after=2.0)
            return False
        candidates = [info for info in self._resolver.results() if info.uid() not in self._lost_uids]
        if not candidates:
            return False
        try:
            self.connect(max(candidates, key=lambda info: info.created_at()), open_timeout=1.0)
        except StreamMismatchError as err:
            self._lost_uids.add(candidates[0].uid())
            self.health.error = str(err)
            return False
        except Exception as err:  # the outlet may vanish again while we connect
            self.health.error = f"reconnection failed: {err}"
            self._inlet = None
            return False
        self.health.reconnects += 1
        return True

    def close(self) -> None:
        """Close the inlet."""
        if self._inlet is not None:
            self._inlet.close_stream()
        self._inlet = None
        self._resolver = None


class EegReader(StreamReader):
    """The EEG stream: dejittered, gap-checked, checked against the configuration."""

    keeps_history = False
    max_chunk = MAX_CHUNK

    def __init__(
        self,
        query: StreamQuery,
        *,
        expected_channels: int | None = None,
        expected_rate: float | None = None,
        gap_tolerance: float = 2.5,
        backward_jump_reset: float = 1.0,
        max_buflen: int = 360,
    ) -> None:
        super().__init__("eeg", query, max_buflen)
        self.expected_channels = expected_channels
        self.expected_rate = expected_rate
        self._gap_tolerance = gap_tolerance
        self._backward_jump_reset = backward_jump_reset
        self.clock: RegularClock | None = None
        self.listener: EegListener | None = None

    def check(self, info: pylsl.StreamInfo) -> None:
        """Refuse an EEG stream whose format, channel count or rate differ from the configuration."""
        where = f"EEG stream {info.name()!r} (source_id {info.source_id()!r})"
        if info.nominal_srate() <= 0:
            raise StreamMismatchError(f"{where} has no regular sampling rate")
        import pylsl

        if info.channel_format() == pylsl.cf_string:
            raise StreamMismatchError(f"{where} does not carry numeric samples")
        if self.expected_channels is not None and info.channel_count() != self.expected_channels:
            raise StreamMismatchError(
                f"{where} has {info.channel_count()} channels; "
                f"the configuration expects {self.expected_channels}"
            )
        if self.expected_rate is not None and abs(info.nominal_srate() - self.expected_rate) > 1e-6:
            raise StreamMismatchError(
                f"{where} is sampled at {info.nominal_srate():g} Hz; the configuration expects "
                f"{self.expected_rate:g} Hz"
            )
        if self.clock is not None and abs(1 / self.clock.nominal_period - info.nominal_srate()) > 1e-6:
            raise StreamMismatchError(
                f"{where} is sampled at {info.nominal_srate():g} Hz, unlike the stream it replaces "
                f"({1 / self.clock.nominal_period:g} Hz)"
            )

    def connect(self, info: pylsl.StreamInfo, open_timeout: float = 5.0) -> None:
        """Open the inlet; the dejittering clock is kept across reconnections."""
        super().connect(info, open_timeout)
        if self.clock is None:
            self.clock = RegularClock(
                info.nominal_srate(),
                gap_tolerance=self._gap_tolerance,
                backward_jump_reset=self._backward_jump_reset,
            )

    def handle(self, stamps: np.ndarray, data: np.ndarray, lsl_now: float) -> None:
        """Dejitter the chunk, count gaps and restarts, pass it on.

        A chunk in which the timeline jumps back is handled in pieces, one per timeline.
        """
        clock = self._clock()
        bounds = [0, *clock.restart_points(stamps), len(stamps)]
        for start, stop in itertools.pairwise(bounds):
            self._handle_piece(clock, stamps[start:stop], data[start:stop], lsl_now)

    def _clock(self) -> RegularClock:
        if self.clock is None:
            raise RuntimeError("the EEG reader handles chunks only once connected")
        return self.clock

    def _handle_piece(
        self, clock: RegularClock, stamps: np.ndarray, data: np.ndarray, lsl_now: float
    ) -> None:
        update = clock.process(stamps)
        health = self.health
        health.gaps += len(update.gaps)
        health.dropped_samples += sum(gap.missing_samples for gap in update.gaps)
        health.non_monotonic += update.non_monotonic
        health.restarts += int(update.restarted)
        health.effective_rate = clock.effective_rate
        health.record_arrival(len(stamps), float(update.times[-1]), lsl_now)
        if self.listener is not None:
            self.listener(update.times, np.asarray(data, dtype=np.float32), update)


class FmriReader(StreamReader):
    """The fMRI-metrics stream: volume index then region means, one sample per volume."""

    def __init__(self, query: StreamQuery, max_buflen: int = 360) -> None:
        super().__init__("fmri", query, max_buflen)
        self.listener: FmriListener | None = None

    def check(self, info: pylsl.StreamInfo) -> None:
        """Refuse an fMRI stream without rate or regions."""
        where = f"fMRI stream {info.name()!r} (source_id {info.source_id()!r})"
        if info.nominal_srate() <= 0:
            raise StreamMismatchError(f"{where} declares no rate: its nominal rate must be 1/TR")
        if info.channel_count() < 2:
            raise StreamMismatchError(f"{where} needs a volume-index channel and at least one region")

    def handle(self, stamps: np.ndarray, data: np.ndarray, lsl_now: float) -> None:
        """Split volume index and region means, pass them on."""
        super().handle(stamps, data, lsl_now)
        data = np.asarray(data, dtype=np.float32)
        if self.listener is not None:
            self.listener(data[:, 0], stamps, data[:, 1:])


class MarkerReader(StreamReader):
    """A string marker stream (volume triggers or ground-truth stages)."""

    def __init__(self, kind: str, query: StreamQuery, max_buflen: int = 360) -> None:
        super().__init__(kind, query, max_buflen)
        self.listener: MarkerListener | None = None

    def handle(self, stamps: np.ndarray, data: np.ndarray, lsl_now: float) -> None:
        """Decode the markers, pass them on."""
        super().handle(stamps, data, lsl_now)
        if self.listener is not None:
            self.listener(stamps, decode_markers(data))


def decode_markers(data: np.ndarray) -> list[str]:
    """Marker strings of a string chunk (raw bytes as pulled with ``as_numpy=True``)."""
    return [
        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in data[:, 0]
    ]
