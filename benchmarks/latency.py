"""End-to-end latency: a window's last EEG sample on LSL to its prediction at a websocket client.

The bundled surrogate sleep run (sub-27 sleep-2, 250 Hz, 32 channels, TR 2.1 s)
is replayed at real time by ``simulators.replay.SessionPlayer`` (with truth,
unique stream names, waiting for the consumer) and consumed in the same
process by the whole pipeline as ``run_stream.py demo`` runs it, assembled by
the same factory (``pipeline.factory.build_pipeline``): ``Acquisition`` →
``Pipeline`` (11 features, the shipped model through the ``Predictor``) →
sinks (LSL prediction outlet, session recorder in a temporary folder,
websocket broadcaster) → ``viewer.server.LiveServer`` on a free loopback port.
A real websocket client (the ``websockets`` package, in its own thread)
subscribes to ``/ws?types=prediction`` and reads ``pylsl.local_clock()`` the
moment each message is handed to it.

What is measured, for every window: ``receive − stream_time``, where
``receive`` is ``pylsl.local_clock()`` in the client when the prediction
message arrives, and ``stream_time`` is the message's field: the window's end on
the consumer's LSL clock, which is the (dejittered, clock-corrected) timestamp
of the window's last EEG sample. The replay stamps sample k with
``t0 + k / sfreq``, ``t0`` being ``pylsl.local_clock()`` when it starts, and
pushes it once ``local_clock() − t0 ≥ k / sfreq``: at real time an EEG
timestamp is the moment the sample was acquired on this machine's LSL clock,
so both ends of the interval are on one clock (the benchmark checks that
``stream_time`` equals the replay's own timestamp of that sample). At another
``--speed`` the timestamps are compressed stream time; they are mapped back to
the LSL-clock moment the sample was due (``t0 + (stamp − t0) / speed``).

Breakdown (each on the same clock, read in the public instrumentation hooks of
the replay, the acquisition and the pipeline: ``SessionPlayer(on_push=)``,
``Acquisition.on_eeg_chunk`` and ``on_window``, ``Pipeline.on_window`` and
``on_prediction``): source block (timestamp → the replay hands the chunk to
liblsl; the replay wakes when the next sample falls due, every 1–20 ms, or
every ``--block-ms``),
transport (→ the acquisition thread has pulled and dejittered it: LSL loopback
plus the acquisition's 2 ms idle poll), windowing (→ the window is cut and
queued), hand-off (→ the pipeline starts on it in the server's event loop),
processing (features + model: the prediction's own ``latency_ms``), sinks (the
LSL prediction outlet and the session recorder, called before the broadcaster)
and feed (broadcaster → JSON → websocket → client). ``from_push`` is the total
minus the source block: the part the project controls plus LSL transport.

Machine-readable lines start with ``latency.``; the output goes to
``benchmarks/results/latency.txt``.

Usage: python benchmarks/latency.py [--windows 200] [--speed 1] [--block-ms MS] [--bare]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from core.lsl_safety import use_project_lsl_config  # noqa: E402

use_project_lsl_config()

import pylsl  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from benchmarks.options import add_model_options, benchmark_settings  # noqa: E402
from benchmarks.results_file import add_results_option, recorded  # noqa: E402
from core.windows import Window  # noqa: E402
from model.bundle import load_bundle  # noqa: E402
from pipeline.factory import build_pipeline  # noqa: E402
from pipeline.prediction import Prediction  # noqa: E402
from recordings.session import read_session  # noqa: E402
from simulators.replay import SessionPlayer  # noqa: E402
from simulators.surrogate import BUNDLED_SUBJECT, DEMO_RUN, bundled_surrogate  # noqa: E402
from stream.config import AcquisitionConfig  # noqa: E402
from viewer.app import ServerState  # noqa: E402
from viewer.server import LiveServer  # noqa: E402

GOAL_P99_MS = 20.0
SLOWEST_SHOWN = 5
STAGES = ("source_block", "transport", "windowing", "handoff", "processing", "sinks", "feed")


class FeedClient(threading.Thread):
    """A websocket client of the prediction feed, noting ``pylsl.local_clock()`` at each receive.

    Parameters
    ----------
    url : str
        The ``/ws?types=prediction`` URL.
    wanted : int
        Predictions to receive before stopping.
    """

    def __init__(self, url: str, wanted: int) -> None:
        super().__init__(name="feed-client", daemon=True)
        self.url = url
        self.wanted = wanted
        self.received: list[tuple[float, dict]] = []
        self.connected = threading.Event()
        self.done = threading.Event()
        self.stop_requested = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Receive until ``wanted`` predictions came or a stop is requested."""
        try:
            with connect(self.url, open_timeout=10) as feed:
                json.loads(feed.recv(timeout=10))  # the "session connected" message
                self.connected.set()
                while len(self.received) < self.wanted and not self.stop_requested.is_set():
                    try:
                        text = feed.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    received = pylsl.local_clock()
                    message = json.loads(text)
                    if message["type"] == "prediction":
                        self.received.append((received, message))
        except BaseException as err:  # reported to the main thread
            self.error = err
        finally:
            self.connected.set()
            self.done.set()


