"""``run_stream.py demo``: the whole pipeline on the bundled surrogate session."""

from __future__ import annotations

import argparse
import math
import uuid

from cli.common import add_pipeline_options, apply_pipeline_options, speed, stop_on_signals

IN_SCANNER_RATE = 5000.0  # Hz: the raw rate of ds003768's MR amplifier


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` sub-command."""
    demo = commands.add_parser(
        "demo",
        help="the whole pipeline on the bundled surrogate session: replay, windows, features, model, viewer",
        description=(
            "Replay the bundled surrogate session (with truth, looping) over LSL, consume it, compute the "
            "features, classify every window with the shipped model, and serve the live viewer, the "
            "websocket feed and the REST API; predictions also go out on LSL and into a session record. "
            "Ctrl-C stops everything."
        ),
    )
    demo.add_argument("--speed", type=speed, default=1.0, help="replay speed (default: real time)")
    demo.add_argument(
        "--in-scanner",
        action="store_true",
        help="replay the session as recorded inside the scanner: raw 5-kHz EEG with MR gradient and pulse "
        "artefacts, corrected live before the features (generated once, about two minutes, then cached)",
    )
    add_pipeline_options(demo)
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Replay the bundled session and run the pipeline on it until Ctrl-C."""
    from cli.session_runner import run_session
    from recordings.session import read_session
    from simulators.replay import SessionPlayer
    from simulators.surrogate import BUNDLED_SUBJECT, DEMO_RUN, bundled_surrogate
    from stream.config import AcquisitionConfig

    if math.isinf(args.speed):
        raise SystemExit("error: the demo loops forever: give a finite --speed")
    settings = apply_pipeline_options(args)
    print("Preparing the bundled surrogate session (generated once, then cached)...", flush=True)
    if args.in_scanner:
        from simulators.scanner_artefacts import ScannerArtefactSettings

        root = bundled_surrogate((DEMO_RUN,), sfreq=IN_SCANNER_RATE, scanner=ScannerArtefactSettings())
    else:
        root = bundled_surrogate((DEMO_RUN,))
    session = read_session(root, BUNDLED_SUBJECT, DEMO_RUN)
    prefix = f"demo-{uuid.uuid4().hex[:6]}"
    # The replay waits for the pipeline to connect, so the demo starts at the session's beginning.
    player = SessionPlayer(
        session, speed=args.speed, loop=True, with_truth=True, prefix=prefix, wait_for_consumers=30
    )
    acquisition = AcquisitionConfig.for_replay(
        prefix,
        with_truth=True,
        resolve_timeout=15,
        window=settings.window,
        queue_size=settings.streams.queue_size,
        artefacts=settings.artefacts,
    )
    stop_on_signals()
    with player:
        print(
            f"Replaying {session.label} at {args.speed:g}x as {prefix}-EEG/-fMRI/-Triggers/-Truth", flush=True
        )
        return run_session(
            settings,
            acquisition,
            name=f"demo-{session.label}",
            session_info={
                "name": session.label,
                "mode": "demo",
                "replay_prefix": prefix,
                "speed": args.speed,
            },
            keep_going=lambda: player.is_running,
            outlet_prefix=f"{prefix}-prediction",
        )
