"""``run_stream.py surrogate``: write surrogate runs in the ds003768 layout."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``surrogate`` sub-command."""
    surrogate = commands.add_parser(
        "surrogate",
        help="write surrogate runs in the ds003768 layout",
        description="Write surrogate runs (synthetic EEG and BOLD, real scoring) in the ds003768 layout.",
    )
    surrogate.add_argument("-o", "--output", required=True, help="dataset folder to write")
    surrogate.add_argument("--subject", default="27", help="real subject whose scoring is followed")
    surrogate.add_argument("--runs", nargs="+", default=["rest-1", "sleep-2"], help="runs to write")
    surrogate.add_argument(
        "--sfreq",
        type=float,
        default=None,
        help="EEG rate in Hz (runs: 250 by default, real data 5000; nights: 100)",
    )
    surrogate.add_argument(
        "--night",
        metavar="HYPNOGRAM",
        help="instead of runs, write a full night (EDF + YASA-style hypnogram) following this hypnogram file",
    )
    surrogate.add_argument("--seed", type=int, default=0)
    surrogate.add_argument("--sample-index", action="store_true", help="add a SampleIndex test channel")
    surrogate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write every requested run."""
    from pathlib import Path

    from simulators.surrogate import write_surrogate_run

    if args.night:
        from recordings.errors import DatasetFormatError
        from simulators.night import surrogate_night, write_night

        try:
            night = surrogate_night(args.night, sfreq=args.sfreq or 100.0, seed=args.seed)
        except (DatasetFormatError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        name = Path(args.night).name.split(".")[0].removesuffix("-Hypnogram") + "-surrogate"
        edf, text = write_night(night, args.output, name)
        print(f"wrote {edf} and {text}", flush=True)
        return 0
    for run_name in args.runs:
        paths = write_surrogate_run(
            args.output,
            args.subject,
            run_name,
            sfreq=args.sfreq or 250.0,
            seed=args.seed,
            sample_index_channel=args.sample_index,
        )
        print(f"wrote {paths.eeg_header} and {paths.bold}", flush=True)
    return 0
