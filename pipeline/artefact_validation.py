"""Validation of the in-scanner artefact correction against the simulation's clean EEG.

In-scanner recordings (surrogate EEG through :mod:`simulators.scanner_artefacts`), the live
correction chain fed as an acquisition feeds it, and the measures the tests, the benchmark and
``docs/artefacts.md`` report: correlation with the clean EEG, gradient-artefact power left at the
slice frequency and its harmonics, band powers of corrected against clean windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.channels import VOLTAGE_TYPES
from core.windows import Window
from features.extractor import FeatureExtractor
from recordings.montage import CHANNEL_TYPES, CHANNELS
from simulators.scanner_artefacts import ScannerArtefactSettings, ScannerContamination, contaminate
from simulators.surrogate_eeg import STAGE_ORDER, subject_traits, synthesize_eeg
from stream.artefact_correction import ArtefactCorrection, Span
from stream.config import ArtefactConfig, WindowConfig
from stream.decimation import StreamingDecimator
from stream.windower import MultiRateWindower

SFREQ = 5000.0  # ds003768's raw rate
TR = 2.1
SLICES = 35
FIRST_VOLUME = 2.0  # seconds of EEG before the scanner starts
FACTOR = 20  # 5000 Hz -> 250 Hz, as the windower decimates
EEG_ROWS = np.flatnonzero(np.array(CHANNEL_TYPES) == "eeg")


@dataclass
class Corrected:
    """The correction's output and the clean and contaminated EEG at the same samples (250 Hz, µV)."""

    times: np.ndarray
    corrected: np.ndarray  # (n, n_channels)
    clean: np.ndarray
    contaminated: np.ndarray
    gradient: np.ndarray  # the gradient artefact alone, decimated alike
    spans: list[Span]
    status: dict


def in_scanner_recording(
    seconds: float, settings: ScannerArtefactSettings, seed: int = 0, stage: str = "N2"
) -> ScannerContamination:
    """``seconds`` of surrogate EEG (one stage) recorded in the scanner at 5 kHz (volumes from 2 s on)."""
    rng = np.random.default_rng(seed)
    n_times = round(seconds * SFREQ)
    stages = np.full(n_times, STAGE_ORDER.index(stage))
    clean = synthesize_eeg(stages, SFREQ, rng, subject_traits(seed)).astype(np.float32)
    n_volumes = int((seconds - FIRST_VOLUME) / TR)
    return contaminate(
        clean, CHANNEL_TYPES, SFREQ, FIRST_VOLUME, n_volumes, TR, np.random.default_rng(seed + 1),
        settings, ch_names=CHANNELS,
    )  # fmt: skip


def correction_chain(config: ArtefactConfig | None = None) -> ArtefactCorrection:
    """The live correction chain for the ds003768 montage at 5 kHz."""
    config = config or ArtefactConfig(correction="on")
    return ArtefactCorrection(config, SFREQ, CHANNELS, CHANNEL_TYPES, tr=TR, slices_per_volume=SLICES)


def decimated(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (n_channels, n_times) signal through the same anti-alias decimation as the live chain."""
    voltage = np.array([kind in VOLTAGE_TYPES for kind in CHANNEL_TYPES])
    decimator = StreamingDecimator(SFREQ, FACTOR, voltage)
    times = np.arange(signal.shape[1]) / SFREQ
    head = decimator.process(times, signal.T)
    tail = decimator.flush()
    return np.concatenate([head[0], tail[0]]), np.concatenate([head[1], tail[1]]).astype(np.float64)


def chunks(
    signal: np.ndarray, triggers: np.ndarray, chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(times, samples, triggers)`` of consecutive chunks of a (n_channels, n_times) 5-kHz signal.

    Each chunk comes with the volume triggers that fall in it (or before it, not yet given), so a
    volume's trigger reaches the correction no later than its first samples, as a live trigger stream
    delivers it. ``samples`` is (n, n_channels).
    """
    sent = 0
    for start in range(0, signal.shape[1], chunk):
        stop = min(signal.shape[1], start + chunk)
        due = int(np.searchsorted(triggers, (stop - 1) / SFREQ, side="right"))
        yield np.arange(start, stop) / SFREQ, signal[:, start:stop].T, triggers[sent:due]
        sent = due


def correct(recording: ScannerContamination, chain: ArtefactCorrection, chunk: int = 5000) -> Corrected:
    """Feed the recording to the chain in chunks, each volume's trigger just before its EEG."""
    times_out, data_out, spans = [], [], []
    for times, samples, triggers in chunks(recording.data, recording.trigger_times, chunk):
        chain.add_triggers(triggers)
        times, values, found = chain.process(times, samples)
        times_out.append(times)
        data_out.append(values)
        spans.extend(found)
    status = chain.status()
    times, values, found = chain.flush()
    times_out.append(times)
    data_out.append(values)
    spans.extend(found)
    out_times = np.concatenate(times_out)
    clean_times, clean = decimated(recording.clean)
    _, contaminated = decimated(recording.data)
    _, gradient = decimated(recording.gradient)
    if not np.array_equal(out_times, clean_times):
        raise AssertionError("the corrected samples are not the decimated samples of the input")
    return Corrected(
        out_times, np.concatenate(data_out).astype(np.float64), clean, contaminated, gradient, spans, status
    )


def windows_through(
    recording: ScannerContamination, signal: np.ndarray, chain: ArtefactCorrection | None
) -> list[Window]:
    """The 30-s windows a live session cuts from ``signal`` (corrected by ``chain`` when given)."""
    windower = MultiRateWindower(
        WindowConfig(), SFREQ, CHANNELS, CHANNEL_TYPES, [], TR,
        use_triggers=False, use_fmri=False, correction=chain,
    )  # fmt: skip
    windows: list[Window] = []
    for times, samples, triggers in chunks(signal, recording.trigger_times, 5000):
        windower.add_gradient_triggers(triggers)
        windower.add_eeg(times, samples)
        windows.extend(windower.poll())
    windows.extend(windower.flush())
    return windows


def band_powers(windows: list[Window]) -> dict[float, np.ndarray]:
    """The five EEG band powers of every window, by window end."""
    extractor = FeatureExtractor()
    return {round(w.end, 3): extractor.compute(w).values[:5] for w in windows}


def harmonic_power(residual: np.ndarray, sfreq: float, max_hz: float = 100.0) -> float:
    """Power of a (n, n_channels) signal at the slice frequency and its harmonics up to ``max_hz``."""
    from scipy import signal as sp

    segment = round(3 * TR / SLICES * sfreq * 10)  # a whole number of slice periods: lines on bins
    freqs, psd = sp.welch(residual, fs=sfreq, nperseg=segment, axis=0, window="hann")
    slice_hz = SLICES / TR
    lines = np.zeros(freqs.size, dtype=bool)
    for k in range(1, int(max_hz / slice_hz) + 1):
        lines |= np.abs(freqs - k * slice_hz) <= 1.5 * (freqs[1] - freqs[0])
    return float(psd[lines].sum())


def highpassed(values: np.ndarray, sfreq: float, cutoff: float = 0.5) -> np.ndarray:
    """Zero-phase 0.5-Hz high-pass along time (axis 0), for correlations without the slow drift."""
    from scipy import signal as sp

    sos = sp.butter(2, cutoff, "highpass", fs=sfreq, output="sos")
    return sp.sosfiltfilt(sos, values, axis=0)
