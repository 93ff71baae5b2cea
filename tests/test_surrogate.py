"""The surrogate's physiology, checked independently with scipy on the written files.

The files are referenced to FCz (as ds003768); the checks re-reference to the linked mastoids
(TP9, TP10), the derivation sleep scorers read.
"""

import itertools

import numpy as np
import pytest
from scipy import signal

from core.stages import UNSCORED
from recordings.hypnogram import Hypnogram, read_hypnogram
from recordings.montage import EEG_CHANNELS
from recordings.session import read_session
from simulators.night import (
    crop_to_sleep,
    hypnogram_text,
    shipped_hypnograms,
    surrogate_night,
    synthesis_stages,
    write_night,
)
from simulators.surrogate import write_surrogate_run
from simulators.surrogate_eeg import STAGE_ORDER, stage_envelope, subject_traits, synthesize


@pytest.fixture(scope="module")
def epochs_by_stage(bundled_dataset):
    """EEG epochs (30 s, microvolts) and BOLD fluctuation per epoch, grouped by scored stage."""
    eeg, bold = {}, {}
    for run in ("sleep-2", "sleep-3"):
        session = read_session(bundled_dataset, "27", run)
        sfreq = session.sfreq
        data = session.eeg_samples(0, session.n_times)
        mastoids = data[:, [EEG_CHANNELS.index("TP9"), EEG_CHANNELS.index("TP10")]].mean(axis=1)
        data = data.copy()
        data[:, : len(EEG_CHANNELS)] -= mastoids[:, None]
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


# Stage signatures measured on short synthesised stretches, one stage each, in the
# derivations sleep scorers read (an electrode against the opposite mastoid).
SIGNATURE_CHANNELS = ("F4", "C4", "O1", "O2", "TP9", "TP10")
SIGNATURE_RATE = 100.0


@pytest.fixture(scope="module")
def stage_signals():
    """Two minutes of each of the five stages (own random stream each), as mastoid derivations."""
    out = {}
    for index, stage in enumerate(STAGE_ORDER):
        stages = np.full(int(120 * SIGNATURE_RATE), index)
        rng = np.random.default_rng(index)
        signals = synthesize(stages, SIGNATURE_RATE, rng, SIGNATURE_CHANNELS, subject_traits(7))
        eeg = dict(zip(SIGNATURE_CHANNELS, signals["eeg"], strict=True))
        out[stage] = {
            "F4-M1": eeg["F4"] - eeg["TP9"],
            "C4-M1": eeg["C4"] - eeg["TP9"],
            "O2-M1": eeg["O2"] - eeg["TP9"],
            "EOG": signals["eog"],
            "EMG": signals["emg"],
        }
    return out


def welch_power(x, low, high, sfreq=SIGNATURE_RATE):
    freqs, psd = signal.welch(x, fs=sfreq, nperseg=int(4 * sfreq))
    band = (freqs >= low) & (freqs < high)
    return float(np.trapezoid(psd[band], freqs[band]))


def slow_wave_fraction(x, sfreq=SIGNATURE_RATE, threshold=75.0):
    """Share of the time covered by 0.5-2 Hz waves over ``threshold`` uV peak to peak.

    A wave runs from one upward zero crossing of the band-passed signal to the next.
    """
    sos = signal.butter(2, [0.5, 2.0], btype="band", fs=sfreq, output="sos")
    filtered = signal.sosfiltfilt(sos, x)
    up = np.flatnonzero((filtered[:-1] < 0) & (filtered[1:] >= 0))
    covered = sum(
        stop - start for start, stop in itertools.pairwise(up) if np.ptp(filtered[start:stop]) > threshold
    )
    return covered / x.size


def test_posterior_alpha_in_relaxed_wake_drops_out_in_n1(stage_signals):
    alpha = {s: welch_power(stage_signals[s]["O2-M1"], 8, 12) for s in ("W", "N1")}
    assert alpha["W"] > 3 * alpha["N1"]
    # Posterior: stronger over O2 than over C4 in wake.
    assert alpha["W"] > 1.5 * welch_power(stage_signals["W"]["C4-M1"], 8, 12)


def test_theta_dominates_alpha_in_n1(stage_signals):
    n1 = stage_signals["N1"]["C4-M1"]
    assert welch_power(n1, 4, 8) > welch_power(n1, 8, 12)


def test_spindle_sigma_power_is_higher_in_n2_than_n1(stage_signals):
    sigma = {s: welch_power(stage_signals[s]["C4-M1"], 11, 16) for s in ("N1", "N2", "R")}
    assert sigma["N2"] > 1.5 * sigma["N1"] and sigma["N2"] > 1.5 * sigma["R"]


def test_n3_slow_waves_cover_a_fifth_of_every_epoch(stage_signals):
    n3 = stage_signals["N3"]["F4-M1"]
    epochs = n3.reshape(-1, int(30 * SIGNATURE_RATE))
    assert all(slow_wave_fraction(epoch) >= 0.2 for epoch in epochs)
    assert all(slow_wave_fraction(e) < 0.2 for e in stage_signals["N2"]["F4-M1"].reshape(epochs.shape))


