"""``run_stream.py config``: print the effective configuration (defaults and ``--config``) as TOML."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``config`` sub-command."""
    config = commands.add_parser(
        "config",
        help="print the configuration (defaults, or --config FILE applied) as TOML",
        description=(
            "Print every setting as TOML: the defaults, with a --config file applied when given. "
            "The live pipeline's sections, then [fmri_source] (run_stream.py fmri-source) and [train] "
            "(run_stream.py train). Save the output, edit it and pass it back with --config: "
            "command-line flags still win."
        ),
    )
    config.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the settings."""
    from pipeline.settings import to_toml

    print(to_toml(args.settings), end="", flush=True)
    return 0
