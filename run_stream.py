#!/usr/bin/env python
"""Command-line entry point: replay sessions, generate surrogate data, run the demo.

Run ``python run_stream.py --help`` or ``python run_stream.py COMMAND --help``.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from pathlib import Path

from stream.lsl_safety import use_project_lsl_config


def _speed(text: str) -> float:
    if text.lower() in {"max", "inf", "fast"}:
        return math.inf
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be > 0 or 'max', got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="run_stream.py",
        description="Real-time EEG + fMRI sleep-state classification over LSL.",
    )
    parser.add_argument(
        "--lsl-config",
        metavar="FILE",
        help="a lab's lsl_api.cfg (default: the project's loopback-only configuration)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = commands.add_parser(
        "replay",
        help="publish a recorded or surrogate session as LSL streams",
        description="Publish a ds003768-format session as LSL streams (EEG, fMRI, triggers, truth).",
    )
    replay.add_argument(
        "--session",
        default="surrogate",
        help="'surrogate' (the bundled surrogate subject) or a ds003768-style dataset folder",
    )
    replay.add_argument(
        "--subject", default=None, help="subject label (default: 27 for the surrogate, else 01)"
    )
    replay.add_argument("--run", default="sleep-2", help="run, e.g. sleep-1 or rest-2 (default: sleep-2)")
    replay.add_argument(
        "--speed", type=_speed, default=1.0, help="1 = real time; 10 = ten times faster; 'max'"
    )
    replay.add_argument("--loop", action="store_true", help="start again at the end")
    replay.add_argument(
        "--fmri-lag", type=float, default=0.0, metavar="S", help="fMRI delivery delay in seconds"
    )
    replay.add_argument(
        "--fmri-stamp-error",
        type=float,
        default=0.0,
        metavar="S",
        help="SD of an error added to fMRI timestamps (a scanner-side clock), seconds",
    )
    replay.add_argument("--with-truth", action="store_true", help="also publish the scored stages (Markers)")
    replay.add_argument("--prefix", default=None, help="stream-name prefix (default: the session label)")
    replay.add_argument("--mask", default=None, help="brain mask NIfTI for the region means")
    replay.add_argument("--atlas", default=None, help="atlas label NIfTI for the region means")
    replay.add_argument(
        "--sfreq", type=float, default=250.0, help="EEG rate of the surrogate (default 250 Hz)"
    )
    replay.add_argument(
        "--wait-for-consumers",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a consumer on every stream before starting",
    )

    surrogate = commands.add_parser(
        "surrogate",
        help="write surrogate runs in the ds003768 layout",
        description="Write surrogate runs (synthetic EEG and BOLD, real scoring) in the ds003768 layout.",
    )
    surrogate.add_argument("-o", "--output", required=True, help="dataset folder to write")
    surrogate.add_argument("--subject", default="27", help="real subject whose scoring is followed")
    surrogate.add_argument("--runs", nargs="+", default=["rest-1", "sleep-2"], help="runs to write")
    surrogate.add_argument("--sfreq", type=float, default=250.0, help="EEG rate in Hz (real data: 5000)")
    surrogate.add_argument("--seed", type=int, default=0)
    surrogate.add_argument("--sample-index", action="store_true", help="add a SampleIndex test channel")

    extract = commands.add_parser(
        "extract",
        help="write the feature table (one row per window) of sessions",
        description=(
            "Compute the 11 features of every window of a session, a subject or a whole "
            "ds003768-style dataset, with the same code as live acquisition; write CSV or Parquet."
        ),
    )
    extract.add_argument("session", help="'surrogate' or a ds003768-style dataset folder")
    extract.add_argument("-o", "--output", required=True, help="output file, .csv or .parquet")
    extract.add_argument("--subject", default=None, help="only this subject (default: all)")
    extract.add_argument("--run", default=None, help="only this run, e.g. sleep-1 (default: all)")
    extract.add_argument(
        "--power-scale", choices=("absolute", "log", "relative"), default="absolute", help="band power scale"
    )
    extract.add_argument(
        "--coherence", choices=("msc", "pearson"), default="msc", help="coherence definition"
    )
    extract.add_argument("--reference", choices=("recorded", "average"), default="recorded")
    extract.add_argument(
        "--highpass", type=float, default=None, metavar="HZ", help="causal high-pass of the EEG, e.g. 0.5"
    )

    train = commands.add_parser(
        "train",
        help="train the fusion model on a feature table, with grouped cross-validation and baselines",
        description=(
            "Train the CNN+RNN fusion model on a feature table (from 'extract', or the origin app's "
            "per-run CSV). Subject-grouped k-fold cross-validation of the model and its baselines, then a "
            "final model on a train/validation/test split by subject; writes the bundle and its report."
        ),
    )
    train.add_argument("features", help="feature table (.csv or .parquet)")
    train.add_argument("-o", "--output", required=True, help="bundle folder to write")
    train.add_argument("--labels", choices=("wake-sleep", "stages", "task"), default="wake-sleep")
    train.add_argument("--folds", type=int, default=5, help="grouped cross-validation folds (0: none)")
    train.add_argument(
        "--context", type=int, default=8, help="K, windows per prediction (1: the origin's model)"
    )
    train.add_argument("--epochs", type=int, default=60)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--note", default="", help="a sentence stored in the bundle and its report")

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a model bundle on a feature table, beside grouped cross-validated baselines",
        description=(
            "Score a bundle on the subjects of a feature table it was not trained on, and cross-validate "
            "the same architecture and the baselines on the table by subject, in the same run."
        ),
    )
    evaluate.add_argument("model", help="bundle folder")
    evaluate.add_argument("features", help="feature table (.csv or .parquet)")
    evaluate.add_argument("-o", "--output", default=None, help="report folder (default: MODEL/evaluation)")
    evaluate.add_argument("--folds", type=int, default=5)

    demo = commands.add_parser(
        "demo",
        help="the whole pipeline on the bundled surrogate session: replay, windows, features, model, feed",
        description=(
            "Replay the bundled surrogate session (with truth, looping) over LSL, consume it, compute the "
            "features, classify every window with the shipped model, and serve the predictions (websocket "
            "feed, REST API, LSL outlet). Ctrl-C stops everything."
        ),
    )
    demo.add_argument("--speed", type=_speed, default=1.0, help="replay speed (default: real time)")
    demo.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
    demo.add_argument("--model", default=None, help="model bundle (default: the shipped one)")
    demo.add_argument(
        "--record",
        default="sessions",
        metavar="DIR",
        help="where session folders are written (default: sessions/)",
    )
    return parser


def _load_session(args: argparse.Namespace):
    from simulators.session import read_session
    from simulators.surrogate import BUNDLED_SUBJECT, bundled_surrogate

    if args.session == "surrogate":
        root = bundled_surrogate((args.run,), sfreq=args.sfreq)
        subject = args.subject or BUNDLED_SUBJECT
    else:
        root = Path(args.session)
        if not root.is_dir():
            raise SystemExit(f"error: dataset folder {root} does not exist")
        subject = args.subject or "01"
    return read_session(root, subject, args.run, mask=args.mask, atlas=args.atlas)


def _replay(args: argparse.Namespace) -> int:
    from simulators.replay import SessionPlayer

    session = _load_session(args)
    player = SessionPlayer(
        session,
        speed=args.speed,
        loop=args.loop,
        fmri_lag=args.fmri_lag,
        with_truth=args.with_truth,
        prefix=args.prefix,
        wait_for_consumers=args.wait_for_consumers,
        fmri_stamp_error=args.fmri_stamp_error,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with player:
        print(
            f"Replaying {session.label}: {session.duration:.0f} s of EEG at {session.sfreq:g} Hz, "
            f"{session.n_volumes} volumes (TR {session.tr:g} s), speed {args.speed:g}",
            flush=True,
        )
        for kind, identity in player.streams.items():
            print(
                f"  {kind:<8} name={identity.name}  type={identity.stype}  source_id={identity.source_id}",
                flush=True,
            )
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while player.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("Stopping.", flush=True)
    if player.error is not None:
        print(f"error: replay failed: {player.error}", file=sys.stderr)
        return 1
    print(f"Done: {player.samples_pushed} EEG samples pushed.", flush=True)
    return 0


def _surrogate(args: argparse.Namespace) -> int:
    from simulators.surrogate import write_surrogate_run

    for run in args.runs:
        paths = write_surrogate_run(
            args.output,
            args.subject,
            run,
            sfreq=args.sfreq,
            seed=args.seed,
            sample_index_channel=args.sample_index,
        )
        print(f"wrote {paths.eeg_header} and {paths.bold}", flush=True)
    return 0


def _extract(args: argparse.Namespace) -> int:
    from features.config import FeatureConfig
    from features.offline import extract_dataset, write_table
    from simulators.bids import list_runs, normalise_subject, parse_run
    from simulators.surrogate import BUNDLED_RUNS, bundled_surrogate

    output = Path(args.output)
    if output.suffix not in (".csv", ".parquet"):
        raise SystemExit(f"error: {output}: the output must end in .csv or .parquet")
    if args.session == "surrogate":
        root = bundled_surrogate((args.run,) if args.run else BUNDLED_RUNS)
    else:
        root = Path(args.session)
        if not root.is_dir():
            raise SystemExit(f"error: dataset folder {root} does not exist")
    runs = list_runs(root)
    if args.subject is not None:
        runs = [r for r in runs if r.subject == normalise_subject(args.subject)]
    if args.run is not None:
        task, number = parse_run(args.run)
        runs = [r for r in runs if (r.task, r.run) == (task, number)]
    if not runs:
        raise SystemExit(f"error: no run in {root} matches subject={args.subject} run={args.run}")
    from stream.config import WindowConfig

    config = FeatureConfig(power_scale=args.power_scale, coherence=args.coherence, reference=args.reference)
    table = extract_dataset(
        root, runs, feature_config=config, window_config=WindowConfig(highpass_hz=args.highpass)
    )
    write_table(table, output)
    print(f"wrote {len(table)} windows of {len(runs)} run(s) to {output}", flush=True)
    return 0


def _train(args: argparse.Namespace) -> int:
    from model.dataset import read_feature_table
    from model.training import TrainConfig, train_and_report

    table = read_feature_table(args.features)
    config = TrainConfig(
        labels=args.labels, context=args.context, folds=args.folds, epochs=args.epochs, seed=args.seed
    )
    bundle = train_and_report(table, config, args.output, note=args.note)
    print(f"wrote the bundle and its report to {bundle.path}", flush=True)
    print((Path(args.output) / "report.md").read_text(), flush=True)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from model.bundle import load_bundle
    from model.dataset import read_feature_table
    from model.training import evaluate_bundle

    bundle = load_bundle(args.model)
    output = Path(args.output) if args.output else Path(args.model) / "evaluation"
    evaluate_bundle(bundle, read_feature_table(args.features), output, folds=args.folds)
    print(f"wrote {output / 'report.md'}", flush=True)
    print((output / "report.md").read_text(), flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    import uuid
    from dataclasses import asdict

    from model.bundle import load_bundle
    from model.inference import Predictor
    from simulators.replay import SessionPlayer
    from simulators.session import read_session
    from simulators.surrogate import BUNDLED_SUBJECT, DEMO_RUN, bundled_surrogate
    from stream.acquisition import Acquisition
    from stream.config import AcquisitionConfig
    from stream.pipeline import Pipeline
    from stream.recorder import SessionRecorder
    from viewer.app import ServerState
    from viewer.lsl_output import PredictionOutlet
    from viewer.server import LiveServer, check_port

    if math.isinf(args.speed):
        raise SystemExit("error: the demo loops forever: give a finite --speed")
    try:
        check_port("127.0.0.1", args.port)
    except OSError as err:
        raise SystemExit(f"error: {err} with --port") from None
    print("Preparing the bundled surrogate session (generated once, then cached)...", flush=True)
    session = read_session(bundled_surrogate((DEMO_RUN,)), BUNDLED_SUBJECT, DEMO_RUN)
    bundle = load_bundle(args.model or Path(__file__).parent / "model" / "default_bundle")
    prefix = f"demo-{uuid.uuid4().hex[:6]}"
    # The replay waits for the pipeline to connect, so the demo starts at the session's beginning.
    player = SessionPlayer(
        session, speed=args.speed, loop=True, with_truth=True, prefix=prefix, wait_for_consumers=30
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with player:
        acquisition = Acquisition(AcquisitionConfig.for_replay(prefix, with_truth=True, resolve_timeout=15))
        with acquisition:
            pipeline = Pipeline(acquisition, Predictor(bundle))
            outlet = PredictionOutlet(bundle.label_names, prefix=f"{prefix}-prediction")
            recorder = SessionRecorder(
                args.record,
                f"demo-{session.label}",
                {"replay": {"session": session.label, "prefix": prefix, "speed": args.speed},
                 "acquisition": asdict(acquisition.config), "model": bundle.identity},
            )  # fmt: skip
            pipeline.add_sink(outlet)
            pipeline.add_sink(recorder)
            pipeline.add_sink(_print_prediction)
            state = ServerState(
                pipeline=pipeline,
                bundle=bundle,
                config={"acquisition": asdict(acquisition.config), "speed": args.speed},
                session={"name": session.label, "replay_prefix": prefix, "speed": args.speed},
            )
            server = LiveServer(state, port=args.port)
            print(f"Replaying {session.label} at {args.speed:g}x as {prefix}-EEG/-fMRI/-Triggers/-Truth")
            print(f"Predictions on LSL: {outlet.names[0]}, {outlet.names[1]}")
            print(f"Recording the session in {recorder.folder}", flush=True)
            with server:
                print(f"Server ready: {server.url}  (websocket feed ws://{server.host}:{server.port}/ws, "
                      f"REST {server.url}/api/status, API docs {server.url}/docs)")  # fmt: skip
                print("The first prediction comes after 30 s of stream time. Ctrl-C to stop.", flush=True)
                try:
                    while player.is_running and server.error is None:
                        time.sleep(0.2)
                except KeyboardInterrupt:
                    print("Stopping.", flush=True)
            print(f"Session recorded in {recorder.close()}", flush=True)
    return 0


def _print_prediction(prediction) -> None:
    probabilities = " ".join(f"{name}={p:.2f}" for name, p in prediction.probabilities.items())
    truth = f"  scored={prediction.stage}" if prediction.stage else ""
    flag = "" if prediction.quality.get("usable") else "  (window flagged)"
    print(
        f"window {prediction.window:5d}  predicted={prediction.label:<6} {probabilities}{truth}{flag}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    use_project_lsl_config(args.lsl_config)
    if args.command == "replay":
        return _replay(args)
    if args.command == "surrogate":
        return _surrogate(args)
    if args.command == "extract":
        return _extract(args)
    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "demo":
        return _demo(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
