"""Time to stage one night: YASA's pretrained stager against ours, on the same recording.

The recording is an 8-hour surrogate night (:func:`night`: :mod:`simulators.night` following the
real Sleep-EDF hypnogram SC4001E from 15 minutes before sleep onset; 8 EEG channels, EOG, chin
EMG, ECG; 100 Hz by default, Sleep-EDF's EEG rate). Swap :func:`night` to time another recording.

- YASA: :func:`pipeline.yasa_baseline.yasa_epoch_stages` on the night's 960 scored epochs: the
  derivation (C4 - TP9 and the EOG), an MNE ``RawArray``, ``yasa.SleepStaging`` (its features and
  its own resampling to 100 Hz) and ``predict`` (LightGBM).
- Ours: every 30-s window of the night (2.1-s hop) cut by :class:`stream.windower.MultiRateWindower`
  from 1-s chunks of all channels, as :mod:`pipeline.offline` feeds a recording (EEG only here: no
  fMRI stream), its 11 features by :class:`features.extractor.FeatureExtractor`, then the shipped
  bundle's prediction of every window by :class:`model.inference.Predictor` (LiteRT backend, one
  window at a time with its context, as live). Extraction and inference are also timed apart.

Each is timed ``--repeats`` times after one untimed warm-up on the first 10 minutes (imports, the
LightGBM and LiteRT models loaded); median, min and max in seconds. Machine-readable lines start
with ``staging_time.``; the output goes to ``benchmarks/results/staging_time.txt``.

Usage: python benchmarks/staging_time.py [--repeats 3] [--hours 8] [--sfreq 100]
       [--bundle model/default_bundle]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.results_file import add_results_option, recorded  # noqa: E402
from core.lsl_safety import use_project_lsl_config  # noqa: E402
from core.stages import EPOCH_SECONDS  # noqa: E402
from features.extractor import FeatureExtractor  # noqa: E402
from model.inference import Predictor  # noqa: E402
from pipeline.yasa_baseline import yasa_derivation, yasa_epoch_stages  # noqa: E402
from stream.config import WindowConfig  # noqa: E402
from stream.windower import MultiRateWindower  # noqa: E402

HYPNOGRAM = "SC4001EC-Hypnogram.edf"
LEAD_EPOCHS = 30  # wake kept before sleep onset: 15 minutes
CHUNK_SECONDS = 1.0  # as pipeline.offline feeds a recording
WARM_UP_SECONDS = 600.0


@dataclass(frozen=True)
class Night:
    """A recording to stage: signals in µV and its scored epochs' onsets (s from the first sample)."""

    name: str
    data: np.ndarray
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    sfreq: float
    onsets: np.ndarray

    def head(self, seconds: float) -> Night:
        """The first ``seconds`` of the night."""
        n = int(seconds * self.sfreq)
        keep = self.onsets + EPOCH_SECONDS <= seconds
        return Night(self.name, self.data[:, :n], self.ch_names, self.ch_types, self.sfreq, self.onsets[keep])


def night(hours: float, sfreq: float) -> Night:
    """An ``hours``-long surrogate night following a real Sleep-EDF hypnogram from before sleep onset."""
    from recordings.hypnogram import Hypnogram, read_hypnogram
    from simulators.night import SHIPPED_HYPNOGRAMS, surrogate_night

    full = read_hypnogram(SHIPPED_HYPNOGRAMS / HYPNOGRAM)
    first_sleep = next(i for i, stage in enumerate(full.stages) if stage in ("N1", "N2", "N3", "R"))
    start = max(0, first_sleep - LEAD_EPOCHS)
    stop = start + round(hours * 3600 / full.epoch_seconds)
    if stop > full.n_epochs:
        raise ValueError(
            f"{HYPNOGRAM} has {full.n_epochs - start} epochs from sleep onset, fewer than {hours} h"
        )
    hypnogram = Hypnogram(
        onsets=np.arange(stop - start) * full.epoch_seconds,
        stages=full.stages[start:stop],
        raw_labels=full.raw_labels[start:stop],
        source=full.source,
        epoch_seconds=full.epoch_seconds,
    )
    surrogate = surrogate_night(hypnogram, sfreq=sfreq, crop=False)
    return Night(
        f"surrogate night after {HYPNOGRAM}, {hours:g} h from 15 min before sleep onset",
        np.asarray(surrogate.data, dtype=np.float64),
        surrogate.ch_names,
        surrogate.ch_types,
        surrogate.sfreq,
        np.asarray(hypnogram.onsets, dtype=float),
    )


def stage_with_yasa(recording: Night) -> int:
    """YASA's stages of every scored epoch; returns how many it staged."""
    staging = yasa_epoch_stages(
        recording.data, recording.ch_names, recording.ch_types, recording.sfreq, recording.onsets
    )
    return staging.staged


