"""``run_stream.py live``: the pipeline on streams other software publishes (amplifier, scanner)."""

from __future__ import annotations

import argparse
import time

from cli.common import add_pipeline_options, apply_pipeline_options, stop_on_signals


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``live`` sub-command."""
    live = commands.add_parser(
        "live",
        help="classify live streams published by an amplifier's LSL connector and the scanner side",
        description=(
            "Consume an EEG stream (e.g. Brain Products' LSL connector), the fMRI-metrics stream "
            "(run_stream.py fmri-source) and optionally the scanner's volume triggers, and run the whole "
            "pipeline on them: features, model, viewer, websocket feed, LSL output, session record. "
            "A stream is named by NAME, name:NAME, type:TYPE or source_id:ID. The model bundle (--model, "
            "default: the shipped one, trained on synthetic data) must have been trained on features "
            "computed as this run computes them (its feature contract), or it is refused. Ctrl-C stops."
        ),
    )
    live.add_argument("--eeg", default=None, metavar="QUERY", help="the EEG stream (default type:EEG)")
    live.add_argument(
        "--fmri",
        default=None,
        metavar="QUERY",
        help="the fMRI stream (default type:fMRI); 'none' for an EEG-only session",
    )
    live.add_argument(
        "--triggers",
        default=None,
        metavar="QUERY",
        help="the volume-trigger marker stream (e.g. type:Markers)",
    )
    live.add_argument("--truth", default=None, metavar="QUERY", help="a scored-stage marker stream, if any")
    live.add_argument("--channels", type=int, default=None, help="refuse an EEG stream with another count")
    live.add_argument("--rate", type=float, default=None, help="refuse an EEG stream with another rate (Hz)")
    live.add_argument(
        "--wait", type=float, default=None, metavar="S", help="seconds to wait for each stream (default 10)"
    )
    live.add_argument("--name", default="live", help="session name in the record (default: live)")
    add_pipeline_options(live)
    live.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline on the named streams until Ctrl-C."""
    from cli.session_runner import run_session
    from pipeline.settings import SettingsError

    try:
        settings = apply_pipeline_options(args).replace(
            "streams",
            eeg=args.eeg,
            fmri=args.fmri,
            triggers=args.triggers,
            truth=args.truth,
            expected_eeg_channels=args.channels,
            expected_eeg_rate=args.rate,
            resolve_timeout=args.wait,
        )
    except SettingsError as err:
        raise SystemExit(f"error: {err}") from None
    stop_on_signals()
    streams = settings.streams
    info = {"name": args.name, "mode": "live", "eeg": streams.eeg, "fmri": streams.fmri,
            "triggers": streams.triggers, "started_wall": time.time()}  # fmt: skip
    try:
        acquisition = settings.acquisition()
    except ValueError as err:  # e.g. artefact correction on without a trigger stream
        raise SystemExit(f"error: {err}") from None
    return run_session(settings, acquisition, name=args.name, session_info=info)
