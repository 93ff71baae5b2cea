"""``run_stream.py train``: train the fusion model with grouped cross-validation and baselines."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    train = commands.add_parser(
        "train",
        help="train the fusion model on a feature table, with grouped cross-validation and baselines",
        description=(
            "Train the CNN+RNN fusion model on a feature table (from 'extract', or the origin app's "
            "per-run CSV). Subject-grouped k-fold cross-validation of the model and its baselines, then a "
            "final model on a train/validation/test split by subject; writes the bundle and its report. "
            "The training settings come from the [train] section of the configuration file "
            "('run_stream.py --config FILE train ...'; 'run_stream.py config' prints it), overridden by "
            "these flags; the bundle and its report record them."
        ),
    )
    train.add_argument("features", help="feature table (.csv or .parquet)")
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
        help="K, windows per prediction, 1 for the origin's model (default: [train] context, 4)",
    )  # fmt: skip
    train.add_argument("--epochs", type=int, default=None, help="most epochs (default: [train] epochs, 60)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default: [train] seed, 0)")
    train.add_argument("--note", default="", help="a sentence stored in the bundle and its report")
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train, write the bundle and print its report."""
    from model.dataset import read_feature_table
    from model.training import train_and_report
    from pipeline.settings import SettingsError

    try:
        settings = args.settings.replace(
            "train", labels=args.labels, context=args.context, folds=args.folds, epochs=args.epochs,
            seed=args.seed,
        )  # fmt: skip
    except SettingsError as err:
        raise SystemExit(f"error: {err}") from None
    table = read_feature_table(args.features)
    bundle = train_and_report(table, settings.train, args.output, note=args.note)
    print(f"wrote the bundle and its report to {bundle.path}", flush=True)
    print((Path(args.output) / "report.md").read_text(), flush=True)
    return 0
