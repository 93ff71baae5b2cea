"""Quality problems as data: a code, its parameters, and the English text derived from them.

Every problem a window or its features can have is one :class:`ProblemCode`. Code decides on
the code (and on :attr:`Problem.affects`, the features it makes unavailable), never on the words
of the text; the text is for people and may change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ProblemCode(StrEnum):
    """Everything that can be wrong with a window or its features."""

    # Window level (stream.windower)
    EEG_COVERAGE_LOW = "eeg_coverage_low"
    EEG_GAPS = "eeg_gaps"
    NONFINITE_CHANNELS = "nonfinite_channels"
    FLAT_CHANNELS = "flat_channels"
    NO_USABLE_EEG_CHANNEL = "no_usable_eeg_channel"
    EEG_RATE_OFF = "eeg_rate_off"
    FEW_FMRI_VOLUMES = "few_fmri_volumes"
    FMRI_VOLUMES_MISSING = "fmri_volumes_missing"
    FMRI_STALE = "fmri_stale"
    FMRI_UNMATCHED = "fmri_unmatched"
    TRIGGER_LATENCY_HIGH = "trigger_latency_high"
    TRIGGER_LATENCY_CHANGED = "trigger_latency_changed"
    TRIGGER_PAIRING_UNVERIFIED = "trigger_pairing_unverified"
    STREAM_RESTARTED = "stream_restarted"
    # Window level, in-scanner artefact correction (stream.artefact_correction)
    GRADIENT_UNCORRECTED = "gradient_uncorrected"
    GRADIENT_TRIGGER_INFERRED = "gradient_trigger_inferred"
    BCG_UNCORRECTED = "bcg_uncorrected"
    BCG_BEATS_FROM_EEG = "bcg_beats_from_eeg"
    # Feature level (features.extractor)
    EEG_RATE_TOO_LOW = "eeg_rate_too_low"
    EEG_BAND_ABOVE_NYQUIST = "eeg_band_above_nyquist"
    EEG_SPECTRUM_CLIPPED = "eeg_spectrum_clipped"
    NO_WELCH_SEGMENT = "no_welch_segment"
    COHERENCE_NEEDS_TWO_CHANNELS = "coherence_needs_two_channels"
    FMRI_FEATURES_NEED_VOLUMES = "fmri_features_need_volumes"
    FMRI_WINDOW_SHORT = "fmri_window_short"
    ALFF_BAND_ABOVE_NYQUIST = "alff_band_above_nyquist"
    ALFF_BAND_EMPTY = "alff_band_empty"
    FEATURE_NOT_FINITE = "feature_not_finite"
    # Prediction level (pipeline.pipeline)
    PREDICTED_WITHOUT_FMRI = "predicted_without_fmri"


def _names(values: Any) -> str:
    return ", ".join(str(v) for v in values)


_TEXT: dict[ProblemCode, Callable[[Mapping[str, Any]], str]] = {
    ProblemCode.EEG_COVERAGE_LOW: lambda p: f"EEG coverage {p['coverage']:.0%} below {p['minimum']:.0%}",
    ProblemCode.EEG_GAPS: lambda p: f"{p['count']} EEG gap(s), {p['seconds']:.2f} s",
    ProblemCode.NONFINITE_CHANNELS: lambda p: f"non-finite values in {_names(p['channels'])}",
    ProblemCode.FLAT_CHANNELS: lambda p: f"flat channel(s) {_names(p['channels'])}",
    ProblemCode.NO_USABLE_EEG_CHANNEL: lambda p: "no usable EEG channel",
    ProblemCode.EEG_RATE_OFF: lambda p: (
        f"EEG rate {p['rate']:.2f} Hz, {p['rate'] / p['nominal'] - 1:+.1%} "
        f"off its nominal {p['nominal']:g} Hz"
    ),
    ProblemCode.FEW_FMRI_VOLUMES: lambda p: f"only {p['volumes']} fMRI volume(s) in the window",
    ProblemCode.FMRI_VOLUMES_MISSING: lambda p: f"{p['missing']} fMRI volume(s) missing",
    ProblemCode.FMRI_STALE: lambda p: f"fMRI stale by {p['seconds']:.2f} s",
    ProblemCode.FMRI_UNMATCHED: lambda p: f"{p['count']} fMRI volume(s) without a trigger",
    ProblemCode.TRIGGER_LATENCY_HIGH: lambda p: (
        f"fMRI volumes arrive {p['latency']:.2f} s after their triggers (more than {p['limit']:.2f} s)"
    ),
    ProblemCode.TRIGGER_LATENCY_CHANGED: lambda p: (
        f"fMRI export latency changed from {p['previous']:.2f} s to {p['latency']:.2f} s"
    ),
    ProblemCode.TRIGGER_PAIRING_UNVERIFIED: lambda p: (
        f"fMRI volumes paired with triggers assuming an export latency under {p['limit']:.2f} s "
        "(run start not seen, no expected latency set)"
    ),
    ProblemCode.STREAM_RESTARTED: lambda p: "stream restarted",
    ProblemCode.GRADIENT_UNCORRECTED: lambda p: (
        f"{p['seconds']:.2f} s of EEG with the MR gradient artefact not removed"
    ),
    ProblemCode.GRADIENT_TRIGGER_INFERRED: lambda p: (
        f"gradient artefact removed over {p['seconds']:.2f} s with a volume trigger inferred from the TR"
    ),
    ProblemCode.BCG_UNCORRECTED: lambda p: f"{p['seconds']:.2f} s of EEG with the pulse artefact not removed",
    ProblemCode.BCG_BEATS_FROM_EEG: lambda p: (
        f"pulse artefact removed over {p['seconds']:.2f} s with heartbeats found in the EEG (ECG unusable)"
    ),
    ProblemCode.EEG_RATE_TOO_LOW: lambda p: (
        f"EEG at {p['sfreq']:g} Hz is too slow for any EEG feature "
        f"(the lowest band, up to {p['highest']:g} Hz, needs more than {2 * p['highest']:g} Hz)"
    ),
    ProblemCode.EEG_BAND_ABOVE_NYQUIST: lambda p: (
        f"{p['band']} band ({p['low']:g}-{p['high']:g} Hz) reaches above the Nyquist frequency "
        f"{p['sfreq'] / 2:g} Hz of EEG at {p['sfreq']:g} Hz"
    ),
    ProblemCode.EEG_SPECTRUM_CLIPPED: lambda p: (
        f"spectral entropy and coherence over {p['low']:g}-{p['top']:g} Hz only, not up to "
        f"{p['high']:g} Hz (EEG at {p['sfreq']:g} Hz)"
    ),
    ProblemCode.NO_WELCH_SEGMENT: lambda p: "no whole Welch segment of EEG in the window",
    ProblemCode.COHERENCE_NEEDS_TWO_CHANNELS: lambda p: "coherence needs two usable EEG channels",
    ProblemCode.FMRI_FEATURES_NEED_VOLUMES: lambda p: (
        f"{p['volumes']} fMRI volumes: fMRI features need {p['minimum']}"
    ),
    ProblemCode.FMRI_WINDOW_SHORT: lambda p: (
        f"fMRI window spans {p['seconds']:.0f} s: ALFF needs {p['needed']:.0f} s to resolve 0.01 Hz"
    ),
    ProblemCode.ALFF_BAND_ABOVE_NYQUIST: lambda p: (
        f"ALFF band up to {p['high']:g} Hz exceeds the Nyquist frequency {p['nyquist']:.3g} Hz "
        f"of TR {p['tr']:g} s"
    ),
    ProblemCode.ALFF_BAND_EMPTY: lambda p: (
        f"no frequency of the {p['seconds']:.0f}-s fMRI series falls in the ALFF band "
        f"{p['low']:g}-{p['high']:g} Hz"
    ),
    ProblemCode.FEATURE_NOT_FINITE: lambda p: (
        f"{p['modality']} feature {p['feature']} is not finite (degenerate or out-of-range input)"
    ),
    ProblemCode.PREDICTED_WITHOUT_FMRI: lambda p: f"predicted from the EEG alone: {p['reason']}",
}

EEG_FEATURES = frozenset({"eeg_power", "eeg_spectral_entropy", "eeg_mean_coherence"})
FMRI_FEATURES = frozenset({"fmri"})
ALFF_FEATURES = frozenset({"alff"})

# Which feature groups a problem makes unavailable ("explains" as NaN): "eeg_power" (the five band
# powers), "eeg_spectral_entropy", "eeg_mean_coherence", "fmri" (the four fMRI features), "alff"
# (the two ALFF features); a single feature's name (e.g. "eeg_gamma_power") is a group of its own.
_AFFECTS: dict[ProblemCode, frozenset[str]] = {
    ProblemCode.NO_USABLE_EEG_CHANNEL: EEG_FEATURES,
    ProblemCode.EEG_RATE_TOO_LOW: EEG_FEATURES,
    ProblemCode.NO_WELCH_SEGMENT: EEG_FEATURES,
    ProblemCode.COHERENCE_NEEDS_TWO_CHANNELS: frozenset({"eeg_mean_coherence"}),
    ProblemCode.FEW_FMRI_VOLUMES: FMRI_FEATURES,
    ProblemCode.FMRI_FEATURES_NEED_VOLUMES: FMRI_FEATURES,
    ProblemCode.ALFF_BAND_ABOVE_NYQUIST: ALFF_FEATURES,
    ProblemCode.ALFF_BAND_EMPTY: ALFF_FEATURES,
}


@dataclass(frozen=True)
class Problem:
    """One problem: a code and the numbers or names it needs.

    Parameters
    ----------
    code : ProblemCode
        What is wrong.
    params : Mapping
        Its parameters (numbers, strings, lists of strings), as named by the code's text.
    """

    code: ProblemCode
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The problem in plain English."""
        return _TEXT[self.code](self.params)

    @property
    def affects(self) -> frozenset[str]:
        """Feature groups this problem makes unavailable (empty when it only lowers trust)."""
        if self.code is ProblemCode.EEG_BAND_ABOVE_NYQUIST:
            return frozenset({f"eeg_{self.params['band']}_power"})
        return _AFFECTS.get(self.code, frozenset())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"code": ..., "text": ..., **params}``."""
        params = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in self.params.items()}
        return {"code": self.code.value, "text": self.text, **params}

    def __str__(self) -> str:
        return self.text


def problem(code: ProblemCode, **params: Any) -> Problem:
    """Shorthand: ``problem(ProblemCode.EEG_GAPS, count=2, seconds=0.5)``."""
    return Problem(code, params)
