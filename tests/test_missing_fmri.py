"""One bundle predicts with and without fMRI (modality dropout), and the five stages W, N1, N2, N3, REM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.names import EEG_FEATURES, FEATURE_NAMES, FMRI_FEATURES
from model.dataset import MODEL_INPUTS, Scaler, context_sequences, fmri_present, trainable_rows
from model.labels import label_names, make_labels

STAGES = ("W", "N1", "N2", "N3", "R")
CONTEXT = 2


def stage_table(
    subjects: tuple[str, ...], stages: tuple[str, ...] = STAGES, windows_per_stage: int = 16, seed: int = 0
) -> pd.DataFrame:
    """Runs of stage blocks; each stage has its own EEG means, and its own fMRI means.

    The EEG alone separates the stages (each stage is far from the others on one EEG feature); the
    fMRI features are informative too, so that a fusion model without modality dropout would lean on them.
    """
    rng = np.random.default_rng(seed)
    n_eeg, n_fmri = len(EEG_FEATURES), len(FMRI_FEATURES)
    rows = []
    for subject in subjects:
        order = rng.permutation(len(stages))
        window = 0
        for block in range(2):
            for k in order if block == 0 else order[::-1]:
                stage = stages[k]
                code = STAGES.index(stage)
                eeg_mean = np.full(n_eeg, 1.0)
                eeg_mean[code] += 3.0  # stage k raises EEG feature k
                fmri_mean = np.full(n_fmri, 1.0) + 0.8 * np.sin(np.arange(n_fmri) + code)
                for _ in range(windows_per_stage):
                    eeg = eeg_mean + 0.5 * rng.standard_normal(n_eeg)
                    fmri = fmri_mean + 0.3 * rng.standard_normal(n_fmri)
                    features = dict(zip(FEATURE_NAMES, np.concatenate([eeg, fmri]), strict=True))
                    rows.append(
                        {"subject": subject, "task": "sleep", "run": 1, "window": window, **features,
                         "usable": True, "stage": stage}
                    )  # fmt: skip
                    window += 1
    return pd.DataFrame(rows)


def without_fmri(features: np.ndarray) -> np.ndarray:
    """The same features with the four fMRI ones NaN (no BOLD, or fMRI stalled)."""
    out = np.array(features, dtype=float, copy=True)
    out[..., len(EEG_FEATURES) :] = np.nan
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small five-stage bundle trained with modality dropout, and its held-out table."""
    from model.bundle import ModelBundle, load_bundle
    from model.fitting import fit_network, prepare
    from model.training import TrainConfig

    train_table = stage_table(("a", "b", "c", "d", "e", "f"), seed=1)
    # One training run has no BOLD at all: its windows are trained on with fMRI absent.
    no_bold = train_table["subject"] == "f"
    train_table.loc[no_bold, list(FMRI_FEATURES)] = np.nan
    train_table.loc[no_bold, "usable"] = False
    config = TrainConfig(labels="stages", context=CONTEXT, folds=0, epochs=20, patience=5, seed=3)
    data = prepare(train_table, config)
    assert (data.subjects == "f").any(), "windows without fMRI must be trainable"
    scaler = Scaler.fit(data.current)
    x = scaler.transform(data.sequences(CONTEXT))
    fit = np.isin(data.subjects, ["a", "b", "c", "d"])
    network = fit_network(x[fit], data.y[fit], x[~fit], data.y[~fit], len(data.names), config)
    folder = tmp_path_factory.mktemp("five-stages")
    ModelBundle(model=network, scaler=scaler, labels="stages", label_names=data.names, context=CONTEXT).save(
        folder
    )
    return load_bundle(folder), stage_table(("x", "y"), seed=2)


