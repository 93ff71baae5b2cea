"""``run_stream.py train``: train the fusion model with grouped cross-validation and baselines."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands) -> None:
    """Add the ``train`` sub-command."""
    train = commands.add_parser(
        "train",
        help="train the fusion model on a feature table, with grouped cross-validation and baselines",
        description=(
            "Train the CNN+RNN fusion model on a feature table (from 'extract', or the origin app's "
            "per-run CSV). Subject-grouped k-fold cross-validation of the model and its baselines, then a "
            "final model on a train/validation/test split by subject; writes the bundle and its report."
        ),
    )
    train.add_argument("features", help="feature table (.csv or .parquet)")
    train.add_argument("-o", "--output", required=True, help="bundle folder to write")
    train.add_argument("--labels", choices=("wake-sleep", "stages", "task"), default="wake-sleep")
    train.add_argument("--folds", type=int, default=5, help="grouped cross-validation folds (0: none)")
    train.add_argument(
        "--context", type=int, default=4, help="K, windows per prediction (1: the origin's model)"
    )
    train.add_argument("--epochs", type=int, default=60)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--note", default="", help="a sentence stored in the bundle and its report")
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train, write the bundle and print its report."""
    from model.dataset import read_feature_table
    from model.training import TrainConfig, train_and_report

    table = read_feature_table(args.features)
    config = TrainConfig(
        labels=args.labels, context=args.context, folds=args.folds, epochs=args.epochs, seed=args.seed
    )
    bundle = train_and_report(table, config, args.output, note=args.note)
    print(f"wrote the bundle and its report to {bundle.path}", flush=True)
    print((Path(args.output) / "report.md").read_text(), flush=True)
    return 0
