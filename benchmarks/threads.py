"""Measuring threads of this process: their CPU clocks, and cProfile of chosen ones."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any


def thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds used so far by a live thread (its POSIX per-thread CPU clock)."""
    if thread is None or thread.ident is None:
        raise RuntimeError("the thread has not started")
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class ThreadProfiles:
    """cProfile of chosen threads, each from its first call, with nothing patched.

    Use as a context manager around the start of the threads: while inside,
    ``threading.setprofile`` has every new thread ask whether it is one of ``targets``; such a
    thread enables its own profile, any other removes the hook at once.

    Parameters
    ----------
    targets : dict of str to callable
        Name of each profile, and a function returning its thread (None until it exists).
    """

    def __init__(self, targets: dict[str, Callable[[], threading.Thread | None]]) -> None:
        self._targets = targets
        self.profiles = {name: cProfile.Profile() for name in targets}

    def _first_call(self, frame: FrameType, event: str, arg: Any) -> None:
        current = threading.current_thread()
        for name, thread in self._targets.items():
            if thread() is current:
                self.profiles[name].enable()  # replaces this hook in this thread
                return
        sys.setprofile(None)

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._first_call)
        return self

    def __exit__(self, *exc_info: object) -> None:
        threading.setprofile(None)

    def top_costs(self, name: str, count: int) -> str:
        """The ``count`` functions of profile ``name`` with the most own time, as pstats prints them."""
        out = io.StringIO()
        pstats.Stats(self.profiles[name], stream=out).sort_stats("tottime").print_stats(count)
        return out.getvalue()