def extract(recording: Night) -> list[np.ndarray]:
    """The 11 features of every window of the night, cut and computed as the offline extraction does."""
    windower = MultiRateWindower(
        WindowConfig(expected_latency=0.0, dummy_scans=0),
        recording.sfreq,
        recording.ch_names,
        recording.ch_types,
        (),
        2.1,
        use_triggers=False,
        use_fmri=False,
    )
    extractor = FeatureExtractor()
    chunk = max(1, int(CHUNK_SECONDS * recording.sfreq))
    n_times = recording.data.shape[1]
    features = []
    for start in range(0, n_times, chunk):
        stop = min(n_times, start + chunk)
        windower.add_eeg(np.arange(start, stop) / recording.sfreq, recording.data[:, start:stop].T)
        features += [extractor.compute(window).values for window in windower.poll()]
    features += [extractor.compute(window).values for window in windower.flush()]
    return features


def infer(predictor: Predictor, features: list[np.ndarray]) -> int:
    """The bundle's probabilities for every window, one at a time with its context; returns the count."""
    predictor.reset()
    for vector in features:
        predictor.predict(vector)
    return len(features)


def timed(call: Callable[[], object], repeats: int) -> tuple[np.ndarray, object]:
    """Seconds of each of ``repeats`` calls, and the last call's result."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return np.array(seconds), result


def report(name: str, seconds: np.ndarray) -> None:
    """Median, min and max of one measurement."""
    print(f"staging_time.{name}_median_s={np.median(seconds):.2f}")
    print(f"staging_time.{name}_min_s={seconds.min():.2f}")
    print(f"staging_time.{name}_max_s={seconds.max():.2f}")


def measure(recording: Night, bundle: Path, repeats: int) -> None:
    """Time YASA and ours on ``recording`` and print the figures."""
    hours = recording.data.shape[1] / recording.sfreq / 3600
    print(f"staging_time.recording={recording.name}")
    print(f"staging_time.hours={hours:.2f}")
    print(f"staging_time.sfreq_hz={recording.sfreq:g}")
    print(f"staging_time.channels={len(recording.ch_names)} ({', '.join(recording.ch_names)})")
    print(f"staging_time.epochs={recording.onsets.size}")
    print(f"staging_time.yasa_derivation={yasa_derivation(recording.ch_names, recording.ch_types)}")
    print(f"staging_time.bundle={bundle}")
    print(f"staging_time.repeats={repeats}")

    warm = recording.head(WARM_UP_SECONDS)
    stage_with_yasa(warm)
    predictor = Predictor(bundle, backend="litert")
    infer(predictor, extract(warm))

    yasa_seconds, staged = timed(lambda: stage_with_yasa(recording), repeats)
    print(f"staging_time.yasa_epochs_staged={staged}")
    extraction_seconds, features = timed(lambda: extract(recording), repeats)
    assert isinstance(features, list)
    print(f"staging_time.ours_windows={len(features)}")
    inference_seconds, _ = timed(lambda: infer(predictor, features), repeats)
    ours_seconds = extraction_seconds + inference_seconds
    report("yasa", yasa_seconds)
    report("ours", ours_seconds)
    report("ours_extraction", extraction_seconds)
    report("ours_inference", inference_seconds)
    print(f"staging_time.ours_ms_per_window={np.median(ours_seconds) / len(features) * 1e3:.3f}")
    print(f"staging_time.yasa_ms_per_epoch={np.median(yasa_seconds) / max(staged, 1) * 1e3:.3f}")
    ratio = np.median(ours_seconds) / np.median(yasa_seconds)
    print(f"staging_time.ours_over_yasa={ratio:.2f}")


def main() -> None:
    """Build the night, time both stagers and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each stager")
    parser.add_argument("--hours", type=float, default=8.0, help="length of the night")
    parser.add_argument("--sfreq", type=float, default=100.0, help="sampling rate of the night (Hz)")
    parser.add_argument("--bundle", type=Path, default=PROJECT / "model" / "default_bundle")
    add_results_option(parser, "staging_time")
    args = parser.parse_args()
    if args.repeats < 1 or args.hours * 3600 < WARM_UP_SECONDS:
        parser.error("--repeats must be >= 1 and --hours at least 10 minutes")
    use_project_lsl_config()
    with recorded("staging_time", args, packages=("yasa", "lightgbm", "mne", "ai-edge-litert")):
        started = time.perf_counter()
        recording = night(args.hours, args.sfreq)
        print(f"staging_time.synthesis_s={time.perf_counter() - started:.1f} (not timed below)")
        measure(recording, args.bundle, args.repeats)


if __name__ == "__main__":
    main()
