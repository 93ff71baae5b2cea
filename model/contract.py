"""A bundle's feature contract: what its features mean, and the checks that refuse a mismatch.

A contract is a JSON-ready dict, written by ``run_stream.py extract`` beside a feature table
(``features.parquet`` -> ``features.json``) and stored by ``train`` in the bundle (``bundle.json``,
key ``contract``)::

    {"feature_definitions": 2,                   # features.config.FEATURE_DEFINITIONS
     "features": {...},                          # FeatureConfig.to_dict()
     "window": {...},                            # WindowConfig.geometry()
     "eeg_rate_range": [250.0, 250.0],           # Hz, over the table's runs
     "tr_range": [2.1, 2.1],                     # s
     "data": {"kind": "surrogate" | "real" | "unknown", "subjects": [...], "source": "..."}}

A table without a contract (the origin app's CSV) gives a contract whose definitions are ``None``
(unknown). Feature settings and window geometry must match exactly, or the bundle is refused with the
setting named; an EEG rate or TR outside the trained range is a warning (:func:`range_warnings`).
"""

from __future__ import annotations

import json
from typing import Any

from features.config import FEATURE_DEFINITIONS

DATA_KINDS = ("surrogate", "real", "unknown")
SYNTHETIC_WARNING = "model trained on synthetic data: its predictions say nothing about real brains"
# Settings that decide only when a feature is missing (NaN), never its value: not part of the check.
NOT_CHECKED = frozenset({"min_fmri_volumes"})
# Relative slack on the trained EEG rate and TR ranges (an amplifier clock a little off is not a new rate).
RANGE_TOLERANCE = 0.02


class ContractError(ValueError):
    """Features computed one way would be fed to a bundle trained on features computed another way."""


def unknown_contract(subjects: list[str] | None = None, source: str | None = None) -> dict[str, Any]:
    """The contract of a table that carries none: definitions unknown.

    Parameters
    ----------
    subjects : list of str | None
        The table's subjects, when known.
    source : str | None
        Where the table came from (its path).
    """
    return {
        "feature_definitions": None,
        "features": None,
        "window": None,
        "eeg_rate_range": None,
        "tr_range": None,
        "data": {"kind": "unknown", "subjects": list(subjects or []), "source": source},
    }


def is_known(contract: dict[str, Any] | None) -> bool:
    """Whether the contract says how the features were computed."""
    return contract is not None and contract.get("feature_definitions") is not None


def is_synthetic(contract: dict[str, Any] | None) -> bool:
    """Whether the contract says the data were surrogate (synthetic) sessions."""
    return contract is not None and (contract.get("data") or {}).get("kind") == "surrogate"


def validate_contract(contract: Any, where: str) -> dict[str, Any]:
    """``contract`` if it has the keys of a contract, else ``ContractError`` naming ``where``."""
    required = ("feature_definitions", "features", "window", "eeg_rate_range", "tr_range", "data")
    if not isinstance(contract, dict):
        raise ContractError(f"{where}: a feature contract must be a JSON object")
    missing = [key for key in required if key not in contract]
    if missing:
        raise ContractError(f"{where}: the feature contract lacks {missing}")
    kind = contract["data"].get("kind") if isinstance(contract["data"], dict) else None
    if kind not in DATA_KINDS:
        raise ContractError(f"{where}: data.kind must be one of {DATA_KINDS}, got {kind!r}")
    definitions = contract["feature_definitions"]
    if definitions is not None and (isinstance(definitions, bool) or not isinstance(definitions, int)):
        raise ContractError(f"{where}: feature_definitions must be a version number or null")
    for key in ("features", "window"):
        if contract[key] is not None and not isinstance(contract[key], dict):
            raise ContractError(f"{where}: {key} must be an object of settings or null")
    for key in ("eeg_rate_range", "tr_range"):
        span = contract[key]
        if span is not None and not (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in span)
        ):
            raise ContractError(f"{where}: {key} must be [lowest, highest] or null")
    return contract


def _plain(value: Any) -> Any:
    """JSON round trip: tuples and lists, ints and floats compare alike."""
    return json.loads(json.dumps(value))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def mismatches(
    trained: dict[str, Any], used: dict[str, Any], used_does: str = "this run computes"
) -> list[str]:
    """Every way ``used`` (a run's or a table's features) differs from ``trained`` (the bundle's).

    Parameters
    ----------
    trained : dict
        The bundle's contract (known definitions).
    used : dict
        The contract of what will be fed (known definitions).
    used_does : str
        How the message speaks of ``used``, e.g. ``"this run computes"``, ``"the table holds"``.

    Returns
    -------
    problems : list of str
        One sentence per differing setting, naming it: ``the bundle was trained with
        features.power_scale = 'log', this run computes 'absolute'``.
    """
    problems = []
    if trained["feature_definitions"] != used["feature_definitions"]:
        problems.append(
            f"the bundle was trained on feature definitions version {trained['feature_definitions']}, "
            f"{used_does} version {used['feature_definitions']} (docs/features.md): retrain it on a table "
            "extracted with the same definitions"
        )
    for section in ("features", "window"):
        ours, theirs = _plain(trained[section] or {}), _plain(used[section] or {})
        for key in sorted(set(ours) | set(theirs)):
            if key in NOT_CHECKED or ours.get(key) == theirs.get(key):
                continue
            problems.append(
                f"the bundle was trained with {section}.{key} = {_show(ours.get(key))}, "
                f"{used_does} {_show(theirs.get(key))}"
            )
    return problems


