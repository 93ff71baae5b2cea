"""Throughput: a 15-minute run through the whole pipeline as fast as possible, and the offline path.

The bundled surrogate sleep run (sub-27 sleep-2: 903 s, 250 Hz, 32 channels,
428 volumes at TR 2.1 s) is replayed at ``speed=math.inf`` (every sample pushed
at once) by ``benchmarks/replay_process.py`` in a child process, as the
amplifier's and the scanner's programs publish streams in a lab. It is consumed
here by the pipeline as ``run_stream.py demo`` runs it, assembled by the same
factory (``pipeline.factory.build_pipeline``): ``Acquisition`` (readers,
dejitter, windower; its queue and inlets are made large enough to hold the
whole run, so nothing is dropped) → ``Pipeline`` (11 features, the shipped
model through the ``Predictor``) → sinks (LSL prediction outlet, session
recorder in a temporary folder, websocket broadcaster) →
``viewer.server.LiveServer``, whose websocket client
(``benchmarks/feed_client_process.py``, another child process, as a viewer is)
receives every prediction (:mod:`benchmarks.children`).

Start-up is timed step by step and printed apart: imports (numpy, pylsl,
TensorFlow, FastAPI/uvicorn), the session (generated once, then read from the
cache), the model bundle, the pipeline's assembly (predictor, acquisition,
sinks), the server with its client connected, and LSL (resolving, then opening
the four streams, as ``Acquisition.resolve_seconds`` splits them).

By default the whole run is first pushed into the inlets (liblsl receives it
in its own threads) and the clock starts when acquisition starts pulling, so
the figures are the consumer's processing alone; ``--concurrent`` starts
consuming while the replay pushes instead. The run is timed to the last
prediction, ``--repeat`` times (5 by default; each run with new streams, a new
pipeline and server): the wall times of every run are printed, and every other
figure is that of the run of median wall time. Three readings:

- wall: end to end, from the first pull to the last prediction;
- consumer CPU: CPU time of the acquisition thread plus the server thread
  (pipeline, sinks, websocket sends), read from their per-thread CPU clocks
  (``Acquisition.thread``, ``LiveServer.thread``; the two threads run at once,
  so this can exceed the wall time);
- pipeline compute: the sum of every prediction's ``latency_ms`` (features +
  model + the Prediction), the processing alone.

The offline reference computes the same windows with
``pipeline.offline.extract_session`` (same windower and extractor, no LSL) and
then the live ``Predictor`` on every window, in the main thread.

``--same-process`` runs the replay and the client in threads of this process
instead (:mod:`benchmarks.in_process`); ``--profile`` runs cProfile in the
acquisition and server threads (:mod:`benchmarks.threads`) and prints the top
costs (timings are then inflated by the profiler).

Machine-readable lines start with ``throughput.``; the output goes to
``benchmarks/results/throughput.txt``.

Usage: python benchmarks/throughput.py [--run sleep-2] [--repeat 5] [--bare] [--no-server]
       [--same-process] [--concurrent] [--profile]
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from core.lsl_safety import use_project_lsl_config  # noqa: E402

use_project_lsl_config()

import keras  # noqa: E402, F401  (imported here so that start-up shows imports apart)
import pylsl  # noqa: E402, F401
import tensorflow  # noqa: E402, F401

from benchmarks.children import FeedClientProcess, ReplayProcess  # noqa: E402
from benchmarks.in_process import FeedClientThread, PipelineThread, ReplayThread  # noqa: E402
from benchmarks.options import add_model_options, benchmark_settings  # noqa: E402
from benchmarks.results_file import add_results_option, recorded  # noqa: E402
from benchmarks.threads import ThreadProfiles, thread_cpu  # noqa: E402
from features.names import FEATURE_NAMES  # noqa: E402
from model.bundle import ModelBundle, load_bundle  # noqa: E402
from model.inference import Predictor  # noqa: E402
from pipeline.factory import LivePipeline, build_pipeline  # noqa: E402
from pipeline.offline import extract_session  # noqa: E402
from pipeline.pipeline import Pipeline  # noqa: E402
from pipeline.prediction import Prediction  # noqa: E402
from recordings.recording import Recording  # noqa: E402
from recordings.session import read_session  # noqa: E402
from simulators.surrogate import BUNDLED_SUBJECT, DEMO_RUN, bundled_surrogate  # noqa: E402
from stream.acquisition import Acquisition  # noqa: E402
from stream.config import AcquisitionConfig  # noqa: E402
from viewer.app import ServerState  # noqa: E402
from viewer.server import LiveServer  # noqa: E402

IMPORTED = time.perf_counter()
GOAL_SECONDS = 0.9
QUIET_SECONDS = 0.5


class Finished:
    """A sink noting each prediction's ``latency_ms`` and when it was done (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.done: list[float] = []

    def __call__(self, prediction: Prediction) -> None:
        self.latencies.append(prediction.latency_ms)
        self.done.append(time.perf_counter())


