"""A bounded hand-over of windows from the acquisition thread to consumers.

The producer never waits: when the queue is full the oldest window is dropped
and counted, so a slow consumer gets the freshest windows and acquisition goes
on. Consumers take windows synchronously (:meth:`WindowQueue.get`) or from an
asyncio loop (:meth:`WindowQueue.aget`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")


class QueueClosedError(Exception):
    """The producer has stopped and the queue is empty."""


class WindowQueue(Generic[Item]):
    """Bounded, drop-oldest, thread-to-asyncio queue.

    Parameters
    ----------
    maxsize : int
        Items held at most.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Item] = deque(maxlen=maxsize)
        self._condition = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._closed = False
        self.dropped = 0
        self.delivered = 0

    def put(self, item: Item) -> None:
        """Add an item without ever blocking (drops the oldest when full)."""
        with self._condition:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(item)
            self._condition.notify_all()
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """Tell consumers no more items will come."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def _take(self) -> Item:
        self.delivered += 1
        return self._items.popleft()

    def get(self, timeout: float | None = None) -> Item:
        """Take the oldest item, waiting up to ``timeout`` seconds.

        Raises
        ------
        TimeoutError
            If nothing came in time.
        QueueClosedError
            If the producer stopped and nothing is left.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while not self._items:
                if self._closed:
                    raise QueueClosedError()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no window within the timeout")
                self._condition.wait(remaining)
            return self._take()

    async def aget(self) -> Item:
        """Take the oldest item from an asyncio task."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        with self._condition:
            self._waiters.append(entry)
        try:
            while True:
                with self._condition:
                    if self._items:
                        return self._take()
                    if self._closed:
                        raise QueueClosedError()
                    event.clear()
                await event.wait()
        finally:
            with self._condition:
                self._waiters.remove(entry)

    def __len__(self) -> int:
        return len(self._items)