def test_rem_has_rapid_eye_movements_and_the_lowest_chin_emg(stage_signals):
    def rapid(eog):
        """Share of the time the eyes move faster than 1 mV/s (a saccade's flank), below 5 Hz."""
        sos = signal.butter(2, 5.0, fs=SIGNATURE_RATE, output="sos")
        return float(np.mean(np.abs(np.diff(signal.sosfiltfilt(sos, eog))) * SIGNATURE_RATE > 1000))

    quiet = max(rapid(stage_signals[s]["EOG"]) for s in ("N1", "N2", "N3"))
    assert rapid(stage_signals["R"]["EOG"]) > 5 * quiet
    emg = {s: float(np.std(stage_signals[s]["EMG"])) for s in STAGE_ORDER}
    assert min(emg, key=emg.get) == "R"
    assert emg["W"] > emg["N2"] > emg["R"]


def test_slow_eye_movements_around_sleep_onset(stage_signals):
    slow = {s: welch_power(stage_signals[s]["EOG"], 0.2, 0.7) for s in ("W", "N1", "N2")}
    assert slow["N1"] > 2 * slow["N2"]


def test_subjects_differ_in_peak_frequencies():
    traits = [subject_traits(n) for n in range(6)]
    assert len({round(t.alpha_hz, 2) for t in traits}) == 6
    assert all(9 <= t.alpha_hz <= 11 and 11 <= t.spindle_hz <= 16 for t in traits)
    assert subject_traits(3) == subject_traits(3)


def test_stage_changes_cross_fade_over_tens_of_seconds():
    sfreq = 100.0
    stages = np.repeat([0, 3], int(60 * sfreq))
    slow = stage_envelope(stages, {s: float(i) for i, s in enumerate(STAGE_ORDER)}, sfreq)
    change = stages.size // 2
    assert slow[change - int(15 * sfreq)] == pytest.approx(0) and slow[
        change + int(15 * sfreq)
    ] == pytest.approx(3)
    halfway = np.flatnonzero((slow > 0.1) & (slow < 2.9))
    assert 10 * sfreq < halfway.size < 30 * sfreq


def test_night_follows_a_real_hypnogram(tmp_path):
    source = shipped_hypnograms()[0]
    whole = read_hypnogram(source)
    night_hypnogram = crop_to_sleep(whole)
    first_sleep = next(i for i, s in enumerate(whole.stages) if s not in ("W", UNSCORED))
    start = first_sleep - 30  # 15 min of the wake before sleep onset are kept
    assert night_hypnogram.stages == whole.stages[start : start + night_hypnogram.n_epochs]
    assert 6 * 3600 < night_hypnogram.n_epochs * 30 < 11 * 3600
    # Synthesise the first 90 minutes (sleep onset, N2, N3) to keep the test short.
    part = Hypnogram(
        night_hypnogram.onsets[:180],
        night_hypnogram.stages[:180],
        night_hypnogram.raw_labels[:180],
        str(source),
    )
    night = surrogate_night(part, crop=False, eeg_channels=("F4", "C4", "TP9", "TP10"))
    assert night.hypnogram.stages == part.stages
    assert night.n_times == 180 * 30 * 100
    edf, text = write_night(night, tmp_path, "night")
    assert read_hypnogram(text).stages == part.stages
    import mne

    raw = mne.io.read_raw_edf(edf, verbose=False)
    assert raw.ch_names == list(night.ch_names) and raw.n_times == night.n_times
    # The signal follows the labels: slow waves in the N3 epochs, not in the wake ones.
    f4 = night.channel("F4") - night.channel("TP9")
    epochs = f4.reshape(180, -1)
    by_stage = {
        s: [slow_wave_fraction(e) for e, t in zip(epochs, part.stages, strict=True) if t == s]
        for s in ("W", "N3")
    }
    assert by_stage["N3"] and by_stage["W"]
    assert np.median(by_stage["N3"]) >= 0.2 > np.median(by_stage["W"])


def test_unscored_epochs_are_synthesised_like_their_neighbour_and_stay_unscored(tmp_path):
    stages = ("W", UNSCORED, "N2", UNSCORED, "R")
    labels = ("Sleep stage W", "Sleep stage ?", "Sleep stage 2", "Movement time", "Sleep stage R")
    np.testing.assert_array_equal(synthesis_stages(stages), [0, 0, 2, 2, 4])
    hypnogram = Hypnogram(np.arange(5) * 30.0, stages, labels, "test")
    path = tmp_path / "hypnogram.txt"
    path.write_text(hypnogram_text(hypnogram))
    assert path.read_text().split() == ["0", "-2", "2", "-1", "4"]
    read = read_hypnogram(path)
    assert read.stages == stages
    assert read.excluded["unscored"] == 1 and read.excluded["artefact"] == 1
