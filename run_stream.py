#!/usr/bin/env python
"""Command-line entry point: demo, live acquisition, replay, extraction, training, serving.

Run ``python run_stream.py --help`` or ``python run_stream.py COMMAND --help``.
Each sub-command lives in its own module of ``cli/``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "demo",
    "live",
    "fmri_source",
    "serve",
    "replay",
    "surrogate",
    "extract",
    "train",
    "evaluate",
    "config",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="run_stream.py",
        description="Real-time EEG + fMRI sleep-state classification over LSL.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML configuration file (see `run_stream.py config` for every setting and its default)",
    )
    parser.add_argument(
        "--lsl-config",
        metavar="FILE",
        help="a lab's lsl_api.cfg (default: the project's loopback-only configuration)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cli.{name}").add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from core.lsl_safety import use_project_lsl_config
    from pipeline.settings import SettingsError, load_settings

    args = build_parser().parse_args(argv)
    try:
        args.settings = load_settings(args.config)
    except SettingsError as err:
        raise SystemExit(f"error: {err}") from None
    # Before anything imports pylsl or mne-lsl: loopback only unless a lab configuration is named.
    use_project_lsl_config(args.lsl_config or args.settings.lsl_config)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
