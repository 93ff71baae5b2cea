"""The replay and the websocket client of ``benchmarks/throughput.py`` as child processes.

In a lab the streams come from other programs (the amplifier's LSL connector, the scanner's
export) and the feed is read by other programs (a browser, a stimulus program), so by default
the throughput benchmark runs both apart from the process it measures:
``benchmarks/replay_process.py`` and ``benchmarks/feed_client_process.py``. Each reports one
JSON object per line on its standard output and stops when its standard input is closed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

PROJECT = Path(__file__).resolve().parents[1]


class ChildProcess:
    """A helper script of this folder in a child process, reporting one JSON object per line.

    Parameters
    ----------
    script : str
        File name in ``benchmarks/``.
    arguments : list of str
        Its arguments.
    """

    def __init__(self, script: str, arguments: list[str]) -> None:
        self.name = script
        self._process = subprocess.Popen(
            [sys.executable, str(PROJECT / "benchmarks" / script), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reports: list[dict[str, Any]] = []
        self._reported = threading.Condition()
        threading.Thread(target=self._read_reports, name=f"{script}-reports", daemon=True).start()

    def _read_reports(self) -> None:
        stdout: IO[str] | None = self._process.stdout
        for line in stdout or ():
            with self._reported:
                self._reports.append(json.loads(line))
                self._reported.notify_all()
        with self._reported:
            self._reports.append({"ended": self._process.wait()})
            self._reported.notify_all()

    def report(self, number: int, timeout: float) -> dict[str, Any]:
        """The ``number``-th report (from 0), waiting up to ``timeout`` seconds for it."""
        with self._reported:
            if not self._reported.wait_for(lambda: len(self._reports) > number, timeout):
                raise TimeoutError(f"no report from {self.name} within {timeout:g} s")
            report = self._reports[number]
        if "ended" in report:
            raise RuntimeError(f"{self.name} ended early (exit code {report['ended']})")
        return report

    def finish(self) -> None:
        """Close the child's standard input (its signal to stop) and wait for it to exit."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class ReplayProcess(ChildProcess):
    """``replay_process.py``: the run pushed at full speed by another program, as in a lab.

    Parameters
    ----------
    run : str
        Bundled surrogate run.
    prefix : str
        Stream-name prefix (unique to this benchmark run).

    Attributes
    ----------
    cpu_seconds : float
        CPU time the child used to push the run (after :meth:`wait`).
    done_at : float
        ``time.monotonic()`` (system-wide) when everything was pushed (after :meth:`wait`).
    """

    def __init__(self, run: str, prefix: str) -> None:
        super().__init__("replay_process.py", [run, prefix])
        self.cpu_seconds = math.nan
        self.done_at = math.nan
        if not self.report(0, timeout=120).get("ready"):
            raise RuntimeError("the replay process did not start")

    def wait(self, timeout: float) -> None:
        """Return once the whole run is pushed."""
        report = self.report(1, timeout)
        if report["error"]:
            raise RuntimeError(f"the replay failed: {report['error']}")
        self.cpu_seconds, self.done_at = report["cpu_s"], report["done_monotonic"]

    def __enter__(self) -> ReplayProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()  # the child closes its outlets and exits


class FeedClientProcess(ChildProcess):
    """``feed_client_process.py``: the websocket client in another process, as a viewer is.

    Parameters
    ----------
    url : str
        The feed's websocket URL.

    Attributes
    ----------
    predictions, dropped : int
        Predictions received, and the server's latest count of messages dropped for this
        client (after :meth:`stop`).
    last_received : float
        ``time.monotonic()`` (system-wide) when the last prediction came (after :meth:`stop`).
    cpu_seconds : float
        The client's CPU time (after :meth:`stop`).
    """

    def __init__(self, url: str) -> None:
        super().__init__("feed_client_process.py", [url])
        self.predictions = self.dropped = 0
        self.last_received = self.cpu_seconds = math.nan
        if not self.report(0, timeout=30).get("connected"):
            raise RuntimeError("the websocket client did not connect")

    def stop(self) -> None:
        """Stop the client and read its counts."""
        self.finish()
        final = self.report(1, timeout=5)
        self.predictions, self.dropped = final["predictions"], final["dropped"]
        self.last_received, self.cpu_seconds = final["last_monotonic"], final["cpu_s"]