class StageClock:
    """``pylsl.local_clock()`` read in the hooks of the replay, acquisition and pipeline.

    Attributes
    ----------
    pushes : list of (float, int, float)
        Every EEG push: the timestamp of its last sample, its samples, the clock just before.
    pulls : list of (float, float)
        Every EEG chunk pulled: the clock, the chunk's last dejittered timestamp.
    marks : dict
        Per window index: when it was queued, taken by the pipeline, predicted and broadcast,
        and what the window says of its last sample.
    """

    def __init__(self) -> None:
        self.pushes: list[tuple[float, int, float]] = []
        self.pulls: list[tuple[float, float]] = []
        self.marks: dict[int, dict] = {}

    def pushed(self, stream: str, last_stamp: float, samples: int) -> None:
        """``SessionPlayer(on_push=)``."""
        if stream == "EEG":
            self.pushes.append((last_stamp, samples, pylsl.local_clock()))

    def pulled(self, times: np.ndarray) -> None:
        """``Acquisition.on_eeg_chunk``."""
        self.pulls.append((pylsl.local_clock(), float(times[-1])))

    def queued(self, window: Window) -> None:
        """``Acquisition.on_window``."""
        self.marks.setdefault(window.index, {}).update(
            queued=pylsl.local_clock(),
            last_sample=float(window.eeg_times[-1]) if window.eeg_times.size else math.nan,
            last_number=window.eeg_first_sample + window.eeg_times.size - 1,
            fmri_waited=window.quality.fmri_waited,
        )

    def taken(self, window: Window) -> None:
        """``Pipeline.on_window``."""
        self.marks.setdefault(window.index, {})["process_start"] = pylsl.local_clock()

    def predicted(self, prediction: Prediction) -> None:
        """``Pipeline.on_prediction``: before the sinks."""
        self.marks.setdefault(prediction.window, {})["process_end"] = pylsl.local_clock()

    def broadcast(self, prediction: Prediction) -> None:
        """A sink added after the factory's (LSL outlet, recorder): the server's broadcaster is next."""
        self.marks.setdefault(prediction.window, {})["broadcast"] = pylsl.local_clock()


