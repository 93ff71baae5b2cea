"""XDF files (written by ``tests/xdf_writer.py``, read back by pyxdf) through ``read_recording``."""

from __future__ import annotations

import numpy as np
import pytest
import pyxdf

from recordings.errors import DatasetFormatError
from recordings.open import read_recording
from tests.recording_files import eeg_like
from tests.xdf_writer import XdfStream, write_xdf

T0 = 1000.0  # LSL time of the first EEG sample
SFREQ = 250.0
TR = 2.1
STAGES = ["W", "N1", "N2", "unscored"]


def eeg_stream(
    data_uv: np.ndarray, stamps: np.ndarray, unit: str = "microvolts", name: str = "amp"
) -> XdfStream:
    return XdfStream(
        name,
        "EEG",
        "float32",
        SFREQ,
        stamps,
        data_uv.T.astype(np.float32),
        labels=["Cz", "O1", "EOG"],
        types=["EEG", "EEG", "EOG"],
        units=[unit] * 3,
        clock_offsets=[(T0, 0.0), (T0 + 100, 0.0)],
    )


def session_streams(
    n: int, jitter: float = 0.0, trigger_offset: float = 0.0
) -> tuple[list[XdfStream], np.ndarray]:
    """EEG, volume triggers, fMRI and truth streams as this project's replay publishes them."""
    rng = np.random.default_rng(3)
    data = eeg_like(3, n, SFREQ, seed=4)
    stamps = T0 + np.arange(n) / SFREQ + rng.normal(0, jitter, n)
    volumes = T0 + 2.0 + TR * np.arange(50)
    regions = rng.normal(100, 1, (50, 2)).astype(np.float32)
    streams = [
        eeg_stream(data, stamps),
        XdfStream(
            "rec-Triggers",
            "Markers",
            "string",
            0.0,
            volumes - trigger_offset,
            [["R128"]] * 50,
            clock_offsets=[(T0, trigger_offset), (T0 + 100, trigger_offset)],
        ),
        XdfStream(
            "rec-fMRI",
            "fMRI",
            "float32",
            1 / TR,
            volumes - trigger_offset,
            np.column_stack([np.arange(50), regions]).astype(np.float32),
            labels=["volume", "r1", "r2"],
            session={"tr": f"{TR:g}"},
            clock_offsets=[(T0, trigger_offset), (T0 + 100, trigger_offset)],
        ),
        XdfStream(
            "rec-Truth", "Markers", "string", 0.0, T0 + 2.0 + 30.0 * np.arange(4), [[s] for s in STAGES]
        ),
    ]
    return streams, data


