"""A bundled surrogate run replayed at full speed in its own process, for ``benchmarks/throughput.py``.

In a lab the streams come from other programs (the amplifier's LSL connector,
the scanner's export), not from the process that consumes them; this child
process stands in for them. It publishes the run with
``simulators.replay.SessionPlayer`` at ``speed=math.inf`` once a consumer is
connected to every stream, prints one JSON line (``{"ready": true}``) when its
outlets exist and one when everything is pushed (its CPU time, and when it
pushed on the system-wide monotonic clock), then keeps the outlets open until
its standard input is closed.

Usage: python benchmarks/replay_process.py RUN PREFIX
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from core.lsl_safety import use_project_lsl_config  # noqa: E402

use_project_lsl_config()

from recordings.session import read_session  # noqa: E402
from simulators.replay import SessionPlayer  # noqa: E402
from simulators.surrogate import BUNDLED_SUBJECT, bundled_surrogate  # noqa: E402


def main() -> None:
    """Replay, report, and hold the outlets open until told to stop."""
    run, prefix = sys.argv[1], sys.argv[2]
    session = read_session(bundled_surrogate((run,)), BUNDLED_SUBJECT, run)
    player = SessionPlayer(
        session, speed=math.inf, loop=False, with_truth=True, prefix=prefix, wait_for_consumers=60
    )
    cpu = time.process_time()
    with player:
        print(json.dumps({"ready": True}), flush=True)
        player.wait(timeout=120)
        print(
            json.dumps(
                {
                    "error": None if player.error is None else str(player.error),
                    "samples": player.samples_pushed,
                    "cpu_s": time.process_time() - cpu,
                    "done_monotonic": time.monotonic(),
                }
            ),
            flush=True,
        )
        sys.stdin.read()  # the consumer closes our stdin when it has everything


if __name__ == "__main__":
    main()
