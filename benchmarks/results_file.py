"""A benchmark's raw output, with a description of the machine it ran on, in a results file.

Every benchmark runs its ``main`` inside :func:`recorded`: what it prints (standard output and
standard error, in order) still reaches the terminal and, when the benchmark succeeds, is written
to ``benchmarks/results/<name>.txt`` after a header describing the run: the command line, the
date, the git commit, the CPU, cores and memory, the operating system, the versions of Python and
of the libraries that matter, and how busy the machine was (load averages, and the CPU time other
processes used during the run, which is what distorts a timing on a shared machine). The
documentation quotes these files.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TextIO

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"
LOAD_SAMPLE_SECONDS = 5.0


def add_results_option(parser: argparse.ArgumentParser, name: str) -> None:
    """``--results FILE`` (default ``benchmarks/results/<name>.txt``) and ``--no-results``."""
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS / f"{name}.txt",
        help=f"where to write the raw output and the machine's description (default "
        f"benchmarks/results/{name}.txt)",
    )
    parser.add_argument("--no-results", action="store_true", help="print only; write no results file")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(
            ["git", *arguments], cwd=PROJECT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _commit() -> str:
    commit = _git("rev-parse", "HEAD") or "unknown"
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit} (with uncommitted changes)" if changed else commit


def _versions(packages: Sequence[str]) -> str:
    found = [f"Python {platform.python_version()}"]
    for package in ("numpy", *packages):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def _busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``; NaN elsewhere)."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def machine_description(packages: Sequence[str] = ()) -> list[str]:
    """What the run ran on, one ``key: value`` line each."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"command: python {shlex.join([os.path.relpath(sys.argv[0], PROJECT), *sys.argv[1:]])}",
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"git commit: {_commit()}",
        f"cpu: {_cpu_model()}, {os.cpu_count()} logical cores ({affinity} usable by this process)",
        f"memory: {_memory_gib()}",
        f"os: {platform.platform()}",
        f"software: {_versions(packages)}",
    ]


class _Tee(io.TextIOBase):
    """A text stream writing to the terminal's stream and to a shared buffer."""

    def __init__(self, terminal: TextIO, buffer: io.StringIO, lock: threading.Lock) -> None:
        self._terminal, self._buffer, self._lock = terminal, buffer, lock

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer.write(text)
        return self._terminal.write(text)

    def flush(self) -> None:
        self._terminal.flush()

    def isatty(self) -> bool:
        return self._terminal.isatty()


class _LoadWatch:
    """The 1-minute load average sampled in the background, and the CPU others used meanwhile."""

    def __init__(self) -> None:
        self.start_load = os.getloadavg()
        self.samples = [self.start_load[0]]
        self._busy, self._own, self._wall = _busy_seconds(), _own_seconds(), time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="load-watch", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(LOAD_SAMPLE_SECONDS):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> list[str]:
        self._stop.set()
        self._thread.join(LOAD_SAMPLE_SECONDS)
        wall = time.monotonic() - self._wall
        busy = _busy_seconds() - self._busy
        own = _own_seconds() - self._own
        end = os.getloadavg()
        loads = " ".join(f"{value:.2f}" for value in self.start_load)
        return [
            f"load average (1, 5, 15 min) at start: {loads}; at end: {' '.join(f'{v:.2f}' for v in end)}; "
            f"1-min load sampled every {LOAD_SAMPLE_SECONDS:g} s: max {max(self.samples):.2f}",
            f"run: {wall:.1f} s of wall time; CPU busy on the machine {busy / wall:.2f} cores on average, "
            f"of which this benchmark (and its finished child processes) {own / wall:.2f}, "
            f"others {max(0.0, busy - own) / wall:.2f}",
        ]


@contextlib.contextmanager
def recorded(
    name: str, args: argparse.Namespace | None = None, packages: Sequence[str] = ()
) -> Iterator[None]:
    """Run the body with its output also kept, then write it with the machine's description.

    Parameters
    ----------
    name : str
        The benchmark's name (its results file is ``benchmarks/results/<name>.txt`` by default).
    args : argparse.Namespace | None
        Parsed options of :func:`add_results_option` (``results``, ``no_results``); the default
        file when None.
    packages : sequence of str
        Distributions whose versions matter to this benchmark (numpy is always listed).

    Notes
    -----
    Nothing is written when the body raises: a failed run is not a result.
    """
    path = RESULTS / f"{name}.txt"
    if args is not None:
        if args.no_results:
            yield
            return
        path = args.results
    header = machine_description(packages)
    watch = _LoadWatch()
    buffer, lock = io.StringIO(), threading.Lock()
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, buffer, lock), _Tee(err, buffer, lock)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
    lines = [f"# benchmarks/{name}.py: raw output", *(f"# {line}" for line in header + watch.summary())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n" + buffer.getvalue())
    print(f"(raw output and machine description written to {os.path.relpath(path)})", file=out)