def test_writer_round_trips_through_pyxdf(tmp_path):
    streams, data = session_streams(1000, trigger_offset=0.25)
    path = write_xdf(tmp_path / "rec.xdf", streams)
    loaded, header = pyxdf.load_xdf(str(path), dejitter_timestamps=False, synchronize_clocks=False)
    by_name = {s["info"]["name"][0]: s for s in loaded}
    assert set(by_name) == {"amp", "rec-Triggers", "rec-fMRI", "rec-Truth"}
    assert header["info"]["version"] == ["1.0"]
    eeg = by_name["amp"]
    assert eeg["info"]["type"] == ["EEG"] and eeg["info"]["nominal_srate"] == ["250"]
    np.testing.assert_array_equal(eeg["time_series"], data.T.astype(np.float32))
    np.testing.assert_array_equal(eeg["time_stamps"], streams[0].time_stamps)
    labels = [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["Cz", "O1", "EOG"]
    assert [row[0] for row in by_name["rec-Truth"]["time_series"]] == STAGES
    assert by_name["rec-fMRI"]["info"]["desc"][0]["session"][0]["tr"] == ["2.1"]
    np.testing.assert_array_equal(by_name["rec-fMRI"]["time_series"], streams[2].time_series)
    np.testing.assert_array_equal(by_name["rec-Triggers"]["time_stamps"], streams[1].time_stamps)
    np.testing.assert_array_equal(by_name["rec-Triggers"]["clock_values"], [0.25, 0.25])


def test_eeg_markers_fmri_and_truth_on_the_eeg_time_base(tmp_path):
    n = 150 * int(SFREQ)
    streams, data = session_streams(n, jitter=0.0005, trigger_offset=0.25)
    recording = read_recording(write_xdf(tmp_path / "sub-03_task-sleep_run-2.xdf", streams))
    assert recording.source_format == "xdf" and recording.label == "sub-03_task-sleep_run-2"
    assert recording.sfreq == SFREQ and recording.n_times == n
    assert recording.ch_names == ["Cz", "O1", "EOG"] and recording.ch_types == ("eeg", "eeg", "eog")
    # Dejittered stamps fall on the nominal grid: every sample in place, values in µV.
    np.testing.assert_allclose(recording.eeg_samples(0, n), data.T, rtol=1e-5, atol=1e-4)
    # Volumes at their stamps (their stream's clock offset applied), 2 s after the first sample.
    np.testing.assert_allclose(recording.volume_times, 2.0 + TR * np.arange(50), atol=1e-4)
    assert recording.has_fmri and recording.tr == TR and recording.region_names == ("r1", "r2")
    np.testing.assert_array_equal(recording.roi_means, streams[2].time_series[:, 1:])
    assert recording.stages == tuple(STAGES)
    assert recording.origin == pytest.approx(2.0, abs=1e-4)
    np.testing.assert_allclose(recording.stage_onsets, 2.0 + 30.0 * np.arange(4), atol=1e-4)


def test_a_dropout_is_left_empty_not_closed_up(tmp_path):
    n = 5000
    data = eeg_like(3, n, SFREQ)
    kept = np.r_[0:2000, 2500:n]  # 2 s of EEG never arrived
    stamps = T0 + kept / SFREQ
    path = write_xdf(tmp_path / "rec.xdf", [eeg_stream(data[:, kept], stamps)])
    recording = read_recording(path)
    assert recording.n_times == n and recording.hypnogram is None and not recording.has_fmri
    samples = recording.eeg_samples(0, n)
    assert np.isnan(samples[2000:2500]).all()
    np.testing.assert_allclose(samples[kept], data[:, kept].T, rtol=1e-5, atol=1e-4)


def test_units_declared_wrong_and_the_override(tmp_path):
    data = eeg_like(3, 2500, SFREQ)
    path = write_xdf(tmp_path / "rec.xdf", [eeg_stream(data, T0 + np.arange(2500) / SFREQ, unit="volts")])
    with pytest.raises(DatasetFormatError, match=r"channel 'Cz' \(eeg\).*microvolts under a volts label"):
        read_recording(path)
    np.testing.assert_allclose(
        read_recording(path, eeg_unit="uV").eeg_samples(0, 10), data[:, :10].T, rtol=1e-5
    )


def test_eeg_stream_missing_or_ambiguous(tmp_path):
    markers = XdfStream("m", "Markers", "string", 0.0, np.array([1.0]), [["R128"]])
    path = write_xdf(tmp_path / "none.xdf", [markers])
    with pytest.raises(
        DatasetFormatError, match=r"no stream of type EEG: expected one; the file holds 'm' \(Markers\)"
    ):
        read_recording(path)
    data, stamps = eeg_like(3, 500, SFREQ), T0 + np.arange(500) / SFREQ
    path = write_xdf(tmp_path / "two.xdf", [eeg_stream(data, stamps), eeg_stream(data, stamps, name="amp2")])
    with pytest.raises(DatasetFormatError, match="2 streams of type EEG"):
        read_recording(path)
    (tmp_path / "bad.xdf").write_bytes(b"not xdf")
    with pytest.raises(DatasetFormatError, match="cannot be read as XDF"):
        read_recording(tmp_path / "bad.xdf")
