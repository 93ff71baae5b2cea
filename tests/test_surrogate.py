"""The surrogate's physiology, checked independently with scipy on the written files."""

import numpy as np
import pytest
from scipy import signal

from recordings.montage import EEG_CHANNELS
from recordings.session import read_session
from simulators.surrogate import write_surrogate_run


@pytest.fixture(scope="module")
def epochs_by_stage(bundled_dataset):
    """EEG epochs (30 s, microvolts) and BOLD fluctuation per epoch, grouped by scored stage."""
    eeg, bold = {}, {}
    for run in ("sleep-2", "sleep-3"):
        session = read_session(bundled_dataset, "27", run)
        sfreq = session.sfreq
        data = session.eeg_samples(0, session.n_times)
        # BOLD: region means band-passed to 0.01-0.1 Hz after linear detrending.
        sos = signal.butter(2, [0.01, 0.1], btype="band", fs=1 / session.tr, output="sos")
        fluct = signal.sosfiltfilt(sos, signal.detrend(session.roi_means, axis=0), axis=0)
        percent = 100 * fluct / session.roi_means.mean(axis=0)
        for onset, stage in zip(session.stage_onsets, session.scoring.stages, strict=True):
            start = int(onset * sfreq)
            eeg.setdefault(stage, []).append(data[start : start + int(30 * sfreq)].T)
            volumes = (session.volume_times >= onset) & (session.volume_times < onset + 30)
            bold.setdefault(stage, []).append(percent[volumes].std(axis=0).mean())
    return eeg, bold, sfreq


def band_power(epochs, sfreq, low, high, channels):
    picks = [EEG_CHANNELS.index(c) for c in channels]
    freqs, psd = signal.welch(np.stack(epochs)[:, picks], fs=sfreq, nperseg=int(4 * sfreq))
    band = (freqs >= low) & (freqs < high)
    return np.trapezoid(psd[..., band], freqs[band], axis=-1).mean()


def mean_coherence(epochs, sfreq):
    data = np.stack(epochs)[:, : len(EEG_CHANNELS)]
    pairs = [(0, 9), (2, 7), (4, 5), (16, 19), (10, 15), (21, 26)]
    values = []
    for i, j in pairs:
        freqs, coh = signal.coherence(data[:, i], data[:, j], fs=sfreq, nperseg=int(4 * sfreq))
        values.append(coh[:, (freqs >= 0.5) & (freqs <= 45)].mean())
    return float(np.mean(values))


def test_all_four_stages_are_present(epochs_by_stage):
    eeg, _, _ = epochs_by_stage
    assert {"W", "N1", "N2", "N3"} <= set(eeg)


def test_posterior_alpha_is_highest_in_wake(epochs_by_stage):
    eeg, _, sfreq = epochs_by_stage
    alpha = {s: band_power(eeg[s], sfreq, 8, 13, ["O1", "O2", "Oz"]) for s in ("W", "N1", "N2", "N3")}
    assert alpha["W"] > 3 * alpha["N1"] and alpha["N1"] > alpha["N2"]


def test_theta_rises_in_n1(epochs_by_stage):
    eeg, _, sfreq = epochs_by_stage
    theta = {s: band_power(eeg[s], sfreq, 4, 8, ["Fz", "Cz"]) for s in ("W", "N1")}
    assert theta["N1"] > 2 * theta["W"]


def test_delta_rises_with_depth(epochs_by_stage):
    eeg, _, sfreq = epochs_by_stage
    delta = {s: band_power(eeg[s], sfreq, 0.5, 4, ["Fz", "F3", "F4"]) for s in ("W", "N1", "N2", "N3")}
    assert delta["W"] < delta["N1"] < delta["N2"] < delta["N3"]


def test_sigma_spindle_band_is_highest_in_n2(epochs_by_stage):
    eeg, _, sfreq = epochs_by_stage
    sigma = {s: band_power(eeg[s], sfreq, 11, 16, ["Cz", "CP1", "CP2"]) for s in ("W", "N1", "N2")}
    assert sigma["N2"] > 2 * sigma["W"] and sigma["N2"] > sigma["N1"]


def test_n3_has_high_amplitude_slow_waves(epochs_by_stage):
    eeg, _, sfreq = epochs_by_stage
    sos = signal.butter(4, [0.5, 2], btype="band", fs=sfreq, output="sos")
    fz = EEG_CHANNELS.index("Fz")
    peak_to_peak = [np.ptp(signal.sosfiltfilt(sos, e[fz])) for e in eeg["N3"]]
    assert np.median(peak_to_peak) > 75  # AASM: slow waves >= 75 uV peak to peak


def test_coherence_rises_from_wake_to_deep_sleep(epochs_by_stage):
    eeg, _, sfreq = epochs_by_stage
    coherence = {s: mean_coherence(eeg[s], sfreq) for s in ("W", "N2", "N3")}
    assert coherence["W"] < coherence["N2"] < coherence["N3"]


def test_bold_fluctuations_rise_in_light_sleep(epochs_by_stage):
    _, bold, _ = epochs_by_stage
    amplitude = {s: np.median(bold[s]) for s in ("W", "N1", "N2")}
    assert amplitude["W"] < amplitude["N1"]
    assert amplitude["W"] < amplitude["N2"]


def test_generation_is_deterministic_by_seed(tmp_path, short_dataset):
    scoring = short_dataset / "short-scoring.tsv"
    a = write_surrogate_run(tmp_path / "a", "99", "rest-1", seed=3, scoring_source=scoring)
    b = write_surrogate_run(tmp_path / "b", "99", "rest-1", seed=3, scoring_source=scoring)
    c = write_surrogate_run(tmp_path / "c", "99", "rest-1", seed=4, scoring_source=scoring)
    eeg = [p.eeg_header.with_suffix(".eeg").read_bytes() for p in (a, b, c)]
    assert eeg[0] == eeg[1] and eeg[0] != eeg[2]
    sa, sb = read_session(tmp_path / "a", "99", "rest-1"), read_session(tmp_path / "b", "99", "rest-1")
    np.testing.assert_array_equal(sa.roi_means, sb.roi_means)


@pytest.mark.slow
def test_5000_hz_recording_like_the_real_amplifier(tmp_path, short_dataset):
    scoring = short_dataset / "short-scoring.tsv"
    write_surrogate_run(tmp_path, "99", "rest-1", sfreq=5000, scoring_source=scoring)
    session = read_session(tmp_path, "99", "rest-1")
    assert session.sfreq == 5000
    assert session.n_times == 5000 * 63
    # Triggers fall on exact samples: TR 2.1 s = 10500 samples.
    np.testing.assert_allclose(np.diff(session.volume_times) * 5000, 10500)
