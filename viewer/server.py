"""Run the pipeline and the web server in one asyncio loop (in a thread, for tests and the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from pipeline.feed import EncodedMessage
from viewer.app import MAX_WEBSOCKET_FRAME_BYTES, ServerState, create_app, is_loopback

if TYPE_CHECKING:
    import uvicorn

STATUS_INTERVAL = 2.0
# uvicorn's loggers: the access log and the error log (which also carries the websocket handshakes and,
# at debug level, the websockets library's request lines and headers).
UVICORN_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn.asgi")
_CREDENTIAL = re.compile(r"(\btoken=|\bbearer\s+)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter and ``Bearer`` credential hidden."""
    return _CREDENTIAL.sub(r"\1[redacted]", text)


class RedactCredentials(logging.Filter):
    """Hide access tokens in log records: request lines carry ``?token=`` (the browser's way to send it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message and string arguments in place; keep the record."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            # Same length and order: uvicorn's access formatter unpacks the arguments.
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def redact_uvicorn_logs() -> None:
    """Add :class:`RedactCredentials` to uvicorn's loggers (once), whatever their level."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactCredentials) for existing in logger.filters):
            logger.addFilter(RedactCredentials())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """Raise a clear ``OSError`` if ``host:port`` cannot be listened on (e.g. already in use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn does: connections of a server that just stopped (TIME_WAIT) must not block a restart.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise OSError(f"cannot listen on {host}:{port} ({err.strerror}): choose another port") from None


class LiveServer:
    """Pipeline, periodic status messages and uvicorn, served from a background thread.

    Parameters
    ----------
    state : ServerState
        What to serve; its pipeline (if any) is run here and feeds the broadcaster.
    host, port : str, int
        Where to listen (loopback by default). Binding elsewhere requires a token.
    """

    def __init__(self, state: ServerState, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host) and not state.token:
            raise ValueError(
                f"binding to {host} (beyond this machine) requires a token "
                "(run_stream.py reads it from SLEEPSTREAM_TOKEN)"
            )
        self.state = state
        self.host = host
        self.port = port or free_port(host)
        check_port(host, self.port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def thread(self) -> threading.Thread | None:
        """The thread running the event loop (pipeline, sinks, websockets); None before :meth:`start`."""
        return self._thread

    def start(self, timeout: float = 30.0) -> LiveServer:
        """Start serving; return once the server accepts connections."""
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"the server failed to start: {self.error}") from self.error
            if self._server is not None and self._server.started:
                return self
            time.sleep(0.05)
        raise TimeoutError(f"the server did not start within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server, the pipeline and the status task."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # reported to the starting thread
            self.error = err

    def publish(self, message: dict[str, Any]) -> None:
        """Broadcast ``message`` to the feed's clients from any thread."""
        if self._loop is None:
            raise RuntimeError("the server is not running")
        self._loop.call_soon_threadsafe(self.state.broadcaster.publish, message)

    async def _serve(self) -> None:
        import uvicorn

        self._loop = asyncio.get_running_loop()
        state = self.state
        config = uvicorn.Config(
            create_app(state),
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws_max_size=MAX_WEBSOCKET_FRAME_BYTES,  # uvicorn's default would hold frames of 16 MB
            # Compressing every message for every client costs the server more CPU than the bytes
            # are worth on a lab network; clients that ask for compression get plain frames.
            ws_per_message_deflate=False,
        )
        redact_uvicorn_logs()  # after uvicorn.Config, which configures uvicorn's loggers
        server = self._server = uvicorn.Server(config)
        tasks = [asyncio.create_task(self._status_loop())]
        if state.pipeline is not None:
            state.pipeline.add_sink(
                lambda prediction: state.broadcaster.publish(
                    EncodedMessage(prediction.message, prediction.message_json)
                )
            )
            tasks.append(asyncio.create_task(state.pipeline.run()))
        try:
            await server.serve()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _status_loop(self) -> None:
        while True:
            self.state.broadcaster.publish(self.state.status())
            await asyncio.sleep(STATUS_INTERVAL)
