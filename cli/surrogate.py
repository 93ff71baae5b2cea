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
    surrogate.add_argument(
        "--in-scanner",
        action="store_true",
        help="record the runs inside the scanner: MR gradient and pulse (BCG) artefacts on the EEG, a "
        "simulated ECG, raw rate 5000 Hz unless --sfreq says otherwise (at least 1000); the clean EEG is "
        "written beside, in derivatives/surrogate-clean/",
    )
    surrogate.add_argument(
        "--clock-mismatch-ppm",
        type=float,
        default=0.0,
        metavar="PPM",
        help="with --in-scanner: the amplifier's clock off the scanner's by this much (no sync box)",
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
    scanner = None
    if args.in_scanner:
        from simulators.scanner_artefacts import ScannerArtefactSettings

        try:
            scanner = ScannerArtefactSettings(clock_mismatch_ppm=args.clock_mismatch_ppm)
        except ValueError as err:
            raise SystemExit(f"error: --clock-mismatch-ppm: {err}") from None
        if args.sfreq is not None and args.sfreq < 1000:
            raise SystemExit("error: --in-scanner needs an MR amplifier's raw rate: --sfreq of at least 1000")
    for run_name in args.runs:
        paths = write_surrogate_run(
            args.output,
            args.subject,
            run_name,
            sfreq=args.sfreq or (5000.0 if scanner else 250.0),
            seed=args.seed,
            sample_index_channel=args.sample_index,
            scanner=scanner,
        )
        print(f"wrote {paths.eeg_header} and {paths.bold}", flush=True)
    return 0
