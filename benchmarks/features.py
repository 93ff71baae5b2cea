"""Time per window of the EEG features: ours (incremental) versus a naive reference.

32 channels (all used as EEG here), 30 s windows, 2.1 s hop, at 250 Hz and
500 Hz. Ours: ``features.extractor.FeatureExtractor`` fed consecutive windows
(per-segment spectra kept between hops), each carrying its trailing 120 s of fMRI
(27 region means, volumes delivered as the EEG reaches them). Naive reference,
measured in the same run: for every window, ``scipy.signal.welch`` of all channels
plus ``scipy.signal.coherence`` for each of the 496 channel pairs. The fMRI part is
also timed alone; it is the same in both.

Ours is timed for all 11 features (EEG and fMRI): the median time per window of
each pass over the windows, then the median (``ours_ms_per_window``) and the best
(``ours_best_pass_ms_per_window``) of the passes. The naive reference covers only
the 7 EEG features. Machine-readable lines start with ``features.``.

Usage: python benchmarks/features.py [--windows 300] [--naive-windows 3] [--repeats 5]
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
    """Consecutive windows of correlated noise, cut by the project's windower.

    Each volume's trigger and region means are delivered when the EEG reaches its
    acquisition time, as a live acquisition receives them, so every window carries
    its trailing 120 s of fMRI.
    """
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
    regions = 1000 + rng.standard_normal((triggers.size, N_REGIONS))
    windows = []
    sent = 0
    chunk = int(sfreq)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        windower.add_eeg(np.arange(start, stop) / sfreq, data[start:stop])
        due = int(np.searchsorted(triggers, (stop - 1) / sfreq, side="right"))
        if due > sent:
            windower.add_triggers(triggers[sent:due])
            windower.add_fmri(np.arange(sent, due), triggers[sent:due], regions[sent:due])
            sent = due
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


def time_ours(windows: list, repeats: int = 5) -> tuple[float, float]:
    """Seconds per window of the whole extractor: median and best over ``repeats`` passes.

    Each pass feeds every window to a fresh extractor; its first window (which fills
    the segment cache, as the first window of a night does) is not timed. A pass's
    figure is the median of its per-window times, which a busy machine disturbs less
    than the mean.
    """
    per_pass = []
    for _ in range(repeats):
        extractor = FeatureExtractor()
        extractor.compute(windows[0])
        times = []
        for window in windows[1:]:
            started = time.perf_counter()
            extractor.compute(window)
            times.append(time.perf_counter() - started)
        per_pass.append(float(np.median(times)))
    return float(np.median(per_pass)), min(per_pass)


def main() -> None:
    """Print our time per window, the naive reference's and the ratio, at 250 and 500 Hz."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=300, help="windows timed for ours")
    parser.add_argument("--naive-windows", type=int, default=3, help="windows timed for the naive reference")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the windows for ours")
    args = parser.parse_args()
    config = FeatureConfig()
    for sfreq in (250.0, 500.0):
        windows = make_windows(sfreq, args.windows)
        assert all(w.fmri.shape[0] >= config.min_fmri_volumes for w in windows[1:]), "windows lack fMRI"
        ours, best = time_ours(windows, args.repeats)
        started = time.perf_counter()
        for window in windows[: args.naive_windows]:
            naive_eeg_features(window, config)
        naive = (time.perf_counter() - started) / args.naive_windows
        label = f"{int(sfreq)}hz"
        print(f"features.ours_ms_per_window_{label}={ours * 1e3:.3f}")
        print(f"features.ours_best_pass_ms_per_window_{label}={best * 1e3:.3f}")
        print(f"features.naive_ms_per_window_{label}={naive * 1e3:.1f}")
        print(f"features.speedup_{label}={naive / ours:.0f}")
    window = windows[-1]
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        fmri_features(window.fmri, window.fmri_indices, window.tr, config)
        timings.append(time.perf_counter() - started)
    print(f"features.fmri_ms_per_window={np.median(timings) * 1e3:.3f}")
    print("goals: <= 1 ms per window at 250 Hz; >= 1000x the naive reference")


if __name__ == "__main__":
    main()
