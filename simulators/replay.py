"""Replay a :class:`~recordings.recording.Recording` as LSL streams.

Four outlets, named ``<prefix>-EEG``, ``<prefix>-fMRI``, ``<prefix>-Triggers``
and (optionally) ``<prefix>-Truth``, each with a unique source_id (a recording without
BOLD has no fMRI and no Triggers outlet: EEG and the optional Truth only):

- EEG: type ``EEG``, float32, one channel per recorded channel (labels, types
  and units in the XML description, as mne-lsl and LabRecorder read them),
  nominal rate = the recording's.
- fMRI: type ``fMRI``, float32, one sample per volume: the volume index then
  the mean of each region; nominal rate 1/TR. Its timestamp is the volume's
  acquisition time (its trigger), even when delivery is delayed by ``fmri_lag``
  as in real-time fMRI, which arrives 1-3 s after acquisition.
- Triggers: type ``Markers``, ``R128`` at each volume's acquisition time.
- Truth: type ``Markers``, the scored stage (``W``, ``N1``, ``N2``, ``N3`` or
  ``unscored``) at each 30 s epoch start.

Timestamps are ``t0 + session time``, where ``t0`` is the LSL clock at the
start; at a speed factor above 1 they run ahead of the LSL clock, which keeps
every interval between samples as recorded. Looping continues the timestamps
and the volume index. The player runs in a background thread and is a context
manager, so outlets are always closed.

Stream faults (an EEG outlet that dies and returns, a stalled fMRI export,
missing triggers, a clock jump, flat or NaN channels, a wrong EEG rate) are
injected with ``faults=`` (:mod:`simulators.faults`).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.layouts import VOLUME_TRIGGER, fmri_stream_info, new_identity
from core.stages import EPOCH_SECONDS
from recordings.recording import Recording
from simulators.faults import Event, Fault, FaultSchedule

if TYPE_CHECKING:
    import pylsl

# The replay wakes when the next EEG sample falls due (every sample period at real time), but at most
# every MIN_TICK_SECONDS and at least every MAX_TICK_SECONDS: samples leave within a millisecond or
# so of their timestamp, as from an amplifier that sends small blocks.
MIN_TICK_SECONDS = 0.001
MAX_TICK_SECONDS = 0.02
MAX_CHUNK_SAMPLES = 4096


class SessionPlayer:
    """Publish a session on LSL in real time, faster, or as fast as possible.

    Parameters
    ----------
    session : Recording
        The run to replay.
    speed : float
        Time compression: 1 = real time, 10 = ten times faster; ``math.inf``
        pushes everything as fast as possible (the outlets then buffer the
        whole run, so a late consumer still receives every sample).
    loop : bool
        Start again at the end, with continuing timestamps and volume index.
    fmri_lag : float
        Delivery delay of each fMRI sample after its volume's acquisition, in
        seconds of session time.
    with_truth : bool
        Publish the scored stages as a ``Markers`` stream.
    prefix : str | None
        Stream-name prefix; the session label by default.
    wait_for_consumers : float
        Seconds to wait, before starting the clock, for every outlet to have a
        consumer (0 = start at once).
    fmri_stamp_error : float
        Standard deviation (s) of an error added to each fMRI timestamp, as from
        a scanner-side computer whose clock is not the EEG amplifier's (seeded;
        0 = exact acquisition times).
    faults : sequence of Fault
        Stream faults to inject (:mod:`simulators.faults`), at times of the replay
        (session time since the start, continuing across loops). None by default.
    block_seconds : float | None
        At a finite speed, push the EEG every ``block_seconds`` of wall time, as an amplifier
        that delivers fixed blocks; None (default) pushes samples as they fall due.
    on_push : Callable[[str, float, int], None] | None
        Instrumentation hook, called in the replay thread just before each EEG chunk, fMRI
        sample or marker is handed to liblsl, with the stream (``"EEG"``, ``"fMRI"``,
        ``"Triggers"``, ``"Truth"``), the timestamp of its last sample and its number of
        samples. It must return at once (the benchmarks timestamp pushes with it).

    Attributes
    ----------
    start_clock : float | None
        LSL time of replay time 0 (set when the replay starts).
    samples_withheld : int
        EEG samples never sent because the EEG outlet was down.
    fault_log : list of (float, str)
        LSL time and description of every outlet lost or restored by a fault.
    progress : tuple of (float, int) | None
        At a finite speed, the LSL clock reading of the latest replay step and the
        EEG samples sent or withheld by then, over all passes: each step sends every
        sample due by ``(clock - start_clock) * speed`` seconds of replay time, so the
        two show that the replay keeps to its speed on its own clock (None before the
        first step and at speed ``math.inf``).
    """

    def __init__(
        self,
        session: Recording,
        *,
        speed: float = 1.0,
        loop: bool = False,
        fmri_lag: float = 0.0,
        with_truth: bool = False,
        prefix: str | None = None,
        wait_for_consumers: float = 0.0,
        fmri_stamp_error: float = 0.0,
        faults: Sequence[Fault] = (),
        block_seconds: float | None = None,
        on_push: Callable[[str, float, int], None] | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0 (math.inf for as fast as possible), got {speed}")
        if not 0 <= fmri_lag <= 60:
            raise ValueError(f"fmri_lag must be between 0 and 60 s, got {fmri_lag}")
        if with_truth and session.hypnogram is None:
            raise ValueError(f"{session.label} has no scoring: cannot publish a truth stream")
        self.session = session
        self.speed = float(speed)
        self.loop = loop
        self.fmri_lag = float(fmri_lag)
        self.with_truth = with_truth
        self.prefix = prefix or session.label
        self.wait_for_consumers = float(wait_for_consumers)
        self.has_fmri = session.has_fmri
        if not 0 <= fmri_stamp_error < (session.tr / 2 if self.has_fmri and session.tr else math.inf):
            raise ValueError(f"fmri_stamp_error must be in [0, TR/2), got {fmri_stamp_error}")
        self.fmri_stamp_error = float(fmri_stamp_error)
        if block_seconds is not None and not block_seconds > 0:
            raise ValueError(f"block_seconds must be > 0, got {block_seconds}")
        self.block_seconds = block_seconds
        self.on_push = on_push
        self.faults = FaultSchedule(faults, session.ch_names)
        if self.faults and math.isinf(self.speed):
            raise ValueError("faults need a finite speed: at speed max everything is sent at once")
        if self.faults.rate_factor != 1 and loop:
            raise ValueError("an EEG rate error cannot loop: the EEG would drift off the next pass")
        # EEG samples per second of replay time (the nominal rate unless the amplifier's clock is off).
        self._eeg_rate = session.sfreq * self.faults.rate_factor
        token = uuid.uuid4().hex[:8]
        kinds = ["EEG", *(["fMRI", "Triggers"] if self.has_fmri else []), *(["Truth"] if with_truth else [])]
        self.streams = {kind: new_identity(self.prefix, kind, token) for kind in kinds}
        self._outlets: dict[str, pylsl.StreamOutlet] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()
        self.error: BaseException | None = None
        self.samples_pushed = 0
        self.samples_withheld = 0
        self.loops_completed = 0
        self.start_clock: float | None = None
        self.fault_log: list[tuple[float, str]] = []
        self.progress: tuple[float, int] | None = None
        self._buffered = 360

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> SessionPlayer:
        """Create the outlets and start replaying in a background thread."""
        if self._thread is not None:
            raise RuntimeError("this player has already been started")
        self._outlets = self._make_outlets()
        self._thread = threading.Thread(target=self._run, name=f"replay-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the replay and close the outlets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._outlets.clear()  # dropping the outlets unregisters the streams

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a non-looping replay has pushed everything; True if it has."""
        return self._finished.wait(timeout)

    @property
    def is_running(self) -> bool:
        """Whether the replay thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SessionPlayer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- outlets -----------------------------------------------------------
    def _make_outlets(self) -> dict[str, pylsl.StreamOutlet]:
        import pylsl

        session = self.session
        buffered = 360
        if math.isinf(self.speed):
            buffered = int(session.duration) + 60
        self._buffered = buffered
        outlets = {"EEG": self._eeg_outlet()}
        if self.has_fmri:
            fmri = fmri_stream_info(
                self.streams["fMRI"],
                session.region_names,
                float(session.tr or 0.0),
                {
                    **self._session_description(),
                    "regions": self._regions_description(),
                    "delivery_lag": f"{self.fmri_lag:g}",
                    # Stamps are the volumes' acquisition times: no export latency in them.
                    "stamp_latency": "0",
                },
            )
            triggers = self._marker_info("Triggers", markers=f"{VOLUME_TRIGGER} = fMRI volume acquisition")
            outlets["fMRI"] = pylsl.StreamOutlet(fmri, max_buffered=buffered)
            outlets["Triggers"] = pylsl.StreamOutlet(triggers, max_buffered=buffered)
        if self.with_truth:
            truth = self._marker_info(
                "Truth", markers="scored stage at each 30 s epoch start", epoch_seconds=f"{EPOCH_SECONDS:g}"
            )
            outlets["Truth"] = pylsl.StreamOutlet(truth, max_buffered=buffered)
        return outlets

    def _eeg_outlet(self) -> pylsl.StreamOutlet:
        """A new EEG outlet (also when an outlet-loss fault ends: same name and source_id)."""
        import pylsl

        session = self.session
        eeg = pylsl.StreamInfo(
            self.streams["EEG"].name,
            "EEG",
            len(session.ch_names),
            session.sfreq,
            "float32",
            self.streams["EEG"].source_id,
        )
        eeg.set_channel_labels(session.ch_names)
        eeg.set_channel_types(list(session.ch_types))
        eeg.set_channel_units(list(session.channel_units))
        # An in-scanner recording says so, for the consumer's artefact correction (auto).
        scanner = (
            {"in_scanner": "true", "slices_per_volume": str(session.slices_per_volume or "")}
            if session.in_scanner
            else {}
        )
        if session.source_format == "ds003768":
            self._describe(eeg, reference="FCz", manufacturer="Brain Products (replay)", **scanner)
        else:
            self._describe(eeg, manufacturer=f"{session.source_format} recording (replay)", **scanner)
        return pylsl.StreamOutlet(eeg, max_buffered=self._buffered)

    def _regions_description(self) -> str:
        parcellation = self.session.parcellation
        if parcellation is not None:
            return parcellation.description
        return f"{len(self.session.region_names)} regions from {self.session.source_format}"

    def _marker_info(self, kind: str, **extra: str) -> pylsl.StreamInfo:
        """StreamInfo of a one-channel irregular string marker stream."""
        import pylsl

        identity = self.streams[kind]
        info = pylsl.StreamInfo(
            identity.name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", identity.source_id
        )
        self._describe(info, **extra)
        return info

    def _session_description(self) -> dict[str, str]:
        session = self.session
        return {
            "subject": session.subject,
            "task": session.task,
            "run": str(session.run),
            "speed": f"{self.speed:g}",
        }

    def _describe(self, info: pylsl.StreamInfo, **extra: str) -> None:
        desc = info.desc().append_child("session")
        for key, value in {**self._session_description(), **extra}.items():
            desc.append_child_value(key, value)

    # -- replay loop -------------------------------------------------------
    def _run(self) -> None:
        import pylsl

        try:
            if self.wait_for_consumers > 0:
                deadline = time.monotonic() + self.wait_for_consumers
                for outlet in self._outlets.values():
                    outlet.wait_for_consumers(max(0.0, deadline - time.monotonic()))
            start_clock = self.start_clock = pylsl.local_clock()
            offset = 0.0
            while not self._stop.is_set():
                self._replay_once(start_clock, offset, self.loops_completed * self.session.n_volumes)
                if self._stop.is_set():
                    break
                self.loops_completed += 1
                offset += self.session.duration
                if not self.loop:
                    break
        except BaseException as err:  # reported to the owner, never silent
            self.error = err
        finally:
            self._finished.set()

    def _replay_once(self, start_clock: float, offset: float, volume_offset: int) -> None:
        import pylsl

        session = self.session
        events = self.faults.reschedule(self._event_schedule(volume_offset), offset)
        next_sample = 0
        next_event = 0
        t0 = start_clock + offset  # LSL time of session time 0 in this pass
        fast = math.isinf(self.speed)
        while not self._stop.is_set():
            if fast:
                now = session.duration + self.fmri_lag
            else:
                clock = pylsl.local_clock()
                now = (clock - start_clock) * self.speed - offset
            next_sample = self._push_eeg(next_sample, now, t0, offset)
            if not fast:
                self.progress = (clock, self.samples_pushed + self.samples_withheld)
            next_event = self._push_events(events, next_event, now, t0)
            self._sync_eeg_outlet(offset + now)
            if next_sample >= session.n_times and next_event >= len(events):
                return
            if not fast:
                time.sleep(self._tick(next_sample, now))

    def _tick(self, next_sample: int, now: float) -> float:
        """Wall seconds to sleep until the next EEG sample is due, within the tick bounds."""
        if self.block_seconds is not None:
            return self.block_seconds
        until_due = (next_sample / self.session.sfreq - now) / self.speed
        return min(MAX_TICK_SECONDS, max(MIN_TICK_SECONDS, until_due))

    def _push_eeg(self, next_sample: int, now: float, t0: float, offset: float) -> int:
        """Push the EEG samples due by ``now`` (seconds of this pass); return the next one to push.

        Chunks are split where a fault takes the EEG outlet down or brings it back.
        """
        due = min(self.session.n_times, math.floor(now * self._eeg_rate) + 1)
        breaks = [math.ceil((t - offset) * self._eeg_rate) for t in self.faults.eeg_breaks()]
        while next_sample < due:
            stop = min([due, next_sample + MAX_CHUNK_SAMPLES, *(b for b in breaks if b > next_sample)])
            self._push_eeg_chunk(next_sample, stop, t0, offset)
            next_sample = stop
        return next_sample

    def _push_eeg_chunk(self, start: int, stop: int, t0: float, offset: float) -> None:
        """Push EEG samples ``start:stop`` of this pass, with whatever faults apply to them."""
        times = np.arange(start, stop) / self._eeg_rate  # seconds of this pass
        faults = self.faults
        self._sync_eeg_outlet(offset + times[0])
        if "EEG" not in self._outlets:  # the outlet is down: these samples are never sent
            self.samples_withheld += stop - start
            return
        chunk = faults.corrupt_eeg(self.session.eeg_samples(start, stop), offset + times)
        stamps = t0 + times + faults.eeg_clock_shift(offset + times)
        if self.on_push is not None:
            self.on_push("EEG", float(stamps[-1]), stop - start)
        # Without retiming, liblsl stamps earlier samples of the chunk back from the last at 1/sfreq.
        self._outlets["EEG"].push_chunk(chunk, stamps if faults.retimes_eeg else float(stamps[-1]))
        self.samples_pushed += stop - start

    def _push_events(self, events: list[Event], next_event: int, now: float, t0: float) -> int:
        """Push the markers and fMRI samples due by ``now``; return the next one to push."""
        while next_event < len(events) and events[next_event][0] <= now:
            _, stamp, kind, value = events[next_event]
            outlet = self._outlets[kind]
            if self.on_push is not None:
                self.on_push(kind, t0 + stamp, 1)
            if kind == "fMRI":
                outlet.push_sample(value, t0 + stamp)
            else:
                outlet.push_sample([value], t0 + stamp)
            next_event += 1
        return next_event

    def _sync_eeg_outlet(self, replay_time: float) -> None:
        """Destroy or re-create the EEG outlet as the outlet-loss faults say it is at ``replay_time``."""
        down = self.faults.eeg_outlet_down(replay_time)
        if down == ("EEG" not in self._outlets):
            return
        import pylsl

        if down:
            del self._outlets["EEG"]  # the last reference: liblsl destroys the outlet
            self.fault_log.append((pylsl.local_clock(), f"EEG outlet closed at {replay_time:.2f} s"))
        else:
            self._outlets["EEG"] = self._eeg_outlet()
            self.fault_log.append((pylsl.local_clock(), f"EEG outlet open again at {replay_time:.2f} s"))

    def _event_schedule(self, volume_offset: int) -> list[Event]:
        """Every marker and fMRI sample as (due time, timestamp, outlet, value)."""
        session = self.session
        events: list[Event] = []
        errors = np.random.default_rng(volume_offset).normal(0.0, self.fmri_stamp_error, session.n_volumes)
        for index, acquired in enumerate(session.volume_times if self.has_fmri else ()):
            events.append((acquired, acquired, "Triggers", VOLUME_TRIGGER))
            sample = np.concatenate([[volume_offset + index], session.roi_means[index]]).astype(np.float32)
            events.append((acquired + self.fmri_lag, acquired + errors[index], "fMRI", sample))
        if self.with_truth:  # a replay with truth has a hypnogram
            for onset, stage in zip(session.stage_onsets, session.stages, strict=True):
                events.append((onset, onset, "Truth", stage))
        events.sort(key=lambda event: event[0])
        return events
