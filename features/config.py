"""Typed configuration of the feature computation (definitions in ``docs/features.md``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.windows import MIN_FMRI_VOLUMES

FEATURE_DEFINITIONS = 2
"""Version of the feature definitions (``docs/features.md``); a bundle trained on another is refused."""

POWER_SCALES = ("absolute", "log", "relative")
COHERENCE_METHODS = ("msc", "pearson")
REFERENCES = ("recorded", "average")
ALFF_MEASURES = ("alff", "falff")
BOLD_LEVELS = ("baseline-percent", "raw")


def _default_bands() -> dict[str, tuple[float, float]]:
    return {
        "delta": (0.5, 4.0),
        "theta": (4.0, 8.0),
        "alpha": (8.0, 13.0),
        "beta": (13.0, 30.0),
        "gamma": (30.0, 45.0),
    }


@dataclass(frozen=True)
class FeatureConfig:
    """How the 11 features are computed.

    Parameters
    ----------
    bands : dict
        Band name to (low, high) Hz; a PSD bin at f belongs to a band when
        ``low <= f < high`` (the last band also takes ``f == high``).
    segment_seconds : float
        Welch segment length (Hann window).
    segment_overlap : float
        Fraction of overlap between consecutive segments.
    spectrum_range : tuple of float
        Frequencies (Hz, inclusive) of the spectral entropy and the coherence average.
    power_scale : str
        ``"absolute"`` (µV²), ``"log"`` (log10 µV²) or ``"relative"`` (fraction of the
        power in ``spectrum_range``).
    coherence : str
        ``"msc"``: magnitude-squared coherence from Welch cross-spectra (default);
        ``"pearson"``: mean Pearson correlation between channels (the origin app's
        definition, under its real name).
    reference : str
        ``"recorded"`` (as streamed, FCz in ds003768) or ``"average"`` (common
        average of the good EEG channels, per window).
    alff_band : tuple of float
        Low-frequency band in Hz, inclusive (Zang et al. 2007: 0.01-0.08 Hz); its upper edge must lie
        below the Nyquist frequency of the TR (checked per window: ALFF is NaN and flagged otherwise).
    alff_measure : str
        ``"alff"``: mean amplitude spectral density over the band (%/sqrt(Hz), Zang et al. 2007,
        independent of the series length); ``"falff"``: the band's share of the amplitude over all
        non-DC bins up to Nyquist (Zou et al. 2008). Features 10/11 are the mean and variance across
        regions of this measure.
    bold_level : str
        ``"baseline-percent"``: the window's mean per region in percent of the run's causal baseline,
        averaged over regions (scale-free); ``"raw"``: the mean of the raw region means (scanner
        units, identifies the scanner and subject more than the state).
    bold_baseline_seconds : float
        Span of the causal baseline of ``"baseline-percent"``: the run's volumes received within
        this many seconds up to and including the window's newest volume.
    min_fmri_volumes : int
        Fewer volumes than this in the fMRI window give no fMRI features (NaN); at least
        :data:`core.windows.MIN_FMRI_VOLUMES`, below which a window is not usable.
    """

    bands: dict[str, tuple[float, float]] = field(default_factory=_default_bands)
    segment_seconds: float = 4.0
    segment_overlap: float = 0.5
    spectrum_range: tuple[float, float] = (0.5, 45.0)
    power_scale: str = "absolute"
    coherence: str = "msc"
    reference: str = "recorded"
    alff_band: tuple[float, float] = (0.01, 0.08)
    alff_measure: str = "alff"
    bold_level: str = "baseline-percent"
    bold_baseline_seconds: float = 600.0
    min_fmri_volumes: int = MIN_FMRI_VOLUMES

    def __post_init__(self) -> None:
        if tuple(self.bands) != ("delta", "theta", "alpha", "beta", "gamma"):
            raise ValueError(
                f"bands must be delta, theta, alpha, beta, gamma in order, got {list(self.bands)}"
            )
        for name, (low, high) in self.bands.items():
            if not 0 <= low < high:
                raise ValueError(f"band {name} = ({low}, {high}) Hz is not an interval")
        if self.segment_seconds <= 0 or not 0 <= self.segment_overlap < 1:
            raise ValueError("segment_seconds must be > 0 and segment_overlap in [0, 1)")
        if self.power_scale not in POWER_SCALES:
            raise ValueError(f"power_scale must be one of {POWER_SCALES}, got {self.power_scale!r}")
        if self.coherence not in COHERENCE_METHODS:
            raise ValueError(f"coherence must be one of {COHERENCE_METHODS}, got {self.coherence!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {self.reference!r}")
        low, high = self.spectrum_range
        if not 0 <= low < high:
            raise ValueError(f"spectrum_range {self.spectrum_range} is not an interval")
        if not 0 <= self.alff_band[0] < self.alff_band[1]:
            raise ValueError(f"alff_band {self.alff_band} is not an interval")
        if self.alff_measure not in ALFF_MEASURES:
            raise ValueError(f"alff_measure must be one of {ALFF_MEASURES}, got {self.alff_measure!r}")
        if self.bold_level not in BOLD_LEVELS:
            raise ValueError(f"bold_level must be one of {BOLD_LEVELS}, got {self.bold_level!r}")
        if not self.bold_baseline_seconds > 0:
            raise ValueError(f"bold_baseline_seconds must be > 0, got {self.bold_baseline_seconds!r}")
        if self.min_fmri_volumes < MIN_FMRI_VOLUMES:
            raise ValueError(
                f"min_fmri_volumes must be >= {MIN_FMRI_VOLUMES} (a window with fewer is not usable)"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists), every field included."""
        record: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = {k: list(v) for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            record[f.name] = value
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"unknown feature setting(s) {unknown}")
        values = dict(record)
        if "bands" in values:
            values["bands"] = {k: (float(v[0]), float(v[1])) for k, v in values["bands"].items()}
        for name, value in values.items():
            if isinstance(value, list):
                values[name] = tuple(value)
        return cls(**values)

    @property
    def frequency_span(self) -> tuple[float, float]:
        """Lowest and highest frequency any EEG feature needs."""
        lows = [low for low, _ in self.bands.values()] + [self.spectrum_range[0]]
        highs = [high for _, high in self.bands.values()] + [self.spectrum_range[1]]
        return min(lows), max(highs)
