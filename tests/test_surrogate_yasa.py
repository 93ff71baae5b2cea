"""YASA's pretrained stager, trained on real nights, recognises the surrogate's stages.

Four surrogate nights follow real Sleep-EDF hypnograms; YASA reads C4 - TP9 (a central electrode
against a mastoid, the derivation it was trained on) and the EOG against the other mastoid.
Agreement says the surrogate looks like sleep to a stager of real nights, nothing about brains.
"""

import mne
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from core.stages import SLEEP_STAGES, UNSCORED
from simulators.night import shipped_hypnograms, surrogate_night

yasa = pytest.importorskip("yasa")

_NAMES = {"W": "W", "WAKE": "W", "N1": "N1", "N2": "N2", "N3": "N3", "R": "R", "REM": "R"}


def staged_by_yasa(hypnogram_path):
    night = surrogate_night(hypnogram_path)
    eeg = night.channel("C4") - night.channel("TP9")
    eog = night.channel("EOG") - night.channel("TP10")
    info = mne.create_info(["C4-TP9", "EOG-TP10"], night.sfreq, ["eeg", "eog"], verbose=False)
    raw = mne.io.RawArray(np.vstack([eeg, eog]).astype(float) * 1e-6, info, verbose=False)
    predicted = yasa.SleepStaging(raw, eeg_name="C4-TP9", eog_name="EOG-TP10").predict()
    calls = [_NAMES[str(p).upper()] for p in np.asarray(getattr(predicted, "hypno", predicted))]
    pairs = [(t, p) for t, p in zip(night.hypnogram.stages, calls, strict=False) if t != UNSCORED]
    return [t for t, _ in pairs], [p for _, p in pairs]


@pytest.fixture(scope="module")
def staged_nights():
    nights = shipped_hypnograms()[:4]
    assert len(nights) == 4
    return [staged_by_yasa(path) for path in nights]


@pytest.mark.slow
def test_yasa_agrees_with_the_surrogate_over_four_nights(staged_nights):
    truth = [s for t, _ in staged_nights for s in t]
    calls = [s for _, p in staged_nights for s in p]
    assert set(truth) == set(SLEEP_STAGES)
    assert cohen_kappa_score(truth, calls, labels=list(SLEEP_STAGES)) >= 0.6
    for night_truth, night_calls in staged_nights:
        assert cohen_kappa_score(night_truth, night_calls, labels=list(SLEEP_STAGES)) >= 0.5


@pytest.mark.slow
def test_yasa_recognises_every_stage(staged_nights):
    truth = [s for t, _ in staged_nights for s in t]
    calls = [s for _, p in staged_nights for s in p]
    matrix = confusion_matrix(truth, calls, labels=list(SLEEP_STAGES))
    recall = dict(zip(SLEEP_STAGES, np.diag(matrix) / matrix.sum(axis=1), strict=True))
    called = {
        stage: dict(zip(SLEEP_STAGES, row, strict=True))
        for stage, row in zip(SLEEP_STAGES, matrix, strict=True)
    }
    # Deep sleep looks like deep sleep, wake like wake, REM like REM.
    assert recall["N3"] > 0.8 and called["N3"]["W"] < 0.05 * matrix[SLEEP_STAGES.index("N3")].sum()
    assert recall["W"] > 0.7 and recall["R"] > 0.7 and recall["N2"] > 0.7
    # N1 is the stage human scorers agree on least; still more often N1 than anything but wake.
    assert recall["N1"] > 0.25
