"""Time per window of the EEG features: ours (incremental) versus a naive reference.

32 channels (all used as EEG here), 30 s windows, 2.1 s hop, at 250 Hz and
500 Hz. Ours: ``features.extractor.FeatureExtractor`` fed consecutive windows
(per-segment cross-spectra kept between hops). Naive reference, measured in the
same run: for every window, ``scipy.signal.welch`` of all channels plus
``scipy.signal.coherence`` for each of the 496 channel pairs. The fMRI part
(120 s of 27 region means) is timed separately; it is the same in both.

Ours is timed for all 11 features (EEG and fMRI); the naive reference only
for the 7 EEG features. Machine-readable lines start with ``features.``.

Usage: python benchmarks/features.py [--windows 300] [--naive-windows 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.config import FeatureConfig
from features.extractor import FeatureExtractor
from features.fmri import fmri_features
from stream.config import WindowConfig
from stream.windower import MultiRateWindower

N_CHANNELS = 32
N_REGIONS = 27
TR = 2.1


def make_windows(sfreq: float, n_windows: int, seed: int = 0) -> list:
    """Consecutive windows of correlated noise, cut by the project's windower."""
    rng = np.random.default_rng(seed)
    config = WindowConfig()
    seconds = config.eeg_window + config.hop * (n_windows + 1)
    n = int(seconds * sfreq)
    common = rng.standard_normal(n)
    data = (rng.standard_normal((n, N_CHANNELS)) * 10 + common[:, None] * 5).astype(np.float32)
    names = [f"E{i + 1}" for i in range(N_CHANNELS)]
    windower = MultiRateWindower(
        config, sfreq, names, ["eeg"] * N_CHANNELS, [f"r{i}" for i in range(N_REGIONS)], TR
    )
    triggers = np.arange(0.0, seconds, TR)
    windower.add_triggers(triggers)
    windower.add_fmri(
        np.arange(triggers.size), triggers, 1000 + rng.standard_normal((triggers.size, N_REGIONS))
    )
    windows = []
    chunk = int(sfreq)
    for start in range(0, n, chunk):
        windower.add_eeg(np.arange(start, min(n, start + chunk)) / sfreq, data[start : start + chunk])
        windows.extend(windower.poll())
    return windows[:n_windows]


def naive_eeg_features(window, config: FeatureConfig) -> np.ndarray:
    """Recompute everything from scratch with scipy, pair by pair."""
    sfreq = window.sfreq
    x = window.eeg.astype(np.float64)
    length = int(config.segment_seconds * sfreq)
    freqs, psd = signal.welch(x, fs=sfreq, nperseg=length, noverlap=length // 2)
    df = freqs[1] - freqs[0]
    powers = [
        psd[:, (freqs >= lo) & (freqs < hi)].sum(axis=1).mean() * df for lo, hi in config.bands.values()
    ]
    band = psd[:, (freqs >= 0.5) & (freqs <= 45)]
    p = band / band.sum(axis=1, keepdims=True)
    entropy = (-(p * np.log(p)).sum(axis=1) / np.log(band.shape[1])).mean()
    coherences = []
    for i in range(N_CHANNELS):
        for j in range(i + 1, N_CHANNELS):
            f, c = signal.coherence(x[i], x[j], fs=sfreq, nperseg=length, noverlap=length // 2)
            coherences.append(c[(f >= 0.5) & (f <= 45)].mean())
    return np.array([*powers, entropy, np.mean(coherences)])


def time_ours(windows: list, repeats: int = 5) -> float:
    """Median over ``repeats`` passes of the seconds per window of the whole extractor.

    Each pass uses a fresh extractor; its first window (which fills the segment
    cache, as the first window of a night does) is not timed.
    """
    per_pass = []
    for _ in range(repeats):
        extractor = FeatureExtractor()
        extractor.compute(windows[0])
        started = time.perf_counter()
        for window in windows[1:]:
            extractor.compute(window)
        per_pass.append((time.perf_counter() - started) / (len(windows) - 1))
    return float(np.median(per_pass))


def main() -> None:
    """Print our time per window, the naive reference's and the ratio, at 250 and 500 Hz."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=300, help="windows timed for ours")
    parser.add_argument("--naive-windows", type=int, default=3, help="windows timed for the naive reference")
    args = parser.parse_args()
    config = FeatureConfig()
    for sfreq in (250.0, 500.0):
        windows = make_windows(sfreq, args.windows)
        ours = time_ours(windows)
        started = time.perf_counter()
        for window in windows[: args.naive_windows]:
            naive_eeg_features(window, config)
        naive = (time.perf_counter() - started) / args.naive_windows
        label = f"{int(sfreq)}hz"
        print(f"features.ours_ms_per_window_{label}={ours * 1e3:.3f}")
        print(f"features.naive_ms_per_window_{label}={naive * 1e3:.1f}")
        print(f"features.speedup_{label}={naive / ours:.0f}")
    window = windows[-1]
    started = time.perf_counter()
    for _ in range(200):
        fmri_features(window.fmri, window.fmri_indices, window.tr, config)
    print(f"features.fmri_ms_per_window={(time.perf_counter() - started) / 200 * 1e3:.3f}")
    print("goals: <= 1 ms per window at 250 Hz; >= 1000x the naive reference")


if __name__ == "__main__":
    main()
