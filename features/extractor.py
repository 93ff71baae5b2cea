"""The one feature path: a window in, the 11 features out — online and offline alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.problems import Problem, ProblemCode, problem
from core.windows import Window
from features.baseline import RunBaseline
from features.config import FeatureConfig
from features.eeg import (
    IncrementalWelch,
    band_powers,
    band_reachable,
    mean_coherence,
    mean_pearson,
    reachable_span,
    select_channels,
    spectral_entropy,
)
from features.fmri import alff_band_problem, fmri_features
from features.names import BAND_NAMES, FEATURE_NAMES

ALFF_MIN_SECONDS = 100.0

# The feature groups of :attr:`core.problems.Problem.affects` each feature belongs to.
_GROUPS: tuple[frozenset[str], ...] = (
    tuple(frozenset({"eeg_power", f"eeg_{band}_power"}) for band in BAND_NAMES)
    + (frozenset({"eeg_spectral_entropy"}), frozenset({"eeg_mean_coherence"}))
    + (frozenset({"fmri"}),) * 2
    + (frozenset({"fmri", "alff"}),) * 2
)


@dataclass
class FeatureVector:
    """The 11 features of one window.

    Attributes
    ----------
    values : np.ndarray, shape (11,)
        In :data:`features.names.FEATURE_NAMES` order; NaN where not computable.
    problems : list of Problem
        Why some features are missing or less trustworthy (codes with parameters; ``.text`` in
        English).
    eeg_channels : list of str
        EEG channels used.
    n_segments : int
        Welch segments averaged.
    """

    values: np.ndarray
    problems: list[Problem] = field(default_factory=list)
    eeg_channels: list[str] = field(default_factory=list)
    n_segments: int = 0

    @property
    def complete(self) -> bool:
        """All 11 features are finite."""
        return bool(np.all(np.isfinite(self.values)))

    def as_dict(self) -> dict[str, float]:
        """Feature name to value."""
        return {name: float(value) for name, value in zip(FEATURE_NAMES, self.values, strict=True)}


class FeatureExtractor:
    """Compute the 11 features of consecutive windows of one stream.

    Keeps per-segment spectra, and the volumes of the current run for the BOLD level's causal
    baseline, between windows, so feed it the windows of one acquisition (or one offline session)
    in order.

    Parameters
    ----------
    config : FeatureConfig | None
        Feature definitions; the documented defaults when None.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self._welch: IncrementalWelch | None = None
        self._eeg_rows: np.ndarray = np.array([], dtype=int)  # set with the Welch state
        self._eeg_take: np.ndarray | slice | None = None
        self._ch_types: tuple[str, ...] | None = None
        self._sfreq: float | None = None
        self._ch_names: tuple[str, ...] | None = None
        self._eeg_names: list[str] = []
        self._baseline = RunBaseline(self.config.bold_baseline_seconds)

    @staticmethod
    def _eeg_rows_of(ch_types: tuple[str, ...]) -> np.ndarray:
        return np.array([i for i, kind in enumerate(ch_types) if kind == "eeg"], dtype=int)

    def compute(self, window: Window) -> FeatureVector:
        """The 11 features of ``window``.

        Parameters
        ----------
        window : Window
            A window from :class:`stream.windower.MultiRateWindower`.

        Returns
        -------
        features : FeatureVector
        """
        config = self.config
        values = np.full(len(FEATURE_NAMES), np.nan)
        result = FeatureVector(values=values)
        sfreq = window.sfreq
        reachable = [band_reachable(band, sfreq) for band in config.bands.values()]
        if not any(reachable):
            lowest = min(high for _, high in config.bands.values())
            result.problems.append(problem(ProblemCode.EEG_RATE_TOO_LOW, sfreq=sfreq, highest=lowest))
            self._fmri_features(window, result)
            return self._checked(result)
        span = reachable_span(config, sfreq)
        if window.ch_types != self._ch_types or sfreq != self._sfreq:
            self._ch_types, self._sfreq = window.ch_types, sfreq
            self._welch = None
        if self._welch is None or window.quality.restarted:
            eeg_rows = self._eeg_rows if self._welch is not None else self._eeg_rows_of(window.ch_types)
            self._welch = IncrementalWelch(sfreq, eeg_rows.size, config, span=span)
            self._eeg_rows = eeg_rows
            # Consecutive rows are taken as a view, not a gathered copy.
            contiguous = eeg_rows.size > 0 and np.array_equal(
                eeg_rows, np.arange(eeg_rows[0], eeg_rows[-1] + 1)
            )
            self._eeg_take = slice(int(eeg_rows[0]), int(eeg_rows[-1]) + 1) if contiguous else eeg_rows
            self._ch_names = None
        eeg_rows = self._eeg_rows
        if window.ch_names != self._ch_names:
            self._ch_names = window.ch_names
            self._eeg_names = [window.ch_names[row] for row in eeg_rows.tolist()]
        spectra = (
            self._welch.spectra(window.eeg, window.eeg_times, window.eeg_first_sample, rows=self._eeg_take)
            if eeg_rows.size
            else None
        )

        bad = window.quality.bad_channels
        if bad:
            good = set(window.good_eeg_picks.tolist())
            keep = np.array([k for k, row in enumerate(eeg_rows.tolist()) if row in good], dtype=int)
            result.eeg_channels = [self._eeg_names[k] for k in keep.tolist()]
        else:
            keep = np.arange(eeg_rows.size)
            result.eeg_channels = list(self._eeg_names)
        if keep.size == 0:  # also a stream without EEG channels (no spectra either)
            result.problems.append(problem(ProblemCode.NO_USABLE_EEG_CHANNEL))
        elif spectra is None:
            result.problems.append(problem(ProblemCode.NO_WELCH_SEGMENT))
        else:
            result.n_segments = spectra.n_segments
            psd_sum, pairs_sum = select_channels(spectra, keep, config.reference)
            psd = psd_sum / spectra.n_segments
            values[0:5] = band_powers(psd, spectra.freqs, config)
            values[5] = spectral_entropy(psd, spectra.freqs, config)
            self._nyquist_limits(result, reachable, span, sfreq)
            if keep.size < 2:
                result.problems.append(problem(ProblemCode.COHERENCE_NEEDS_TWO_CHANNELS))
            elif config.coherence == "msc":
                values[6] = mean_coherence(psd_sum, pairs_sum, spectra.freqs, config)
            else:
                data = window.eeg[eeg_rows[keep]].astype(np.float64)
                if config.reference == "average":
                    data = data - data.mean(axis=0)
                values[6] = mean_pearson(data)

        self._fmri_features(window, result)
        return self._checked(result)

    def _nyquist_limits(
        self, result: FeatureVector, reachable: list[bool], span: tuple[float, float], sfreq: float
    ) -> None:
        """NaN for each band reaching the Nyquist frequency; a note when entropy and coherence lose bins."""
        for k, ((name, (low, high)), ok) in enumerate(zip(self.config.bands.items(), reachable, strict=True)):
            if not ok:
                result.values[k] = np.nan
                result.problems.append(
                    problem(ProblemCode.EEG_BAND_ABOVE_NYQUIST, band=name, low=low, high=high, sfreq=sfreq)
                )
        low, high = self.config.spectrum_range
        if span[1] < high:
            result.problems.append(
                problem(ProblemCode.EEG_SPECTRUM_CLIPPED, low=low, high=high, top=span[1], sfreq=sfreq)
            )

    def _fmri_features(self, window: Window, result: FeatureVector) -> None:
        config = self.config
        volumes = window.fmri.shape[0]
        baseline = None
        if config.bold_level == "baseline-percent":
            if window.quality.restarted:
                self._baseline.reset()
            # Every window's volumes join the baseline, also those of a window too short for features.
            baseline = self._baseline.update(window.fmri, window.fmri_indices, window.tr)
        if volumes < config.min_fmri_volumes:
            minimum = config.min_fmri_volumes
            result.problems.append(
                problem(ProblemCode.FMRI_FEATURES_NEED_VOLUMES, volumes=volumes, minimum=minimum)
            )
            return
        result.values[7:11] = fmri_features(window.fmri, window.fmri_indices, window.tr, config, baseline)
        span = int(window.fmri_indices.max() - window.fmri_indices.min()) + 1
        band_problem = alff_band_problem(span, float(window.tr), config.alff_band)
        if band_problem is not None:
            result.problems.append(band_problem)
        if volumes * window.tr < ALFF_MIN_SECONDS:
            result.problems.append(
                problem(ProblemCode.FMRI_WINDOW_SHORT, seconds=volumes * window.tr, needed=ALFF_MIN_SECONDS)
            )

    @staticmethod
    def _checked(result: FeatureVector) -> FeatureVector:
        """Name every feature that came out NaN or infinite without a reason already given.

        Degenerate or out-of-range input (a region whose mean is 0, a PSD bin of exactly 0, EEG beyond
        about 1e10 µV, fMRI values near the float32 limit) can make a feature non-finite; the window
        is then flagged with the feature named, and the infinite value replaced by NaN.
        """
        values = result.values
        bad = ~np.isfinite(values)
        if not bad.any():
            return result
        affected = frozenset().union(*(p.affects for p in result.problems))
        for index in np.flatnonzero(bad).tolist():
            if not _GROUPS[index] & affected:
                modality = "fMRI" if index >= 7 else "EEG"
                result.problems.append(
                    problem(ProblemCode.FEATURE_NOT_FINITE, modality=modality, feature=FEATURE_NAMES[index])
                )
        values[bad] = np.nan
        return result
