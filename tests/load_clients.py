"""Many websocket clients of the feed, in their own process (used by the load test).

Usage: python tests/load_clients.py URL CLIENTS SECONDS OUTPUT.json

Opens CLIENTS healthy clients subscribed to predictions, plus one client that never reads (a raw
socket with a tiny receive buffer, as a hung program), and reads for SECONDS. Each client then reads
on until it receives a prediction made after that deadline (so every prediction made before it has
reached it, however loaded the machine; at most HANG_SECONDS more). Writes for every healthy client
the windows it received up to that prediction and the delivery delays (receive time - the message's
wall_time), with the Unix time of the deadline, to OUTPUT.json.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
import time
from urllib.parse import urlparse

import websockets

HANG_SECONDS = 120.0  # after the deadline: a client that gets no newer prediction for this long gives up


async def healthy_client(ws, deadline: float, record: dict) -> None:
    """Read predictions until one made after ``deadline`` (Unix time) arrives."""
    async with ws:
        while True:
            try:
                left = max(0.0, deadline - time.time()) + HANG_SECONDS
                raw = await asyncio.wait_for(ws.recv(), timeout=left)
            except asyncio.TimeoutError:
                break
            message = json.loads(raw)
            if message["type"] == "prediction":
                if message["wall_time"] >= deadline:
                    record["after_deadline"] = message["window"]
                    break
                record["windows"].append(message["window"])
                record["delays_ms"].append((time.time() - message["wall_time"]) * 1e3)
            elif message["type"] == "drops":
                record["drops"] = message["dropped"]


def never_reading_client(url: str) -> socket.socket:
    """A websocket handshake on a socket that is then never read."""
    parsed = urlparse(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parsed.hostname, parsed.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {parsed.path}?{parsed.query} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


async def main(url: str, clients: int, seconds: float, output: str) -> None:
    stuck = never_reading_client(url)
    connections = await asyncio.gather(*(websockets.connect(url, max_queue=None) for _ in range(clients)))
    records = [{"windows": [], "delays_ms": [], "drops": 0, "after_deadline": None} for _ in range(clients)]
    print("connected", flush=True)
    deadline = time.time() + seconds
    await asyncio.gather(
        *(healthy_client(ws, deadline, record) for ws, record in zip(connections, records, strict=True))
    )
    with open(output, "w") as handle:
        json.dump({"deadline": deadline, "clients": records}, handle)
    stuck.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
