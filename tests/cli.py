"""Run the project's command line as a user would, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python run_stream.py ARGS`` from the project folder; output captured as text."""
    return subprocess.run(
        [sys.executable, str(PROJECT / "run_stream.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT,
    )


class CliProcess:
    """``python run_stream.py ARGS`` running in the background; its output lines are collected.

    Parameters
    ----------
    *args : str
        Command-line arguments.
    env : dict | None
        Extra environment variables.
    """

    def __init__(self, *args: str, env: dict | None = None) -> None:
        import os
        import queue
        import threading

        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, str(PROJECT / "run_stream.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=PROJECT,
            env=environment,
        )
        self.lines: list[str] = []
        self._ended = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate, timeout: float) -> str:
        """The first new output line satisfying ``predicate``; AssertionError with the output if none."""
        import queue
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                self._ended = True
                break
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError("expected output not seen; output so far:\n" + "\n".join(self.lines[-60:]))

    def stop(self, signum: int, timeout: float = 30) -> int:
        """Send ``signum`` and wait for the exit status; the rest of the output is collected."""
        self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout)
        finally:
            self.kill()
        while not self._ended:
            line = self._queue.get(timeout=10)
            self._ended = line is None
            if line is not None:
                self.lines.append(line)
        return status

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