def check_live(trained: dict[str, Any], used: dict[str, Any], bundle: str) -> None:
    """Refuse to feed live features to a bundle whose contract differs or is unknown.

    Raises
    ------
    ContractError
        Naming the bundle and every setting that differs.
    """
    if not is_known(trained):
        raise ContractError(
            f"the model bundle {bundle} does not say how its features were computed (it was trained on a "
            "table without a feature contract, e.g. the origin app's CSV): it cannot be used live; retrain "
            "it on a table written by 'run_stream.py extract'"
        )
    problems = mismatches(trained, used)
    if problems:
        raise ContractError(f"the model bundle {bundle} does not match this run: " + "; ".join(problems))


def check_table(trained: dict[str, Any], table: dict[str, Any], bundle: str, table_name: str) -> list[str]:
    """Refuse a feature table whose contract differs from the bundle's; notes for what was not checked.

    Both unknown (a bundle trained on the origin app's CSV, evaluated on such a table) is allowed
    with a note; one known and the other unknown is refused (nothing says they agree).

    Returns
    -------
    notes : list of str
        Warnings to show (range, unchecked definitions).

    Raises
    ------
    ContractError
        Naming the setting that differs, or the side whose definitions are unknown.
    """
    if not is_known(trained) and not is_known(table):
        return [
            f"neither the bundle {bundle} nor the table {table_name} carries a feature contract: "
            "that their features were computed alike is not checked"
        ]
    if not is_known(trained):
        raise ContractError(
            f"the model bundle {bundle} does not say how its features were computed (trained on a table "
            f"without a feature contract), but {table_name} does ({describe(table)}): retrain the bundle "
            "on a table written by 'run_stream.py extract'"
        )
    if not is_known(table):
        raise ContractError(
            f"{table_name} carries no feature contract (the .json file 'run_stream.py extract' writes beside "
            f"the table): nothing says it was computed as the bundle {bundle} expects ({describe(trained)})"
        )
    problems = mismatches(trained, table, "the table holds")
    if problems:
        raise ContractError(f"{table_name} does not match the model bundle {bundle}: " + "; ".join(problems))
    notes: list[str] = []
    for rate in sorted(set(table.get("eeg_rate_range") or [])):
        notes += range_warnings(trained, sfreq=float(rate))
    for tr in sorted(set(table.get("tr_range") or [])):
        notes += range_warnings(trained, tr=float(tr))
    return notes


def range_warnings(trained: dict[str, Any], sfreq: float | None = None, tr: float | None = None) -> list[str]:
    """Warnings for an EEG rate or TR outside the range the bundle was trained on.

    A warning, not a refusal: the features are defined in physical units (Hz, seconds), so another
    rate or TR changes their estimates (resolution, volumes per window), not their meaning.
    """
    warnings = []
    for key, value, name, unit in (("eeg_rate_range", sfreq, "EEG rate", "Hz"), ("tr_range", tr, "TR", "s")):
        span = trained.get(key) if trained else None
        if value is None or not span:
            continue
        low, high = float(span[0]), float(span[1])
        if not low * (1 - RANGE_TOLERANCE) <= value <= high * (1 + RANGE_TOLERANCE):
            trained_on = f"{low:g} {unit}" if low == high else f"{low:g}-{high:g} {unit}"
            warnings.append(
                f"{name} {value:g} {unit} is outside the range the model was trained on ({trained_on}): "
                "its features are estimated differently, treat the predictions with caution"
            )
    return warnings


def describe(contract: dict[str, Any] | None) -> str:
    """The contract in one line, e.g. ``feature definitions 2, power_scale 'log', ...``."""
    if not is_known(contract):
        return "feature definitions unknown"
    assert contract is not None
    features, window = contract["features"] or {}, contract["window"] or {}
    parts = [f"feature definitions {contract['feature_definitions']}"]
    shown = {"features": ("power_scale", "coherence", "reference", "alff_band", "alff_measure", "bold_level"),
             "window": ("eeg_window", "fmri_window", "hop", "highpass_hz")}  # fmt: skip
    for section, values in (("features", features), ("window", window)):
        parts += [f"{section}.{key} = {_show(values[key])}" for key in shown[section] if key in values]
    return ", ".join(parts)


def summary(contract: dict[str, Any] | None) -> dict[str, Any]:
    """What a page shows of a bundle's contract: known, synthetic, the one-line description, data."""
    data = (contract or {}).get("data") or {}
    return {
        "known": is_known(contract),
        "synthetic": is_synthetic(contract),
        "description": describe(contract),
        "data_kind": data.get("kind", "unknown"),
        "eeg_rate_range": (contract or {}).get("eeg_rate_range"),
        "tr_range": (contract or {}).get("tr_range"),
    }


def run_contract(features: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
    """The contract of what a live run computes: this version's definitions and the given settings."""
    return {"feature_definitions": FEATURE_DEFINITIONS, "features": features, "window": window}
