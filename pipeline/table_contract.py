"""A feature table's contract, in a sidecar beside the table: ``features.parquet`` -> ``features.json``.

``run_stream.py extract`` writes it (:func:`write_table_contract`); ``train`` stores it in the bundle and
``evaluate`` checks a table's against the bundle's (:mod:`model.contract` describes the fields).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from features.config import FEATURE_DEFINITIONS, FeatureConfig
from model.contract import ContractError, unknown_contract, validate_contract
from recordings.bids import RunPaths
from stream.config import WindowConfig

SURROGATE_MARK = "SurrogateData"  # the key surrogate sessions carry in their BIDS sidecars


def contract_path(table: str | Path) -> Path:
    """The sidecar of a feature table: the same name with ``.json``."""
    return Path(table).with_suffix(".json")


def _sidecar(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def _span(values: list[float]) -> list[float] | None:
    return [float(min(values)), float(max(values))] if values else None


def table_contract(
    table: pd.DataFrame,
    runs: list[RunPaths],
    feature_config: FeatureConfig,
    window_config: WindowConfig,
    source: str,
    synthetic: bool | None = None,
) -> dict[str, Any]:
    """The contract of a table extracted from ``runs`` with these settings.

    Parameters
    ----------
    table : pandas.DataFrame
        The extracted table (its ``subject`` column; ``sfreq`` and ``tr`` columns when present).
    runs : list of RunPaths
        The runs it was extracted from: their BIDS sidecars give the EEG rate and TR when the
        table has no such columns, and say whether the data are surrogate (``SurrogateData``).
    feature_config, window_config : FeatureConfig, WindowConfig
        The settings of the extraction.
    source : str
        ``"surrogate"`` or the dataset's path.
    synthetic : bool | None
        Whether the data are surrogate; by default from the runs' sidecars.
    """
    eeg_sidecars = [_sidecar(run.eeg_sidecar) for run in runs]
    bold_sidecars = [_sidecar(run.bold_sidecar) for run in runs]
    if "sfreq" in table:
        rates = [float(v) for v in pd.unique(table["sfreq"].dropna())]
    else:
        rates = [float(s["SamplingFrequency"]) for s in eeg_sidecars if "SamplingFrequency" in s]
    if "tr" in table:
        trs = [float(v) for v in pd.unique(table["tr"].dropna())]
    else:
        trs = [float(s["RepetitionTime"]) for s in bold_sidecars if "RepetitionTime" in s]
    if synthetic is None:
        synthetic = any(SURROGATE_MARK in s for s in eeg_sidecars + bold_sidecars)
    return {
        "feature_definitions": FEATURE_DEFINITIONS,
        "features": feature_config.to_dict(),
        "window": window_config.geometry(),
        "eeg_rate_range": _span(rates),
        "tr_range": _span(trs),
        "data": {
            "kind": "surrogate" if synthetic else "real",
            "subjects": sorted({str(s) for s in table["subject"]}) if "subject" in table else [],
            "source": source,
        },
    }


def write_table_contract(table_path: str | Path, contract: dict[str, Any]) -> Path:
    """Write the contract beside the table; returns the sidecar's path."""
    path = contract_path(table_path)
    path.write_text(json.dumps(contract, indent=2) + "\n")
    return path


def read_table_contract(table_path: str | Path, table: pd.DataFrame | None = None) -> dict[str, Any]:
    """The contract beside a table (or in a feature dataset's files), or an unknown one when it has none.

    Parameters
    ----------
    table_path : path-like
        The feature table.
    table : pandas.DataFrame | None
        The table read, to list its subjects in an unknown contract.

    Raises
    ------
    ContractError
        If the sidecar exists but is not a contract (naming the file), or the files of a feature
        dataset folder disagree (see :func:`pipeline.feature_dataset.dataset_contract`).
    """
    if Path(table_path).is_dir():
        from pipeline.feature_dataset import dataset_contract

        return dataset_contract(table_path)
    path = contract_path(table_path)
    if not path.is_file():
        subjects = sorted({str(s) for s in table["subject"]}) if table is not None else []
        return unknown_contract(subjects, str(table_path))
    try:
        contract = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ContractError(f"{path}: invalid JSON ({err.msg}, line {err.lineno})") from None
    return validate_contract(contract, str(path))
