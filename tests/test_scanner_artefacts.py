"""The in-scanner artefact simulation, checked with independent measurements (scipy, MNE)."""

import json

import mne
import numpy as np
import pytest
from scipy import signal

from recordings.montage import CHANNEL_TYPES, CHANNELS, ECG_CHANNEL, EEG_CHANNELS
from simulators.scanner_artefacts import (
    ScannerArtefactSettings,
    contaminate,
    gradient_waveforms,
    slice_frequency,
    slice_harmonics,
)
from simulators.surrogate import CLEAN_DERIVATIVE, write_surrogate_run
from simulators.surrogate_eeg import electrode_positions

SFREQ = 5000.0
TR = 2.1
FIRST = 1.0
ECG = CHANNELS.index(ECG_CHANNEL)


def simulate(seconds=30.0, sfreq=SFREQ, first=FIRST, seed=0, **settings):
    n_times = int(seconds * sfreq)
    clean = np.random.default_rng(100 + seed).standard_normal((len(CHANNELS), n_times)) * 10
    n_volumes = int((seconds - first - 0.5) / TR)
    return contaminate(
        clean,
        CHANNEL_TYPES,
        sfreq,
        first,
        n_volumes,
        TR,
        np.random.default_rng(seed),
        ScannerArtefactSettings(**settings),
        ch_names=CHANNELS,
    )


@pytest.fixture(scope="module")
def scan():
    return simulate()


def volume_matrix(gradient_row, onsets, sfreq=SFREQ):
    length = int(TR * sfreq)
    starts = np.rint(onsets * sfreq).astype(int)
    return np.stack([gradient_row[s : s + length] for s in starts if s + length <= gradient_row.size])


def test_the_recording_is_clean_plus_gradient_plus_bcg(scan):
    np.testing.assert_array_equal(scan.data, (scan.clean + scan.gradient) + scan.bcg)
    assert scan.data.dtype == np.float32
    assert np.abs(scan.gradient).max() > 1000 and np.abs(scan.bcg).max() > 40


def test_each_part_can_be_switched_off_without_changing_the_others(scan):
    no_gradient = simulate(gradients=False)
    no_bcg = simulate(bcg=False)
    assert not no_gradient.gradient.any() and not no_bcg.bcg.any()
    np.testing.assert_array_equal(no_gradient.bcg, scan.bcg)
    np.testing.assert_array_equal(no_bcg.gradient, scan.gradient)
    np.testing.assert_array_equal(no_bcg.r_peaks, scan.r_peaks)


def test_clean_is_the_input_with_the_simulated_ecg():
    seconds, n_times = 10.0, int(10 * SFREQ)
    clean = np.random.default_rng(5).standard_normal((len(CHANNELS), n_times))
    out = contaminate(clean, CHANNEL_TYPES, SFREQ, 1.0, 3, TR, np.random.default_rng(1), ch_names=CHANNELS)
    others = [i for i in range(len(CHANNELS)) if i != ECG]
    np.testing.assert_array_equal(out.clean[others], clean[others].astype(np.float32))
    assert out.clean[ECG].max() > 500  # R waves of about 1 mV
    assert out.r_peaks.size >= seconds * 62 / 60 - 2


def test_gradient_power_is_at_the_slice_frequency_and_its_harmonics(scan):
    fundamental = slice_frequency(TR, 35)
    assert fundamental == pytest.approx(35 / 2.1)
    harmonics = slice_harmonics(TR, 35, SFREQ / 2)
    for row in (0, 4, 17, ECG):
        freqs, power = signal.welch(scan.gradient[row].astype(float), fs=SFREQ, nperseg=int(4 * TR * SFREQ))
        near = np.any(np.abs(freqs[:, None] - harmonics[None]) <= 0.25, axis=1)
        assert power[near].sum() > 0.99 * power.sum()
        # the fundamental itself carries the artefact
        assert power[np.argmin(np.abs(freqs - fundamental))] > 1e3 * np.median(power)


def test_gradient_is_locked_to_the_volume_onsets(scan):
    for row in (2, 9, 30):
        volumes = volume_matrix(scan.gradient[row], scan.volume_onsets)
        template = volumes.mean(axis=0)
        scale = np.sqrt(np.mean(template**2))
        # each volume is the average up to the slow drift of the coupling (head movement)
        for volume in volumes:
            assert np.sqrt(np.mean((volume - template) ** 2)) < 0.05 * scale
            assert np.corrcoef(volume, template)[0, 1] > 0.99
        # between volumes the signal is identical in timing: no artefact before the first onset
    start = int(np.rint(scan.volume_onsets[0] * SFREQ))
    assert np.abs(scan.gradient[:, : start - 1]).max() == 0


