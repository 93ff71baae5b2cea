"""``extract``, ``train --labels stages``, ``evaluate`` and ``replay`` on EDF+, BrainVision and XDF files.

The recordings are written by the tests (EDF+ through mne/edfio with an EDF+ annotation hypnogram,
BrainVision through pybv with a YASA-style text hypnogram, XDF through ``tests/xdf_writer.py`` with
the stages as markers); their stage sequences are stretches of real Sleep-EDF hypnograms
(``tests/data/sleep-edf``), so every recording holds several stages and together they hold all five.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.stages import UNSCORED
from features.names import EEG_FEATURES, FMRI_FEATURES
from model.dataset import read_feature_table
from recordings.hypnogram import Hypnogram, read_hypnogram
from simulators.night import SurrogateNight, crop_to_sleep, hypnogram_text, surrogate_night
from tests.cli import CliProcess, run_cli
from tests.recording_files import write_brainvision
from tests.xdf_writer import XdfStream, write_xdf

SLEEP_EDF = Path(__file__).parent / "data" / "sleep-edf"
EPOCHS = 100  # 50 minutes per recording
SFREQ = 100.0
START = datetime.datetime(2020, 1, 1, 22, 0, 0, tzinfo=datetime.timezone.utc)
EDF_LABELS = {"W": "Sleep stage W", "N1": "Sleep stage 1", "N2": "Sleep stage 2", "N3": "Sleep stage 3",
              "R": "Sleep stage R"}  # fmt: skip
REPLAY_EPOCHS = 10
REPLAY_SPEED = 50.0  # 5 minutes in 6 s of replay
BOUND = 120.0  # seconds; only guards against hanging


def varied_stretch(source: Path, epochs: int = EPOCHS) -> Hypnogram:
    """The first stretch of ``epochs`` epochs of a real night holding the most distinct stages."""
    night = crop_to_sleep(read_hypnogram(source))
    variety = [len(set(night.stages[i : i + epochs]) - {UNSCORED}) for i in range(night.n_epochs - epochs)]
    start = int(np.argmax(variety))
    stop = start + epochs
    return Hypnogram(
        onsets=np.arange(epochs) * 30.0,
        stages=night.stages[start:stop],
        raw_labels=night.raw_labels[start:stop],
        source=f"{source.name}[{start}:{stop}]",
    )


def write_edf_with_edf_hypnogram(night: SurrogateNight, folder: Path, name: str) -> Path:
    """``NAME.edf`` (mne export) and ``NAME-Hypnogram.edf`` (EDF+ annotations only, as Sleep-EDF's)."""
    import edfio
    import mne

    info = mne.create_info(list(night.ch_names), night.sfreq, list(night.ch_types), verbose=False)
    raw = mne.io.RawArray(night.data.astype(np.float64) * 1e-6, info, verbose=False)
    raw.set_meas_date(START)
    edf = folder / f"{name}.edf"
    mne.export.export_raw(edf, raw, fmt="edf", overwrite=True, verbose=False)
    annotations = [
        edfio.EdfAnnotation(float(onset), 30.0, EDF_LABELS.get(stage, "Sleep stage ?"))
        for onset, stage in zip(night.hypnogram.onsets, night.hypnogram.stages, strict=True)
    ]
    hypnogram = edfio.Edf(signals=[], annotations=annotations)
    hypnogram.startdate = START.date()
    hypnogram.starttime = START.time().replace(tzinfo=None)
    hypnogram.write(folder / f"{name}-Hypnogram.edf")
    return edf


def write_brainvision_with_text_hypnogram(night: SurrogateNight, folder: Path, name: str) -> Path:
    """``NAME.vhdr`` (pybv) and ``NAME.hypno.txt`` (one YASA code per epoch)."""
    header = write_brainvision(folder, name, night.data * 1e-6, night.sfreq, list(night.ch_names))
    (folder / f"{name}.hypno.txt").write_text(hypnogram_text(night.hypnogram))
    return header


def write_xdf_with_stage_markers(night: SurrogateNight, folder: Path, name: str) -> Path:
    """``NAME.xdf``: the EEG stream and a stage-marker stream as LabRecorder records them."""
    t0 = 5000.0
    eeg = XdfStream(
        f"{name}-EEG", "EEG", "float32", night.sfreq, t0 + np.arange(night.n_times) / night.sfreq,
        night.data.T.astype(np.float32), labels=list(night.ch_names),
        types=[t.upper() for t in night.ch_types], units=["microvolts"] * len(night.ch_names),
    )  # fmt: skip
    stages = XdfStream(
        f"{name}-Truth", "Markers", "string", 0.0, t0 + night.hypnogram.onsets,
        [[stage] for stage in night.hypnogram.stages],
    )  # fmt: skip
    return write_xdf(folder / f"{name}.xdf", [eeg, stages])


WRITERS = {
    "edf": write_edf_with_edf_hypnogram,
    "brainvision": write_brainvision_with_text_hypnogram,
    "xdf": write_xdf_with_stage_markers,
}


def write_recordings(folder: Path, epochs: int) -> dict[str, tuple[Path, Hypnogram]]:
    """One recording per format, each following a stretch of a different real Sleep-EDF night."""
    sources = sorted(SLEEP_EDF.glob("*-Hypnogram.edf"))
    made = {}
    for seed, ((kind, writer), source) in enumerate(zip(WRITERS.items(), sources, strict=False)):
        night = surrogate_night(varied_stretch(source, epochs), sfreq=SFREQ, seed=seed, crop=False)
        made[kind] = (writer(night, folder, f"night-{kind}"), night.hypnogram)
    return made


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, tuple[Path, Hypnogram]]:
    """50-minute recordings: long enough for YASA (its features smooth over 7.5 minutes)."""
    return write_recordings(tmp_path_factory.mktemp("recordings"), EPOCHS)


