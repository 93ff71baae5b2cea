"""Recordings without BOLD through the offline extraction and the LSL replay."""

from __future__ import annotations

import math

import numpy as np
import pylsl
import pytest

from features.names import EEG_FEATURES, FMRI_FEATURES
from pipeline.offline import extract_session
from recordings.open import read_recording
from simulators.replay import SessionPlayer
from tests.recording_files import eeg_like, write_edf
from tests.test_replay_lsl import PATIENCE, open_inlet, pull_until

STAGES = ["0", "1", "2", "3", "4", "2", "-2", "0", "2", "4"]  # YASA codes, 30-s epochs


@pytest.fixture
def eeg_only(tmp_path):
    """5 min of 100-Hz EEG (two derivations and an EOG) in EDF, with a YASA-style hypnogram beside it."""
    data = eeg_like(3, 30_000, 100.0, seed=5)
    path = write_edf(tmp_path / "nap.edf", data, 100.0, ["C4-M1", "O2-M1", "LOC"], ["eeg", "eeg", "eog"])
    (tmp_path / "nap.hypno.txt").write_text("\n".join(STAGES) + "\n")
    return read_recording(path)


def test_extract_gives_eeg_features_nan_fmri_features_and_the_hypnogram_stages(eeg_only):
    assert eeg_only.ch_types == ("eeg", "eeg", "eog") and not eeg_only.has_fmri
    table = extract_session(eeg_only)
    assert len(table) == math.floor((300 - 30) / 2.1) + 1
    assert set(table["subject"]) == {"nap"}
    assert table[list(EEG_FEATURES)].notna().all().all()
    assert table[list(FMRI_FEATURES)].isna().all().all()
    assert (table["fmri_volumes"] == 0).all() and table["tr"].isna().all()
    # Each window takes the stage of the epoch holding most of it; 30-s windows end every 2.1 s.
    expected = {"W", "N1", "N2", "N3", "R", "unscored"}
    assert set(table["stage"]) == expected
    first = table.iloc[0]
    assert first["start"] == 0.0 and first["end"] == 30.0 and first["stage"] == "W"
    r_epoch = table[table["epoch_start"] == 120.0]
    assert not r_epoch.empty and set(r_epoch["stage"]) == {"R"}
    unscored = table[table["epoch_start"] == 180.0]
    assert set(unscored["stage"]) == {"unscored"}


@pytest.mark.lsl
def test_replay_without_bold_publishes_eeg_and_truth_only(eeg_only, unique_prefix):
    with SessionPlayer(
        eeg_only, speed=math.inf, with_truth=True, prefix=unique_prefix, wait_for_consumers=PATIENCE
    ) as player:
        assert set(player.streams) == {"EEG", "Truth"}
        inlets = {kind: open_inlet(player.streams[kind].source_id) for kind in ("EEG", "Truth")}
        data, stamps = pull_until(inlets["EEG"], eeg_only.n_times, timeout=PATIENCE)
        truth, truth_stamps = pull_until(inlets["Truth"], len(STAGES), timeout=PATIENCE)
        assert player.wait(PATIENCE) and player.error is None
    assert data.shape == (eeg_only.n_times, 3)
    np.testing.assert_allclose(data[:200], eeg_only.eeg_samples(0, 200), rtol=1e-6)
    assert list(truth[:, 0]) == list(eeg_only.stages)
    np.testing.assert_allclose(truth_stamps - stamps[0], 30.0 * np.arange(len(STAGES)), atol=1e-6)
    assert not pylsl.resolve_byprop("name", f"{unique_prefix}-fMRI", 1, 0.5)
