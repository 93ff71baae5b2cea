"""A websocket client of the live feed in its own process, for ``benchmarks/throughput.py``.

Viewers and lab software read the feed from other processes (a browser, a
stimulus program), so the benchmark's client runs apart from the pipeline it
measures. It connects, prints one JSON line (``{"connected": true}``), counts
``prediction`` messages (and the latest ``drops`` notice) until its standard
input is closed, then prints one JSON line with the count and when the last
prediction came on the system-wide monotonic clock.

Usage: python benchmarks/feed_client_process.py WS_URL
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time

from websockets.sync.client import connect


def main() -> None:
    """Count predictions until told to stop; report them."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    predictions, dropped, last = 0, 0, math.nan
    with connect(sys.argv[1], open_timeout=10, max_size=None) as feed:
        json.loads(feed.recv(timeout=10))  # the "session connected" message
        print(json.dumps({"connected": True}), flush=True)
        while not stop.is_set():
            try:
                message = json.loads(feed.recv(timeout=0.2))
            except TimeoutError:
                continue
            if message["type"] == "prediction":
                predictions += 1
                last = time.monotonic()
            elif message["type"] == "drops":
                dropped = message["dropped"]
    report = {
        "predictions": predictions,
        "dropped": dropped,
        "last_monotonic": last,
        "cpu_s": time.process_time(),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
