"""On real sleep EEG, the features rank the stages as physiology says.

Real snippets from YASA's repository (``tests/data/yasa/``, BSD-3-Clause, copyright Raphael
Vallat): N2 with spindles (200 Hz, 15 s), N3 (100 Hz, 30 s), awake eyes open (200 Hz, Cz-A2 and
F4-A1) and REM-sleep EOG (256 Hz). Each goes through the windower and the feature extractor the
pipeline uses, in windows of equal length (14.9 s, so the 15-s N2 snippet holds one) at its own rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mne
import numpy as np
import pytest

from core.problems import ProblemCode
from core.windows import Window
from features.config import FeatureConfig
from features.eeg import IncrementalWelch, band_power
from features.extractor import FeatureExtractor
from stream.config import WindowConfig
from stream.windower import MultiRateWindower

DATA = Path(__file__).parent / "data" / "yasa"
SECONDS = 14.9
SIGMA = (11.0, 16.0)  # spindles


def windows(data: np.ndarray, sfreq: float, names: list[str]) -> list[Window]:
    """Consecutive 14.9-s windows of EEG (channels x samples, µV), fed in 1-s chunks."""
    data = np.atleast_2d(data)
    windower = MultiRateWindower(
        WindowConfig(eeg_window=SECONDS, hop=SECONDS),
        sfreq,
        names,
        ["eeg"] * len(names),
        (),
        2.1,
        use_triggers=False,
    )
    times = np.arange(data.shape[1]) / sfreq
    step = round(sfreq)
    cut = []
    for start in range(0, times.size, step):
        windower.add_eeg(times[start : start + step], data[:, start : start + step].T)
        cut += windower.poll()
    return cut + windower.flush()


def measures(window: Window, config: FeatureConfig | None = None) -> dict[str, Any]:
    """The window's features (the extractor's) and its sigma power (the same Welch spectra)."""
    config = config or FeatureConfig()
    features = FeatureExtractor(config).compute(window)
    spectra = IncrementalWelch(window.sfreq, window.eeg.shape[0], config).spectra(
        window.eeg, window.eeg_times, window.eeg_first_sample
    )
    assert spectra is not None
    values: dict[str, Any] = dict(features.as_dict())
    values["sigma"] = float(band_power(spectra.psd, spectra.freqs, SIGMA).mean())
    values["codes"] = {p.code for p in features.problems}
    return values


@pytest.fixture(scope="module")
def stages() -> dict[str, list[dict[str, Any]]]:
    awake = mne.io.read_raw_fif(DATA / "data_resting_EO_200Hz_60sec_raw.fif", verbose=False)
    cz = awake.get_data(picks=["CZ-A2"], units="uV")
    cut = {
        "N2": windows(np.loadtxt(DATA / "data_N2_spindles_15sec_200Hz.txt"), 200.0, ["EEG"]),
        "N3": windows(np.loadtxt(DATA / "data_N3_no-spindles_30sec_100Hz.txt"), 100.0, ["EEG"]),
        "W": windows(cz, awake.info["sfreq"], ["Cz"]),
    }
    assert [len(cut[s]) for s in ("N2", "N3", "W")] == [1, 2, 4]
    assert [cut[s][0].sfreq for s in ("N2", "N3", "W")] == [200.0, 100.0, 200.0]
    return {stage: [measures(w) for w in stage_windows] for stage, stage_windows in cut.items()}


def test_every_eeg_feature_of_one_channel_snippets_is_there(stages):
    for stage, rows in stages.items():
        for row in rows:
            for name in ("eeg_delta_power", "eeg_theta_power", "eeg_alpha_power", "eeg_beta_power"):
                assert np.isfinite(row[name]) and row[name] > 0, (stage, name)
            assert np.isfinite(row["eeg_gamma_power"]), stage  # 45 Hz is below Nyquist at 100 Hz too
            assert 0 < row["eeg_spectral_entropy"] < 1
            assert ProblemCode.COHERENCE_NEEDS_TWO_CHANNELS in row["codes"]  # one channel: named, not raised
            assert ProblemCode.EEG_BAND_ABOVE_NYQUIST not in row["codes"]


def test_n3_has_more_delta_power_than_wake(stages):
    assert min(r["eeg_delta_power"] for r in stages["N3"]) > 2 * max(
        r["eeg_delta_power"] for r in stages["W"]
    )


def test_n2_spindles_give_more_sigma_power_than_n3(stages):
    assert stages["N2"][0]["sigma"] > 2 * max(r["sigma"] for r in stages["N3"])


def test_wake_has_a_higher_alpha_to_delta_ratio_than_n3(stages):
    def ratio(row: dict[str, Any]) -> float:
        return row["eeg_alpha_power"] / row["eeg_delta_power"]

    assert min(ratio(r) for r in stages["W"]) > 3 * max(ratio(r) for r in stages["N3"])


def test_n3_spectrum_is_less_even_than_wake(stages):
    # Slow waves concentrate the power in a few low bins: a lower spectral entropy.
    n3 = max(r["eeg_spectral_entropy"] for r in stages["N3"])
    assert n3 + 0.1 < min(r["eeg_spectral_entropy"] for r in stages["W"])


def test_rapid_eye_movements_move_the_two_eog_channels_in_opposition():
    record = np.load(DATA / "data_EOGs_REM_256Hz_60sec.npz")
    sfreq = float(record["sf"])
    cut = windows(record["data"], sfreq, [str(c) for c in record["chan"]])
    assert len(cut) == 4 and all(w.sfreq == 256.0 for w in cut)  # 256 Hz is kept: under twice 250 Hz
    rows = [measures(w, FeatureConfig(coherence="pearson")) for w in cut]
    msc = [FeatureExtractor().compute(w).values[6] for w in cut]
    assert all(0 < value < 1 for value in msc)
    # Where the eyes move (the window with the most slow EOG power), LOC and ROC deflect in
    # opposite directions: a clearly negative correlation.
    moving = max(rows, key=lambda r: r["eeg_delta_power"])
    assert moving["eeg_mean_coherence"] < -0.5
