"""Multi-rate sliding windows: EEG, fMRI volumes, triggers and truth in, windows out.

Pure logic over arrays and timestamps (no LSL, no clock): the acquisition feeds
it, tests feed it directly. All times are seconds on the EEG clock.

A window ends every ``hop`` seconds, the first one ``eeg_window`` seconds after
the first EEG sample. It is emitted once EEG has reached its end and either the
fMRI volume of the latest trigger before its end has arrived (and, with a truth
stream, the marker of the epoch holding its midpoint) or EEG has run
``max_fmri_wait`` seconds past its end (the window then carries the freshest
volumes there are, and its staleness). EEG far above the rate the features need is
low-pass filtered and decimated as it arrives (``stream/decimation.py``); everything
downstream, the windows' ``sfreq`` included, sees the decimated samples. See
``docs/architecture.md``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from core.channels import VOLTAGE_TYPES
from core.problems import ProblemCode, problem
from core.stages import EPOCH_SECONDS
from core.windows import MIN_FMRI_VOLUMES, Window, WindowQuality
from stream.artefact_correction import SPAN_PROBLEMS, ArtefactCorrection, Span
from stream.buffers import EventBuffer, SampleRingBuffer
from stream.channel_checks import ChannelChecks
from stream.config import WindowConfig
from stream.decimation import StreamingDecimator, decimation_factor
from stream.dejitter import Gap
from stream.filters import StreamingHighpass
from stream.volumes import PlacedVolume, VolumePlacer

FLAT_SECONDS = 1.0  # a channel flat over any whole second of a window is flat
RATE_TOLERANCE = 0.01  # an EEG rate off its nominal rate by more than this is flagged


class MultiRateWindower:
    """Cut aligned EEG + fMRI windows from streams fed in any order.

    Parameters
    ----------
    config : WindowConfig
        Window geometry and thresholds.
    sfreq : float
        Nominal EEG rate of the stream in Hz; windows carry the rate after decimation
        (``WindowConfig.feature_rate_hz``), kept in ``sfreq`` (the stream's in ``input_sfreq``).
    ch_names, ch_types : sequence of str
        EEG channel names and types.
    region_names : sequence of str
        fMRI region names (the fMRI stream's channels after the volume index).
    tr : float
        Repetition time in seconds.
    use_triggers : bool
        Whether volume triggers are fed (else volumes are placed at their own timestamps).
    use_truth : bool
        Whether scored stages are fed: a window then waits (within ``max_fmri_wait``) for
        the marker of the epoch holding its midpoint.
    use_fmri : bool
        Whether an fMRI stream is consumed; False (an EEG-only session): windows never wait for
        fMRI and are usable without it.
    correction : ArtefactCorrection | None
        In-scanner EEG: the gradient and pulse-artefact correction chain the EEG goes through
        (it decimates too); None: EEG recorded outside the scanner, or already corrected.
    """

    def __init__(
        self,
        config: WindowConfig,
        sfreq: float,
        ch_names: list[str] | tuple[str, ...],
        ch_types: list[str] | tuple[str, ...],
        region_names: list[str] | tuple[str, ...],
        tr: float,
        *,
        use_triggers: bool = True,
        use_truth: bool = False,
        use_fmri: bool = True,
        correction: ArtefactCorrection | None = None,
    ) -> None:
        if len(ch_names) != len(ch_types):
            raise ValueError(f"{len(ch_names)} channel names but {len(ch_types)} channel types")
        self.config = config
        self.input_sfreq = float(sfreq)
        self.correction = correction
        factor = decimation_factor(self.input_sfreq, config.feature_rate_hz)
        # Voltages are low-pass filtered before they are decimated; misc channels (a sample counter) picked.
        self.decimator = (
            StreamingDecimator(self.input_sfreq, factor, np.array([t in VOLTAGE_TYPES for t in ch_types]))
            if factor > 1 and correction is None
            else None
        )
        self.sfreq = correction.sfreq if correction is not None else self.input_sfreq / factor
        self._spans: deque[Span] = deque(maxlen=4096)
        self.ch_names = tuple(ch_names)
        self.ch_types = tuple(ch_types)
        self.region_names = tuple(region_names)
        self.tr = float(tr)
        self.use_triggers = use_triggers
        self.use_truth = use_truth
        self.use_fmri = use_fmri
        sfreq = self.sfreq
        self.eeg = SampleRingBuffer(config.eeg_capacity(sfreq), len(ch_names))
        self.volumes = VolumePlacer(
            tr,
            config.fmri_capacity(tr),
            use_triggers=use_triggers,
            dummy_scans=config.dummy_scans,
            expected_latency=config.expected_latency,
        )
        self.truth: EventBuffer[str] = EventBuffer(64)
        self._truth_given_up: float | None = None  # the marker onset no longer waited for
        self._gaps: deque[Gap] = deque(maxlen=256)
        self._expected = round(config.eeg_window * sfreq)
        self._voltage = np.array([t in VOLTAGE_TYPES for t in self.ch_types])
        self._eeg_rows = np.flatnonzero(np.array([t == "eeg" for t in self.ch_types]))
        self.highpass = (
            StreamingHighpass(config.highpass_hz, sfreq, self._eeg_rows.size)
            if config.highpass_hz is not None and self._eeg_rows.size
            else None
        )
        self._next_end: float | None = None
        self._restarted = False
        self._blocked_end: float | None = None
        self._channel_checks = ChannelChecks(max(1, round(FLAT_SECONDS * sfreq)), config.flat_threshold_uv)
        self.windows_emitted = 0
        self.windows_skipped = 0

    # -- input ---------------------------------------------------------------
    def add_eeg(self, times: np.ndarray, data: np.ndarray) -> None:
        """Append dejittered EEG samples (shape (n, n_channels), microvolts)."""
        if len(times) == 0:
            return
        if self._next_end is None:
            # The stream's first sample is also the first one decimation keeps.
            self._next_end = float(times[0]) + self.config.eeg_window
            self.volumes.observe_from(float(times[0]))
        if self.correction is not None:
            times, data, spans = self.correction.process(times, data)
            self._add_spans(spans)
        elif self.decimator is not None:
            times, data = self.decimator.process(times, data)
        self._append_eeg(times, data)

    def _add_spans(self, spans: list[Span]) -> None:
        for start, end, kind in spans:
            last = self._spans[-1] if self._spans else None
            if last is not None and last[2] == kind and start <= last[1] + 1.0 / self.sfreq:
                self._spans[-1] = (last[0], max(last[1], end), kind)  # one span per stretch
            else:
                self._spans.append((start, end, kind))

    def _append_eeg(self, times: np.ndarray, data: np.ndarray) -> None:
        if len(times) == 0:
            return
        data = np.asarray(data, dtype=np.float32)
        if self.highpass is not None:
            data = data.copy()
            data[:, self._eeg_rows] = self.highpass.process(data[:, self._eeg_rows])
        self.eeg.append(np.asarray(times, dtype=float), data)

    def add_gap(self, gap: Gap) -> None:
        """Record an EEG dropout (the high-pass, if any, restarts after it)."""
        self._gaps.append(gap)
        if self.correction is not None:
            # The artefact templates assume unbroken sampling: what is held goes out, then afresh.
            times, data, spans = self.correction.flush()
            self._add_spans(spans)
            self._append_eeg(times, data)
        if self.highpass is not None:
            self.highpass.reset()

    def add_fmri(self, indices: np.ndarray, stamps: np.ndarray, values: np.ndarray) -> None:
        """Record fMRI samples: volume index, own timestamp, region means."""
        self.volumes.add_volumes(indices, stamps, values)

    def add_triggers(self, times: np.ndarray, *, gradient: bool = True) -> None:
        """Record volume-trigger times (and, unless ``gradient`` is False, gradient artefact onsets)."""
        self.volumes.add_triggers(times)
        if gradient:
            self.add_gradient_triggers(times)

    def add_gradient_triggers(self, times: np.ndarray) -> None:
        """Volume triggers for the gradient-artefact correction alone (e.g. of dummy scans)."""
        if self.correction is not None:
            self.correction.add_triggers(times)

    def add_truth(self, times: np.ndarray, stages: list[str]) -> None:
        """Record scored stages at their epoch starts."""
        for time, stage in zip(times, stages, strict=True):
            self.truth.append(float(time), stage)

    def restart(self) -> None:
        """The streams restarted on another timeline: drop everything held, start a new grid."""
        self.eeg.clear()
        self._channel_checks.clear()
        self.volumes.reset()
        self.truth.clear()
        self._truth_given_up = None
        self._gaps.clear()
        self._spans.clear()
        self._next_end = None
        self._restarted = True
        if self.highpass is not None:
            self.highpass.reset()
        if self.decimator is not None:
            self.decimator.reset()
        if self.correction is not None:
            self.correction.reset()

    # -- output --------------------------------------------------------------
    def poll(self) -> list[Window]:
        """Every window that can be emitted now."""
        windows: list[Window] = []
        latest = self.eeg.latest_time
        half_period = 0.5 / self.sfreq
        while self._next_end is not None and latest is not None and latest >= self._next_end - half_period:
            end = self._next_end
            lateness = max(0.0, latest - end)
            fmri_ready, truth_ready = self._fmri_ready(end), self._truth_ready(end)
            if not (fmri_ready and truth_ready) and lateness < self.config.max_fmri_wait:
                if not fmri_ready:
                    self._blocked_end = end
                break
            if not truth_ready:
                self._truth_given_up = self._awaited_onset(end)
            # Only a window held back for fMRI has waited (at most the limit; any more is a
            # backlog of EEG arriving in one chunk, not waiting).
            waited = min(lateness, self.config.max_fmri_wait) if self._blocked_end == end else 0.0
            self._skip_empty_windows(end)
            if self._next_end != end:
                continue
            windows.append(self._cut(end, waited))
            self._next_end = end + self.config.hop
        return windows

    def flush(self) -> list[Window]:
        """At the end of a recording: emit every window whose EEG is complete, not waiting for fMRI.

        Live streams never end, so only offline extraction calls this. Decimation's pending
        samples come out first (the last sample standing for the EEG after it).
        """
        if self.correction is not None:
            times, data, spans = self.correction.flush()
            self._add_spans(spans)
            self._append_eeg(times, data)
        elif self.decimator is not None:
            self._append_eeg(*self.decimator.flush())
        windows = []
        latest = self.eeg.latest_time
        while (
            self._next_end is not None and latest is not None and latest >= self._next_end - 0.5 / self.sfreq
        ):
            self._skip_empty_windows(self._next_end)
            end = self._next_end
            if latest < end - 0.5 / self.sfreq:
                break
            waited = (
                min(max(0.0, latest - end), self.config.max_fmri_wait) if not self._fmri_ready(end) else 0.0
            )
            windows.append(self._cut(end, waited))
            self._next_end = end + self.config.hop
        return windows

    def _skip_empty_windows(self, end: float) -> None:
        """Jump the grid from the window ending at ``end`` over windows that would hold no EEG at all."""
        if self.eeg.count_between(end - self.config.eeg_window, end):
            return
        following = self.eeg.first_after(end)
        if following is None:
            return
        steps = math.ceil((following - end) / self.config.hop)
        self.windows_skipped += steps
        self._next_end = end + steps * self.config.hop

    def _fmri_ready(self, end: float) -> bool:
        if not self.use_fmri:
            return True
        if self.use_triggers:
            trigger = self.volumes.latest_trigger_before(end)
            if trigger is None or trigger[1] <= end - self.config.fmri_window:
                return True  # no scanner running in this window: nothing to wait for
            if trigger[1] + 1.1 * self.tr <= end:
                # Another trigger was due before the window's end: the trigger stream is behind
                # the EEG (or the scanner stopped). Wait, within max_fmri_wait.
                return False
            return self.volumes.has_volume_for(*trigger)
        latest = self.volumes.latest_volume_stamp()
        return latest is not None and latest >= end - self.tr

    def _cut(self, end: float, waited: float) -> Window:
        config = self.config
        start = end - config.eeg_window
        # Half a sample of slack keeps the count exact when window bounds fall on samples.
        half_period = 0.5 / self.sfreq
        # Channels first and contiguous: the per-channel checks below (and the features) run along time.
        times, eeg, first_sample = self.eeg.between_numbered(
            start + half_period, end + half_period, channels_first=True
        )
        quality = WindowQuality(
            eeg_expected=self._expected,
            eeg_received=times.size,
            eeg_coverage=min(1.0, times.size / self._expected),
            fmri_waited=round(waited, 4),
            restarted=self._restarted,
        )
        self._restarted = False
        for gap in self._gaps:
            overlap = min(gap.end, end) - max(gap.start, start)
            if overlap > 0:
                quality.gaps += 1
                quality.gap_seconds += overlap
        if times.size:
            finite, flat_somewhere = self._channel_checks(eeg, first_sample)
            flat = self._voltage & finite & flat_somewhere
            quality.nonfinite_channels = [n for n, ok in zip(self.ch_names, finite, strict=True) if not ok]
            quality.flat_channels = [n for n, is_flat in zip(self.ch_names, flat, strict=True) if is_flat]
        if times.size > 1:
            quality.eeg_rate = round(self._sample_rate(times, unbroken=not quality.gaps), 3)
        while self._spans and self._spans[0][1] <= start:  # windows only move forward
            self._spans.popleft()
        for span_start, span_end, kind in self._spans:
            overlap = min(span_end, end) - max(span_start, start)
            if overlap > 0:
                quality.artefact_seconds[kind] = round(quality.artefact_seconds.get(kind, 0.0) + overlap, 3)

        volumes = self.volumes.volumes_between(end - config.fmri_window, end)
        fmri = (
            np.vstack([v.values for v in volumes])
            if volumes
            else np.empty((0, len(self.region_names)), dtype=np.float32)
        )
        quality.fmri_volumes = len(volumes)
        quality.fmri_unmatched = sum(1 for v in volumes if not v.matched) if self.use_triggers else 0
        quality.fmri_expected = (
            self.volumes.triggers_between(end - config.fmri_window, end)
            if self.use_triggers
            else int(config.fmri_window // self.tr)
            if self.use_fmri
            else 0
        )
        if volumes:
            quality.fmri_staleness = round(end - volumes[-1].time, 4)

        self._judge(quality, volumes)
        epoch = self._epoch_at(start, end)
        window = Window(
            index=self.windows_emitted,
            start=start,
            end=end,
            eeg=eeg,
            eeg_times=times,
            eeg_first_sample=first_sample,
            ch_names=self.ch_names,
            ch_types=self.ch_types,
            sfreq=self.sfreq,
            fmri=fmri,
            fmri_times=np.array([v.time for v in volumes]),
            fmri_indices=np.array([v.index for v in volumes], dtype=int),
            region_names=self.region_names,
            tr=self.tr,
            stage=None if epoch is None else epoch[1],
            quality=quality,
            epoch_start=None if epoch is None else epoch[0],
        )
        self.windows_emitted += 1
        return window

    @staticmethod
    def _sample_rate(times: np.ndarray, unbroken: bool) -> float:
        """The window's EEG rate: from its span when no gap breaks it, else its median sample step."""
        if unbroken and times[-1] > times[0]:
            return (times.size - 1) / float(times[-1] - times[0])
        return 1.0 / float(np.median(np.diff(times)))

    def _judge(self, quality: WindowQuality, volumes: list[PlacedVolume]) -> None:
        config = self.config
        problems = quality.problems
        if quality.eeg_coverage < config.min_eeg_coverage:
            problems.append(
                problem(
                    ProblemCode.EEG_COVERAGE_LOW,
                    coverage=quality.eeg_coverage,
                    minimum=config.min_eeg_coverage,
                )
            )
        if quality.gaps:
            problems.append(problem(ProblemCode.EEG_GAPS, count=quality.gaps, seconds=quality.gap_seconds))
        if quality.nonfinite_channels:
            problems.append(
                problem(ProblemCode.NONFINITE_CHANNELS, channels=list(quality.nonfinite_channels))
            )
        if quality.flat_channels:
            problems.append(problem(ProblemCode.FLAT_CHANNELS, channels=list(quality.flat_channels)))
        bad = set(quality.bad_channels)
        good_eeg = [
            n for n, t in zip(self.ch_names, self.ch_types, strict=True) if t == "eeg" and n not in bad
        ]
        if not good_eeg:
            problems.append(problem(ProblemCode.NO_USABLE_EEG_CHANNEL))
        if not self.use_fmri:
            pass  # an EEG-only session: no fMRI to judge
        elif quality.fmri_volumes < MIN_FMRI_VOLUMES:
            problems.append(problem(ProblemCode.FEW_FMRI_VOLUMES, volumes=quality.fmri_volumes))
        elif quality.fmri_expected and quality.fmri_volumes < quality.fmri_expected:
            problems.append(
                problem(
                    ProblemCode.FMRI_VOLUMES_MISSING, missing=quality.fmri_expected - quality.fmri_volumes
                )
            )
        rate = quality.eeg_rate
        if rate is not None and abs(rate / self.sfreq - 1) > RATE_TOLERANCE:
            problems.append(problem(ProblemCode.EEG_RATE_OFF, rate=rate, nominal=self.sfreq))
        if quality.fmri_staleness is not None and quality.fmri_staleness > self.tr + 0.5 / self.sfreq:
            problems.append(problem(ProblemCode.FMRI_STALE, seconds=quality.fmri_staleness))
        if quality.fmri_unmatched:
            problems.append(problem(ProblemCode.FMRI_UNMATCHED, count=quality.fmri_unmatched))
        if self.use_triggers:
            self._judge_pairing(quality, volumes)
        if quality.restarted:
            problems.append(problem(ProblemCode.STREAM_RESTARTED))
        for code, seconds in quality.artefact_seconds.items():
            problems.append(problem(SPAN_PROBLEMS[code], seconds=seconds))
        quality.usable = (
            quality.eeg_coverage >= config.min_eeg_coverage
            and bool(good_eeg)
            and (quality.fmri_volumes >= MIN_FMRI_VOLUMES or not self.use_fmri)
        )

    def _judge_pairing(self, quality: WindowQuality, volumes: list[PlacedVolume]) -> None:
        """Flag volumes paired on an assumed latency, a high latency and a latency change in the window."""
        placer = self.volumes
        matched = [v for v in volumes if v.matched]
        if any(v.pairing == "assumed" for v in matched):
            quality.fmri_pairing = "assumed"
        elif matched:
            quality.fmri_pairing = matched[-1].pairing
        if placer.latency is not None and matched:
            quality.trigger_latency = round(placer.latency, 4)
        if quality.fmri_pairing == "assumed":
            quality.problems.append(problem(ProblemCode.TRIGGER_PAIRING_UNVERIFIED, limit=placer.tolerance))
        if matched and placer.latency_high and placer.latency is not None:
            quality.problems.append(
                problem(
                    ProblemCode.TRIGGER_LATENCY_HIGH,
                    latency=placer.latency,
                    limit=placer.expected_reference + placer.tolerance,
                )
            )
        for volume in volumes:
            if volume.latency_change is not None:
                previous, latency = volume.latency_change
                quality.problems.append(
                    problem(ProblemCode.TRIGGER_LATENCY_CHANGED, previous=previous, latency=latency)
                )

    def _decision_time(self, end: float) -> float:
        """The time whose scored epoch labels the window: its midpoint (its end when longer than an epoch)."""
        eeg_window = self.config.eeg_window
        return end - eeg_window / 2 if eeg_window <= EPOCH_SECONDS else end

    def _epoch_at(self, start: float, end: float) -> tuple[float, str] | None:
        """(onset, stage) of the scored epoch holding most of the window's EEG, or None.

        For a window no longer than an epoch, that is the epoch containing its midpoint
        (it holds at least half of the window); for a longer one, the epoch overlapping it most.
        """
        if self.config.eeg_window <= EPOCH_SECONDS:
            event = self.truth.latest_before(end - self.config.eeg_window / 2)
            if event is None or end - self.config.eeg_window / 2 >= event[0] + EPOCH_SECONDS:
                return None
            return event[0], str(event[1])
        best: tuple[float, str] | None = None
        best_overlap = 0.0
        for onset, stage in self.truth.between(start - EPOCH_SECONDS, end):
            overlap = min(end, onset + EPOCH_SECONDS) - max(start, onset)
            if overlap > best_overlap:
                best, best_overlap = (onset, str(stage)), overlap
        return best

    def _awaited_onset(self, end: float) -> float:
        """Onset of the next truth marker expected when the window's decision time has no epoch yet."""
        decision = self._decision_time(end)
        event = self.truth.latest_before(decision)
        return -math.inf if event is None else event[0] + EPOCH_SECONDS

    def _truth_ready(self, end: float) -> bool:
        """Whether the marker of the epoch that labels the window is in, or is not to be waited for."""
        if not self.use_truth:
            return True
        decision = self._decision_time(end)
        event = self.truth.latest_before(decision)
        if event is not None and decision < event[0] + EPOCH_SECONDS:
            return True
        if self.truth.between(decision, math.inf):
            return True  # a later epoch's marker came: the one of the decision time does not exist
        return self._awaited_onset(end) == self._truth_given_up
