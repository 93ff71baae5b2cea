"""The whole in-scanner correction chain (gradient, decimation, BCG) against the simulation's clean EEG.

The acceptance of the correction: gradient artefact at the slice frequency and its harmonics down at
least 40 dB, corrected EEG correlating with the clean EEG at r >= 0.95 (median over channels), band
powers of the corrected 30-s windows within 10 % of the clean ones; and it survives a missing
trigger, a heart-rate change and an ECG dropout, flagging what it could not correct.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from core.problems import ProblemCode
from pipeline.artefact_validation import (
    EEG_ROWS,
    SFREQ,
    TR,
    band_powers,
    correct,
    correction_chain,
    harmonic_power,
    highpassed,
    in_scanner_recording,
    windows_through,
)
from recordings.montage import CHANNEL_TYPES, CHANNELS
from simulators.scanner_artefacts import ScannerArtefactSettings
from stream.artefact_correction import ArtefactCorrection
from stream.config import ArtefactConfig

SECONDS = 100.0
WARM_UP = 40.0  # s: the gradient template fills in ~10 s, the pulse template in ~30 beats
WINDOWS_FROM = 30.0  # s: windows starting from here on are compared with the clean ones
MISSING_VOLUME = 30
DROPOUT = (60.0, 75.0)


def heart_rate_step(seconds: float) -> np.ndarray:
    """60 bpm, then 85 bpm from 50 s on."""
    rate = np.full(round(seconds * SFREQ), 60.0)
    rate[round(50 * SFREQ) :] = 85.0
    return rate


CASES = {
    "sync_box": ScannerArtefactSettings(),
    "faults": ScannerArtefactSettings(
        clock_mismatch_ppm=20.0,
        missing_triggers=(MISSING_VOLUME,),
        heart_rate_bpm=heart_rate_step(SECONDS),
        ecg_dropouts=(DROPOUT,),
    ),
}


@cache
def corrected(case: str):
    recording = in_scanner_recording(SECONDS, CASES[case], seed=0)
    return recording, correct(recording, correction_chain())


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrected_eeg_is_the_clean_eeg(case):
    recording, out = corrected(case)
    keep = out.times > WARM_UP
    clean = highpassed(out.clean, 250.0)[keep]
    fixed = highpassed(out.corrected, 250.0)[keep]
    raw = highpassed(out.contaminated, 250.0)[keep]
    r = [np.corrcoef(fixed[:, c], clean[:, c])[0, 1] for c in EEG_ROWS]
    r_raw = [np.corrcoef(raw[:, c], clean[:, c])[0, 1] for c in EEG_ROWS]
    assert np.median(r) >= 0.95, f"median r {np.median(r):.3f}"
    assert np.median(r_raw) < 0.5  # the artefacts were there to remove
    gradient = harmonic_power(out.gradient[keep][:, EEG_ROWS], 250.0)
    left = harmonic_power((out.corrected - out.clean)[keep][:, EEG_ROWS], 250.0)
    assert 10 * np.log10(gradient / left) >= 40.0

    corrected_bands = band_powers(windows_through(recording, recording.data, correction_chain()))
    clean_bands = band_powers(windows_through(recording, recording.clean, None))
    compared = 0
    for end, powers in corrected_bands.items():
        if end - 30.0 >= WINDOWS_FROM and end in clean_bands:
            # delta, theta, alpha, beta (gamma lies on the slice harmonics of 33 and 50 Hz)
            np.testing.assert_allclose(powers[:4], clean_bands[end][:4], rtol=0.10, err_msg=f"window {end}")
            compared += 1
    assert compared >= 10


def test_what_could_not_be_corrected_is_flagged():
    recording, out = corrected("faults")
    kinds = {kind for _, _, kind in out.spans}
    onset = recording.volume_onsets[MISSING_VOLUME]
    inferred = [(a, b) for a, b, kind in out.spans if kind == "gradient_trigger_inferred"]
    assert inferred and min(a for a, _ in inferred) <= onset + 0.01
    assert sum(b - a for a, b in inferred) >= TR - 0.05 and max(b for _, b in inferred) <= onset + TR + 0.2
    from_eeg = [(a, b) for a, b, kind in out.spans if kind == "bcg_beats_from_eeg"]
    low, high = DROPOUT
    covered = sum(min(b, high) - max(a, low) for a, b in from_eeg if b > low and a < high)
    assert covered >= 0.8 * (high - low)
    # Before the gradient template is ready the EEG is flagged, after it nothing but the above.
    assert any(kind == "gradient_uncorrected" and a < 10.0 for a, _, kind in out.spans)
    expected = {"gradient_trigger_inferred", "bcg_beats_from_eeg"}
    late = {kind for a, _, kind in out.spans if a > WARM_UP} - expected
    assert not late, late
    assert "gradient_uncorrected" in kinds
    assert out.status["bcg"]["heart_rate_bpm"] == pytest.approx(85.0, rel=0.1)


def test_windows_carry_the_flags_as_problems():
    recording, _ = corrected("faults")
    windows = windows_through(recording, recording.data, correction_chain())
    codes = [{p.code for p in w.quality.problems} for w in windows]
    first = codes[0]
    assert ProblemCode.GRADIENT_UNCORRECTED in first and ProblemCode.BCG_UNCORRECTED in first
    onset = recording.volume_onsets[MISSING_VOLUME]
    holding = [c for w, c in zip(windows, codes, strict=True) if w.start < onset < w.end]
    assert holding and all(ProblemCode.GRADIENT_TRIGGER_INFERRED in c for c in holding)
    during = [c for w, c in zip(windows, codes, strict=True) if w.start < DROPOUT[0] + 5 < w.end]
    assert during and all(ProblemCode.BCG_BEATS_FROM_EEG in c for c in during)
    seconds = [w.quality.artefact_seconds for w in windows if w.start < DROPOUT[0] + 5 < w.end]
    assert all(0 < s["bcg_beats_from_eeg"] <= 30.0 for s in seconds)


def test_the_chain_is_chunk_invariant():
    recording = in_scanner_recording(40.0, CASES["sync_box"], seed=4)
    outputs = [correct(recording, correction_chain(), chunk=size).corrected for size in (5000, 250, 1234)]
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])


def test_an_unknown_ecg_channel_is_named():
    with pytest.raises(ValueError, match="ECG channel 'EKG'"):
        ArtefactCorrection(ArtefactConfig(ecg_channel="EKG"), SFREQ, CHANNELS, CHANNEL_TYPES)


def test_artefact_settings_are_checked():
    with pytest.raises(ValueError, match="correction"):
        ArtefactConfig(correction="maybe")
    with pytest.raises(ValueError, match="min_template_volumes"):
        ArtefactConfig(template_volumes=3, min_template_volumes=4)
    assert ArtefactConfig().enabled(True) and not ArtefactConfig().enabled(False)
    assert ArtefactConfig(correction="on").enabled(False)
    assert not ArtefactConfig(correction="off").enabled(True)
