"""Another lab program consuming the live feed: print each prediction, react to sleep onset.

Start the demo (``make demo``) or a live session, then:

    python examples/feed_client.py ws://127.0.0.1:8000/ws

Only the ``websockets`` package is needed. Add ``?token=...`` to the URL when
the server requires a token (any address beyond this machine).
"""

from __future__ import annotations

import asyncio
import json
import sys

import websockets


async def follow(url: str) -> None:
    """Print predictions as they come; reconnect if the server restarts."""
    previous = None
    while True:
        try:
            async with websockets.connect(f"{url}?types=prediction,session") as feed:
                async for text in feed:
                    message = json.loads(text)
                    if message["type"] == "session":
                        print(f"connected to session {message['session'].get('name')}")
                    elif message["type"] == "drops":
                        print(f"warning: this client fell behind and missed {message['dropped']} messages")
                    elif message["type"] == "prediction":
                        sleep = message["probabilities"].get("sleep")
                        flag = "" if message["quality"]["usable"] else "  (low-quality window)"
                        print(f"window {message['window']}: {message['label']} (p_sleep={sleep:.2f}){flag}")
                        if previous == "wake" and message["label"] == "sleep":
                            print("-> sleep onset: a closed-loop program would act here")
                        previous = message["label"]
        except (OSError, websockets.ConnectionClosed):
            print("feed unavailable, retrying in 2 s")
            await asyncio.sleep(2)


if __name__ == "__main__":
    asyncio.run(follow(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"))