def test_movement_makes_volumes_drift_apart():
    still = simulate(seconds=15, gradients=True, bcg=False, movement=0.0)
    moving = simulate(seconds=15, gradients=True, bcg=False, movement=0.02)
    row = 4
    for result, drifts in ((still, False), (moving, True)):
        volumes = volume_matrix(result.gradient[row], result.volume_onsets)
        change = np.abs(volumes[-1] - volumes[0]).max() / np.abs(volumes[0]).max()
        assert (change > 0.01) == drifts


def test_channels_differ_in_amplitude_and_shape_around_the_typical_amplitude(scan):
    peaks = np.abs(scan.gradient).max(axis=1)
    eeg_peaks = peaks[: len(EEG_CHANNELS)]
    assert np.median(eeg_peaks) == pytest.approx(3000, rel=0.15)
    assert eeg_peaks.max() > 2 * eeg_peaks.min()
    volumes = [volume_matrix(scan.gradient[row], scan.volume_onsets)[0] for row in range(len(CHANNELS))]
    correlations = np.corrcoef(np.stack(volumes))[np.triu_indices(len(CHANNELS), 1)]
    assert np.abs(correlations).min() < 0.9  # shapes differ, not only scales


def test_without_sync_box_onsets_fall_between_samples_and_triggers_are_on_the_grid():
    synced = simulate(seconds=20, bcg=False)
    np.testing.assert_array_equal(synced.volume_onsets * SFREQ, np.rint(synced.volume_onsets * SFREQ))
    np.testing.assert_allclose(synced.trigger_times, synced.volume_onsets, atol=1e-12)
    drifting = simulate(seconds=20, bcg=False, clock_mismatch_ppm=20)
    offset = (drifting.trigger_times - drifting.volume_onsets) * SFREQ
    assert np.abs(offset).max() <= 0.5 and np.abs(offset).max() > 0.1
    np.testing.assert_array_equal(drifting.trigger_times * SFREQ, np.rint(drifting.trigger_times * SFREQ))
    # the stretch accumulates: each TR lasts 20 ppm longer on the amplifier's clock
    np.testing.assert_allclose(np.diff(drifting.volume_onsets), TR * (1 + 20e-6), atol=1e-6 / SFREQ)


def test_the_artefact_is_evaluated_at_the_continuous_onset():
    # At 5 kHz the first volume starts 0.2 sample after a sample; at 25 kHz exactly on a sample.
    # The same instants must hold the same artefact value at both rates.
    first = FIRST + 0.2 / SFREQ
    low = simulate(seconds=6, sfreq=SFREQ, first=first, bcg=False, movement=0.0)
    high = simulate(seconds=6, sfreq=5 * SFREQ, first=first, bcg=False, movement=0.0)
    assert low.volume_onsets[0] * SFREQ % 1 == pytest.approx(0.2)
    assert high.volume_onsets[0] * 5 * SFREQ % 1 == pytest.approx(0.0, abs=1e-6)
    peak = np.abs(high.gradient).max()
    np.testing.assert_allclose(low.gradient, high.gradient[:, ::5], atol=1e-5 * peak)
    # rounding the onset to the nearest sample instead would be far off
    rounded = simulate(seconds=6, sfreq=SFREQ, first=FIRST, bcg=False, movement=0.0)
    assert np.abs(rounded.gradient - low.gradient).max() > 0.02 * peak


def test_one_volume_waveform_has_three_axes_with_the_slice_period():
    waves = gradient_waveforms(ScannerArtefactSettings(), TR, SFREQ)
    assert waves.shape[0] == 3
    period = round(SFREQ / slice_frequency(TR, 35))
    for axis in waves:
        np.testing.assert_allclose(
            axis[period : 2 * period], axis[2 * period : 3 * period], atol=1e-6 * np.abs(waves).max()
        )
    assert np.abs(waves[:, -10:]).max() < 1e-6 * np.abs(waves).max()  # settled after the volume


def test_ecg_r_peaks_are_where_the_simulation_says(scan):
    ecg = scan.clean[ECG].astype(float)
    peaks, _ = signal.find_peaks(ecg, height=500, distance=int(0.3 * SFREQ))
    assert peaks.size == scan.r_peaks.size
    np.testing.assert_allclose(peaks / SFREQ, scan.r_peaks, atol=0.002)
    rr = np.diff(scan.r_peaks)
    assert 60 / rr.mean() == pytest.approx(62, rel=0.08)
    assert rr.std() > 0.01  # heart-rate variability


