"""Typed configuration of acquisition and windowing, validated at construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from core.layouts import VOLUME_TRIGGER, stream_name


@dataclass(frozen=True)
class StreamQuery:
    """Which LSL stream to use: any combination of name, type and source_id.

    Parameters
    ----------
    name, stype, source_id : str | None
        Properties the stream must have; ``None`` matches anything.
    """

    name: str | None = None
    stype: str | None = None
    source_id: str | None = None

    def __post_init__(self) -> None:
        if self.name is None and self.stype is None and self.source_id is None:
            raise ValueError("a stream query needs a name, a type or a source_id")

    @classmethod
    def parse(cls, text: str) -> StreamQuery:
        """Parse ``name:X``, ``type:Y``, ``source_id:Z`` or a plain name.

        Parameters
        ----------
        text : str
            The query as typed on the command line.

        Returns
        -------
        query : StreamQuery
        """
        key, sep, value = text.partition(":")
        if sep and key in {"name", "type", "source_id"}:
            if not value:
                raise ValueError(f"stream query {text!r} has an empty {key}")
            return cls(**{"stype" if key == "type" else key: value})
        return cls(name=text)

    def matches(self, name: str, stype: str, source_id: str) -> bool:
        """Whether a stream with these properties satisfies the query."""
        return (
            (self.name is None or self.name == name)
            and (self.stype is None or self.stype == stype)
            and (self.source_id is None or self.source_id == source_id)
        )

    def describe(self) -> str:
        """Human-readable form, e.g. ``name='x-EEG', type='EEG'``."""
        parts = [
            f"{key}={value!r}"
            for key, value in (("name", self.name), ("type", self.stype), ("source_id", self.source_id))
            if value is not None
        ]
        return ", ".join(parts)


@dataclass(frozen=True)
class WindowConfig:
    """Sliding-window geometry and quality thresholds.

    Parameters
    ----------
    eeg_window : float
        EEG window length in seconds (30 s, the scoring epoch).
    fmri_window : float
        Trailing fMRI window in seconds (120 s: ALFF needs >= 100 s to resolve 0.01 Hz).
    hop : float
        Seconds between window ends (2.1 s, one TR of ds003768).
    max_fmri_wait : float
        Seconds of EEG time to wait past a window's end for a late fMRI volume
        before emitting it with the freshest volume available.
    min_eeg_coverage : float
        Fraction of the expected EEG samples a window needs to be usable.
    flat_threshold_uv : float
        A channel whose peak-to-peak amplitude is below this over any whole second of
        a window is flat.
    gap_tolerance : float
        A jump between consecutive EEG timestamps longer than this many sample
        periods (beyond jitter) is a gap.
    backward_jump_reset : float
        A timestamp earlier than the latest by more than this many seconds
        means the stream restarted on another timeline: buffers are reset.
    buffer_margin : float
        Extra seconds kept in each ring buffer beyond the window and the wait.
    trigger_marker : str
        Marker value of an fMRI volume trigger.
    highpass_hz : float | None
        Causal Butterworth high-pass (order 2) applied to the EEG-type channels
        as they arrive (e.g. 0.5 Hz); None (default) leaves the EEG as recorded,
        Welch's per-segment mean removal being enough for features >= 0.5 Hz.
    dummy_scans : int
        Volume triggers at the start of a run that have no exported volume (dummy scans the
        scanner triggers but does not export): the run's first volume belongs to trigger
        ``dummy_scans`` of the run (counted from 0).
    expected_latency : float | None
        Export latency of the fMRI stream (a volume's stamp minus its trigger's time), in
        seconds, used to pair volumes when the run's first trigger was not seen (joining
        mid-run); None (default): unknown, such windows are flagged. Also the reference of
        the "latency high" flag (measured latency more than TR/2 from it; 0 when None).
    feature_rate_hz : float | None
        Lowest EEG rate the features need (250 Hz by default). A stream at twice this rate or
        more is low-pass filtered and decimated by ``q = floor(rate / feature_rate_hz)`` as it
        arrives (5000 Hz -> 250 Hz, 1000 -> 250, 512 -> 256; 400 Hz is kept as it is;
        ``stream/decimation.py``); windows and features see the decimated rate. None: never
        decimate.
    """

    eeg_window: float = 30.0
    fmri_window: float = 120.0
    hop: float = 2.1
    max_fmri_wait: float = 3.5
    min_eeg_coverage: float = 0.9
    flat_threshold_uv: float = 0.5
    gap_tolerance: float = 2.5
    backward_jump_reset: float = 1.0
    buffer_margin: float = 10.0
    trigger_marker: str = VOLUME_TRIGGER
    highpass_hz: float | None = None
    dummy_scans: int = 0
    expected_latency: float | None = None
    feature_rate_hz: float | None = 250.0

    def __post_init__(self) -> None:
        rate = self.feature_rate_hz
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"WindowConfig.feature_rate_hz = {rate!r} must be > 0 or None")
        if self.highpass_hz is not None and not self.highpass_hz > 0:
            raise ValueError(f"WindowConfig.highpass_hz = {self.highpass_hz!r} must be > 0 or None")
        if (
            isinstance(self.dummy_scans, bool)
            or not isinstance(self.dummy_scans, int)
            or self.dummy_scans < 0
        ):
            raise ValueError(f"WindowConfig.dummy_scans = {self.dummy_scans!r} must be a whole number >= 0")
        latency = self.expected_latency
        if latency is not None and not (math.isfinite(latency) and -30 <= latency <= 60):
            raise ValueError(f"WindowConfig.expected_latency = {latency!r} must be in [-30, 60] s or None")
        checks = {
            "eeg_window": self.eeg_window > 0,
            "fmri_window": self.fmri_window > 0,
            "hop": self.hop > 0,
            "max_fmri_wait": self.max_fmri_wait >= 0,
            "min_eeg_coverage": 0 < self.min_eeg_coverage <= 1,
            "flat_threshold_uv": self.flat_threshold_uv >= 0,
            "gap_tolerance": self.gap_tolerance > 1,
            "backward_jump_reset": self.backward_jump_reset > 0,
            "buffer_margin": self.buffer_margin >= 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise ValueError(f"WindowConfig.{name} = {value!r} is out of range")

    def geometry(self) -> dict[str, float | None]:
        """What a model depends on: window lengths, hop and EEG high-pass (JSON-ready)."""
        return {
            "eeg_window": self.eeg_window,
            "fmri_window": self.fmri_window,
            "hop": self.hop,
            "highpass_hz": self.highpass_hz,
        }

    def eeg_capacity(self, sfreq: float) -> int:
        """Ring-buffer length in EEG samples: window, hop, fMRI wait and margin."""
        return math.ceil((self.eeg_window + self.hop + self.max_fmri_wait + self.buffer_margin) * sfreq)

    def fmri_capacity(self, tr: float) -> int:
        """Ring-buffer length in fMRI volumes."""
        return math.ceil((self.fmri_window + self.hop + self.max_fmri_wait + self.buffer_margin) / tr) + 2


ARTEFACT_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class ArtefactConfig:
    """Online correction of the MR gradient and pulse (BCG) artefacts of EEG recorded in the scanner.

    The correction runs on the raw EEG between acquisition and the windows
    (``stream/artefact_correction.py``): gradient artefact subtraction at the stream's own rate,
    anti-alias decimation to the feature rate, then BCG subtraction. See ``docs/artefacts.md``.

    Parameters
    ----------
    correction : str
        ``"auto"`` (default): on when the EEG stream's description (or the recording's sidecar)
        says it was recorded in the scanner (``in_scanner``), off otherwise; ``"on"``; ``"off"``.
    slices_per_volume : int | None
        Slices of one fMRI volume (the BOLD sidecar's ``SliceTiming`` length); the gradient
        template is aligned and fitted slice by slice. None: taken from the stream or recording
        when it says, else the volume is corrected in ~64-ms blocks.
    template_volumes : int
        Volumes averaged in the moving gradient template (Allen et al. 2000).
    min_template_volumes : int
        Volumes needed before the gradient template is used (before: uncorrected, flagged).
    residual_components : int
        Principal components of the recent residuals fitted and removed per segment (optimal basis
        set, Niazy et al. 2005); 0 for average subtraction alone.
    slice_template : bool
        When the slices per volume are known, build the template from the average slice of the last
        volumes (every slice plays the same gradient program: the EEG and pulse artefact averaged
        into it fall by the slice count more); False: the plain average of whole volumes.
    trigger_wait : float
        Seconds of EEG held for a late volume trigger before the EEG passes uncorrected (flagged).
    bcg : bool
        Remove the pulse artefact (ballistocardiogram) too.
    bcg_template_beats : int
        Heartbeats in the moving BCG template.
    bcg_components : int
        Most components of the BCG template fitted per beat (those standing above the EEG are kept;
        0: the mean beat alone).
    bcg_after : float
        Seconds after each R peak the BCG template covers (the pulse artefact lasts up to ~0.8 s):
        the main part of the latency the correction adds.
    ecg_channel : str | None
        The ECG channel's name; None: the first channel of type ``ecg``.
    """

    correction: str = "auto"
    slices_per_volume: int | None = None
    template_volumes: int = 20
    min_template_volumes: int = 4
    residual_components: int = 4
    slice_template: bool = True
    trigger_wait: float = 0.5
    bcg: bool = True
    bcg_template_beats: int = 30
    bcg_components: int = 3
    bcg_after: float = 0.8
    ecg_channel: str | None = None

    def __post_init__(self) -> None:
        if self.correction not in ARTEFACT_MODES:
            raise ValueError(
                f"ArtefactConfig.correction = {self.correction!r} must be one of {', '.join(ARTEFACT_MODES)}"
            )
        whole = {
            "slices_per_volume": (self.slices_per_volume, 1),
            "template_volumes": (self.template_volumes, 2),
            "min_template_volumes": (self.min_template_volumes, 1),
            "residual_components": (self.residual_components, 0),
            "bcg_template_beats": (self.bcg_template_beats, 2),
            "bcg_components": (self.bcg_components, 0),
        }
        for name, (value, least) in whole.items():
            if value is None and name == "slices_per_volume":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"ArtefactConfig.{name} = {value!r} must be a whole number >= {least}")
        if self.min_template_volumes > self.template_volumes:
            raise ValueError(
                f"ArtefactConfig.min_template_volumes = {self.min_template_volumes} exceeds "
                f"template_volumes = {self.template_volumes}"
            )
        for name, low, high in (("trigger_wait", 0.05, 10.0), ("bcg_after", 0.3, 1.5)):
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"ArtefactConfig.{name} = {value!r} must be in [{low:g}, {high:g}] s")

    def enabled(self, in_scanner: bool) -> bool:
        """Whether to correct a stream or recording that says (or not) it was recorded in the scanner."""
        return self.correction == "on" or (self.correction == "auto" and in_scanner)


@dataclass(frozen=True)
class AcquisitionConfig:
    """Which streams to consume and what to expect of them.

    Parameters
    ----------
    eeg : StreamQuery
        The EEG stream (type ``EEG`` by default).
    fmri : StreamQuery | None
        The fMRI-metrics stream (type ``fMRI`` by default); None for an EEG-only session (every
        window is then cut without fMRI and predicted from the EEG alone).
    triggers : StreamQuery | None
        The volume-trigger marker stream; without it, fMRI samples are placed
        at their own timestamps.
    truth : StreamQuery | None
        A ground-truth stage marker stream (replays with truth).
    expected_eeg_channels : int | None
        Refuse an EEG stream with another channel count.
    expected_eeg_rate : float | None
        Refuse an EEG stream with another nominal rate.
    resolve_timeout : float
        Seconds to wait for each stream at start: to find it, then to open it.
    window : WindowConfig
        Window geometry.
    queue_size : int
        Windows held for a slow consumer; beyond, the oldest is dropped (and counted).
    inlet_buffer_seconds : int
        Seconds of data each LSL inlet holds before liblsl drops the oldest (360 s covers any
        real-time hiccup; consuming a replay pushed as fast as possible needs the whole run).
    artefacts : ArtefactConfig
        In-scanner artefact correction (auto: when the EEG stream says it is in the scanner).
    """

    eeg: StreamQuery = field(default_factory=lambda: StreamQuery(stype="EEG"))
    fmri: StreamQuery | None = field(default_factory=lambda: StreamQuery(stype="fMRI"))
    triggers: StreamQuery | None = None
    truth: StreamQuery | None = None
    expected_eeg_channels: int | None = None
    expected_eeg_rate: float | None = None
    resolve_timeout: float = 10.0
    window: WindowConfig = field(default_factory=WindowConfig)
    queue_size: int = 64
    inlet_buffer_seconds: int = 360
    artefacts: ArtefactConfig = field(default_factory=ArtefactConfig)

    def __post_init__(self) -> None:
        if self.inlet_buffer_seconds < 1:
            raise ValueError(f"inlet_buffer_seconds must be >= 1, got {self.inlet_buffer_seconds}")
        if self.resolve_timeout <= 0:
            raise ValueError(f"resolve_timeout must be > 0, got {self.resolve_timeout}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")
        if self.artefacts.correction == "on" and self.triggers is None:
            raise ValueError(
                "artefact correction is on but no volume-trigger stream is configured: the gradient "
                "artefact is removed volume by volume, from the triggers"
            )

    def queries(self) -> dict[str, StreamQuery]:
        """The query of every stream to consume, by kind (``eeg``, ``fmri``, ``triggers``, ``truth``)."""
        given = {"eeg": self.eeg, "fmri": self.fmri, "triggers": self.triggers, "truth": self.truth}
        return {kind: query for kind, query in given.items() if query is not None}

    @classmethod
    def for_replay(cls, prefix: str, *, with_truth: bool = False, **kwargs: Any) -> AcquisitionConfig:
        """Queries for the four streams of a :class:`simulators.replay.SessionPlayer`."""
        return cls(
            eeg=StreamQuery(name=stream_name(prefix, "EEG")),
            fmri=StreamQuery(name=stream_name(prefix, "fMRI")),
            triggers=StreamQuery(name=stream_name(prefix, "Triggers")),
            truth=StreamQuery(name=stream_name(prefix, "Truth")) if with_truth else None,
            **kwargs,
        )
