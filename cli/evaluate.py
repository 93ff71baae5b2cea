"""``run_stream.py evaluate``: score a bundle on new subjects beside cross-validated baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.recording_source import (
    add_recording_options,
    add_session_option,
    settings_of_bundle,
    table_argument,
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``evaluate`` sub-command."""
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a model bundle on a feature table, beside grouped cross-validated baselines",
        description=(
            "Score a bundle on the subjects of a feature table it was not trained on, and cross-validate "
            "the same architecture and the baselines on the table by subject, in the same run. A table "
            "whose feature contract (the .json file 'extract' writes beside it) differs from the bundle's "
            "is refused, naming the setting."
        ),
    )
    evaluate.add_argument("model", help="bundle folder")
    evaluate.add_argument(
        "features", nargs="?", default=None,
        help="feature table (.csv, .parquet or a dataset folder), or give the recordings with --session",
    )  # fmt: skip
    add_session_option(evaluate, "the bundle's", "the report folder")
    add_recording_options(evaluate)
    evaluate.add_argument("-o", "--output", default=None, help="report folder (default: MODEL/evaluation)")
    evaluate.add_argument("--folds", type=int, default=5)
    evaluate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the report."""
    from model.bundle import BundleError, load_bundle
    from model.contract import SYNTHETIC_WARNING, ContractError, check_table, is_synthetic
    from model.dataset import read_feature_table
    from model.training import evaluate_bundle
    from pipeline.table_contract import read_table_contract

    output = Path(args.output) if args.output else Path(args.model) / "evaluation"
    try:
        bundle = load_bundle(args.model)
    except (BundleError, OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    features = table_argument(args, output / "features", settings_of_bundle(args.settings, bundle.contract))
    try:
        table = read_feature_table(features)
        notes = check_table(bundle.contract, read_table_contract(features, table), args.model, features)
    except (ContractError, OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    if is_synthetic(bundle.contract):
        notes.insert(0, SYNTHETIC_WARNING)
    for note in notes:
        print(f"warning: {note}", flush=True)
    from cli.cluster_options import folds_runner

    with folds_runner(args, args.folds) as fold_map:
        evaluate_bundle(bundle, table, output, folds=args.folds, fold_map=fold_map)
    print(f"wrote {output / 'report.md'}", flush=True)
    print((output / "report.md").read_text(), flush=True)
    return 0