def test_heart_rate_follows_a_schedule():
    seconds = 60
    n_times = int(seconds * SFREQ)
    schedule = np.where(np.arange(n_times) < n_times // 2, 60.0, 90.0)
    result = simulate(seconds=seconds, gradients=False, heart_rate_bpm=schedule)
    rr = np.diff(result.r_peaks)
    middle = result.r_peaks[1:]
    before = 60 / rr[(middle > 3) & (middle < seconds / 2 - 1)]
    after = 60 / rr[(middle > seconds / 2 + 3) & (middle < seconds - 1)]
    assert np.median(before) == pytest.approx(60, rel=0.06)
    assert np.median(after) == pytest.approx(90, rel=0.06)


def beat_locked(row, r_peaks, start, stop, sfreq=SFREQ):
    offsets = np.arange(int(start * sfreq), int(stop * sfreq))
    index = np.rint(r_peaks * sfreq).astype(int)[:, None] + offsets[None]
    keep = (index[:, 0] >= 0) & (index[:, -1] < row.size)
    return row[index[keep]], offsets / sfreq


def test_bcg_lags_the_r_peaks_and_spares_the_ecg(scan):
    assert not scan.bcg[ECG].any()
    np.testing.assert_array_equal(scan.data[ECG], scan.clean[ECG] + scan.gradient[ECG])
    delay = ScannerArtefactSettings().bcg_delay
    rows = [i for i, t in enumerate(CHANNEL_TYPES) if t in ("eeg", "eog")]
    envelope = 0
    for row in rows:
        beats, lags = beat_locked(scan.bcg[row], scan.r_peaks, 0.0, 0.9)
        assert np.abs(beats[:, lags < delay - 0.015]).max() == 0  # nothing before the delay
        mean = np.abs(beats).mean(axis=0)
        envelope = envelope + mean / mean.max()
    onset = lags[np.argmax(envelope > 0.1 * envelope.max())]
    assert delay - 0.015 <= onset <= delay + 0.06


def test_a_later_bcg_delay_moves_the_bcg():
    result = simulate(seconds=20, gradients=False, bcg_delay=0.3, bcg_duration=0.5)
    beats, lags = beat_locked(result.bcg[4], result.r_peaks, 0.0, 1.0)
    assert np.abs(beats[:, lags < 0.285]).max() == 0
    mean = np.abs(beats).mean(axis=0)
    assert 0.285 <= lags[np.argmax(mean > 0.1 * mean.max())] <= 0.36


def test_bcg_amplitudes_span_the_requested_range_and_vary_from_beat_to_beat(scan):
    low, high = ScannerArtefactSettings().bcg_uv
    rows = [i for i, t in enumerate(CHANNEL_TYPES) if t in ("eeg", "eog")]
    medians = []
    for row in rows:
        beats, _ = beat_locked(scan.bcg[row], scan.r_peaks, 0.15, 0.85)
        per_beat = np.abs(beats).max(axis=1)
        medians.append(np.median(per_beat))
        assert 0.03 < per_beat.std() / per_beat.mean() < 0.3
    assert low * 0.8 <= min(medians) and max(medians) <= high * 1.2
    assert max(medians) > 2 * min(medians)


def test_neighbouring_electrodes_have_similar_bcg(scan):
    positions = electrode_positions(EEG_CHANNELS)
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=2)
    correlation = np.corrcoef(scan.bcg[: len(EEG_CHANNELS)])
    pairs = np.triu_indices(len(EEG_CHANNELS), 1)
    near = correlation[pairs][distance[pairs] < 0.06]
    far = correlation[pairs][distance[pairs] > 0.12]
    assert near.size > 20 and far.size > 100
    assert np.median(near) > 0.6 and np.median(near) > np.median(far) + 0.4


def test_missing_trigger_and_ecg_dropout():
    result = simulate(seconds=30, missing_triggers=(3,), ecg_dropouts=((10.0, 15.0),))
    assert result.trigger_times.size == result.volume_onsets.size - 1
    np.testing.assert_allclose(np.delete(result.volume_onsets, 3), result.trigger_times, atol=1e-12)
    # the volume without a marker still carries its artefact
    start = int(np.rint(result.volume_onsets[3] * SFREQ))
    assert np.abs(result.gradient[0, start : start + int(TR * SFREQ)]).max() > 500
    ecg = result.clean[ECG].astype(float)
    inside = (result.r_peaks > 10.2) & (result.r_peaks < 14.8)
    assert inside.sum() >= 4
    peaks, _ = signal.find_peaks(ecg, height=500, distance=int(0.3 * SFREQ))
    assert not np.any((peaks / SFREQ > 10.1) & (peaks / SFREQ < 14.9))
    beats, _ = beat_locked(result.bcg[4], result.r_peaks[inside], 0.2, 0.8)
    assert np.abs(beats).max(axis=1).min() > 20  # the heart still beats: BCG without a usable ECG


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"slices_per_volume": 0}, "slices_per_volume"),
        ({"gradient_uv": -1.0}, "gradient_uv"),
        ({"bcg_uv": (200.0, 50.0)}, "bcg_uv"),
        ({"heart_rate_bpm": 400.0}, "heart_rate_bpm"),
        ({"heart_rate_bpm": np.array([[60.0]])}, "heart_rate_bpm"),
        ({"ecg_dropouts": ((5.0, 2.0),)}, "ecg_dropouts"),
        ({"clock_mismatch_ppm": float("nan")}, "clock_mismatch_ppm"),
    ],
)
def test_bad_settings_are_named(settings, field):
    with pytest.raises(ValueError, match=field):
        ScannerArtefactSettings(**settings)


