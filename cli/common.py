"""Argument types and options shared by several sub-commands."""

from __future__ import annotations

import argparse
import math
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.settings import Settings


def speed(text: str) -> float:
    """Replay speed: a positive number or ``max`` (as fast as possible)."""
    if text.lower() in {"max", "inf", "fast"}:
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number > 0 or 'max', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be > 0 or 'max', got {text}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (e.g. ``--dummy-scans``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--host``, ``--port`` (defaults from the configuration)."""
    parser.add_argument(
        "--host", default=None, help="address to bind (default 127.0.0.1; others need a token)"
    )
    parser.add_argument("--port", type=int, default=None, help="web server port (default 8000)")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Server, model and recording options of the commands that run the live pipeline."""
    add_server_options(parser)
    parser.add_argument(
        "--model", default=None, metavar="DIR", help="model bundle (default: the shipped one)"
    )
    from model.inference import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="how the model runs (default litert)",
    )
    parser.add_argument(
        "--record", default=None, metavar="DIR", help="where session folders are written (default: sessions/)"
    )
    parser.add_argument("--no-record", action="store_true", help="do not record the session")
    parser.add_argument(
        "--artefacts",
        choices=("auto", "on", "off"),
        default=None,
        help="MR gradient and pulse-artefact correction of EEG recorded in the scanner (default: [artefacts] "
        "correction, auto: when the EEG stream says it is in the scanner; docs/artefacts.md)",
    )


def apply_pipeline_options(args: argparse.Namespace) -> Settings:
    """The configuration with this command's server, model and recording flags applied."""
    settings = args.settings.replace("server", host=args.host, port=args.port)
    settings = settings.replace("model", bundle=args.model, backend=args.backend)
    settings = settings.replace("recording", directory=args.record, enabled=False if args.no_record else None)
    return settings.replace("artefacts", correction=args.artefacts)


def existing_folder(path: str, what: str) -> Path:
    """``path`` as a folder, or a clear exit if it does not exist."""
    folder = Path(path)
    if not folder.is_dir():
        raise SystemExit(f"error: {what} {folder} does not exist or is not a folder")
    return folder


def stop_on_signals() -> None:
    """Stop as cleanly on SIGTERM (``kill``) as on Ctrl-C, and on SIGINT even when started in the background.

    A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored.
    """

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
