"""Choose the context K by subject-grouped cross-validation of the fusion model.

For each K, grouped k-fold cross-validation of the fusion model only (same
folds, seeds and training budget for every K) on a feature table; prints the
mean balanced accuracy and Cohen's kappa per K. Machine-readable lines start
with ``context_sweep.``; the output goes to ``benchmarks/results/context_sweep.txt``.

Usage: python benchmarks/context_sweep.py FEATURES [--contexts 1 4 8 16] [--folds 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_file import add_results_option, recorded
from model.dataset import Scaler, read_feature_table
from model.evaluation import classification_metrics
from model.splits import subject_folds
from model.training import TrainConfig, fit_network, prepare, split_validation


def main() -> None:
    """Run the sweep and print one line per K and figure."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("features")
    parser.add_argument("--contexts", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--labels", default="wake-sleep")
    parser.add_argument("--epochs", type=int, default=60)
    add_results_option(parser, "context_sweep")
    args = parser.parse_args()
    with recorded("context_sweep", args, packages=("tensorflow-cpu", "keras", "scikit-learn")):
        sweep(args)


def sweep(args: argparse.Namespace) -> None:
    """Cross-validate every K and print its figures."""
    table = read_feature_table(args.features)
    for context in args.contexts:
        config = TrainConfig(labels=args.labels, context=context, folds=args.folds, epochs=args.epochs)
        data = prepare(table, config)
        if context == args.contexts[0]:
            runs = table[["subject", "task", "run"]].drop_duplicates()
            print(f"context_sweep.table_rows={len(table)}")
            print(f"context_sweep.runs={len(runs)}")
            print(f"context_sweep.subjects={len(set(data.subjects.tolist()))}")
            print(f"context_sweep.labelled_windows={len(data.y)}")
            print(f"context_sweep.labels={','.join(data.names)}")
        scores = []
        for train, test in subject_folds(data.subjects, config.folds, config.seed):
            fit_rows, val_rows = split_validation(data.subjects, train, config.seed)
            scaler = Scaler.fit(data.current[fit_rows])
            x = scaler.transform(data.sequences)
            network = fit_network(
                x[fit_rows], data.y[fit_rows], x[val_rows], data.y[val_rows], len(data.names), config
            )
            scores.append(
                classification_metrics(
                    data.y[test], np.asarray(network.predict(x[test], verbose=0)), data.names
                )
            )
        for key in ("balanced_accuracy", "cohen_kappa"):
            values = np.array([s[key] for s in scores])
            print(f"context_sweep.k{context}_{key}={values.mean():.4f} (sd {values.std():.4f})", flush=True)


if __name__ == "__main__":
    main()
