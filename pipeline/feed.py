"""Fan-out of messages to websocket clients; a slow client never slows anyone else.

Each client has a bounded queue. Publishing never waits: when a client's queue
is full its oldest message is dropped and counted, and the client is told how
many it missed (a ``drops`` message) once it catches up. A client whose queue
stays full for ``stall_seconds`` is disconnected.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

MESSAGE_TYPES = ("prediction", "status", "session")
QUEUE_SIZE = 256
STALL_SECONDS = 10.0


@dataclass
class Client:
    """One websocket subscriber."""

    identifier: int
    types: set[str]
    queue: asyncio.Queue[EncodedMessage] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0
    reported_dropped: int = 0
    full_since: float | None = None
    stalled: asyncio.Event = field(default_factory=asyncio.Event)


class EncodedMessage(dict[str, Any]):
    """A message with its JSON text, encoded once however many clients receive it.

    Parameters
    ----------
    message : dict
        The message.
    text : str | None
        Its JSON text when already encoded (encoded here when None).
    """

    __slots__ = ("text",)

    def __init__(self, message: dict[str, Any], text: str | None = None) -> None:
        super().__init__(message)
        self.text = (
            text if text is not None else json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        )


class Broadcaster:
    """Publish messages to every subscribed client's queue, without waiting.

    Must be used from the event loop thread.
    """

    def __init__(self, queue_size: int = QUEUE_SIZE, stall_seconds: float = STALL_SECONDS) -> None:
        self.queue_size = queue_size
        self.stall_seconds = stall_seconds
        self.clients: dict[int, Client] = {}
        self._next = 0
        self.published = 0
        self.disconnected_stalled = 0

    def subscribe(self, types: set[str] | None = None) -> Client:
        """Register a client for some message types (all by default)."""
        self._next += 1
        client = Client(self._next, set(types or MESSAGE_TYPES), asyncio.Queue(self.queue_size))
        self.clients[client.identifier] = client
        return client

    def unsubscribe(self, client: Client) -> None:
        """Forget a client."""
        self.clients.pop(client.identifier, None)

    def publish(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for every client subscribed to its type (encoded once for all of them)."""
        self.published += 1
        if not isinstance(message, EncodedMessage):
            message = EncodedMessage(message)
        now = time.monotonic()
        for client in list(self.clients.values()):
            if message["type"] not in client.types:
                continue
            if client.queue.full():
                client.queue.get_nowait()
                client.dropped += 1
                client.full_since = client.full_since or now
                if now - client.full_since > self.stall_seconds:
                    client.stalled.set()
                    self.disconnected_stalled += 1
                    self.unsubscribe(client)
                    continue
            else:
                client.full_since = None
            client.queue.put_nowait(message)
