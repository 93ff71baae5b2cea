"""``run_stream.py train``: train the fusion model with grouped cross-validation and baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.recording_source import add_recording_options, add_session_option, table_argument


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    train = commands.add_parser(
        "train",
        help="train the fusion model on a feature table, with grouped cross-validation and baselines",
        description=(
            "Train the CNN+RNN fusion model on a feature table (from 'extract', or the origin app's "
            "per-run CSV). The table's feature contract (the .json file 'extract' writes beside it) is "
            "stored in the bundle, so that a run computing other features is refused. Subject-grouped k-fold "
            "cross-validation of the model and its baselines, then a "
            "final model on a train/validation/test split by subject; writes the bundle and its report. "
            "The training settings come from the [train] section of the configuration file "
            "('run_stream.py --config FILE train ...'; 'run_stream.py config' prints it), overridden by "
            "these flags; the bundle and its report record them."
        ),
    )
    train.add_argument(
        "features", nargs="?", default=None,
        help="feature table (.csv, .parquet or a dataset folder), or give the recordings with --session",
    )  # fmt: skip
    add_session_option(train, "the configuration's", "the bundle folder")
    add_recording_options(train)
    train.add_argument("-o", "--output", required=True, help="bundle folder to write")
    train.add_argument(
        "--labels", choices=("wake-sleep", "stages", "task"), default=None,
        help="label scheme (default: [train] labels, wake-sleep)",
    )  # fmt: skip
    train.add_argument(
        "--folds", type=int, default=None,
        help="grouped cross-validation folds, 0 for none (default: [train] folds, 5)",
    )  # fmt: skip
    train.add_argument(
        "--context", type=int, default=None,
        help="K, windows per prediction, 1 for the origin's model, 0 to choose it by nested cross-validation "
        "among [train] context_candidates (default: [train] context, 4)",
    )  # fmt: skip
    train.add_argument("--epochs", type=int, default=None, help="most epochs (default: [train] epochs, 60)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default: [train] seed, 0)")
    train.add_argument("--note", default="", help="a sentence stored in the bundle and its report")
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train, write the bundle and print its report."""
    from model.contract import is_known
    from model.dataset import read_feature_table
    from model.training import train_and_report
    from pipeline.settings import SettingsError
    from pipeline.table_contract import contract_path, read_table_contract

    try:
        settings = args.settings.replace(
            "train", labels=args.labels, context=args.context, folds=args.folds, epochs=args.epochs,
            seed=args.seed,
        )  # fmt: skip
    except SettingsError as err:
        raise SystemExit(f"error: {err}") from None
    features = table_argument(args, Path(args.output) / "features", settings)
    try:
        table = read_feature_table(features)
        contract = read_table_contract(features, table)
    except (OSError, ValueError) as err:  # ContractError is a ValueError
        raise SystemExit(f"error: {err}") from None
    if not is_known(contract):
        print(
            f"warning: {features} has no feature contract ({contract_path(features).name}): the "
            "bundle will not say how its features were computed, so 'live' will refuse it and 'evaluate' "
            "will take it only on tables without a contract",
            flush=True,
        )
    from cli.cluster_options import folds_runner

    with folds_runner(args, settings.train.folds) as fold_map:
        bundle = train_and_report(
            table, settings.train, args.output, note=args.note, contract=contract, fold_map=fold_map
        )
    print(f"wrote the bundle and its report to {bundle.path}", flush=True)
    print((Path(args.output) / "report.md").read_text(), flush=True)
    return 0
