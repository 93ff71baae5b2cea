"""The window: one aligned stretch of EEG and fMRI with its quality record.

Cut by :mod:`stream.windower`, read by the features, the pipeline and the reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from core.problems import Problem

MIN_FMRI_VOLUMES = 8
"""Fewest volumes in a window's fMRI window for it to be usable and to give fMRI features."""


@dataclass
class WindowQuality:
    """What is known to be wrong (or right) with a window.

    Attributes
    ----------
    eeg_expected, eeg_received : int
        EEG samples a full window holds, and those it holds.
    eeg_coverage : float
        ``eeg_received / eeg_expected`` (at most 1).
    gaps : int
        Dropouts overlapping the window.
    gap_seconds : float
        Their total length inside the window.
    nonfinite_channels, flat_channels : list of str
        Channels with NaN/inf values, or a peak-to-peak range below the flat threshold
        over at least one whole second of the window (1 s blocks from the window's start,
        so any flat stretch of 2 s or more is caught).
    eeg_rate : float | None
        EEG sampling rate measured in the window (median interval of the dejittered
        sample times), in Hz; flagged when it is more than 1 % off the nominal rate.
    fmri_volumes, fmri_expected : int
        Volumes in the fMRI window, and triggers in it (volumes there should be).
    fmri_unmatched : int
        Volumes placed at their own timestamp because their trigger was missing.
    fmri_staleness : float | None
        Window end minus the acquisition time of the newest volume (None: no volume).
    fmri_waited : float
        Seconds of EEG time the window waited for fMRI.
    restarted : bool
        A stream restarted on another timeline just before this window.
    trigger_latency : float | None
        Estimated export latency of the fMRI volumes: a volume's own timestamp minus its
        trigger's time, in seconds (None without triggers or before any volume was paired).
    fmri_pairing : str | None
        How volumes are paired with their triggers: ``"run_start"`` (by order from a run's
        first trigger and the dummy scans), ``"expected_latency"`` (the configured latency),
        ``"assumed"`` (the latency was assumed to be within TR/2 of 0: flagged), or None.
    artefact_seconds : dict of str to float
        In-scanner EEG: seconds of the window's EEG that the artefact correction could not fully
        correct, by kind (``gradient_uncorrected``, ``gradient_trigger_inferred``,
        ``bcg_uncorrected``, ``bcg_beats_from_eeg``); empty when all was corrected or there is no
        correction.
    problems : list of Problem
        Everything above that is wrong, as codes with parameters (:mod:`core.problems`).
    usable : bool
        Enough EEG (coverage), at least one good EEG channel and at least
        ``MIN_FMRI_VOLUMES`` fMRI volumes: the features can be trusted.
    """

    eeg_expected: int
    eeg_received: int
    eeg_coverage: float
    gaps: int = 0
    gap_seconds: float = 0.0
    eeg_rate: float | None = None
    nonfinite_channels: list[str] = field(default_factory=list)
    flat_channels: list[str] = field(default_factory=list)
    fmri_volumes: int = 0
    fmri_expected: int = 0
    fmri_unmatched: int = 0
    fmri_staleness: float | None = None
    fmri_waited: float = 0.0
    restarted: bool = False
    trigger_latency: float | None = None
    fmri_pairing: str | None = None
    artefact_seconds: dict[str, float] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    usable: bool = True

    @property
    def bad_channels(self) -> list[str]:
        """Channels not to use: non-finite or flat."""
        return sorted(set(self.nonfinite_channels) | set(self.flat_channels))

    @property
    def problem_texts(self) -> list[str]:
        """The problems in plain English."""
        return [p.text for p in self.problems]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``problems`` as texts, ``problem_codes`` as ``Problem.as_dict()`` records."""
        record = {name: getattr(self, name) for name in _QUALITY_FIELDS}
        for name in ("nonfinite_channels", "flat_channels"):
            record[name] = list(record[name])
        record["artefact_seconds"] = dict(self.artefact_seconds)
        record["problems"] = self.problem_texts
        record["problem_codes"] = [p.as_dict() for p in self.problems]
        record["bad_channels"] = self.bad_channels
        return record


_QUALITY_FIELDS = tuple(f.name for f in fields(WindowQuality))


@dataclass
class Window:
    """One aligned window of EEG and fMRI.

    Attributes
    ----------
    index : int
        Window number since the start (continues across restarts).
    start, end : float
        EEG window bounds (``start < t <= end``) on the EEG clock.
    eeg : np.ndarray, shape (n_channels, n_samples)
        EEG in microvolts (all channels, bad ones included: see ``quality``).
    eeg_times : np.ndarray, shape (n_samples,)
        Dejittered sample times.
    eeg_first_sample : int
        Sequence number of the first sample (samples are numbered from 0 in
        arrival order since acquisition started; the same sample keeps its number
        in every window).
    ch_names, ch_types : tuple of str
        Channel names and types of ``eeg``.
    sfreq : float
        Nominal EEG rate.
    fmri : np.ndarray, shape (n_volumes, n_regions)
        Region means of the volumes in the trailing fMRI window.
    fmri_times : np.ndarray, shape (n_volumes,)
        Acquisition times of those volumes (their triggers) on the EEG clock.
    fmri_indices : np.ndarray, shape (n_volumes,)
        Their volume indices.
    region_names : tuple of str
        Names of the fMRI regions.
    tr : float
        Repetition time in seconds.
    stage : str | None
        Scored stage of the epoch holding the majority of the window's EEG: the epoch that
        contains the window's midpoint (replays with truth; ``docs/architecture.md``).
    quality : WindowQuality
        Gaps, bad channels, fMRI staleness and usability.
    epoch_start : float | None
        Onset, on the EEG clock, of the scored epoch ``stage`` comes from (None: no scored
        epoch holds the window's midpoint).
    """

    index: int
    start: float
    end: float
    eeg: np.ndarray
    eeg_times: np.ndarray
    eeg_first_sample: int
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    sfreq: float
    fmri: np.ndarray
    fmri_times: np.ndarray
    fmri_indices: np.ndarray
    region_names: tuple[str, ...]
    tr: float
    stage: str | None
    quality: WindowQuality
    epoch_start: float | None = None

    @property
    def good_eeg_picks(self) -> np.ndarray:
        """Indices of EEG-type channels that are neither flat nor non-finite."""
        bad = set(self.quality.bad_channels)
        return np.array(
            [
                i
                for i, (n, t) in enumerate(zip(self.ch_names, self.ch_types, strict=True))
                if t == "eeg" and n not in bad
            ],
            dtype=int,
        )
