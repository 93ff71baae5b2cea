"""Small surrogate feature tables for model tests: real stage sequences, synthetic features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.names import FEATURE_NAMES
from recordings.scoring import read_scoring
from simulators.surrogate import SHIPPED_DATASET

# Mean of each feature per stage (delta, theta, alpha, beta, gamma, entropy, coherence, BOLD mean,
# BOLD variance, ALFF mean, ALFF variance): directions as in the surrogate sessions.
STAGE_MEANS = {
    "W": [60, 3, 10, 3.5, 0.6, 0.62, 0.52, 785, 0.6, 1.2, 0.05],
    "N1": [50, 9, 4, 2.5, 0.4, 0.55, 0.50, 785, 0.9, 2.0, 0.10],
    "N2": [160, 8, 2, 1.8, 0.3, 0.46, 0.51, 785, 1.1, 2.8, 0.15],
    "N3": [400, 7, 1.5, 1.5, 0.25, 0.40, 0.55, 785, 1.0, 2.6, 0.14],
}


def surrogate_feature_table(subjects=("04", "09", "15", "19", "24", "27"), runs_per_subject=3, seed=0):
    """One row per 2.1 s window of real scored runs, features drawn around stage means."""
    rng = np.random.default_rng(seed)
    rows = []
    for subject in subjects:
        scoring = read_scoring(SHIPPED_DATASET / "sourcedata" / f"sub-{subject}-sleep-stage.tsv")
        offset = rng.normal(0, 0.15, len(FEATURE_NAMES))  # subject-specific: grouped splits matter
        for (task, run), epochs in list(scoring.items())[:runs_per_subject]:
            ends = np.arange(28.0, epochs.n_epochs * 30, 2.1)
            noise = np.zeros(len(FEATURE_NAMES))
            for index, end in enumerate(ends):
                stage = epochs.stage_at(end)
                base = np.array(STAGE_MEANS.get(stage, STAGE_MEANS["W"]), dtype=float)
                noise = 0.8 * noise + 0.6 * rng.standard_normal(len(FEATURE_NAMES))
                values = base * (1 + offset + 0.35 * noise)
                identity = {"subject": subject, "task": task, "run": run, "window": index}
                features = dict(zip(FEATURE_NAMES, values, strict=True))
                rows.append(
                    {**identity, "start": end - 30, "end": end, **features, "usable": True, "stage": stage}
                )
    return pd.DataFrame(rows)
