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
