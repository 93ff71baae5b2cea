"""Throughput: a 15-minute run through the whole pipeline as fast as possible, and the offline path.

The bundled surrogate sleep run (sub-27 sleep-2: 903 s, 250 Hz, 32 channels,
428 volumes at TR 2.1 s) is replayed at ``speed=math.inf`` (every sample pushed
at once) by ``benchmarks/replay_process.py`` in a child process, as the
amplifier's and the scanner's programs publish streams in a lab. It is consumed
here by the pipeline as ``run_stream.py demo`` runs it: ``Acquisition``
(readers, dejitter, windower; its queue and inlets are made large enough to
hold the whole run, so nothing is dropped) → ``Pipeline`` (11 features, the
shipped model through the ``Predictor``) → sinks (LSL prediction outlet,
session recorder in a temporary folder, websocket broadcaster) →
``viewer.server.LiveServer``, whose websocket client
(``benchmarks/feed_client_process.py``, another child process, as a viewer is)
receives every prediction.

Start-up is timed step by step and printed apart: imports (numpy, pylsl,
TensorFlow, FastAPI/uvicorn), the session (generated once, then read from the
cache), the model bundle, the predictor, the server with its client connected,
and LSL (resolving and opening the four streams).

By default the whole run is first pushed into the inlets (liblsl receives it
in its own threads) and the clock starts when acquisition starts pulling, so
the figures are the consumer's processing alone; ``--concurrent`` starts
consuming while the replay pushes instead. The run is timed to the last
prediction, ``--repeat`` times (5 by default; each run with new streams, a new
acquisition, pipeline and server): the wall times of every run are printed,
and every other figure is that of the run of median wall time. Three readings:

- wall: end to end, from the first pull to the last prediction;
- consumer CPU: CPU time of the acquisition thread plus the server thread
  (pipeline, sinks, websocket sends), read from their per-thread CPU clocks
  (the two threads run at once, so this can exceed the wall time);
- pipeline compute: the sum of every prediction's ``latency_ms`` (features +
  model + the Prediction), the processing alone.

The offline reference computes the same windows with
``pipeline.offline.extract_session`` (same windower and extractor, no LSL) and
then the live ``Predictor`` on every window, in the main thread.

``--same-process`` runs the replay and the client in threads of this process
instead; ``--profile`` runs cProfile in the acquisition and server threads and
prints the top costs (timings are then inflated by the profiler).

Machine-readable lines start with ``throughput.``.

Usage: python benchmarks/throughput.py [--run sleep-2] [--repeat 5] [--bare] [--no-server]
       [--same-process] [--concurrent] [--profile]
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pstats  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from core.lsl_safety import use_project_lsl_config  # noqa: E402

use_project_lsl_config()

import keras  # noqa: E402, F401  (imported here so that start-up shows imports apart)
import pylsl  # noqa: E402, F401
import tensorflow  # noqa: E402, F401
from websockets.sync.client import connect  # noqa: E402

import stream.acquisition  # noqa: E402
from benchmarks.options import add_model_options  # noqa: E402
from features.names import FEATURE_NAMES  # noqa: E402
from model.bundle import load_bundle  # noqa: E402
from model.inference import Predictor  # noqa: E402
from pipeline.lsl_output import PredictionOutlet  # noqa: E402
from pipeline.offline import extract_session  # noqa: E402
from pipeline.pipeline import Pipeline  # noqa: E402
from pipeline.recorder import SessionRecorder  # noqa: E402
from recordings.session import read_session  # noqa: E402
from simulators.replay import SessionPlayer  # noqa: E402
from simulators.surrogate import BUNDLED_SUBJECT, DEMO_RUN, bundled_surrogate  # noqa: E402
from stream.acquisition import Acquisition  # noqa: E402
from stream.config import AcquisitionConfig  # noqa: E402
from viewer.app import ServerState  # noqa: E402
from viewer.server import LiveServer  # noqa: E402

IMPORTED = time.perf_counter()
GOAL_SECONDS = 0.9
QUIET_SECONDS = 0.5


def time_resolving(seconds: list[float]) -> None:
    """Add the time the acquisition spends resolving streams (``find_stream``) to ``seconds[0]``."""
    find_stream = stream.acquisition.find_stream

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return find_stream(*args, **kwargs)
        finally:
            seconds[0] += time.perf_counter() - started

    stream.acquisition.find_stream = timed


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds used so far by a live thread (its POSIX per-thread CPU clock)."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class TimedPlayer(SessionPlayer):
    """The project's replay, noting its own CPU time and when it pushed."""

    cpu_seconds = math.nan
    pushing: tuple[float, float] = (math.nan, math.nan)

    def _run(self) -> None:
        started = time.thread_time()
        try:
            super()._run()
        finally:
            self.cpu_seconds = time.thread_time() - started

    def _replay_once(self, start_clock: float, offset: float, volume_offset: int) -> None:
        began = time.perf_counter()
        super()._replay_once(start_clock, offset, volume_offset)
        self.pushing = (began, time.perf_counter())