class CollectorPauses:
    """Full (generation 2) garbage collections during the run, through ``gc.callbacks``.

    A full collection holds the interpreter lock while it walks every object (hundreds of
    thousands once TensorFlow is imported), so every thread of the process waits for it.

    Attributes
    ----------
    pauses : list of (float, float)
        ``pylsl.local_clock()`` at the start of each full collection, and its duration in seconds.
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started: float | None = None

    def _note(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = pylsl.local_clock()
        elif self._started is not None:
            self.pauses.append((self._started, pylsl.local_clock() - self._started))
            self._started = None

    def __enter__(self) -> CollectorPauses:
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._note)


def run(args: argparse.Namespace) -> dict:
    """Replay, run the pipeline and the server, receive predictions; return the raw records."""
    session = read_session(bundled_surrogate((DEMO_RUN,)), BUNDLED_SUBJECT, DEMO_RUN)
    bundle = load_bundle(args.bundle)
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    stream_seconds = 30.0 + 2.1 * args.windows
    timeout = stream_seconds / args.speed * 1.5 + 60
    clock = StageClock()
    block = args.block_ms / 1e3 if args.block_ms is not None else None
    player = SessionPlayer(
        session, speed=args.speed, loop=True, with_truth=True, prefix=prefix, wait_for_consumers=30,
        block_seconds=block, on_push=clock.pushed,
    )  # fmt: skip
    collections = CollectorPauses()
    with player, tempfile.TemporaryDirectory() as folder, collections:
        settings = benchmark_settings(args, record_in=None if args.bare else folder)
        config = AcquisitionConfig.for_replay(
            prefix, with_truth=True, resolve_timeout=15, window=settings.window
        )
        live = build_pipeline(
            settings, config, bundle=bundle, name="latency-benchmark",
            session_info={"name": session.label, "benchmark": "latency"},
            outlet_prefix=None if args.bare else f"{prefix}-prediction", start=False,
        )  # fmt: skip
        with live:
            acquisition, pipeline = live.acquisition, live.pipeline
            acquisition.on_eeg_chunk, acquisition.on_window = clock.pulled, clock.queued
            pipeline.on_window, pipeline.on_prediction = clock.taken, clock.predicted
            # Added last of ours; the server adds the broadcaster after it when it starts.
            pipeline.add_sink(clock.broadcast)
            state = ServerState(pipeline=pipeline, bundle=bundle, session={"name": session.label})
            with LiveServer(state) as server:
                client = FeedClient(f"ws://{server.host}:{server.port}/ws?types=prediction", args.windows)
                client.start()
                client.connected.wait(15)
                if client.error is not None:
                    raise RuntimeError(f"the websocket client failed: {client.error}") from client.error
                # Resolves the four streams; the replay starts once all are connected.
                acquisition.start()
                print(
                    f"replaying {session.label} at {args.speed:g}x as {prefix}; "
                    f"{args.windows} windows, about {stream_seconds / args.speed:.0f} s",
                    flush=True,
                )
                if not client.done.wait(timeout):
                    print(f"warning: timed out after {timeout:.0f} s", file=sys.stderr)
                client.stop_requested.set()
                client.join(5)
                health = acquisition.health()
                acquisition.stop()
    if client.error is not None:
        raise RuntimeError(f"the websocket client failed: {client.error}") from client.error
    return {
        "received": client.received,
        "marks": clock.marks,
        "pulls": np.array(clock.pulls).reshape(-1, 2),
        "pushes": np.array(clock.pushes).reshape(-1, 3),
        "sfreq": session.sfreq,
        "health": health,
        "block_ms": args.block_ms if args.block_ms is not None else 0.0,
        "gc_pauses": np.array(collections.pauses).reshape(-1, 2),
    }


def analyse(records: dict, speed: float) -> dict[str, np.ndarray]:
    """Per-window intervals in milliseconds, and consistency checks."""
    pushes, pulls, sfreq = records["pushes"], records["pulls"], records["sfreq"]
    # The replay's clock origin: the first chunk's last sample is stamped t0 + (n - 1) / sfreq.
    t0 = pushes[0, 0] - (pushes[0, 1] - 1) / sfreq
    push_ends = np.cumsum(pushes[:, 1]) - 1  # number of the last sample of each push
    rows = []
    for received, message in records["received"]:
        mark = records["marks"].get(message["window"], {})
        stream_time = message["stream_time"]
        number = round((stream_time - t0) * sfreq)  # the sample the window ends on
        replay_stamp = t0 + number / sfreq
        due = t0 + (replay_stamp - t0) / speed
        push = pushes[np.searchsorted(push_ends, number), 2]
        pulled = pulls[np.searchsorted(pulls[:, 1], mark.get("last_sample", stream_time) - 0.5 / sfreq), 0]
        rows.append(
            {
                "total": received - (t0 + (stream_time - t0) / speed),
                "due": due,
                "received": received,
                "from_push": received - push,
                "source_block": push - due,
                "transport": pulled - push,
                "windowing": mark["queued"] - pulled,
                "handoff": mark["process_start"] - mark["queued"],
                "processing": message["latency_ms"] / 1e3,
                "sinks": mark["broadcast"] - mark["process_end"],
                "feed": received - mark["broadcast"],
                "stamp_error": stream_time - replay_stamp,
                "last_sample_offset": mark["last_sample"] - stream_time,
                "numbering_ok": float(mark["last_number"] == number),
                "fmri_waited": mark["fmri_waited"],
                "window": message["window"],
            }
        )
    return {key: np.array([row[key] for row in rows]) for key in rows[0]} if rows else {}


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=200, help="predictions to measure (2.1 s each)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="replay speed (1 = real time, for the recorded figures)"
    )
    parser.add_argument(
        "--block-ms",
        type=float,
        default=None,
        help="a fixed push interval of the replay in ms (default: the replay's own: as samples fall due)",
    )
    parser.add_argument(
        "--bare", action="store_true", help="no LSL prediction outlet nor session recorder: only the feed"
    )
    add_model_options(parser)
    add_results_option(parser, "latency")
    args = parser.parse_args()
    if args.windows < 2 or not args.speed > 0 or (args.block_ms is not None and not args.block_ms > 0):
        parser.error("--windows must be >= 2, --speed and --block-ms > 0")
    with recorded("latency", args, packages=("scipy", "pylsl", "ai-edge-litert", "tensorflow-cpu")):
        report(args, run(args))


def report(args: argparse.Namespace, records: dict) -> None:
    """Print the figures of one run."""
    figures = analyse(records, args.speed)
    if not figures:
        raise SystemExit("error: no prediction was received")
    health = records["health"]
    print(f"latency.windows={figures['total'].size}")
    print(f"latency.speed={args.speed:g}")
    print(
        f"latency.replay_block_ms={records['block_ms']:g}"
        if records["block_ms"]
        else "latency.replay_tick=as_samples_fall_due"
    )
    print(f"latency.backend={args.backend}")
    print(f"latency.sinks={'broadcaster' if args.bare else 'lsl_outlet,recorder,broadcaster'}")
    for name in ("total", "from_push"):
        values = figures[name] * 1e3
        for label, value in (
            ("p50", np.percentile(values, 50)),
            ("p95", np.percentile(values, 95)),
            ("p99", np.percentile(values, 99)),
            ("max", values.max()),
            ("mean", values.mean()),
        ):
            print(f"latency.{name}_{label}_ms={value:.2f}")
    print(f"latency.first_window_total_ms={figures['total'][0] * 1e3:.2f}")
    pauses = records["gc_pauses"]
    # A window waited for a full collection when one ran between its sample falling due and its receipt.
    collected = [
        bool(((pauses[:, 0] + pauses[:, 1] > due) & (pauses[:, 0] < received)).any())
        for due, received in zip(figures["due"], figures["received"], strict=True)
    ]
    slowest = np.argsort(figures["total"])[::-1][:SLOWEST_SHOWN]
    print(
        "latency.slowest_total_ms="
        + ",".join(
            f"{figures['total'][k] * 1e3:.1f}@window{int(figures['window'][k])}"
            + ("(gc)" if collected[k] else "")
            for k in slowest
        )
    )
    print(f"latency.windows_over_goal={int((figures['total'] * 1e3 > GOAL_P99_MS).sum())}")
    print(f"latency.gc_full_collections={len(pauses)}")
    if len(pauses):
        print(f"latency.gc_full_pause_max_ms={pauses[:, 1].max() * 1e3:.1f}")
    print(f"latency.windows_waiting_for_a_full_gc={sum(collected)}")
    for name in STAGES:
        values = figures[name] * 1e3
        print(f"latency.{name}_p50_ms={np.percentile(values, 50):.3f}")
        print(f"latency.{name}_p99_ms={np.percentile(values, 99):.3f}")
        print(f"latency.{name}_max_ms={values.max():.3f}")
    print(f"latency.stream_time_vs_replay_stamp_max_us={np.abs(figures['stamp_error']).max() * 1e6:.1f}")
    print(
        f"latency.last_sample_vs_stream_time_max_us={np.abs(figures['last_sample_offset']).max() * 1e6:.1f}"
    )
    print(f"latency.sample_numbering_consistent={bool(figures['numbering_ok'].all())}")
    print(f"latency.fmri_waited_max_s={figures['fmri_waited'].max():g}")
    print(f"latency.dropped_windows={health['windows']['dropped']}")
    print(f"latency.eeg_gaps={health['streams']['eeg']['gaps']}")
    p99 = np.percentile(figures["total"], 99) * 1e3
    verdict = "met" if p99 <= GOAL_P99_MS else "NOT met"
    if args.speed != 1:
        verdict += " (not a real-time run: indicative only)"
    print(f"goal: p99 <= {GOAL_P99_MS:g} ms from the LSL timestamp: {verdict}")


if __name__ == "__main__":
    main()
