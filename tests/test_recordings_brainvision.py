"""BrainVision recordings through ``read_recording``: 5 kHz EEG, R128 triggers, hypnogram beside, units."""

from __future__ import annotations

import re

import numpy as np
import pytest

from recordings.errors import DatasetFormatError
from recordings.open import read_recording
from recordings.session import read_session
from tests.recording_files import eeg_like, write_brainvision

NAMES = ["Cz", "O1", "EOG", "ECG"]


def test_five_khz_recording_with_volume_triggers_and_hypnogram(tmp_path):
    sfreq, n = 5000.0, 5000 * 65
    data_uv = eeg_like(4, n, sfreq).astype(np.float32)
    triggers = [round((2.0 + 2.1 * k) * sfreq) for k in range(30)]
    path = write_brainvision(tmp_path, "sub-07_night", data_uv * 1e-6, sfreq, NAMES, trigger_samples=triggers)
    (tmp_path / "sub-07_night_hypnogram.tsv").write_text("epoch\tstage\n1\tW\n2\tN2\n3\tU\n")
    recording = read_recording(path)
    assert recording.source_format == "brainvision" and recording.subject == "07"
    assert recording.sfreq == 5000.0 and recording.n_times == n
    assert recording.ch_names == NAMES and recording.ch_types == ("eeg", "eeg", "eog", "ecg")
    np.testing.assert_allclose(recording.eeg_samples(49_990, 50_010), data_uv[:, 49_990:50_010].T, rtol=1e-5)
    np.testing.assert_allclose(recording.volume_times, np.array(triggers) / sfreq)
    # Triggers without BOLD give no fMRI features.
    assert recording.n_volumes == 30 and recording.roi_means.shape == (30, 0) and not recording.has_fmri
    assert recording.tr == pytest.approx(2.1, abs=1 / sfreq)
    assert recording.hypnogram.stages == ("W", "N2", "unscored")
    assert recording.hypnogram.excluded["unscored"] == 1
    np.testing.assert_allclose(recording.stage_onsets, [0.0, 30.0, 60.0])


def test_microvolts_under_a_volts_label(tmp_path):
    data_uv = eeg_like(2, 2500, 250.0)
    path = write_brainvision(tmp_path, "rec", data_uv, 250.0, ["Cz", "Pz"], unit="V")
    with pytest.raises(DatasetFormatError, match="microvolts under a volts label") as err:
        read_recording(path)
    message = str(err.value)
    assert "channel 'Cz'" in message and "e+07 µV" in message and "eeg_unit='uV'" in message
    recording = read_recording(path, eeg_unit="uV")
    np.testing.assert_allclose(recording.eeg_samples(0, 2500), data_uv.T, rtol=1e-5)


def test_volts_under_a_microvolts_label(tmp_path):
    data_uv = eeg_like(2, 2500, 250.0)
    path = write_brainvision(tmp_path, "rec", data_uv * 1e-12, 250.0, ["Cz", "Pz"], unit="µV")
    with pytest.raises(DatasetFormatError, match="volts under a microvolts label") as err:
        read_recording(path)
    message = str(err.value)
    assert re.search(r"below 0\.01 µV \(the largest, '(Cz|Pz)', \d\.\d+e-05 µV", message), message
    assert "eeg_unit='V'" in message
    recording = read_recording(path, eeg_unit="V")
    np.testing.assert_allclose(recording.eeg_samples(0, 2500), data_uv.T, rtol=1e-4)


def test_ds003768_layout_is_read_whole_with_its_bold(short_dataset):
    header = short_dataset / "sub-99" / "eeg" / "sub-99_task-sleep_run-1_eeg.vhdr"
    recording = read_recording(header)
    session = read_session(short_dataset, "99", "sleep-1")
    assert recording.source_format == "ds003768" and recording.has_fmri
    assert recording.label == session.label == "sub-99_task-sleep_run-1"
    np.testing.assert_array_equal(recording.volume_times, session.volume_times)
    np.testing.assert_array_equal(recording.roi_means, session.roi_means)
    assert recording.stages == ("W", "N1", "unscored", "N3")
    assert recording.origin == session.volume_times[0]
    np.testing.assert_allclose(recording.stage_onsets, recording.origin + np.arange(4) * 30.0)


def test_ds003768_header_without_its_bold_is_a_plain_brainvision_file(short_dataset, tmp_path):
    import shutil

    eeg = tmp_path / "sub-99" / "eeg"
    shutil.copytree(short_dataset / "sub-99" / "eeg", eeg)
    recording = read_recording(eeg / "sub-99_task-sleep_run-1_eeg.vhdr")
    assert recording.source_format == "brainvision" and not recording.has_fmri
    assert recording.n_volumes == 57 and recording.label == "sub-99_task-sleep_run-1"
    assert recording.ch_types[-3:] == ("eog", "ecg", "misc")  # from the BIDS channels table
