"""Gradient correction on the faithful in-scanner simulation: the template must not inject the EEG or BCG.

A moving template of whole volumes also averages what is not locked to them (the EEG and, above all,
the pulse artefact) and subtracts that back. With the pulse-artefact stage off, the gradient stage's
output should be the clean EEG plus the BCG: what is left besides them is measured per EEG band.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from pipeline.artefact_validation import (
    EEG_ROWS,
    SLICES,
    TR,
    correct,
    correction_chain,
    decimated,
    harmonic_power,
    in_scanner_recording,
)
from simulators.scanner_artefacts import ScannerArtefactSettings, slice_frequency
from stream.config import ArtefactConfig

SECONDS = 70.0
SETTLED = 25.0  # s: the template holds 10 volumes (its first 4 are needed to correct at all)
BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))
MAX_RESIDUAL = 0.05  # of the clean EEG's power, per band


def band_powers(values: np.ndarray, fs: float) -> np.ndarray:
    """Power of a (n, channels) signal in each of ``BANDS``, averaged over channels."""
    freqs, psd = signal.welch(values, fs=fs, nperseg=round(4 * fs), axis=0)
    mean = psd.mean(axis=1)
    return np.array([mean[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in BANDS])


def line_power(values: np.ndarray, fs: float, fundamental: float, max_hz: float = 100.0) -> float:
    """Power at ``fundamental`` and its harmonics up to ``max_hz``.

    Welch segments of a whole number of periods (at most 30, at least two segments) put the lines on bins.
    """
    periods = max(1, min(30, int(values.shape[0] * fundamental / fs / 2)))
    segment = round(periods / fundamental * fs)
    freqs, psd = signal.welch(values, fs=fs, nperseg=segment, axis=0)
    lines = np.zeros(freqs.size, dtype=bool)
    for k in range(1, int(max_hz / fundamental) + 1):
        lines |= np.abs(freqs - k * fundamental) <= 1.5 * (freqs[1] - freqs[0])
    return float(psd[lines].sum())


@pytest.mark.parametrize(
    "settings",
    [ScannerArtefactSettings(), ScannerArtefactSettings(clock_mismatch_ppm=20)],
    ids=["sync-box", "clock-20ppm"],
)
def test_the_gradient_stage_leaves_the_eeg_and_the_bcg_alone(settings):
    recording = in_scanner_recording(SECONDS, settings)
    out = correct(recording, correction_chain(ArtefactConfig(correction="on", bcg=False)))
    _, expected = decimated(recording.clean + recording.bcg)
    fs = 1 / float(np.median(np.diff(out.times)))
    keep = out.times > SETTLED
    residual = (out.corrected - expected)[keep][:, EEG_ROWS]
    left = band_powers(residual, fs) / band_powers(out.clean[keep][:, EEG_ROWS], fs)
    reduction = 10 * np.log10(
        harmonic_power(out.gradient[keep][:, EEG_ROWS], fs) / harmonic_power(residual, fs)
    )
    print(f"residual / clean per band {np.round(left, 4)}; slice harmonics -{reduction:.1f} dB")
    assert reduction >= 40.0
    assert np.all(left <= MAX_RESIDUAL), dict(zip(BANDS, left.round(4), strict=True))


@pytest.mark.slow
def test_a_gap_at_the_end_of_each_volume_leaves_no_volume_rate_lines():
    settings = ScannerArtefactSettings(volume_gap=0.1)
    recording = in_scanner_recording(SECONDS, settings)
    out = correct(recording, correction_chain(ArtefactConfig(correction="on", bcg=False)))
    _, expected = decimated(recording.clean + recording.bcg)
    fs = 1 / float(np.median(np.diff(out.times)))
    keep = out.times > SETTLED
    residual = (out.corrected - expected)[keep][:, EEG_ROWS]
    clean = out.clean[keep][:, EEG_ROWS]
    fundamental = slice_frequency(TR, SLICES, settings.volume_gap)
    reduction = 10 * np.log10(
        line_power(out.gradient[keep][:, EEG_ROWS], fs, fundamental) / line_power(residual, fs, fundamental)
    )
    # The volume rate's harmonics below 45 Hz, against the clean EEG at the same frequencies.
    volume_lines = line_power(residual, fs, 1 / TR, 45.0) / line_power(clean, fs, 1 / TR, 45.0)
    left = band_powers(residual, fs) / band_powers(clean, fs)
    print(f"slice harmonics -{reduction:.1f} dB; volume-rate lines {volume_lines:.4f} of the EEG's; {left}")
    assert reduction >= 40.0
    assert volume_lines <= MAX_RESIDUAL
    assert np.all(left <= MAX_RESIDUAL)