@pytest.fixture(scope="module")
def short_recordings(tmp_path_factory) -> dict[str, tuple[Path, Hypnogram]]:
    """5-minute recordings, to replay."""
    return write_recordings(tmp_path_factory.mktemp("short"), REPLAY_EPOCHS)


def test_extract_a_folder_of_edf_brainvision_and_xdf_recordings(recordings, tmp_path):
    folder = next(iter(recordings.values()))[0].parent
    output = tmp_path / "features.parquet"
    done = run_cli("extract", str(folder), "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert "of 3 recording(s)" in done.stdout
    table = pd.read_parquet(output)
    assert sorted(table["subject"].unique()) == sorted(f"night-{kind}" for kind in WRITERS)
    for kind, (_, hypnogram) in recordings.items():
        rows = table[table["subject"] == f"night-{kind}"]
        # EEG features everywhere the windows are whole; no fMRI: NaN fMRI features, no TR.
        assert rows[list(EEG_FEATURES)].notna().all(axis=None), kind
        assert rows[list(FMRI_FEATURES)].isna().all(axis=None) and rows["tr"].isna().all(), kind
        assert (rows["fmri_volumes"] == 0).all() and (rows["sfreq"] == SFREQ).all()
        # Each window's stage is that of the scored epoch holding its midpoint.
        labelled = rows.dropna(subset=["epoch_start"])
        epoch = (labelled["epoch_start"] / 30.0).round().astype(int)
        assert list(labelled["stage"]) == [hypnogram.stages[i] for i in epoch], kind
        assert set(labelled["stage"]) - {UNSCORED} == set(hypnogram.stages) - {UNSCORED}
        # YASA staged the same epochs (50 min of data: enough for its 7.5-min smoothing).
        assert labelled["yasa_stage"].notna().all(), kind
        assert set(labelled["yasa_stage"]) <= {"W", "N1", "N2", "N3", "R"}
    assert {"W", "N1", "N2", "N3", "R"} <= set(table["stage"])
    contract = json.loads(output.with_suffix(".json").read_text())
    assert contract["data"]["kind"] == "real" and contract["eeg_rate_range"] == [SFREQ, SFREQ]
    assert contract["tr_range"] is None


def test_extract_one_file_with_an_explicit_hypnogram_and_clear_errors(recordings, tmp_path):
    edf, hypnogram = recordings["edf"]
    text = tmp_path / "stages.txt"
    text.write_text(hypnogram_text(hypnogram))
    output = tmp_path / "one.csv"
    done = run_cli("extract", str(edf), "--hypnogram", str(text), "--no-yasa", "-o", str(output))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(output)
    assert "yasa_stage" not in table and set(table["subject"]) == {"night-edf"}
    missing = run_cli("extract", str(tmp_path / "nowhere.edf"), "-o", str(output))
    assert (
        missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
    wrong = tmp_path / "notes.txt"
    wrong.write_text("not a recording\n")
    unknown = run_cli("extract", str(wrong), "-o", str(output))
    assert unknown.returncode != 0 and "unknown recording type" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    dataset_only = run_cli("extract", str(edf), "--subject", "01", "-o", str(output))
    assert dataset_only.returncode != 0 and "ds003768-style dataset" in dataset_only.stderr


@pytest.mark.slow
def test_train_stages_and_evaluate_on_recordings_with_yasa_beside(recordings, tmp_path):
    folder = next(iter(recordings.values()))[0].parent
    bundle = tmp_path / "bundle"
    trained = run_cli(
        "train", "--session", str(folder), "--labels", "stages", "--folds", "0", "--context", "1",
        "--epochs", "3", "-o", str(bundle),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["label_names"] == ["W", "N1", "N2", "N3", "R"]
    assert len(list((bundle / "features").glob("*.parquet"))) == len(WRITERS)  # one file per recording
    assert "extracted" in trained.stdout and "0 failed" in trained.stdout
    report = (bundle / "report.md").read_text()
    assert "YASA" in report
    evaluated = run_cli("evaluate", str(bundle), "--session", str(folder), "--folds", "0",
                        "-o", str(tmp_path / "evaluation"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    evaluation = (tmp_path / "evaluation" / "report.md").read_text()
    assert "YASA" in evaluation
    table = read_feature_table(tmp_path / "evaluation" / "features")
    assert table["yasa_stage"].notna().any()
    both = run_cli("evaluate", str(bundle), str(bundle / "features"), "--session", str(folder))
    assert both.returncode != 0 and "not both" in both.stderr


@pytest.mark.parametrize("kind", list(WRITERS))
def test_replay_publishes_a_recording_file_whole(short_recordings, kind, unique_prefix):
    import pylsl

    from recordings.open import read_recording

    path, hypnogram = short_recordings[kind]
    recording = read_recording(path)
    expected = recording.eeg_samples(0, recording.n_times)
    replay = CliProcess(
        "replay", "--session", str(path), "--with-truth", "--loop", "--speed", str(REPLAY_SPEED),
        "--prefix", unique_prefix, "--wait-for-consumers", str(BOUND),
    )  # fmt: skip
    inlets = {}
    try:
        replay.wait_for(lambda line: line.startswith("Replaying"), timeout=BOUND)
        assert "no fMRI" in replay.lines[-1] and f"{REPLAY_EPOCHS} scored epochs" in replay.lines[-1]
        for stream in ("EEG", "Truth"):
            found = pylsl.resolve_byprop("name", f"{unique_prefix}-{stream}", timeout=BOUND)
            assert found, stream
            inlets[stream] = pylsl.StreamInlet(found[0], max_buflen=2 * REPLAY_EPOCHS * 30)
            inlets[stream].open_stream(timeout=BOUND)
        assert not pylsl.resolve_byprop("name", f"{unique_prefix}-fMRI", timeout=0.5)
        chunks, markers = [], []
        deadline = time.monotonic() + BOUND
        while (sum(map(len, chunks)) < len(expected) or len(markers) < REPLAY_EPOCHS) and (
            time.monotonic() < deadline
        ):
            chunk, _ = inlets["EEG"].pull_chunk(timeout=0.2)
            chunks += [np.asarray(chunk, dtype=np.float32)] if chunk else []
            stages, _ = inlets["Truth"].pull_chunk(timeout=0.0)
            markers += [s[0] for s in stages]
        # The first pass is the recording, sample for sample, and its hypnogram, epoch for epoch.
        received = np.concatenate(chunks)[: len(expected)]
        np.testing.assert_array_equal(received, expected)
        assert markers[:REPLAY_EPOCHS] == list(hypnogram.stages)
    finally:
        for inlet in inlets.values():
            inlet.close_stream()
        replay.kill()


def test_eeg_unit_option_reads_microvolts_declared_as_volts(tmp_path):
    rng = np.random.default_rng(0)
    data_uv = rng.normal(0.0, 20.0, (2, int(600 * SFREQ)))
    # Microvolt numbers written under a volts label (a wrong header).
    header = write_brainvision(tmp_path, "wrong", data_uv, SFREQ, ["C4", "O1"], unit="V")
    output = tmp_path / "t.csv"
    refused = run_cli("extract", str(header), "-o", str(output))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--eeg-unit" in refused.stderr or "eeg_unit" in refused.stderr
    done = run_cli("extract", str(header), "--eeg-unit", "uV", "-o", str(output))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(output)
    assert math.isfinite(table["eeg_delta_power"].iloc[0])


def test_extract_corrects_an_in_scanner_recording_and_can_be_told_not_to(scanner_dataset, tmp_path):
    """`extract` of raw 5-kHz in-scanner EEG: corrected (auto), flagged while the templates fill."""
    tables = {}
    for mode in ("auto", "off"):
        settings = tmp_path / f"{mode}.toml"
        settings.write_text(f"[artefacts]\ncorrection = '{mode}'\n")
        output = tmp_path / f"{mode}.parquet"
        done = run_cli(
            "--config", str(settings), "extract", str(scanner_dataset), "--no-yasa", "-o", str(output)
        )
        assert done.returncode == 0, done.stderr
        tables[mode] = pd.read_parquet(output)
    corrected, raw = tables["auto"], tables["off"]
    assert (corrected["sfreq"] == 250.0).all() and len(corrected) == len(raw)
    first = corrected.iloc[0]["problem_codes"]
    assert "gradient_uncorrected" in first and "bcg_uncorrected" in first
    late = corrected[corrected["start"] >= 30.0]
    assert not late["problem_codes"].str.contains("gradient_uncorrected|bcg_uncorrected").any()
    assert not raw["problem_codes"].str.contains("gradient").any()
    # The gradient artefact, uncorrected, swamps the EEG's band powers; corrected it does not.
    after = corrected["start"] >= 30.0
    assert (raw.loc[after, "eeg_beta_power"] > 10 * corrected.loc[after, "eeg_beta_power"]).all()
