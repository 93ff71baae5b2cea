"""Agreement of YASA's pretrained stager with the surrogate's own labels.

Run ``python -m benchmarks.yasa_agreement``. For every real Sleep-EDF
hypnogram shipped in ``simulators/data/sleep-edf/`` a surrogate night is
synthesised (100 Hz) and staged by ``yasa.SleepStaging`` on C4 - TP9 (a central
electrode against a mastoid, the derivation YASA was trained on) with the EOG
against the opposite mastoid (EOG - TP10); then a few ds003768-layout
surrogate runs (250 Hz, resampled to 100 Hz) are staged the same way, 4-class.
Per night, pooled: Cohen's kappa, balanced accuracy, the confusion matrix.
The raw output is written to ``benchmarks/results/yasa_agreement.txt``.

Agreement means the surrogate looks like sleep to a stager trained on real
nights; it is not evidence about real brains.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.stages import SLEEP_STAGES, UNSCORED
from simulators.night import shipped_hypnograms, surrogate_night

RESULTS = Path(__file__).parent / "results" / "yasa_agreement.txt"
# Runs of real ds003768 scorings with several stages (sub-23 sleep-3: N3 throughout).
DS003768_RUNS = (
    ("04", "sleep-2"),
    ("09", "sleep-4"),
    ("15", "sleep-6"),
    ("23", "sleep-3"),
    ("27", "sleep-2"),
    ("27", "sleep-3"),
    ("28", "sleep-3"),
    ("30", "sleep-2"),
)
_YASA_TO_AASM = {"W": "W", "WAKE": "W", "N1": "N1", "N2": "N2", "N3": "N3", "R": "R", "REM": "R"}


@dataclass(frozen=True)
class Agreement:
    """YASA's calls against the surrogate's labels on the scored epochs of one recording."""

    name: str
    truth: tuple[str, ...]
    predicted: tuple[str, ...]

    @property
    def n_epochs(self) -> int:
        """Scored epochs compared."""
        return len(self.truth)


def yasa_stages(
    eeg: np.ndarray, eog: np.ndarray, sfreq: float, *, eeg_name: str = "C4-TP9", eog_name: str = "EOG-TP10"
) -> list[str]:
    """Stage one recording with YASA's pretrained EEG + EOG classifier.

    Parameters
    ----------
    eeg, eog : np.ndarray, shape (n_times,)
        The derivations in microvolts.
    sfreq : float
        Their rate; resampled to 100 Hz when different.
    eeg_name, eog_name : str
        Channel names given to YASA.

    Returns
    -------
    stages : list of str
        One AASM stage per full 30-s epoch.
    """
    import mne
    import yasa

    info = mne.create_info([eeg_name, eog_name], sfreq, ["eeg", "eog"], verbose=False)
    raw = mne.io.RawArray(np.vstack([eeg, eog]).astype(np.float64) * 1e-6, info, verbose=False)
    if sfreq != 100:
        raw.resample(100, verbose=False)
    predicted = yasa.SleepStaging(raw, eeg_name=eeg_name, eog_name=eog_name).predict()
    labels = getattr(predicted, "hypno", predicted)  # YASA >= 0.7 returns a Hypnogram object
    return [_YASA_TO_AASM[str(p).upper()] for p in np.asarray(labels)]


def kappa(truth: list[str], predicted: list[str], labels: tuple[str, ...]) -> float:
    """Cohen's kappa over ``labels``."""
    matrix = confusion(truth, predicted, labels).astype(float)
    total = matrix.sum()
    if total == 0:
        return float("nan")
    observed = np.trace(matrix) / total
    expected = (matrix.sum(axis=0) * matrix.sum(axis=1)).sum() / total**2
    # Undefined when both raters use one and the same class throughout (chance agreement is 1).
    return float((observed - expected) / (1 - expected)) if expected < 1 else float("nan")


def balanced_accuracy(truth: list[str], predicted: list[str], labels: tuple[str, ...]) -> float:
    """Mean recall over the labels that occur in ``truth``."""
    matrix = confusion(truth, predicted, labels)
    present = matrix.sum(axis=1) > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(matrix)[present] / matrix.sum(axis=1)[present]))


