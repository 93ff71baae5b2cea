"""Our classifier against YASA's pretrained stager, five stages, on the same 30-s epochs of surrogate nights.

Run ``python -m benchmarks.yasa_versus_ours``. Every real Sleep-EDF hypnogram shipped in
``simulators/data/sleep-edf/`` gives one surrogate night (``run_stream.py surrogate --night``: EDF,
its hypnogram and a sidecar marking it surrogate); then ``run_stream.py train --session NIGHTS
--labels stages`` extracts the windows' features (EEG only: the nights have no fMRI), adds YASA's
stage of every scored epoch, and cross-validates our model, logistic regression and the majority
class by night, with YASA beside them on the same epochs. What this prints is the report's
per-epoch and per-night tables; the whole report is kept beside the raw output
(``benchmarks/results/yasa_versus_ours.md``).

These are surrogate nights: the figures compare two stagers on synthetic EEG that looks like sleep
to YASA; they are not evidence about real brains.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LSLAPICFG", str(PROJECT / "core" / "lsl_api.cfg"))  # before anything imports pylsl

from benchmarks.results_file import RESULTS, add_results_option, recorded  # noqa: E402

WORK = PROJECT / "build" / "yasa-versus-ours"


def run(*args: str) -> str:
    """``run_stream.py ARGS``; its output, and an exception naming the command if it fails."""
    done = subprocess.run(
        [sys.executable, str(PROJECT / "run_stream.py"), *args], capture_output=True, text=True, cwd=PROJECT
    )
    if done.returncode != 0:
        raise RuntimeError(f"run_stream.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    """Write the nights, train and cross-validate by night, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds, grouped by night")
    parser.add_argument("--epochs", type=int, default=30, help="most training epochs of the network")
    add_results_option(parser, "yasa_versus_ours")
    args = parser.parse_args()
    from simulators.night import shipped_hypnograms

    with recorded("yasa_versus_ours", args, packages=("yasa", "tensorflow-cpu")):
        shutil.rmtree(WORK, ignore_errors=True)
        nights = WORK / "nights"
        for hypnogram in shipped_hypnograms():
            print(run("surrogate", "--night", str(hypnogram), "-o", str(nights)).strip(), flush=True)
        bundle = WORK / "bundle"
        run(
            "train", "--session", str(nights), "--labels", "stages", "--context", "1",
            "--folds", str(args.folds), "--epochs", str(args.epochs), "-o", str(bundle),
            "--note", "Surrogate nights: two stagers on synthetic EEG; says nothing about real brains.",
        )  # fmt: skip
        report = (bundle / "report.md").read_text()
        if not args.no_results:
            shutil.copyfile(bundle / "report.md", RESULTS / "yasa_versus_ours.md")
        print(report, flush=True)


if __name__ == "__main__":
    main()
