"""Live acquisition: LSL streams in, aligned windows out, never blocking, never crashing.

One background thread pulls every inlet without waiting, feeds the pure
:class:`~stream.windower.MultiRateWindower`, and hands finished windows to a
bounded drop-oldest :class:`~stream.window_queue.WindowQueue`. The model and the
websocket clients consume that queue at their own pace; acquisition never waits
for them. Lost streams are looked for again, by their query, in the same loop.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from core.layouts import fmri_layout
from core.windows import Window
from stream.artefact_correction import ArtefactCorrection
from stream.config import AcquisitionConfig
from stream.dejitter import ClockUpdate
from stream.discovery import StreamMismatchError, find_stream
from stream.readers import EegReader, FmriReader, MarkerReader, StreamReader, decode_markers
from stream.window_queue import QueueClosedError, WindowQueue
from stream.windower import MultiRateWindower

logger = logging.getLogger(__name__)
IDLE_SLEEP = 0.002
RECONNECT_INTERVAL = 0.25
# While the consumer has this many windows still to take, acquisition pauses between pulls (the
# inlets keep receiving): two threads working at once mostly wait for each other on the
# interpreter lock. Only a backlog (a fast replay, catching up after a stall) makes one.
BACKLOG_WINDOWS = 8
BACKLOG_MAX_PAUSE = 0.25  # seconds; pulls never stop for longer, so no stream looks silent
BACKLOG_SLEEP = 0.005


def declared_stamp_latency(info: Any) -> float | None:
    """The export latency an fMRI stream declares for its stamps (``stamp_latency`` in its description).

    Parameters
    ----------
    info : pylsl.StreamInfo
        The fMRI stream's full description.

    Returns
    -------
    latency : float | None
        Seconds from a volume's trigger to its stamp, or None when not declared (or not a number).
    """
    text = info.desc().child("session").child_value("stamp_latency")
    try:
        latency = float(text) if text else None
    except ValueError:
        return None
    return latency if latency is not None and math.isfinite(latency) and -30 <= latency <= 60 else None


def scanner_description(info: Any) -> tuple[bool, int | None]:
    """Whether an EEG stream says it is recorded in the scanner, and the slices per volume it gives.

    Read from ``<session><in_scanner>true</in_scanner><slices_per_volume>35</slices_per_volume>``
    in the stream's description (the replay of an in-scanner recording writes them).
    """
    session = info.desc().child("session")
    in_scanner = session.child_value("in_scanner").strip().lower() in ("true", "1", "yes")
    text = session.child_value("slices_per_volume")
    try:
        slices = int(text) if text else None
    except ValueError:
        slices = None
    return in_scanner, slices if slices is not None and slices >= 1 else None


class Acquisition:
    """Consume EEG, fMRI, trigger and truth streams and produce windows.

    Parameters
    ----------
    config : AcquisitionConfig
        Which streams, what to expect, window geometry.

    Attributes
    ----------
    passes : int
        Completed acquisition passes: every stream pulled, then every window that
        could be cut queued. Samples counted in :meth:`health` have been windowed once
        this has grown by one since they were counted.
    backlog_pauses : int
        Times pulls paused because the consumer had ``BACKLOG_WINDOWS`` windows to take.
    backlog_pauses_ended_by_limit : int
        Pauses that ended after ``BACKLOG_MAX_PAUSE`` with the backlog still there
        (pulls resumed although nobody had read).
    resolve_seconds : float
        Time the last :meth:`connect` spent finding the streams (the rest of it opened them).
    on_eeg_chunk : Callable[[np.ndarray], None] | None
        Instrumentation hook: called in the acquisition thread with the dejittered timestamps
        of every EEG chunk pulled, before it is windowed. It must return at once.
    on_window : Callable[[Window], None] | None
        Instrumentation hook: called in the acquisition thread with every window just before
        it is queued. It must return at once (the benchmarks timestamp the stages with these).

    Examples
    --------
    >>> with Acquisition(AcquisitionConfig.for_replay("sub-27_task-sleep_run-2")) as acq:  # doctest: +SKIP
    ...     window = acq.queue.get(timeout=60)
    """

    def __init__(self, config: AcquisitionConfig) -> None:
        self.config = config
        window = config.window
        self.eeg = EegReader(
            config.eeg,
            expected_channels=config.expected_eeg_channels,
            expected_rate=config.expected_eeg_rate,
            gap_tolerance=window.gap_tolerance,
            backward_jump_reset=window.backward_jump_reset,
            max_buflen=config.inlet_buffer_seconds,
        )
        buffered = config.inlet_buffer_seconds
        self.fmri = FmriReader(config.fmri, max_buflen=buffered) if config.fmri else None
        self.triggers = MarkerReader("triggers", config.triggers, buffered) if config.triggers else None
        self.truth = MarkerReader("truth", config.truth, buffered) if config.truth else None
        self.queue: WindowQueue[Window] = WindowQueue(config.queue_size)
        self.windower: MultiRateWindower | None = None
        self.error: BaseException | None = None
        self.passes = 0
        self.backlog_pauses = 0
        self.backlog_pauses_ended_by_limit = 0
        self.resolve_seconds = 0.0
        self.on_eeg_chunk: Callable[[np.ndarray], None] | None = None
        self.on_window: Callable[[Window], None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def readers(self) -> list[StreamReader]:
        """Every stream reader, EEG first."""
        return [r for r in (self.eeg, self.fmri, self.triggers, self.truth) if r is not None]

    @property
    def thread(self) -> threading.Thread | None:
        """The acquisition thread (None before :meth:`start`), e.g. to read its CPU clock."""
        return self._thread

    # -- lifecycle -----------------------------------------------------------
    def connect(self) -> Acquisition:
        """Find, check and open every stream, without pulling yet (:meth:`start` does both).

        Raises
        ------
        StreamNotFoundError
            If a configured stream cannot be found within ``resolve_timeout``.
        StreamMismatchError
            If the EEG or fMRI stream differs from the configuration.
        """
        self.resolve_seconds = 0.0
        try:
            for reader in self.readers:
                # Opening a found stream (clock offset, subscription) gets the same bound as finding it.
                timeout = self.config.resolve_timeout
                started = time.perf_counter()
                found = find_stream(reader.query, timeout)
                self.resolve_seconds += time.perf_counter() - started
                reader.connect(found, open_timeout=timeout)
        except Exception:
            for reader in self.readers:
                reader.close()
            raise
        try:
            self.windower = self._make_windower()
        except Exception:
            for reader in self.readers:
                reader.close()
            raise
        self.eeg.listener = self._on_eeg
        if self.fmri is not None:
            self.fmri.listener = self.windower.add_fmri
        if self.triggers is not None:
            self.triggers.listener = self._on_triggers
        if self.truth is not None:
            self.truth.listener = self.windower.add_truth
        return self

    def start(self) -> Acquisition:
        """Connect (unless :meth:`connect` was called; its errors), then acquire in the background."""
        if self.windower is None:
            self.connect()
        self._thread = threading.Thread(target=self._run, name="acquisition", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop acquiring and close every inlet."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for reader in self.readers:
            reader.close()
        self.queue.close()

    def __enter__(self) -> Acquisition:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def windows(self) -> AsyncIterator[Window]:
        """Windows as they are cut, for ``async for``; ends when acquisition stops."""
        while True:
            try:
                yield await self.queue.aget()
            except QueueClosedError:
                return

    def health(self) -> dict[str, Any]:
        """Health figures of every stream and of the window queue."""
        windower = self.windower
        if windower is not None and self.triggers is not None and self.fmri is not None:
            self.fmri.health.record_pairing(windower.volumes)
        correction = windower.correction if windower is not None else None
        return {
            "streams": {reader.kind: reader.health.snapshot() for reader in self.readers},
            "artefacts": correction.status() if correction is not None else None,
            "windows": {
                "emitted": windower.windows_emitted if windower else 0,
                "skipped": windower.windows_skipped if windower else 0,
                "dropped": self.queue.dropped,
                "queued": len(self.queue),
                "fmri_remaps": windower.volumes.remaps if windower else 0,
            },
            "running": self._thread is not None and self._thread.is_alive(),
            "error": None if self.error is None else repr(self.error),
        }

    # -- internals -----------------------------------------------------------
    def _make_windower(self) -> MultiRateWindower:
        info = self.eeg.info
        fmri_info = self.fmri.info if self.fmri is not None else None
        if info is None or (self.fmri is not None and fmri_info is None):
            raise RuntimeError("the EEG and fMRI streams must be connected first")
        ch_names = info.get_channel_labels() or [f"ch{i + 1}" for i in range(info.channel_count())]
        ch_types = info.get_channel_types() or ["eeg"] * info.channel_count()
        ch_types = [t.lower() if t else "eeg" for t in ch_types]
        window = self.config.window
        # An EEG-only session: no regions; the TR only sizes the (unused) volume buffer.
        region_names, tr = fmri_layout(fmri_info) if fmri_info is not None else ([], window.hop)
        declared = declared_stamp_latency(fmri_info) if fmri_info is not None else None
        if window.expected_latency is None and declared is not None:
            # The source says how late its stamps are (a replay stamps volumes at their triggers).
            window = dataclasses.replace(window, expected_latency=declared)
        in_scanner, slices = scanner_description(info)
        if self.config.artefacts.enabled(in_scanner) and self.triggers is None:
            logger.warning("the EEG is from the scanner but no trigger stream is read: gradients stay")
        try:
            correction = (
                ArtefactCorrection(
                    self.config.artefacts,
                    info.nominal_srate(),
                    ch_names,
                    ch_types,
                    tr=tr if fmri_info is not None else None,
                    slices_per_volume=slices,
                    feature_rate=window.feature_rate_hz,
                )
                if self.config.artefacts.enabled(in_scanner)
                else None
            )
        except ValueError as err:  # e.g. the configured ECG channel is not in the stream
            raise StreamMismatchError(f"EEG stream: {err}") from None
        return MultiRateWindower(
            window,
            info.nominal_srate(),
            ch_names,
            ch_types,
            region_names,
            tr,
            use_triggers=self.triggers is not None,
            use_truth=self.truth is not None,
            use_fmri=self.fmri is not None,
            correction=correction,
        )

    def _connected_windower(self) -> MultiRateWindower:
        """The windower :meth:`connect` made (stream callbacks and the loop run only after it)."""
        if self.windower is None:
            raise RuntimeError("the acquisition is not connected")
        return self.windower

    def _on_eeg(self, times: np.ndarray, data: np.ndarray, update: ClockUpdate) -> None:
        if self.on_eeg_chunk is not None:
            self.on_eeg_chunk(times)
        windower = self._connected_windower()
        if update.restarted:
            logger.warning("EEG timeline jumped backwards: the streams restarted; windows start afresh")
            windower.restart()
            self._replay_history_since_restart()
        for gap in update.gaps:
            windower.add_gap(gap)
        windower.add_eeg(times, data)

    def _on_triggers(self, stamps: np.ndarray, labels: list[str]) -> None:
        marker = self.config.window.trigger_marker
        picked = np.array([s for s, label in zip(stamps, labels, strict=True) if label == marker])
        if picked.size:
            self._connected_windower().add_triggers(picked)

    def _replay_history_since_restart(self) -> None:
        """Feed again what other streams delivered on the new timeline before EEG restarted.

        Only streams reconnected since the EEG stream was lost are on the new
        timeline; their history holds just their current connection.
        """
        eeg_lost_at = self.eeg.lost_at
        for reader in (self.fmri, self.triggers, self.truth):
            if reader is None or eeg_lost_at is None or reader.connected_at < eeg_lost_at:
                continue
            for stamps, data in list(reader.history):
                self._refeed(reader, stamps, data)

    def _refeed(self, reader: StreamReader, stamps: np.ndarray, data: np.ndarray) -> None:
        if isinstance(reader, FmriReader):
            values = np.asarray(data, dtype=np.float32)
            self._connected_windower().add_fmri(values[:, 0], stamps, values[:, 1:])
        elif isinstance(reader, MarkerReader) and reader.listener is not None:
            reader.listener(stamps, decode_markers(data))

    def _run(self) -> None:
        import pylsl

        next_reconnect = 0.0
        last_pull = time.monotonic()
        pausing = False
        while not self._stop.is_set():
            try:
                if len(self.queue) >= BACKLOG_WINDOWS:
                    if time.monotonic() - last_pull < BACKLOG_MAX_PAUSE:
                        if not pausing:
                            pausing = True
                            self.backlog_pauses += 1
                        time.sleep(BACKLOG_SLEEP)
                        continue
                    if pausing:
                        self.backlog_pauses_ended_by_limit += 1
                pausing = False
                last_pull = time.monotonic()
                now = pylsl.local_clock()
                received = 0
                # Triggers first: the gradient correction holds EEG only briefly for its volume's
                # trigger, so a trigger must not reach it after a large EEG chunk it starts in.
                for reader in sorted(self.readers, key=lambda r: r is not self.triggers):
                    received += reader.pull(now)
                for window in self._connected_windower().poll():
                    if self.on_window is not None:
                        self.on_window(window)
                    self.queue.put(window)
                self.passes += 1
                if time.monotonic() >= next_reconnect:
                    next_reconnect = time.monotonic() + RECONNECT_INTERVAL
                    for reader in self.readers:
                        if not reader.connected:
                            reader.try_reconnect()
                if not received:
                    time.sleep(IDLE_SLEEP)
            except Exception as err:  # never let one bad chunk take the process down
                self.error = err
                logger.error("acquisition error, continuing: %s\n%s", err, traceback.format_exc())
                time.sleep(0.1)
