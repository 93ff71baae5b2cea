"""``run_stream.py extract``: the feature table (one row per window) of sessions."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import existing_folder, non_negative_int


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``extract`` sub-command."""
    extract = commands.add_parser(
        "extract",
        help="write the feature table (one row per window) of sessions",
        description=(
            "Compute the 11 features of every window of a session, a subject or a whole "
            "ds003768-style dataset, with the same code as live acquisition; write CSV or Parquet. "
            "Feature and window settings come from --config, overridden by these flags."
        ),
    )
    extract.add_argument("session", help="'surrogate' or a ds003768-style dataset folder")
    extract.add_argument("-o", "--output", required=True, help="output file, .csv or .parquet")
    extract.add_argument("--subject", default=None, help="only this subject (default: all)")
    extract.add_argument("--run", default=None, help="only this run, e.g. sleep-1 (default: all)")
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
    from pipeline.offline import extract_dataset, write_table
    from recordings.bids import list_runs, normalise_subject, parse_run
    from simulators.surrogate import BUNDLED_RUNS, bundled_surrogate

    output = Path(args.output)
    if output.suffix not in (".csv", ".parquet"):
        raise SystemExit(f"error: {output}: the output must end in .csv or .parquet")
    if args.session == "surrogate":
        root = bundled_surrogate((args.run,) if args.run else BUNDLED_RUNS)
    else:
        root = existing_folder(args.session, "dataset folder")
    runs = list_runs(root)
    if args.subject is not None:
        runs = [r for r in runs if r.subject == normalise_subject(args.subject)]
    if args.run is not None:
        task, number = parse_run(args.run)
        runs = [r for r in runs if (r.task, r.run) == (task, number)]
    if not runs:
        raise SystemExit(f"error: no run in {root} matches subject={args.subject} run={args.run}")
    settings = args.settings.replace(
        "features", power_scale=args.power_scale, coherence=args.coherence, reference=args.reference
    ).replace("window", highpass_hz=args.highpass)
    from recordings.errors import DatasetFormatError

    try:
        table = extract_dataset(
            root,
            runs,
            feature_config=settings.features,
            window_config=settings.window,
            dummy_scans=args.dummy_scans,
        )
    except DatasetFormatError as err:
        raise SystemExit(f"error: {err}") from None
    write_table(table, output)
    from pipeline.table_contract import table_contract, write_table_contract

    # As typed: a bundle records where its data came from without this machine's absolute paths.
    source = args.session
    contract = table_contract(table, runs, settings.features, settings.window, source)
    sidecar = write_table_contract(output, contract)
    print(
        f"wrote {len(table)} windows of {len(runs)} run(s) to {output} (feature contract: {sidecar})",
        flush=True,
    )
    return 0