class ChildProcess:
    """A helper script of this folder in a child process, reporting one JSON object per line.

    Parameters
    ----------
    script : str
        File name in ``benchmarks/``.
    arguments : list of str
        Its arguments.
    """

    def __init__(self, script: str, arguments: list[str]) -> None:
        self.name = script
        self._process = subprocess.Popen(
            [sys.executable, str(PROJECT / "benchmarks" / script), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reports: list[dict] = []
        self._reported = threading.Condition()
        threading.Thread(target=self._read_reports, name=f"{script}-reports", daemon=True).start()

    def _read_reports(self) -> None:
        for line in self._process.stdout:
            with self._reported:
                self._reports.append(json.loads(line))
                self._reported.notify_all()
        with self._reported:
            self._reports.append({"ended": self._process.wait()})
            self._reported.notify_all()

    def report(self, number: int, timeout: float) -> dict:
        """The ``number``-th report (from 0), waiting up to ``timeout`` seconds for it."""
        with self._reported:
            if not self._reported.wait_for(lambda: len(self._reports) > number, timeout):
                raise TimeoutError(f"no report from {self.name} within {timeout:g} s")
            report = self._reports[number]
        if "ended" in report:
            raise RuntimeError(f"{self.name} ended early (exit code {report['ended']})")
        return report

    def finish(self) -> None:
        """Close the child's standard input (its signal to stop) and wait for it to exit."""
        self._process.stdin.close()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class ReplayProcess(ChildProcess):
    """``replay_process.py``: the streams come from another program, as in a lab.

    Parameters
    ----------
    run : str
        Bundled surrogate run.
    prefix : str
        Stream-name prefix (unique to this benchmark run).
    """

    def __init__(self, run: str, prefix: str) -> None:
        super().__init__("replay_process.py", [run, prefix])
        self.cpu_seconds = math.nan
        self.done_at = math.nan  # time.monotonic() when everything was pushed
        if not self.report(0, timeout=120).get("ready"):
            raise RuntimeError("the replay process did not start")

    def wait(self, timeout: float) -> None:
        """Return once the whole run is pushed."""
        report = self.report(1, timeout)
        if report["error"]:
            raise RuntimeError(f"the replay failed: {report['error']}")
        self.cpu_seconds, self.done_at = report["cpu_s"], report["done_monotonic"]

    def __enter__(self) -> ReplayProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.finish()  # the child closes its outlets and exits


class FeedClientProcess(ChildProcess):
    """``feed_client_process.py``: the websocket client in another process, as a viewer is.

    Parameters
    ----------
    url : str
        The feed's websocket URL.
    """

    def __init__(self, url: str) -> None:
        super().__init__("feed_client_process.py", [url])
        self.predictions = self.dropped = 0
        self.last_received = self.cpu_seconds = math.nan  # time.monotonic(), seconds
        if not self.report(0, timeout=30).get("connected"):
            raise RuntimeError("the websocket client did not connect")

    def stop(self) -> None:
        """Stop the client and read its counts."""
        self.finish()
        final = self.report(1, timeout=5)
        self.predictions, self.dropped = final["predictions"], final["dropped"]
        self.last_received, self.cpu_seconds = final["last_monotonic"], final["cpu_s"]


class FeedClient(threading.Thread):
    """A websocket client counting predictions (and ``drops`` notices) until told to stop."""

    def __init__(self, url: str) -> None:
        super().__init__(name="feed-client", daemon=True)
        self.url = url
        self.predictions = 0
        self.dropped = 0
        self.last_received = math.nan  # time.monotonic()
        self.connected = threading.Event()
        self.stop_requested = threading.Event()
        self.error: BaseException | None = None

    def stop(self) -> None:
        """Stop receiving."""
        self.stop_requested.set()
        self.join(5)

    def run(self) -> None:
        """Receive until a stop is requested."""
        try:
            with connect(self.url, open_timeout=10, max_size=None) as feed:
                json.loads(feed.recv(timeout=10))  # the "session connected" message
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


def profiled(target, profile: cProfile.Profile):
    """``target`` run under ``profile`` (in whatever thread calls it)."""
    return lambda *args: profile.runcall(target, *args)


def top_costs(profile: cProfile.Profile, count: int) -> str:
    """The ``count`` functions with the most own time, as pstats prints them."""
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(count)
    return out.getvalue()


def live_run(args: argparse.Namespace, session, bundle, timings: dict) -> dict:
    """Start-up of the live parts, then the run; return the figures."""
    started = time.perf_counter()
    predictor = Predictor(bundle, backend=args.backend)
    timings["model_compile"] = time.perf_counter() - started

    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    # The replay pushes the whole run at once: every inlet must hold it all, the queue every window.
    config = AcquisitionConfig.for_replay(
        prefix,
        with_truth=True,
        resolve_timeout=15,
        queue_size=4 * math.ceil(session.duration / 2.1),
        inlet_buffer_seconds=math.ceil(session.duration) + 60,
    )
    acquisition = Acquisition(config)
    pipeline = Pipeline(acquisition, predictor)
    done: list[float] = []
    profiles = {"acquisition": cProfile.Profile(), "server": cProfile.Profile()}
    if args.profile:
        acquisition._run = profiled(acquisition._run, profiles["acquisition"])
    figures: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        recorder = None
        if not args.bare:
            pipeline.add_sink(PredictionOutlet(bundle.label_names, prefix=f"{prefix}-prediction"))
            recorder = SessionRecorder(folder, "throughput-benchmark", {"model": bundle.identity})
            pipeline.add_sink(recorder)
        latencies: list[float] = []
        pipeline.add_sink(lambda p: (latencies.append(p.latency_ms), done.append(time.perf_counter())))

        started = time.perf_counter()
        client = None
        if args.no_server:
            runner = PipelineThread(pipeline)
            if args.profile:
                runner.run = profiled(runner.run, profiles["server"])
            runner.start()
            server = None
        else:
            state = ServerState(pipeline=pipeline, bundle=bundle, session={"name": session.label})
            server = LiveServer(state)
            if args.profile:
                server._run = profiled(server._run, profiles["server"])
            server.start()
            runner = server._thread
            url = f"ws://{server.host}:{server.port}/ws?types=prediction"
            if args.same_process:
                client = FeedClient(url)
                client.start()
                client.connected.wait(15)
                if client.error is not None:
                    raise RuntimeError(f"the websocket client failed: {client.error}") from client.error
            else:
                client = FeedClientProcess(url)
        timings["server"] = time.perf_counter() - started

        started = time.perf_counter()
        if args.same_process:
            player = TimedPlayer(
                session, speed=math.inf, loop=False, with_truth=True, prefix=prefix, wait_for_consumers=30
            )
        else:
            player = ReplayProcess(args.run, prefix)
        try:
            with player:
                resolving = [0.0]
                time_resolving(resolving)
                acquisition.connect()  # resolves and opens the four streams: the replay starts then
                timings["lsl_resolve"] = resolving[0]
                timings["lsl_outlets_and_inlets"] = time.perf_counter() - started - resolving[0]
                if not args.concurrent:
                    started = time.perf_counter()
                    player.wait(timeout=120)
                    wait_until_buffered(acquisition, session)
                    figures["buffering"] = time.perf_counter() - started
                run_started = time.perf_counter()
                run_started_monotonic = time.monotonic()
                acquisition.start()
                cpu_before = {"acquisition": thread_cpu(acquisition._thread), "pipeline": thread_cpu(runner)}
                client_cpu_before = thread_cpu(client) if isinstance(client, FeedClient) else 0.0
                process_before = time.process_time()
                wait_until_quiet(player, acquisition, pipeline)
                cpu = {"acquisition": thread_cpu(acquisition._thread), "pipeline": thread_cpu(runner)}
                figures["process_cpu"] = time.process_time() - process_before
                figures.update({f"{k}_cpu": cpu[k] - cpu_before[k] for k in cpu})
                figures["health"] = acquisition.health()
                if client is not None:
                    if isinstance(client, FeedClient):
                        figures["client_cpu"] = thread_cpu(client) - client_cpu_before
                    client.stop()
                    if not isinstance(client, FeedClient):
                        figures["client_cpu"] = client.cpu_seconds
                acquisition.stop()  # before the replay closes its outlets
        finally:
            acquisition.stop()
            if server is not None:
                server.stop()
            else:
                runner.join(5)
            if recorder is not None:
                recorder.close()
    if args.same_process:
        replay_push_done = player.pushing[1] - run_started
    else:
        replay_push_done = player.done_at - run_started_monotonic
    figures.update(
        windows=len(done),
        wall=done[-1] - run_started if done else math.nan,
        replay_push_done=replay_push_done,
        replay_cpu=player.cpu_seconds,
        compute=sum(latencies) / 1e3,
        first_window_ms=latencies[0] if latencies else math.nan,
        client_predictions=client.predictions if client else None,
        client_dropped=client.dropped if client else None,
        client_wall=(client.last_received - run_started_monotonic) if client else None,
        profiles=profiles if args.profile else None,
    )
    return figures


def wait_until_buffered(acquisition: Acquisition, session, timeout: float = 60) -> None:
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


def wait_until_quiet(player, acquisition: Acquisition, pipeline: Pipeline, timeout: float = 120) -> None:
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


def offline_run(session, bundle, backend: str) -> dict:
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
    args = parser.parse_args()

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
    if live["profiles"]:
        for name, profile in live["profiles"].items():
            print(f"\n--- cProfile, {name} thread, top {args.top} by own time ---")
            print(top_costs(profile, args.top))


if __name__ == "__main__":
    main()