def live_run(args: argparse.Namespace, session: Recording, bundle: ModelBundle, timings: dict) -> dict:
    """Assemble the pipeline with the factory, then start-up and the run; return the figures."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as folder:
        settings = benchmark_settings(args, record_in=None if args.bare else folder)
        # The replay pushes the whole run at once: every inlet must hold it all, the queue every window.
        config = AcquisitionConfig.for_replay(
            prefix,
            with_truth=True,
            resolve_timeout=15,
            window=settings.window,
            queue_size=4 * math.ceil(session.duration / 2.1),
            inlet_buffer_seconds=math.ceil(session.duration) + 60,
        )
        started = time.perf_counter()
        live = build_pipeline(
            settings, config, bundle=bundle, name="throughput-benchmark",
            session_info={"name": session.label, "benchmark": "throughput"},
            outlet_prefix=None if args.bare else f"{prefix}-prediction", start=False,
        )  # fmt: skip
        timings["pipeline_build"] = time.perf_counter() - started
        with live:
            return consume(args, session, live, prefix, timings)


def consume(
    args: argparse.Namespace, session: Recording, live: LivePipeline, prefix: str, timings: dict
) -> dict:
    """Serve the pipeline, replay the run into it and time its processing."""
    acquisition, pipeline = live.acquisition, live.pipeline
    finished = Finished()
    pipeline.add_sink(finished)
    server = None
    pipeline_thread = None
    if args.no_server:
        pipeline_thread = PipelineThread(pipeline)
    else:
        state = ServerState(pipeline=pipeline, bundle=live.bundle, session={"name": session.label})
        server = LiveServer(state)
    runner: threading.Thread | None = pipeline_thread
    profiles = ThreadProfiles(
        {
            "acquisition": lambda: acquisition.thread,
            "server": lambda: server.thread if server is not None else pipeline_thread,
        }
    )
    figures: dict[str, Any] = {"profiles": profiles if args.profile else None}
    with profiles if args.profile else contextlib.nullcontext():
        started = time.perf_counter()
        client: FeedClientThread | FeedClientProcess | None = None
        if pipeline_thread is not None:
            pipeline_thread.start()
        if server is not None:
            server.start()
            runner = server.thread
            url = f"ws://{server.host}:{server.port}/ws?types=prediction"
            client = FeedClientThread(url).connect() if args.same_process else FeedClientProcess(url)
        timings["server"] = time.perf_counter() - started
        started = time.perf_counter()
        player = ReplayThread(session, prefix) if args.same_process else ReplayProcess(args.run, prefix)
        try:
            with player:
                acquisition.connect()  # resolves and opens the four streams: the replay starts then
                resolving = acquisition.resolve_seconds
                timings["lsl_resolve"] = resolving
                timings["lsl_outlets_and_inlets"] = time.perf_counter() - started - resolving
                if not args.concurrent:
                    started = time.perf_counter()
                    player.wait(timeout=120)
                    wait_until_buffered(acquisition, session)
                    figures["buffering"] = time.perf_counter() - started
                run_started = time.perf_counter()
                run_started_monotonic = time.monotonic()
                acquisition.start()
                threads = {"acquisition": acquisition.thread, "pipeline": runner}
                cpu_before = {name: thread_cpu(thread) for name, thread in threads.items()}
                process_before = time.process_time()
                wait_until_quiet(player, acquisition, pipeline)
                for name, thread in threads.items():
                    figures[f"{name}_cpu"] = thread_cpu(thread) - cpu_before[name]
                figures["process_cpu"] = time.process_time() - process_before
                figures["health"] = acquisition.health()
                if client is not None:
                    client.stop()
                acquisition.stop()  # before the replay closes its outlets
        finally:
            acquisition.stop()
            if server is not None:
                server.stop()
            elif runner is not None:
                runner.join(5)
    done, latencies = finished.done, finished.latencies
    figures.update(
        windows=len(done),
        wall=done[-1] - run_started if done else math.nan,
        replay_push_done=player.done_at - run_started_monotonic,
        replay_cpu=player.cpu_seconds,
        compute=sum(latencies) / 1e3,
        first_window_ms=latencies[0] if latencies else math.nan,
        client_predictions=client.predictions if client else None,
        client_dropped=client.dropped if client else None,
        client_wall=(client.last_received - run_started_monotonic) if client else None,
        client_cpu=client.cpu_seconds if client else None,
    )
    return figures


def wait_until_buffered(acquisition: Acquisition, session: Recording, timeout: float = 60) -> None:
    """Return once the EEG inlet holds the whole run (liblsl receives it in its own threads)."""
    deadline = time.monotonic() + timeout
    while acquisition.eeg.samples_waiting() < session.n_times:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the EEG inlet holds {acquisition.eeg.samples_waiting()} of {session.n_times} samples "
                f"after {timeout:g} s"
            )
        time.sleep(0.01)
    time.sleep(0.2)  # the small streams were pushed before the EEG's end; let them land too


def wait_until_quiet(
    player: ReplayThread | ReplayProcess, acquisition: Acquisition, pipeline: Pipeline, timeout: float = 120
) -> None:
    """Return once the replay is done and neither samples nor predictions came for a while.

    A finite replay's last window never comes (it waits for a volume that is
    never acquired), so the end is recognised by quiet, not by a count.
    """
    deadline = time.monotonic() + timeout
    player.wait(timeout=timeout)
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = (acquisition.eeg.health.samples, pipeline.predictions, len(acquisition.queue))
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= QUIET_SECONDS:
            return
        time.sleep(0.01)
    print(f"warning: the run did not end within {timeout:g} s", file=sys.stderr)


def offline_run(session: Recording, bundle: ModelBundle, backend: str) -> dict:
    """The same session through ``extract_session`` and the live Predictor, in this thread."""
    predictor = Predictor(bundle, backend=backend)
    cpu, started = time.thread_time(), time.perf_counter()
    table = extract_session(session)
    extract = time.perf_counter() - started
    values = table[list(FEATURE_NAMES)].to_numpy(dtype=float)
    started = time.perf_counter()
    for row in values:
        predictor.predict(row)
    predict = time.perf_counter() - started
    return {
        "windows": len(table),
        "extract": extract,
        "predict": predict,
        "cpu": time.thread_time() - cpu,
    }


def main() -> None:
    """Run the live and offline measurements and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", default=DEMO_RUN, help=f"bundled surrogate run (default {DEMO_RUN}, 903 s)")
    add_model_options(parser)
    parser.add_argument("--bare", action="store_true", help="no LSL prediction outlet nor session recorder")
    parser.add_argument(
        "--no-server", action="store_true", help="no web server nor client: the pipeline in its own thread"
    )
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="replay and websocket client in threads of this process (default: child processes, "
        "as the amplifier's and scanner's programs and the viewers are in a lab)",
    )
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="start consuming as soon as the streams are connected, while the replay pushes "
        "(default: the run is pushed into the inlets first, so only the consumer is timed)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="live runs (default 5); figures are those of the run of median wall time",
    )
    parser.add_argument("--no-offline", action="store_true", help="skip the offline reference")
    parser.add_argument("--profile", action="store_true", help="cProfile the acquisition and server threads")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile")
    add_results_option(parser, "throughput")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    packages = ("scipy", "pylsl", "ai-edge-litert", "tensorflow-cpu", "uvicorn")
    with recorded("throughput", args, packages=packages):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """Start-up, the live runs and the offline reference; print the figures."""
    timings = {"imports": IMPORTED - STARTED}
    started = time.perf_counter()
    session = read_session(bundled_surrogate((args.run,)), BUNDLED_SUBJECT, args.run)
    timings["session"] = time.perf_counter() - started
    started = time.perf_counter()
    bundle = load_bundle(args.bundle)
    timings["model_load"] = time.perf_counter() - started
    runs = []
    for _ in range(args.repeat):
        run_timings = dict(timings)
        runs.append((live_run(args, session, bundle, run_timings), run_timings))
    walls = sorted(run["wall"] for run, _ in runs)
    # Every figure below is from the run of median wall time; start-up from the first run.
    live = sorted(runs, key=lambda run: run[0]["wall"])[(len(runs) - 1) // 2][0]
    timings = runs[0][1]

    print(f"throughput.session={session.label}")
    print(f"throughput.stream_seconds={session.duration:g}")
    for name, seconds in timings.items():
        print(f"throughput.startup_{name}_s={seconds:.3f}")
    print(f"throughput.startup_total_s={sum(timings.values()):.3f}")
    print(f"throughput.backend={args.backend}")
    sinks = ([] if args.bare else ["lsl_outlet", "recorder"]) + ([] if args.no_server else ["feed"])
    print(f"throughput.sinks={','.join(sinks) or 'none'}")
    windows, wall = live["windows"], live["wall"]
    print(f"throughput.runs={len(runs)}")
    print(f"throughput.wall_s_each={','.join(f'{w:.3f}' for w in walls)}")
    print(f"throughput.wall_s_min={walls[0]:.3f}")
    print(f"throughput.wall_s_max={walls[-1]:.3f}")
    print(f"throughput.windows={windows}")
    print(f"throughput.wall_s={wall:.3f}")
    print(f"throughput.windows_per_second={windows / wall:.0f}")
    print(f"throughput.x_real_time={session.duration / wall:.0f}")
    print(f"throughput.consumer_cpu_s={live['acquisition_cpu'] + live['pipeline_cpu']:.3f}")
    print(f"throughput.acquisition_thread_cpu_s={live['acquisition_cpu']:.3f}")
    print(f"throughput.pipeline_thread_cpu_s={live['pipeline_cpu']:.3f}")
    print(f"throughput.pipeline_compute_s={live['compute']:.3f}")
    print(f"throughput.pipeline_compute_ms_per_window={live['compute'] / windows * 1e3:.3f}")
    print(f"throughput.first_window_ms={live['first_window_ms']:.2f}")
    print(f"throughput.replay={'thread' if args.same_process else 'process'}")
    print(f"throughput.run_buffered_before_start={'no' if args.concurrent else 'yes'}")
    if "buffering" in live:
        print(f"throughput.buffering_s={live['buffering']:.3f}")
    if args.concurrent:
        print(f"throughput.replay_done_after_s={live['replay_push_done']:.3f}")
    print(f"throughput.replay_cpu_s={live['replay_cpu']:.3f}")
    if live["client_predictions"] is not None:
        print(f"throughput.client={'thread' if args.same_process else 'process'}")
        print(f"throughput.client_cpu_s={live['client_cpu']:.3f}")
        print(f"throughput.client_predictions={live['client_predictions']}")
        print(f"throughput.client_dropped={live['client_dropped']}")
        print(f"throughput.client_last_received_s={live['client_wall']:.3f}")
    print(f"throughput.process_cpu_s={live['process_cpu']:.3f}")
    health = live["health"]
    print(f"throughput.dropped_windows={health['windows']['dropped']}")
    print(f"throughput.eeg_gaps={health['streams']['eeg']['gaps']}")
    print(f"throughput.eeg_dropped_samples={health['streams']['eeg']['dropped_samples']}")

    if not args.no_offline:
        offline = offline_run(session, bundle, args.backend)
        total = offline["extract"] + offline["predict"]
        print(f"throughput.offline_windows={offline['windows']}")
        print(f"throughput.offline_extract_s={offline['extract']:.3f}")
        print(f"throughput.offline_predict_s={offline['predict']:.3f}")
        print(f"throughput.offline_total_s={total:.3f}")
        print(f"throughput.offline_cpu_s={offline['cpu']:.3f}")
        print(f"throughput.offline_x_real_time={session.duration / total:.0f}")
    print(
        f"goal: a 15-min run in <= {GOAL_SECONDS:g} s of processing (median wall): "
        f"{'met' if wall <= GOAL_SECONDS else 'NOT met'} "
        f"({sum(w <= GOAL_SECONDS for w in walls)} of {len(walls)} runs within it)"
    )
    profiles = live["profiles"]
    if profiles is not None:
        for name in profiles.profiles:
            print(f"\n--- cProfile, {name} thread, top {args.top} by own time ---")
            print(profiles.top_costs(name, args.top))


if __name__ == "__main__":
    main()
