"""Time per window of the 11 features: ours (incremental) against the best straightforward alternative.

32 channels (all used as EEG here), 30 s windows, 2.1 s hop, at 250 Hz and 500 Hz, windows of
correlated noise cut by the project's windower, each carrying its trailing 120 s of fMRI (27
region means, volumes delivered as the EEG reaches them).

Ours: ``features.extractor.FeatureExtractor`` fed consecutive windows (per-segment spectra kept
between hops), timed for all 11 features: the median time per window of each pass over the
windows, then the median (``ours_ms_per_window``) and the best (``ours_best_pass_ms_per_window``)
of the passes.

References, measured in the same run on the same windows, each from scratch for every window and
each checked in this script to give our values (``REFERENCE_RTOL``, relative, per feature):

- vectorised full recompute of the same 11 features (the headline ratio): one STFT of all
  channels (``scipy.signal.stft``: the same Welch segments, 4 s Hann, 50 % overlap, mean
  removed per segment), the cross-spectra of all channel pairs as one batched matrix product per
  frequency bin (``Z @ Z^H``), band powers, spectral entropy and magnitude-squared coherence from
  them with our definitions, and the four fMRI features recomputed with numpy and scipy (linear
  detrend, real FFT). The same recompute with an ``einsum`` over the pairs instead of the matrix
  product, and with ``scipy.signal.csd`` broadcast over all 32 x 32 channel pairs, is timed too;
  the headline is the fastest of the three.
- YASA's ``yasa.bandpower`` (the 5 band powers only) with our Welch parameters (Hann, mean of the
  segments, absolute power). Its Welch spectra are ours; its band integral is not: Simpson's rule
  over the bins with ``low <= f <= high``, where ours sums ``PSD * df`` over ``low <= f < high``.
  The script checks the first (YASA's integral of our recompute's PSD equals ``yasa.bandpower``)
  and prints how far the second moves the band powers.
- per-pair reference (the 7 EEG features): ``scipy.signal.welch`` of all channels plus
  ``scipy.signal.coherence`` for each of the 496 channel pairs.

Every reference uses the samples our extractor's segments span: ours places Welch segments on a
grid fixed at the first window (``docs/features.md``), so a window uses 13 or 14 segments of its
15, not necessarily those starting at its first sample. The fMRI features are also timed alone.
Machine-readable lines start with ``features.``; the output goes to ``benchmarks/results/features.txt``.

Usage: python benchmarks/features.py [--windows 300] [--reference-windows 20] [--per-pair-windows 3]
       [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_file import add_results_option, recorded
from core.windows import Window
from features.config import FeatureConfig
from features.extractor import FeatureExtractor
from features.fmri import fmri_features
from stream.config import WindowConfig
from stream.windower import MultiRateWindower

N_CHANNELS = 32
N_REGIONS = 27
TR = 2.1
REFERENCE_RTOL = 1e-5  # ours keeps spectra in single precision (docs/features.md)
GOAL_MS = 1.0


def make_windows(sfreq: float, n_windows: int, seed: int = 0) -> list[Window]:
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


# -- the samples our segments span ----------------------------------------------------------------
def segment_span(window: Window, origin: int, config: FeatureConfig) -> tuple[int, int]:
    """Columns of ``window.eeg`` spanned by the grid segments lying wholly inside the window.

    The grid starts at sample number ``origin`` (the first window's first sample) with a step of
    ``segment_seconds * (1 - segment_overlap)`` (``docs/features.md``).
    """
    length = round(config.segment_seconds * window.sfreq)
    step = round(length * (1 - config.segment_overlap))
    offset = origin - window.eeg_first_sample
    first = offset + (-(offset // step)) * step  # the first grid segment starting in the window
    count = (window.eeg.shape[1] - length - first) // step + 1
    return first, first + (count - 1) * step + length


# -- vectorised full recompute ----------------------------------------------------------------------
def stft(x: np.ndarray, sfreq: float, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies in ``spectrum_range`` and every channel's segment spectra there, PSD-scaled.

    Returns ``(freqs, z)`` with ``z`` of shape (channels, freqs, segments) such that
    ``2 mean_s z z*`` is the one-sided Welch cross-spectral density.
    """
    length = round(config.segment_seconds * sfreq)
    step = round(length * (1 - config.segment_overlap))
    freqs, _, z = signal.stft(
        x, sfreq, window="hann", nperseg=length, noverlap=length - step, detrend="constant",
        boundary=None, padded=False, scaling="psd",
    )  # fmt: skip
    low, high = config.spectrum_range
    keep = (freqs >= low) & (freqs <= high)
    return freqs[keep], z[:, keep]


def cross_by_matmul(x: np.ndarray, sfreq: float, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cross-spectral matrices (channels, channels, freqs): one batched matrix product over bins."""
    freqs, z = stft(x, sfreq, config)
    by_bin = np.ascontiguousarray(z.transpose(1, 0, 2))  # (freqs, channels, segments)
    cross = by_bin @ by_bin.conj().transpose(0, 2, 1) * (2.0 / z.shape[-1])
    return freqs, cross.transpose(1, 2, 0)


def cross_by_einsum(x: np.ndarray, sfreq: float, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cross-spectral matrices (channels, channels, freqs): one ``einsum`` over the pairs."""
    freqs, z = stft(x, sfreq, config)
    return freqs, np.einsum("ifs,jfs->ijf", z, z.conj()) * (2.0 / z.shape[-1])


def cross_by_csd(x: np.ndarray, sfreq: float, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cross-spectral matrices (channels, channels, freqs): ``scipy.signal.csd`` broadcast over pairs."""
    length = round(config.segment_seconds * sfreq)
    step = round(length * (1 - config.segment_overlap))
    freqs, cross = signal.csd(
        x[:, None, :], x[None, :, :], sfreq, window="hann", nperseg=length, noverlap=length - step
    )
    low, high = config.spectrum_range
    keep = (freqs >= low) & (freqs <= high)
    return freqs[keep], cross[..., keep]


def band_mask(freqs: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(bands, freqs) membership: ``low <= f < high``, the last band also ``f == high``."""
    bands = list(config.bands.values())
    return np.array(
        [(freqs >= low) & ((freqs <= high) if k == len(bands) - 1 else (freqs < high))
         for k, (low, high) in enumerate(bands)]
    )  # fmt: skip


def eeg_features_from_cross(freqs: np.ndarray, cross: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The 7 EEG features from the cross-spectral matrices, by their documented definitions."""
    psd = np.einsum("iif->if", cross).real
    df = freqs[1] - freqs[0]
    powers = (psd @ band_mask(freqs, config).T.astype(float)).mean(axis=0) * df
    p = psd / psd.sum(axis=1, keepdims=True)
    entropy = (-(p * np.log(p)).sum(axis=1) / np.log(freqs.size)).mean()
    coherence = np.abs(cross) ** 2 / (psd[:, None, :] * psd[None, :, :])
    upper = np.triu_indices(psd.shape[0], k=1)
    return np.array([*powers, entropy, coherence[upper].mean()])


def fmri_recompute(window: Window, config: FeatureConfig) -> np.ndarray:
    """BOLD level and variance, ALFF mean and variance with numpy and scipy (no missing volume here).

    The timed windows hold every volume of the run since its start, within the baseline's span: the
    causal baseline of the BOLD level is then the mean of the window's own volumes.
    """
    values = window.fmri.astype(np.float64)
    assert window.fmri_indices[0] == 0 and values.shape[0] * window.tr <= config.bold_baseline_seconds
    n = values.shape[0]
    means = values.mean(axis=0)
    baseline = means
    psc = 100.0 * (values - means) / means
    residual = signal.detrend(psc, axis=0, type="linear")
    freqs = np.fft.rfftfreq(n, window.tr)
    low, high = config.alff_band
    in_band = (freqs >= low) & (freqs <= high) & (freqs > 0)
    spectrum = np.fft.rfft(residual, axis=0)[in_band]
    region_alff = np.sqrt(2 * window.tr * np.abs(spectrum) ** 2 / n).mean(axis=0)
    return np.array(
        [
            (100.0 * (means - baseline) / baseline).mean(),
            residual.var(axis=0, ddof=2).mean(),
            region_alff.mean(),
            region_alff.var(ddof=1),
        ]
    )


CrossSpectra = Callable[[np.ndarray, float, FeatureConfig], tuple[np.ndarray, np.ndarray]]
VECTORISED: dict[str, CrossSpectra] = {
    "vectorised": cross_by_matmul,
    "vectorised_einsum": cross_by_einsum,
    "vectorised_csd": cross_by_csd,
}


def vectorised_features(
    window: Window, origin: int, config: FeatureConfig, cross_spectra: CrossSpectra
) -> np.ndarray:
    """All 11 features of one window, recomputed from its samples."""
    start, stop = segment_span(window, origin, config)
    freqs, cross = cross_spectra(window.eeg[:, start:stop], window.sfreq, config)
    return np.concatenate([eeg_features_from_cross(freqs, cross, config), fmri_recompute(window, config)])


# -- YASA and the per-pair reference --------------------------------------------------------------
def yasa_bands(config: FeatureConfig) -> list[tuple[float, float, str]]:
    """Our bands in YASA's form."""
    return [(low, high, name) for name, (low, high) in config.bands.items()]


def yasa_band_powers(window: Window, origin: int, config: FeatureConfig) -> np.ndarray:
    """``yasa.bandpower`` with our Welch parameters, averaged over channels (µV²)."""
    import yasa

    start, stop = segment_span(window, origin, config)
    table = yasa.bandpower(
        window.eeg[:, start:stop], window.sfreq, win_sec=config.segment_seconds, relative=False,
        bands=yasa_bands(config), welch_kwargs={"window": "hann", "average": "mean"},
    )  # fmt: skip
    return table[list(config.bands)].to_numpy().mean(axis=0)


def per_pair_features(window: Window, origin: int, config: FeatureConfig) -> np.ndarray:
    """The 7 EEG features from scratch with scipy, coherence pair by pair."""
    sfreq = window.sfreq
    start, stop = segment_span(window, origin, config)
    x = window.eeg[:, start:stop].astype(np.float64)
    length = round(config.segment_seconds * sfreq)
    freqs, psd = signal.welch(x, fs=sfreq, nperseg=length, noverlap=length // 2)
    low, high = config.spectrum_range
    keep = (freqs >= low) & (freqs <= high)
    freqs, psd = freqs[keep], psd[:, keep]
    powers = (psd @ band_mask(freqs, config).T.astype(float)).mean(axis=0) * (freqs[1] - freqs[0])
    p = psd / psd.sum(axis=1, keepdims=True)
    entropy = (-(p * np.log(p)).sum(axis=1) / np.log(freqs.size)).mean()
    coherences = []
    for i in range(N_CHANNELS):
        for j in range(i + 1, N_CHANNELS):
            f, c = signal.coherence(x[i], x[j], fs=sfreq, nperseg=length, noverlap=length // 2)
            coherences.append(c[(f >= low) & (f <= high)].mean())
    return np.array([*powers, entropy, np.mean(coherences)])


def blas_threads() -> str:
    """Threads of the BLAS behind numpy (the matrix-product recompute may use them; ours uses one)."""
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped]
    except ImportError:
        return "unknown"
    pools = [str(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"]
    return ",".join(pools) or "none loaded"


# -- timing -----------------------------------------------------------------------------------------
def time_ours(windows: list[Window], repeats: int) -> tuple[float, float, np.ndarray]:
    """Seconds per window of the whole extractor (median and best pass) and its values.

    Each pass feeds every window to a fresh extractor; its first window (which fills
    the segment cache, as the first window of a night does) is not timed. A pass's
    figure is the median of its per-window times, which a busy machine disturbs less
    than the mean.
    """
    per_pass = []
    values = np.empty((len(windows), 11))
    for _ in range(repeats):
        extractor = FeatureExtractor()
        values[0] = extractor.compute(windows[0]).values
        times = []
        for k, window in enumerate(windows[1:], start=1):
            started = time.perf_counter()
            result = extractor.compute(window)
            times.append(time.perf_counter() - started)
            values[k] = result.values
        per_pass.append(float(np.median(times)))
    return float(np.median(per_pass)), min(per_pass), values


def time_reference(
    compute: Callable[[Window], np.ndarray], windows: list[Window]
) -> tuple[float, list[np.ndarray]]:
    """Median seconds per window of ``compute`` (after one untimed call), and its values."""
    compute(windows[0])
    times, values = [], []
    for window in windows:
        started = time.perf_counter()
        values.append(compute(window))
        times.append(time.perf_counter() - started)
    return float(np.median(times)), values


def largest_difference(got: list[np.ndarray], expected: np.ndarray) -> float:
    """Largest relative difference, over windows and features, between ``got`` and ``expected``.

    A feature that is 0 by construction (the BOLD level of a run's first two minutes) is compared
    absolutely, to within 1e-9.
    """
    got_array = np.array(got)
    return float(np.max(np.abs(got_array - expected) / np.maximum(np.abs(expected), 1e-9)))


def checked(name: str, difference: float) -> None:
    """Print the agreement with ours; stop the benchmark when it exceeds ``REFERENCE_RTOL``."""
    print(f"features.{name}_max_rel_diff_vs_ours={difference:.1e}")
    if not difference <= REFERENCE_RTOL:
        raise SystemExit(f"error: {name} differs from ours by {difference:.1e} (> {REFERENCE_RTOL:g})")


def measure(sfreq: float, args: argparse.Namespace, config: FeatureConfig) -> tuple[float, Window]:
    """Ours and every reference at one sampling rate; print the figures; ours and the last window."""
    import yasa

    label = f"{int(sfreq)}hz"
    windows = make_windows(sfreq, args.windows)
    assert all(w.fmri.shape[0] >= config.min_fmri_volumes for w in windows[1:]), "windows lack fMRI"
    origin = windows[0].eeg_first_sample
    ours, best, ours_values = time_ours(windows, args.repeats)
    print(f"features.ours_ms_per_window_{label}={ours * 1e3:.3f}")
    print(f"features.ours_best_pass_ms_per_window_{label}={best * 1e3:.3f}")
    timed = windows[1 : 1 + args.reference_windows]
    expected = ours_values[1 : 1 + len(timed)]

    seconds = {}
    for name, cross_spectra in VECTORISED.items():
        compute = functools.partial(
            vectorised_features, origin=origin, config=config, cross_spectra=cross_spectra
        )
        seconds[name], values = time_reference(compute, timed)
        print(f"features.{name}_ms_per_window_{label}={seconds[name] * 1e3:.2f}")
        checked(f"{name}_{label}", largest_difference(values, expected))
    fastest = min(VECTORISED, key=seconds.__getitem__)
    print(f"features.vectorised_fastest_{label}={fastest}")
    print(f"features.speedup_vs_vectorised_{label}={seconds[fastest] / ours:.1f}")

    yasa_seconds, yasa_values = time_reference(lambda w: yasa_band_powers(w, origin, config), timed)
    print(f"features.yasa_bandpower_ms_per_window_{label}={yasa_seconds * 1e3:.2f}")
    print(f"features.speedup_vs_yasa_bandpower_{label}={yasa_seconds / ours:.1f}")
    # Where the definitions agree (the Welch spectra), YASA's integral of our recompute's PSD is its own.
    start, stop = segment_span(timed[0], origin, config)
    freqs, cross = cross_by_matmul(timed[0].eeg[:, start:stop], sfreq, config)
    psd = np.einsum("iif->if", cross).real
    integrated = yasa.bandpower_from_psd(psd, freqs, bands=yasa_bands(config), relative=False)
    welch_difference = largest_difference(
        [integrated[list(config.bands)].to_numpy().mean(axis=0)], yasa_values[0][None]
    )
    checked(f"yasa_welch_{label}", welch_difference)
    # Where they differ (the band integral): Simpson over low <= f <= high, ours sums low <= f < high.
    integral = (np.array(yasa_values) - expected[:, :5]) / expected[:, :5]
    for k, band in enumerate(config.bands):
        print(f"features.yasa_{band}_power_rel_diff_{label}={np.median(integral[:, k]):+.3f}")

    per_pair_seconds, per_pair_values = time_reference(
        lambda w: per_pair_features(w, origin, config), timed[: args.per_pair_windows]
    )
    print(f"features.per_pair_reference_ms_per_window_{label}={per_pair_seconds * 1e3:.1f}")
    print(f"features.speedup_vs_per_pair_{label}={per_pair_seconds / ours:.0f}")
    checked(
        f"per_pair_{label}",
        largest_difference(per_pair_values, expected[: len(per_pair_values), :7]),
    )
    return ours, windows[-1]


def main() -> None:
    """Print ours, every reference and the ratios, at 250 and 500 Hz."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=300, help="windows timed for ours")
    parser.add_argument(
        "--reference-windows", type=int, default=20, help="windows timed for the vectorised and YASA lines"
    )
    parser.add_argument(
        "--per-pair-windows", type=int, default=3, help="windows timed for the per-pair reference"
    )
    parser.add_argument("--repeats", type=int, default=5, help="passes over the windows for ours")
    add_results_option(parser, "features")
    args = parser.parse_args()
    if not 2 <= args.reference_windows < args.windows:
        parser.error("--reference-windows must be at least 2 and below --windows")
    if not 1 <= args.per_pair_windows <= args.reference_windows:
        parser.error("--per-pair-windows must be between 1 and --reference-windows")
    config = FeatureConfig()
    with recorded("features", args, packages=("scipy", "yasa")):
        print(f"features.channels={N_CHANNELS}")
        print(f"features.reference_rtol={REFERENCE_RTOL:g}")
        print(f"features.blas_threads={blas_threads()}")
        ours, _ = measure(250.0, args, config)
        _, window = measure(500.0, args, config)  # its last window holds 120 s of fMRI
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            fmri_features(window.fmri, window.fmri_indices, window.tr, config)
            timings.append(time.perf_counter() - started)
        print(f"features.fmri_ms_per_window={np.median(timings) * 1e3:.3f}")
        verdict = "met" if ours * 1e3 <= GOAL_MS else "NOT met"
        print(f"goal: <= {GOAL_MS:g} ms per window at 250 Hz: {verdict}")


if __name__ == "__main__":
    main()
