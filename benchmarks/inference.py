"""Per-call latency of every inference path, single window, against ``model.predict``.

Paths: Keras ``model.predict`` (the naive reference), eager ``model(x)``, the
project's live :class:`model.inference.Predictor` (compiled ``tf.function``,
XLA when it compiles) and its LiteRT backend (``ai-edge-litert``, no
TensorFlow), plus the batched path for as-fast-as-possible replay. Each is
timed over many calls; median and p99 in milliseconds, and the ratio of
``model.predict``'s median to each path's.

Machine-readable lines start with ``inference.``; the output goes to
``benchmarks/results/inference.txt``.

Usage: python benchmarks/inference.py [--bundle model/default_bundle] [--calls 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.results_file import add_results_option, recorded  # noqa: E402
from model.bundle import ModelBundle, load_bundle  # noqa: E402
from model.inference import Predictor  # noqa: E402


def timed(call: Callable[[], object], calls: int) -> np.ndarray:
    """Milliseconds of each of ``calls`` calls (after 20 warm-up calls)."""
    for _ in range(20):
        call()
    durations = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        call()
        durations[i] = time.perf_counter() - started
    return durations * 1e3


def main() -> None:
    """Time every path and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", default=str(PROJECT / "model" / "default_bundle"))
    parser.add_argument("--calls", type=int, default=2000)
    add_results_option(parser, "inference")
    args = parser.parse_args()
    with recorded("inference", args, packages=("tensorflow-cpu", "keras", "ai-edge-litert")):
        measure(load_bundle(args.bundle), args.calls)


def measure(bundle: ModelBundle, calls: int) -> None:
    """Time every path of ``bundle`` and print the figures."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=len(bundle.feature_names)) * bundle.scaler.scale + bundle.scaler.mean
    scaled = bundle.scaler.transform(np.stack([features] * bundle.context))[np.newaxis]
    model = bundle.model

    results = {
        "keras_predict": timed(lambda: model.predict(scaled, verbose=0), max(50, calls // 20)),
        "keras_eager": timed(lambda: model(scaled, training=False), max(100, calls // 5)),
    }
    live = Predictor(bundle, backend="tf-function")
    name = "tf_function_xla" if live.jit_compiled else "tf_function"
    results[name] = timed(lambda: live.predict(features), calls)
    lean = Predictor(bundle.path, backend="litert")
    results["litert"] = timed(lambda: lean.predict(features), calls)
    batch = np.repeat(np.stack([np.stack([features] * bundle.context)]), 4096, axis=0)
    started = time.perf_counter()
    bundle.predict_sequences(batch)
    batched_ms = (time.perf_counter() - started) * 1e3 / batch.shape[0]

    reference = np.median(results["keras_predict"])
    for name, durations in results.items():
        median, p99 = np.median(durations), np.percentile(durations, 99)
        print(f"inference.{name}_median_ms={median:.4f}")
        print(f"inference.{name}_p99_ms={p99:.4f}")
        print(f"inference.{name}_speedup_vs_predict={reference / median:.0f}")
    print(f"inference.batched_ms_per_window={batched_ms:.4f}")
    print("goal: live p99 <= 1 ms per call (the Predictor includes scaling and context handling)")


if __name__ == "__main__":
    main()
