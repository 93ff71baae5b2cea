"""Choose the context K by nested subject-grouped cross-validation of the fusion model.

Outer grouped k-fold: in each outer fold, K is chosen among the candidates by an inner grouped
cross-validation on the fold's training subjects only (``model.context_choice``: balanced accuracy
per scored epoch, the smallest K within one standard error of the best), then the fusion model is
trained at that K and scored on the fold's test subjects, which the choice never saw. Prints the
K chosen per fold with its inner scores, the nested (unbiased) estimate of the whole procedure,
and the K the same choice makes on every subject (what a final model would use). With
``--outer-per-k`` it also prints each K's outer score, for information only: the choice does not
use them. Machine-readable lines start with ``context_sweep.``; the output goes to
``benchmarks/results/context_sweep.txt``.

Usage: python benchmarks/context_sweep.py FEATURES [--contexts 1 2 4 8] [--folds 5] [--inner-folds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_file import add_results_option, recorded
from model.context_choice import choose_context
from model.dataset import Scaler, read_feature_table
from model.evaluation import assess
from model.fitting import Prepared, fit_network, prepare, split_validation
from model.splits import subject_folds
from model.training import TrainConfig


def main() -> None:
    """Run the nested sweep and print one line per figure."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("features")
    parser.add_argument("--contexts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--inner-folds", type=int, default=3)
    parser.add_argument("--labels", default="wake-sleep")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--inner-epochs", type=int, default=20)
    parser.add_argument("--outer-per-k", action="store_true", help="also score every K on the outer folds")
    add_results_option(parser, "context_sweep")
    args = parser.parse_args()
    with recorded("context_sweep", args, packages=("tensorflow-cpu", "keras", "scikit-learn")):
        sweep(args)


def outer_scores(
    data: Prepared, train: np.ndarray, test: np.ndarray, context: int, config: TrainConfig
) -> dict:
    """Fusion model at K trained on ``train``, scored on ``test``: figures per level."""
    fit_rows, val_rows = split_validation(data.subjects, train, config.seed)
    scaler = Scaler.fit(data.current[fit_rows])
    x = scaler.transform(data.sequences(context))
    n_classes = len(data.names)
    network = fit_network(x[fit_rows], data.y[fit_rows], x[val_rows], data.y[val_rows], n_classes, config)
    proba = np.asarray(network.predict(x[test], verbose=0))
    return assess(
        data.y[test], proba, data.subjects[test], data.epochs[test], data.names, data.epoch_source is not None
    )


def _print_summary(prefix: str, folds: list[dict]) -> None:
    for level in folds[0]:
        for key in ("balanced_accuracy", "cohen_kappa"):
            values = np.array([fold[level][key] for fold in folds], dtype=float)
            print(
                f"context_sweep.{prefix}_{level}_{key}={np.nanmean(values):.4f} (sd {np.nanstd(values):.4f})",
                flush=True,
            )


def sweep(args: argparse.Namespace) -> None:
    """Nested cross-validation of the choice of K."""
    table = read_feature_table(args.features)
    config = TrainConfig(
        labels=args.labels, context=0, context_candidates=tuple(args.contexts), folds=args.folds,
        inner_folds=args.inner_folds, epochs=args.epochs, inner_epochs=args.inner_epochs,
    )  # fmt: skip
    data = prepare(table, config)
    runs = table[["subject", "task", "run"]].drop_duplicates()
    print(f"context_sweep.table_rows={len(table)}")
    print(f"context_sweep.runs={len(runs)}")
    print(f"context_sweep.subjects={len(set(data.subjects.tolist()))}")
    print(f"context_sweep.labelled_windows={len(data.y)}")
    print(f"context_sweep.epochs_from={data.epoch_source}")
    print(f"context_sweep.labels={','.join(data.names)}")
    nested, per_k = [], {k: [] for k in config.context_candidates}
    for fold, (train, test) in enumerate(subject_folds(data.subjects, config.folds, config.seed)):
        choice = choose_context(data, train, config)
        assert not set(choice.subjects) & {str(s) for s in data.subjects[test]}
        print(f"context_sweep.fold{fold + 1}_chosen_k={choice.chosen}", flush=True)
        for k, score in choice.scores.items():
            name = f"fold{fold + 1}_inner_k{k}_{choice.level}_balanced_accuracy"
            print(f"context_sweep.{name}={score['mean']:.4f} (sd {score['sd']:.4f})")
        nested.append(outer_scores(data, train, test, choice.chosen, config))
        if args.outer_per_k:
            for k in config.context_candidates:
                per_k[k].append(outer_scores(data, train, test, k, config))
    _print_summary("nested", nested)
    for k, folds in per_k.items():
        if folds:
            _print_summary(f"outer_k{k}_not_used_for_the_choice", folds)
    final = choose_context(data, np.ones(data.y.size, dtype=bool), config)
    print(f"context_sweep.chosen_k_on_all_subjects={final.chosen}", flush=True)


if __name__ == "__main__":
    main()