def held_out(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    features = table[list(FEATURE_NAMES)].to_numpy(float)
    runs = pd.factorize(table["subject"])[0]
    return context_sequences(features, runs, CONTEXT), make_labels(table, "stages")


def balanced_accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    predicted = proba.argmax(axis=1)
    return float(np.mean([(predicted[y == k] == k).mean() for k in np.unique(y)]))


def test_the_stages_scheme_has_five_classes_with_rem():
    assert label_names("stages") == ("W", "N1", "N2", "N3", "R")
    table = pd.DataFrame({"stage": ["W", "N1", "N2", "N3", "R", "unscored", None]})
    assert make_labels(table, "stages").tolist() == [0, 1, 2, 3, 4, -1, -1]
    assert make_labels(table, "wake-sleep").tolist() == [0, 1, 1, 1, 1, -1, -1]  # REM is sleep


def test_the_model_input_carries_an_fmri_present_indicator():
    rows = np.arange(33, dtype=float).reshape(3, 11)
    rows[1, 8] = np.nan  # one fMRI feature missing: the window has no usable fMRI
    rows[2, 0] = np.nan  # an EEG feature missing: fMRI still present
    scaler = Scaler.fit(rows)
    scaled = scaler.transform(rows)
    assert scaled.shape == (3, MODEL_INPUTS) == (3, 12)
    assert scaled[:, -1].tolist() == [1.0, 0.0, 1.0]
    assert fmri_present(rows).tolist() == [True, False, True]
    # A feature never finite in training (a table without BOLD) scales as mean 0, scale 1, no NaN.
    blank = Scaler.fit(without_fmri(rows))
    assert np.isfinite(blank.mean).all() and np.isfinite(blank.scale).all()
    assert blank.transform(without_fmri(rows))[:, -1].tolist() == [0.0, 0.0, 0.0]


def test_windows_without_fmri_are_trainable_unless_their_eeg_is_bad():
    table = stage_table(("a",), stages=("W", "N2"), windows_per_stage=2)
    table["problem_codes"] = ""
    table.loc[[1, 2, 3], list(FMRI_FEATURES)] = np.nan
    table.loc[[1, 2, 3], "usable"] = False
    table.loc[2, "problem_codes"] = "few_fmri_volumes;eeg_coverage_low"
    table.loc[3, "eeg_alpha_power"] = np.nan
    table.loc[4, "usable"] = False  # unusable although its fMRI is there: not for want of fMRI
    keep = trainable_rows(table, make_labels(table, "stages"))
    assert keep.tolist() == [True, True, False, False, False, True, True, True]


def test_one_bundle_predicts_with_and_without_fmri(trained):
    bundle, table = trained
    assert bundle.label_names == STAGES
    sequences, y = held_out(table)
    with_fmri = bundle.predict_sequences(sequences)
    eeg_only = bundle.predict_sequences(without_fmri(sequences))
    for proba in (with_fmri, eeg_only):
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    chance = 1 / len(STAGES)
    assert balanced_accuracy(y, with_fmri) > 0.6 > 3 * chance - 0.01
    assert balanced_accuracy(y, eeg_only) > 0.6
    # Every stage, REM included, is predicted for some of its windows without fMRI.
    assert set(eeg_only.argmax(axis=1)) == set(range(len(STAGES)))
    # Without fMRI the model is told so: its output differs from that with the fMRI features imputed.
    imputed = sequences.copy()
    imputed[..., len(EEG_FEATURES) :] = bundle.scaler.mean[len(EEG_FEATURES) :]
    assert not np.allclose(bundle.predict_sequences(imputed), eeg_only, atol=1e-4)


@pytest.mark.parametrize("backend", ["tf-function", "litert"])
def test_the_live_predictor_leaves_fmri_out_when_told_or_when_it_is_missing(trained, backend):
    from model.inference import Predictor

    bundle, table = trained
    source = bundle if backend == "tf-function" else bundle.path
    features = table[list(FEATURE_NAMES)].to_numpy(float)[:20]
    runs = np.zeros(20, int)
    missing = np.arange(20) >= 10  # fMRI stalls from the 11th window on
    rows = np.where(missing[:, None] & (np.arange(11) >= len(EEG_FEATURES)), np.nan, features)
    batched = bundle.predict_sequences(context_sequences(rows, runs, CONTEXT))
    # Told to leave fMRI out (stale volumes: finite features, not to be used)...
    told = Predictor(source, backend=backend)
    pairs = zip(features, missing, strict=True)
    live = np.array([told.predict(row, fmri_present=not gone) for row, gone in pairs])
    np.testing.assert_allclose(live, batched, atol=1e-5)
    # ... or the fMRI features missing: the same predictions.
    nan = Predictor(source, backend=backend)
    np.testing.assert_allclose(np.array([nan.predict(row) for row in rows]), batched, atol=1e-5)
    with_fmri = bundle.predict_sequences(context_sequences(features, runs, CONTEXT))
    assert not np.allclose(live[missing], with_fmri[missing], atol=1e-4)


def test_a_stage_absent_from_training_keeps_its_output(trained):
    """Trained on a table without REM (as ds003768): five outputs, REM counted 0, no crash."""
    from model.fitting import fit_network, prepare
    from model.training import TrainConfig, _data_summary

    bundle, _ = trained
    table = stage_table(("a", "b"), stages=("W", "N1", "N2", "N3"), windows_per_stage=4)
    config = TrainConfig(labels="stages", context=1, folds=0, epochs=1, patience=0)
    data = prepare(table, config)
    assert data.names == STAGES and _data_summary(data)["class_counts"]["R"] == 0
    x = Scaler.fit(data.current).transform(data.sequences(1))
    network = fit_network(x, data.y, x, data.y, len(data.names), config)
    proba = np.asarray(network.predict(x, verbose=0))
    assert proba.shape == (len(x), len(STAGES)) and np.isfinite(proba).all()
    meta = json.loads((bundle.path / "bundle.json").read_text())
    assert meta["format"] == 3
