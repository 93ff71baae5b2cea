"""Stand-ins running as threads of the measured process (``throughput.py --same-process``, ``--no-server``).

The replay and the websocket client share the consumer's interpreter lock and cores then, which
is how the throughput benchmark measured before it ran them as child processes
(:mod:`benchmarks.children`); their interfaces are the same.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

from websockets.sync.client import connect

from pipeline.pipeline import Pipeline
from recordings.recording import Recording
from simulators.replay import SessionPlayer


class ReplayThread:
    """The run pushed at full speed by a :class:`SessionPlayer` in a thread of this process.

    Parameters
    ----------
    session : Recording
        The run to replay.
    prefix : str
        Stream-name prefix (unique to this benchmark run).

    Attributes
    ----------
    cpu_seconds : float
        CPU time of the replay thread from its first push to its last.
    done_at : float
        ``time.monotonic()`` at the last push.
    """

    def __init__(self, session: Recording, prefix: str) -> None:
        self.cpu_seconds = math.nan
        self.done_at = math.nan
        self._first_cpu: float | None = None
        self.player = SessionPlayer(
            session, speed=math.inf, loop=False, with_truth=True, prefix=prefix, wait_for_consumers=30,
            on_push=self._pushed,
        )  # fmt: skip

    def _pushed(self, stream: str, last_stamp: float, samples: int) -> None:
        cpu = time.thread_time()  # the replay thread's own clock: the hook runs in it
        if self._first_cpu is None:
            self._first_cpu = cpu
        self.cpu_seconds = cpu - self._first_cpu
        self.done_at = time.monotonic()

    def wait(self, timeout: float) -> None:
        """Return once the whole run is pushed."""
        if not self.player.wait(timeout):
            raise TimeoutError(f"the replay did not finish within {timeout:g} s")
        if self.player.error is not None:
            raise RuntimeError(f"the replay failed: {self.player.error}") from self.player.error

    def __enter__(self) -> ReplayThread:
        self.player.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.player.stop()


class FeedClientThread(threading.Thread):
    """A websocket client counting predictions (and ``drops`` notices) until told to stop.

    Parameters
    ----------
    url : str
        The feed's websocket URL.

    Attributes
    ----------
    predictions, dropped : int
        Predictions received, and the server's latest count of messages dropped for this client.
    last_received : float
        ``time.monotonic()`` when the last prediction came.
    cpu_seconds : float
        CPU time of this thread from its connection to its stop (after :meth:`stop`).
    """

    def __init__(self, url: str) -> None:
        super().__init__(name="feed-client", daemon=True)
        self.url = url
        self.predictions = 0
        self.dropped = 0
        self.last_received = math.nan
        self.cpu_seconds = math.nan
        self.connected = threading.Event()
        self.stop_requested = threading.Event()
        self.error: BaseException | None = None

    def connect(self, timeout: float = 15) -> FeedClientThread:
        """Start, and return once connected (raises when the connection failed)."""
        self.start()
        self.connected.wait(timeout)
        if self.error is not None:
            raise RuntimeError(f"the websocket client failed: {self.error}") from self.error
        return self

    def stop(self) -> None:
        """Stop receiving."""
        self.stop_requested.set()
        self.join(5)

    def run(self) -> None:
        """Receive until a stop is requested."""
        try:
            with connect(self.url, open_timeout=10, max_size=None) as feed:
                json.loads(feed.recv(timeout=10))  # the "session connected" message
                started = time.thread_time()
                self.connected.set()
                while not self.stop_requested.is_set():
                    try:
                        message = json.loads(feed.recv(timeout=0.2))
                    except TimeoutError:
                        continue
                    if message["type"] == "prediction":
                        self.predictions += 1
                        self.last_received = time.monotonic()
                    elif message["type"] == "drops":
                        self.dropped = message["dropped"]
                self.cpu_seconds = time.thread_time() - started
        except BaseException as err:  # reported to the main thread
            self.error = err
        finally:
            self.connected.set()


class PipelineThread(threading.Thread):
    """The pipeline in its own asyncio loop, when no server runs it (``--no-server``)."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(name="pipeline", daemon=True)
        self.pipeline = pipeline

    def run(self) -> None:
        """Consume windows until the acquisition stops."""
        asyncio.run(self.pipeline.run())
