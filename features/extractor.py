"""The one feature path: a window in, the 11 features out — online and offline alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.windows import Window
from features.config import FeatureConfig
from features.eeg import (
    IncrementalWelch,
    band_powers,
    mean_coherence,
    mean_pearson,
    select_channels,
    spectral_entropy,
)
from features.fmri import fmri_features
from features.names import FEATURE_NAMES

ALFF_MIN_SECONDS = 100.0


@dataclass
class FeatureVector:
    """The 11 features of one window.

    Attributes
    ----------
    values : np.ndarray, shape (11,)
        In :data:`features.names.FEATURE_NAMES` order; NaN where not computable.
    problems : list of str
        Why some features are missing or less trustworthy.
    eeg_channels : list of str
        EEG channels used.
    n_segments : int
        Welch segments averaged.
    """

    values: np.ndarray
    problems: list[str] = field(default_factory=list)
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

    Keeps per-segment spectra between windows, so feed it the windows of one
    acquisition (or one offline session) in order.

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
        self._ch_names: tuple[str, ...] | None = None
        self._eeg_names: list[str] = []

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
        highest = config.frequency_span[1]
        if not window.sfreq > 2 * highest:
            result.problems.append(
                f"EEG at {window.sfreq:g} Hz cannot give features up to {highest:g} Hz "
                f"(needs more than {2 * highest:g} Hz)"
            )
            self._fmri_features(window, result)
            return self._checked(result)
        if window.ch_types != self._ch_types:
            self._ch_types = window.ch_types
            self._welch = None
        if self._welch is None or window.quality.restarted:
            eeg_rows = self._eeg_rows if self._welch is not None else self._eeg_rows_of(window.ch_types)
            self._welch = IncrementalWelch(window.sfreq, eeg_rows.size, config)
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
            result.problems.append("no usable EEG channel")
        elif spectra is None:
            result.problems.append("no whole Welch segment of EEG in the window")
        else:
            result.n_segments = spectra.n_segments
            psd_sum, pairs_sum = select_channels(spectra, keep, config.reference)
            psd = psd_sum / spectra.n_segments
            values[0:5] = band_powers(psd, spectra.freqs, config)
            values[5] = spectral_entropy(psd, spectra.freqs, config)
            if keep.size < 2:
                result.problems.append("coherence needs two usable EEG channels")
            elif config.coherence == "msc":
                values[6] = mean_coherence(psd_sum, pairs_sum, spectra.freqs, config)
            else:
                data = window.eeg[eeg_rows[keep]].astype(np.float64)
                if config.reference == "average":
                    data = data - data.mean(axis=0)
                values[6] = mean_pearson(data)

        self._fmri_features(window, result)
        return self._checked(result)

    def _fmri_features(self, window: Window, result: FeatureVector) -> None:
        config = self.config
        volumes = window.fmri.shape[0]
        if volumes < config.min_fmri_volumes:
            result.problems.append(f"{volumes} fMRI volumes: fMRI features need {config.min_fmri_volumes}")
            return
        result.values[7:11] = fmri_features(window.fmri, window.fmri_indices, window.tr, config)
        if volumes * window.tr < ALFF_MIN_SECONDS:
            result.problems.append(
                f"fMRI window spans {volumes * window.tr:.0f} s: ALFF needs {ALFF_MIN_SECONDS:.0f} s "
                "to resolve 0.01 Hz"
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
        explained_eeg = any(("EEG" in p or "Welch" in p) and "coherence" not in p for p in result.problems)
        explained_coherence = explained_eeg or any("coherence" in p for p in result.problems)
        explained_fmri = any("fMRI" in p and "ALFF needs" not in p for p in result.problems)
        for index in np.flatnonzero(bad).tolist():
            name = FEATURE_NAMES[index]
            explained = explained_fmri if index >= 7 else explained_coherence if index == 6 else explained_eeg
            if not explained:
                modality = "fMRI" if index >= 7 else "EEG"
                result.problems.append(
                    f"{modality} feature {name} is not finite (degenerate or out-of-range input)"
                )
        values[bad] = np.nan
        return result