def confusion(truth: list[str], predicted: list[str], labels: tuple[str, ...]) -> np.ndarray:
    """Counts, rows the surrogate's label and columns YASA's call (calls outside ``labels`` dropped)."""
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        if t in labels and p in labels:
            matrix[labels.index(t), labels.index(p)] += 1
    return matrix


def night_agreement(hypnogram: Path, seed: int = 0) -> Agreement:
    """Synthesise the night that follows ``hypnogram`` and stage it with YASA."""
    night = surrogate_night(hypnogram, seed=seed)
    eeg = night.channel("C4") - night.channel("TP9")
    eog = night.channel("EOG") - night.channel("TP10")
    predicted = yasa_stages(eeg, eog, night.sfreq)
    stages = night.hypnogram.stages[: len(predicted)]
    pairs = [(t, p) for t, p in zip(stages, predicted, strict=True) if t != UNSCORED]
    return Agreement(hypnogram.name.split("-")[0], tuple(t for t, _ in pairs), tuple(p for _, p in pairs))


def run_agreement(subject: str, run: str, folder: Path) -> Agreement:
    """Write one ds003768-layout surrogate run and stage it with YASA (4 classes: no REM)."""
    from recordings.session import read_session
    from simulators.surrogate import write_surrogate_run

    write_surrogate_run(folder, subject, run)
    session = read_session(folder, subject, run)
    data = session.eeg_samples(0, session.n_times)
    names = list(session.ch_names)
    eeg = data[:, names.index("C4")] - data[:, names.index("TP9")]
    eog = data[:, names.index("EOG")] - data[:, names.index("TP10")]
    start = round(session.stage_onsets[0] * session.sfreq)
    predicted = yasa_stages(eeg[start:], eog[start:], session.sfreq)
    stages = session.scoring.stages[: len(predicted)]
    pairs = [(t, p) for t, p in zip(stages, predicted, strict=True) if t != UNSCORED]
    return Agreement(f"sub-{subject} {run}", tuple(t for t, _ in pairs), tuple(p for _, p in pairs))


def report(results: list[Agreement], labels: tuple[str, ...], title: str) -> list[str]:
    """Lines of per-recording and pooled figures."""
    lines = [title, f"{'recording':<18}{'epochs':>7}{'kappa':>8}{'bal.acc':>9}"]
    for r in results:
        t, p = list(r.truth), list(r.predicted)
        lines.append(
            f"{r.name:<18}{r.n_epochs:>7}{kappa(t, p, labels):>8.3f}{balanced_accuracy(t, p, labels):>9.3f}"
        )
    truth = [s for r in results for s in r.truth]
    predicted = [s for r in results for s in r.predicted]
    lines.append(
        f"{'pooled':<18}{len(truth):>7}{kappa(truth, predicted, labels):>8.3f}"
        f"{balanced_accuracy(truth, predicted, labels):>9.3f}"
    )
    outside = sum(p not in labels for p in predicted)
    lines.append("confusion (rows: surrogate label, columns: YASA's call)")
    lines.append(" " * 6 + "".join(f"{s:>7}" for s in labels))
    for stage, row in zip(labels, confusion(truth, predicted, labels), strict=True):
        lines.append(f"{stage:<6}" + "".join(f"{n:>7}" for n in row))
    if outside:
        lines.append(
            f"({outside} epochs called a stage outside {', '.join(labels)}, e.g. REM, not counted above)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print and save the agreement figures."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nights", type=int, default=0, help="use only the first N nights (0: all)")
    parser.add_argument("--no-runs", action="store_true", help="skip the ds003768-layout runs")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    hypnograms = shipped_hypnograms()[: args.nights or None]
    nights = [night_agreement(h, args.seed) for h in hypnograms]
    lines = ["YASA (pretrained, EEG C4-TP9 + EOG-TP10, 100 Hz) against surrogate labels", ""]
    lines += report(nights, SLEEP_STAGES, "Surrogate nights following real Sleep-EDF hypnograms (5 classes)")
    if not args.no_runs:
        with tempfile.TemporaryDirectory() as folder:
            runs = [run_agreement(s, r, Path(folder)) for s, r in DS003768_RUNS]
        lines += ["", *report(runs, ("W", "N1", "N2", "N3"), "ds003768-layout surrogate runs (4 classes)")]
    lines += ["", f"seed {args.seed}; {time.perf_counter() - started:.0f} s"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
