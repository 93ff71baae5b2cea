"""EDF/EDF+ recordings through ``read_recording``: channels, rates, µV values, hypnograms beside, units."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from recordings.errors import DatasetFormatError
from recordings.hypnogram import edf_start_time
from recordings.open import find_recordings, read_recording
from tests.recording_files import eeg_like, relabel_edf_unit, write_bdf, write_brainvision, write_edf

DATA = Path(__file__).parent / "data"
SLEEP_EDF = DATA / "sleep-edf"
YASA_HYPNOGRAM = DATA / "yasa-hypnogram" / "data_full_6hrs_100Hz_hypno_30s.txt"
SC4001_START = datetime(1989, 4, 24, 16, 13, 0, tzinfo=timezone.utc)  # from SC4001EC-Hypnogram.edf's header
SLEEP_EDF_CHANNELS = [
    "EEG Fpz-Cz",
    "EEG Pz-Oz",
    "EOG horizontal",
    "Resp oro-nasal",
    "EMG submental",
    "Temp rectal",
    "Event marker",
]
SLEEP_EDF_TYPES = ["eeg", "eeg", "eog", "misc", "emg", "misc", "misc"]
EDF_STEP_UV = 0.01  # int16 over the exported physical range: well under 0.01 µV per step here


def sleep_edf_psg(folder: Path, name: str, start: datetime, seconds: int = 300) -> tuple[Path, np.ndarray]:
    """A Sleep-EDF-like PSG at 100 Hz: two EEG derivations, EOG, EMG, respiration, temperature, events."""
    sfreq, n = 100, seconds * 100
    data = eeg_like(len(SLEEP_EDF_CHANNELS), n, sfreq, seed=1)
    data[3] = 0.5 * np.sin(np.arange(n) / 100)  # respiration, arbitrary units
    data[5] = 37.0  # temperature, °C
    data[6] = 0.0
    return write_edf(folder / name, data, sfreq, SLEEP_EDF_CHANNELS, SLEEP_EDF_TYPES, start), data


@pytest.mark.parametrize(
    "hypnogram, counts, unscored, movement",
    [
        ("SC4001EC-Hypnogram.edf", {"W": 1997, "N1": 58, "N2": 250, "N3": 101 + 119, "R": 125}, 230, 0),
        ("SC4002EC-Hypnogram.edf", {"W": 1885, "N1": 59, "N2": 373, "N3": 94 + 203, "R": 215}, 50, 1),
    ],
)
def test_sleep_edf_psg_pairs_with_its_real_hypnogram(tmp_path, hypnogram, counts, unscored, movement):
    shutil.copy(SLEEP_EDF / hypnogram, tmp_path)
    start = edf_start_time(SLEEP_EDF / hypnogram)  # a Sleep-EDF hypnogram starts with its PSG
    psg, data = sleep_edf_psg(tmp_path, hypnogram[:6] + "E0-PSG.edf", start)
    recording = read_recording(psg)
    assert recording.source_format == "edf"
    assert (recording.subject, recording.task, recording.run) == (hypnogram[:6] + "E0", "sleep", 1)
    assert recording.ch_names == SLEEP_EDF_CHANNELS
    assert recording.ch_types == tuple(SLEEP_EDF_TYPES)
    assert recording.sfreq == 100.0 and recording.n_times == 30_000
    voltage = [0, 1, 2, 4]
    np.testing.assert_allclose(
        recording.eeg_samples(0, 3000)[:, voltage], data[voltage, :3000].T, atol=EDF_STEP_UV
    )
    np.testing.assert_allclose(recording.eeg_samples(0, 10)[:, 5], 37.0, atol=1e-3)  # °C, not scaled
    assert recording.channel_units[:3] == ("microvolts",) * 3 and recording.channel_units[3] == "none"
    # The real hypnogram, exactly (S3 + S4 = N3), unscored and movement epochs counted.
    assert recording.hypnogram.source.endswith(hypnogram)
    assert recording.hypnogram.counts == counts
    assert recording.hypnogram.excluded == {"unscored": unscored, "movement": movement, "artefact": 0}
    assert recording.origin == 0.0
    np.testing.assert_allclose(recording.stage_onsets[:3], [0.0, 30.0, 60.0])
    assert not recording.has_fmri and recording.tr is None and recording.roi_means.shape == (0, 0)


def test_hypnogram_placed_by_the_start_times_in_both_headers(tmp_path):
    shutil.copy(SLEEP_EDF / "SC4001EC-Hypnogram.edf", tmp_path)
    psg, _ = sleep_edf_psg(tmp_path, "SC4001E0-PSG.edf", SC4001_START + timedelta(seconds=90))
    recording = read_recording(psg)
    assert recording.origin == -90.0  # the hypnogram started 90 s before this recording
    assert recording.stage_onsets[3] == 0.0


def test_hypnogram_that_misses_the_recording_is_refused(tmp_path):
    shutil.copy(SLEEP_EDF / "SC4001EC-Hypnogram.edf", tmp_path)
    psg, _ = sleep_edf_psg(tmp_path, "SC4001E0-PSG.edf", SC4001_START + timedelta(days=2))
    with pytest.raises(DatasetFormatError, match="no epoch overlaps it") as caught:
        read_recording(psg)
    assert caught.value.path == psg


@pytest.mark.parametrize("name", ["night.hypno.txt", "night_hypnogram.txt", "night_hypnogram.csv"])
def test_yasa_text_hypnogram_found_beside_a_one_channel_100_hz_edf(tmp_path, name):
    shutil.copy(YASA_HYPNOGRAM, tmp_path / name)
    data = eeg_like(1, 6000, 100.0)
    path = write_edf(tmp_path / "night.edf", data, 100.0, ["C4-M1"], ["eeg"])
    recording = read_recording(path, subject="s7")
    assert recording.label == "sub-s7_task-sleep_run-1"
    assert recording.ch_names == ["C4-M1"] and recording.ch_types == ("eeg",)
    assert recording.sfreq == 100.0 and recording.n_times == 6000
    np.testing.assert_allclose(recording.eeg_samples(1000, 1100)[:, 0], data[0, 1000:1100], atol=EDF_STEP_UV)
    assert recording.hypnogram.counts == {"W": 43, "N1": 22, "N2": 318, "N3": 182, "R": 155}
    assert recording.hypnogram.n_epochs == 720


def test_sleep_edf_hypnogram_renamed_after_its_recording(tmp_path):
    shutil.copy(SLEEP_EDF / "SC4091EC-Hypnogram.edf", tmp_path / "night-Hypnogram.edf")
    start = edf_start_time(SLEEP_EDF / "SC4091EC-Hypnogram.edf")
    path = write_edf(
        tmp_path / "night.edf", eeg_like(2, 3000, 100.0), 100.0, ["Fpz", "Cz"], ["eeg", "eeg"], start
    )
    recording = read_recording(path)
    assert recording.hypnogram.counts == {"W": 1739, "N1": 19, "N2": 561, "N3": 87 + 83, "R": 232}
    assert recording.hypnogram.excluded == {"unscored": 148, "movement": 11, "artefact": 0}


def test_explicit_hypnogram_and_none(tmp_path):
    path = write_edf(tmp_path / "night.edf", eeg_like(1, 3000, 100.0), 100.0, ["Cz"], ["eeg"])
    assert read_recording(path).hypnogram is None
    recording = read_recording(path, hypnogram=YASA_HYPNOGRAM)
    assert recording.hypnogram.n_epochs == 720 and recording.origin == 0.0


def test_microvolts_under_a_volts_label_are_refused_then_read_with_eeg_unit(tmp_path):
    data = eeg_like(2, 3000, 100.0)
    path = write_edf(tmp_path / "night.edf", data, 100.0, ["Cz", "EOG"], ["eeg", "eog"])
    relabel_edf_unit(path, "uV", "V")
    with pytest.raises(
        DatasetFormatError, match=r"channel 'Cz' \(eeg\) has a typical amplitude of 1\.\d+e\+07 µV"
    ) as err:
        read_recording(path)
    assert "microvolts under a volts label" in str(err.value) and "eeg_unit='uV'" in str(err.value)
    assert str(path) in str(err.value)
    recording = read_recording(path, eeg_unit="uV")
    np.testing.assert_allclose(recording.eeg_samples(0, 500), data[:, :500].T, atol=EDF_STEP_UV)


def test_unknown_eeg_unit_is_refused(tmp_path):
    path = write_edf(tmp_path / "night.edf", eeg_like(1, 3000, 100.0), 100.0, ["Cz"], ["eeg"])
    with pytest.raises(ValueError, match="eeg_unit must be one of V, mV, uV"):
        read_recording(path, eeg_unit="nV")


def test_rate_below_50_hz_is_refused(tmp_path):
    path = write_edf(tmp_path / "slow.edf", eeg_like(1, 1200, 40.0), 40.0, ["Cz"], ["eeg"])
    with pytest.raises(DatasetFormatError, match="40 Hz: at least 50 Hz"):
        read_recording(path)


def test_bad_paths_name_the_file(tmp_path):
    with pytest.raises(DatasetFormatError, match="recording not found"):
        read_recording(tmp_path / "absent.edf")
    with pytest.raises(DatasetFormatError, match="a folder, not a recording"):
        read_recording(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetFormatError, match=r"unknown recording type '\.txt'"):
        read_recording(tmp_path / "notes.txt")
    (tmp_path / "broken.edf").write_bytes(b"0       not an edf file")
    with pytest.raises(DatasetFormatError, match="cannot be read as EDF") as err:
        read_recording(tmp_path / "broken.edf")
    assert err.value.path == tmp_path / "broken.edf"
    shutil.copy(SLEEP_EDF / "SC4001EC-Hypnogram.edf", tmp_path / "hypnogram.edf")
    with pytest.raises(DatasetFormatError, match="no signal"):
        read_recording(tmp_path / "hypnogram.edf")


def test_find_recordings_lists_recordings_not_hypnograms(tmp_path):
    shutil.copy(SLEEP_EDF / "SC4001EC-Hypnogram.edf", tmp_path)
    sleep_edf_psg(tmp_path, "SC4001E0-PSG.edf", SC4001_START, seconds=60)
    (tmp_path / "lab").mkdir()
    write_brainvision(tmp_path / "lab", "nap", eeg_like(1, 1000, 250.0) * 1e-6, 250.0, ["Cz"])
    (tmp_path / "lab" / "nap.hypno.txt").write_text("0\n1\n")
    assert find_recordings(tmp_path) == [tmp_path / "SC4001E0-PSG.edf", tmp_path / "lab" / "nap.vhdr"]
    with pytest.raises(DatasetFormatError, match="folder not found"):
        find_recordings(tmp_path / "absent")


def test_bdf_at_2048_hz_with_a_real_hypnogram_placed_by_its_start(tmp_path):
    start = edf_start_time(SLEEP_EDF / "SC4001EC-Hypnogram.edf")
    data = eeg_like(2, 2048 * 20, 2048.0, seed=2)
    path = write_bdf(tmp_path / "night.bdf", data, 2048, ["Fz", "EOG left"], start - timedelta(seconds=10))
    recording = read_recording(path, hypnogram=SLEEP_EDF / "SC4001EC-Hypnogram.edf")
    assert recording.source_format == "bdf" and recording.sfreq == 2048.0 and recording.n_times == 2048 * 20
    assert recording.ch_types == ("eeg", "eog")
    step = 2 * (np.abs(data).max() + 1) / 2**24  # one 24-bit step
    np.testing.assert_allclose(recording.eeg_samples(0, recording.n_times), data.T, atol=step)
    assert recording.origin == 10.0 and recording.hypnogram.counts["R"] == 125
