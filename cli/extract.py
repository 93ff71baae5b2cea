"""``run_stream.py extract``: the feature table (one row per window) of sessions."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.cluster_options import add_cluster_options
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
            "acquisition. Into a folder (-o OUT/): a feature dataset, one Parquet file per recording "
            "with its settings and feature contract in its metadata, extracted on a Dask cluster (a "
            "local one by default), resumable: recordings already extracted with the same settings "
            "are skipped, and one that fails is reported without stopping the others. Into a .csv or "
            ".parquet file: one table, in this process, with the feature contract beside it. Where "
            "YASA is installed, its stage of each scored epoch is added (column yasa_stage) as the "
            "field's baseline. Feature and window settings come from --config, overridden by these flags."
        ),
    )
    extract.add_argument("session", help=SESSION_HELP)
    extract.add_argument(
        "-o", "--output", required=True,
        help="a folder (feature dataset, one Parquet file per recording), or one .csv or .parquet file",
    )  # fmt: skip
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
    add_cluster_options(extract)
    extract.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Extract and write the table."""
    from cli.recording_source import extract_dataset_to, extract_to, resolve_sources

    output = Path(args.output)
    # A folder: one that exists, a name without suffix, or any name ending in a separator ("out.v2/").
    into_folder = output.is_dir() or not output.suffix or args.output.endswith(("/", os.sep))
    if not into_folder and output.suffix not in (".csv", ".parquet"):
        raise SystemExit(
            f"error: {output}: the output must be a folder (feature dataset) or end in .csv or .parquet"
        )
    if output.is_file() and not output.suffix:
        raise SystemExit(f"error: {output} is a file: a feature dataset needs a folder")
    if not into_folder and (args.workers is not None or args.scheduler is not None):
        raise SystemExit(
            "error: --workers and --scheduler extract into a feature dataset: give a folder to -o "
            "(a single .csv or .parquet table is extracted in this process)"
        )
    sources = resolve_sources(
        args.session, subject=args.subject, run=args.run, hypnogram=args.hypnogram,
        eeg_unit=args.eeg_unit, dummy_scans=args.dummy_scans,
    )  # fmt: skip
    settings = args.settings.replace(
        "features", power_scale=args.power_scale, coherence=args.coherence, reference=args.reference
    ).replace("window", highpass_hz=args.highpass)
    # As typed: a bundle records where its data came from without this machine's absolute paths.
    if into_folder:
        results = extract_dataset_to(sources, output, settings, args.session, args)
        failed = [r.name for r in results if r.status == "failed"]
        if failed:
            print(f"error: {len(failed)} recording(s) failed: {', '.join(failed)}", file=sys.stderr)
            return 1
        return 0
    extract_to(sources, output, settings, source=args.session, yasa=not args.no_yasa)
    return 0
