"""Memory over a simulated 8-hour night, and windows per second.

Replays the bundled surrogate sleep run in a loop (about 32 passes = 8 hours of
stream time) at high speed over LSL on loopback, consumes it with the project's
Acquisition (ring buffers, windower, drop-oldest queue) and reports the peak
growth of the resident set size after a warm-up of 10 minutes of stream time.

For reference, in the same run, a naive consumer that keeps every pulled chunk
in a list (no ring buffer) is measured over the first hour of stream time; its
growth is extrapolated to 8 hours.

Machine-readable lines start with ``stream_memory.``; the output goes to
``benchmarks/results/stream_memory.txt``.

Usage: python benchmarks/stream_memory.py [--hours 8] [--speed 400]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from core.lsl_safety import use_project_lsl_config  # noqa: E402

use_project_lsl_config()

from benchmarks.results_file import add_results_option, recorded  # noqa: E402
from simulators.surrogate import BUNDLED_SUBJECT, DEMO_RUN, bundled_surrogate  # noqa: E402
from stream.acquisition import Acquisition  # noqa: E402
from stream.config import AcquisitionConfig  # noqa: E402

WARM_UP_SECONDS = 600.0


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def start_replay(prefix: str, speed: float) -> subprocess.Popen:
    """Start the looping replay in another process; return once its streams are up."""
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "run_stream.py"), "replay", "--run", DEMO_RUN, "--loop",
         "--speed", str(speed), "--prefix", prefix, "--wait-for-consumers", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=PROJECT,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("Press Ctrl-C"):
            break
    return process


def measure_acquisition(hours: float, speed: float) -> dict:
    """Run the project's acquisition over ``hours`` of stream time."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    replay = start_replay(prefix, speed)
    config = AcquisitionConfig.for_replay(prefix, resolve_timeout=30, queue_size=256)
    stream_seconds = hours * 3600
    try:
        with Acquisition(config) as acquisition:
            first_end = None
            baseline = peak = None
            windows = 0
            started = time.perf_counter()
            while True:
                try:
                    window = acquisition.queue.get(timeout=30)
                except TimeoutError:
                    break
                windows += 1
                if first_end is None:
                    first_end = window.end
                elapsed = window.end - first_end
                if windows % 50 == 0:
                    rss = rss_mb()
                    if elapsed >= WARM_UP_SECONDS:
                        baseline = rss if baseline is None else baseline
                        peak = max(peak or rss, rss)
                if elapsed >= stream_seconds:
                    break
            wall = time.perf_counter() - started
            health = acquisition.health()
    finally:
        replay.terminate()
        replay.wait(30)
    return {
        "windows": windows,
        "stream_hours": (window.end - first_end) / 3600,
        "wall_seconds": wall,
        "windows_per_second": windows / wall,
        "rss_after_warmup_mb": baseline,
        "rss_growth_mb": (peak - baseline) if baseline is not None else float("nan"),
        "dropped_windows": health["windows"]["dropped"],
        "gaps": health["streams"]["eeg"]["gaps"],
        "dropped_samples": health["streams"]["eeg"]["dropped_samples"],
    }


def measure_naive(hours: float, speed: float) -> dict:
    """A consumer that keeps every chunk it pulls: memory grows with the night."""
    import pylsl

    prefix = f"naive-{uuid.uuid4().hex[:8]}"
    replay = start_replay(prefix, speed)
    try:
        info = pylsl.resolve_byprop("name", f"{prefix}-EEG", 1, 30)[0]
        inlet = pylsl.StreamInlet(info, max_buflen=360)
        others = [
            pylsl.StreamInlet(pylsl.resolve_byprop("name", f"{prefix}-{kind}", 1, 30)[0])
            for kind in ("fMRI", "Triggers")
        ]
        for other in others:
            other.open_stream(timeout=10)
        inlet.open_stream(timeout=10)
        kept = []
        start_rss = rss_mb()
        first = last = None
        while last is None or last - first < hours * 3600:
            data, stamps = inlet.pull_chunk(timeout=1.0, max_samples=4096, as_numpy=True)
            for other in others:
                other.pull_chunk(timeout=0.0)
            if len(stamps):
                kept.append((stamps, data))
                first = stamps[0] if first is None else first
                last = stamps[-1]
        growth = rss_mb() - start_rss
    finally:
        replay.terminate()
        replay.wait(30)
    return {"stream_hours": (last - first) / 3600, "rss_growth_mb": growth}


def main() -> None:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=8.0, help="stream time to replay")
    parser.add_argument("--speed", type=float, default=400.0, help="replay speed factor")
    parser.add_argument("--naive-hours", type=float, default=1.0, help="stream time for the naive reference")
    add_results_option(parser, "stream_memory")
    args = parser.parse_args()
    with recorded("stream_memory", args, packages=("pylsl",)):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """The naive consumer, then ours; print the figures."""
    bundled_surrogate((DEMO_RUN,))
    print(
        f"machine: {os.cpu_count()} cores; surrogate sub-{BUNDLED_SUBJECT} {DEMO_RUN} looped; "
        f"speed {args.speed:g}x"
    )

    naive = measure_naive(args.naive_hours, args.speed)
    naive_8h = naive["rss_growth_mb"] / naive["stream_hours"] * args.hours
    ours = measure_acquisition(args.hours, args.speed)

    print(f"stream_memory.stream_hours={ours['stream_hours']:.2f}")
    print(f"stream_memory.windows={ours['windows']}")
    print(f"stream_memory.windows_per_second={ours['windows_per_second']:.1f}")
    print(f"stream_memory.rss_after_warmup_mb={ours['rss_after_warmup_mb']:.1f}")
    print(f"stream_memory.rss_growth_mb={ours['rss_growth_mb']:.1f}")
    print(f"stream_memory.dropped_windows={ours['dropped_windows']}")
    print(f"stream_memory.eeg_gaps={ours['gaps']}")
    print(f"stream_memory.eeg_dropped_samples={ours['dropped_samples']}")
    print(f"stream_memory.naive_rss_growth_mb_per_hour={naive['rss_growth_mb'] / naive['stream_hours']:.1f}")
    print(f"stream_memory.naive_rss_growth_mb_{args.hours:g}h_extrapolated={naive_8h:.1f}")
    ratio = naive_8h / max(ours["rss_growth_mb"], 1.0)
    print(f"stream_memory.naive_over_ours_growth_ratio={ratio:.1f}")
    print(f"goal: growth under 50 MB after warm-up: {'met' if ours['rss_growth_mb'] < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
