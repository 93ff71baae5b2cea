"""``run_stream.py extract``: the feature table (one row per window) of sessions."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import non_negative_int
from cli.recording_source import SESSION_HELP, add_recording_options


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``extract`` sub-command."""
    extract = commands.add_parser(
        "extract",
        help="write the feature table (one row per window) of sessions",
        description=(
            "Compute the 11 features of every window of a recording (EDF/EDF+/BDF, BrainVision, XDF), "
            "a folder of recordings, or runs of a ds003768-style dataset, with the same code as live "
            "acquisition; write CSV or Parquet with the feature contract beside it. Where YASA is "
            "installed, its stage of each scored epoch is added (column yasa_stage) as the field's "
            "baseline. Feature and window settings come from --config, overridden by these flags."
        ),
    )
    extract.add_argument("session", help=SESSION_HELP)
    extract.add_argument("-o", "--output", required=True, help="output file, .csv or .parquet")
    extract.add_argument("--subject", default=None, help="only this subject of a dataset (default: all)")
    extract.add_argument("--run", default=None, help="only this run of a dataset, e.g. sleep-1")
    add_recording_options(extract)
    extract.add_argument(
        "--power-scale", choices=("absolute", "log", "relative"), default=None, help="band power scale"
    )
    extract.add_argument("--coherence", choices=("msc", "pearson"), default=None, help="coherence definition")
    extract.add_argument("--reference", choices=("recorded", "average"), default=None)
    extract.add_argument(
        "--highpass", type=float, default=None, metavar="HZ", help="causal high-pass of the EEG, e.g. 0.5"
    )
    extract.add_argument(
        "--dummy-scans",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="volume triggers before each run's first volume (default: from the BOLD sidecar when needed)",
    )
    extract.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Extract and write the table."""
    from cli.recording_source import extract_to, resolve_sources

    output = Path(args.output)
    if output.suffix not in (".csv", ".parquet"):
        raise SystemExit(f"error: {output}: the output must end in .csv or .parquet")
    sources = resolve_sources(
        args.session, subject=args.subject, run=args.run, hypnogram=args.hypnogram,
        eeg_unit=args.eeg_unit, dummy_scans=args.dummy_scans,
    )  # fmt: skip
    settings = args.settings.replace(
        "features", power_scale=args.power_scale, coherence=args.coherence, reference=args.reference
    ).replace("window", highpass_hz=args.highpass)
    # As typed: a bundle records where its data came from without this machine's absolute paths.
    extract_to(sources, output, settings, source=args.session, yasa=not args.no_yasa)
    return 0