def test_bad_contamination_requests_are_named():
    clean = np.zeros((len(CHANNELS), 5000))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="hardware_lowpass_hz"):
        contaminate(clean, CHANNEL_TYPES, 250.0, 0.0, 1, TR, rng)
    with pytest.raises(ValueError, match="slices_per_volume"):
        contaminate(
            clean, CHANNEL_TYPES, SFREQ, 0.0, 1, TR, rng, ScannerArtefactSettings(slices_per_volume=60)
        )
    with pytest.raises(ValueError, match="heart_rate_bpm"):
        contaminate(
            clean,
            CHANNEL_TYPES,
            SFREQ,
            0.0,
            1,
            TR,
            rng,
            ScannerArtefactSettings(heart_rate_bpm=np.ones(9) * 60),
        )
    with pytest.raises(ValueError, match="ch_types"):
        contaminate(clean, CHANNEL_TYPES[:-1], SFREQ, 0.0, 1, TR, rng)


def test_settings_with_a_schedule_compare_by_value():
    a = ScannerArtefactSettings(heart_rate_bpm=np.full(10, 70.0))
    b = ScannerArtefactSettings(heart_rate_bpm=np.full(10, 70.0))
    assert a == b and hash(a) == hash(b)
    assert a != ScannerArtefactSettings(heart_rate_bpm=np.full(10, 71.0))


def test_in_scanner_surrogate_run_writes_the_clean_derivative(tmp_path, short_dataset):
    scoring = short_dataset / "short-scoring.tsv"
    sfreq = 1000.0  # the short test rate; the hardware low-pass (250 Hz) stays below Nyquist
    settings = ScannerArtefactSettings(clock_mismatch_ppm=20.0)
    paths = write_surrogate_run(
        tmp_path / "scan", "99", "rest-1", sfreq=sfreq, scoring_source=scoring, scanner=settings
    )
    plain = write_surrogate_run(tmp_path / "plain", "99", "rest-1", sfreq=sfreq, scoring_source=scoring)

    sidecar = json.loads(paths.eeg_sidecar.read_text())
    assert sidecar["InScanner"] is True
    assert sidecar["ScannerArtefacts"]["clock_mismatch_ppm"] == 20.0
    assert sidecar["ScannerArtefacts"]["slices_per_volume"] == 35
    assert "InScanner" not in json.loads(plain.eeg_sidecar.read_text())

    clean_header = tmp_path / "scan" / CLEAN_DERIVATIVE / paths.eeg_header.relative_to(tmp_path / "scan")
    raw = mne.io.read_raw_brainvision(paths.eeg_header, preload=True, verbose="error")
    clean = mne.io.read_raw_brainvision(clean_header, preload=True, verbose="error")
    reference = mne.io.read_raw_brainvision(plain.eeg_header, preload=True, verbose="error")
    assert raw.ch_names == clean.ch_names == list(CHANNELS)
    eeg = [CHANNELS.index(c) for c in EEG_CHANNELS]
    # the clean EEG is the one written without artefacts; the recorded one carries them
    np.testing.assert_allclose(clean.get_data()[eeg], reference.get_data()[eeg], atol=1e-9)
    artefact = (raw.get_data() - clean.get_data())[eeg] * 1e6
    assert np.abs(artefact).max() > 1000

    # R128 markers on the sample grid, one per volume, within half a sample of the drifting onsets
    markers = [a for a in raw.annotations if a["description"].endswith("R128")]
    samples = np.array([raw.time_as_index(a["onset"], use_rounding=True)[0] for a in markers])
    n_volumes = len(markers)
    assert n_volumes == int(60 / TR + 1e-9)
    onsets = (2.0 + np.arange(n_volumes) * TR * (1 + 20e-6)) * sfreq
    assert np.abs(samples - onsets).max() <= 0.5
    clean_markers = [a["onset"] for a in clean.annotations if a["description"].endswith("R128")]
    np.testing.assert_allclose(clean_markers, [a["onset"] for a in markers])
