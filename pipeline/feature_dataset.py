"""A feature dataset: a folder of Parquet files, one per recording, each saying how it was extracted.

``run_stream.py extract SESSION -o FOLDER/`` writes ``FOLDER/<recording>.parquet`` for every
recording (:mod:`pipeline.batch_extraction`). Each file carries, in its Parquet key-value metadata
under ``sleepstream``:

- ``extraction``: the settings that shape its rows (features, window, artefact correction, YASA,
  dummy scans, EEG unit) and their ``fingerprint``;
- ``inputs``: the recording's files with their sizes and modification times;
- ``contract``: the feature contract of its table (:mod:`pipeline.table_contract`).

A recording whose file holds the same fingerprint and inputs is up to date and is skipped by a
re-run. Files are written whole or not at all (a hidden temporary file renamed into place), so an
interrupted extraction leaves only complete files. The dataset's table is the files' rows
(:func:`model.dataset.read_feature_table` reads the folder) and its contract their contracts merged
(:func:`dataset_contract`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from model.contract import ContractError, validate_contract
from model.dataset import dataset_files

METADATA_KEY = b"sleepstream"
FORMAT_VERSION = 1
PARTIAL_PREFIX = ".partial-"
"""Temporary files being written start with this (hidden: never part of the dataset)."""


def fingerprint(extraction: dict[str, Any]) -> str:
    """A short stable hash of JSON-ready extraction settings."""
    text = json.dumps(extraction, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def input_signature(paths: list[Path]) -> list[dict[str, Any]]:
    """Name, size and modification time of each existing input file (sorted by name)."""
    signature = []
    for path in sorted({Path(p) for p in paths}):
        try:
            stat = path.stat()
        except OSError:
            continue
        signature.append({"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return signature


def recording_file(folder: Path, name: str) -> Path:
    """Where a recording's table goes in the dataset folder."""
    return folder / f"{name}.parquet"


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The ``sleepstream`` metadata of a recording file (its footer only), or None when absent."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def is_up_to_date(path: Path, extraction_fingerprint: str, inputs: list[dict[str, Any]]) -> bool:
    """Whether ``path`` holds the recording extracted with these settings from these input files."""
    if not path.is_file():
        return False
    metadata = read_metadata(path)
    return (
        metadata is not None
        and metadata.get("format") == FORMAT_VERSION
        and metadata.get("extraction", {}).get("fingerprint") == extraction_fingerprint
        and metadata.get("inputs") == inputs
    )


def write_recording(path: Path, table: pd.DataFrame, metadata: dict[str, Any]) -> Path:
    """Write one recording's table with its metadata, atomically (complete file or none).

    Parameters
    ----------
    path : Path
        The final file (see :func:`recording_file`).
    table : pandas.DataFrame
        The recording's feature table.
    metadata : dict
        ``extraction`` (with ``fingerprint``), ``inputs`` and ``contract``.
    """
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    merged = dict(arrow.schema.metadata or {})
    merged[METADATA_KEY] = json.dumps({"format": FORMAT_VERSION, **metadata}).encode()
    arrow = arrow.replace_schema_metadata(merged)
    partial = path.with_name(f"{PARTIAL_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        pq.write_table(arrow, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def remove_partials(folder: Path) -> int:
    """Delete temporary files left by an interrupted extraction; returns how many."""
    partials = list(folder.glob(f"{PARTIAL_PREFIX}*"))
    for partial in partials:
        partial.unlink(missing_ok=True)
    return len(partials)


def is_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding at least one recording file of a feature dataset."""
    path = Path(path)
    return path.is_dir() and any(read_metadata(p) is not None for p in dataset_files(path)[:1])


def dataset_contract(folder: str | Path) -> dict[str, Any]:
    """The contract of the whole dataset: its files' contracts, merged.

    Feature definitions, settings and window geometry must agree across files; the EEG-rate and
    TR ranges span them, the subjects are pooled, and the data are surrogate if any file is.

    Raises
    ------
    ContractError
        If a file lacks its contract, or files were extracted with different settings (naming them).
    """
    files = dataset_files(folder)
    if not files:
        raise ContractError(f"{folder}: no recording file (*.parquet) in this feature dataset")
    contracts: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        metadata = read_metadata(path)
        if metadata is None or not isinstance(metadata.get("contract"), dict):
            raise ContractError(f"{path}: not written by 'extract' (no feature contract in its metadata)")
        contracts.append((path, validate_contract(metadata["contract"], str(path))))
    first_path, first = contracts[0]
    for path, contract in contracts[1:]:
        for key in ("feature_definitions", "features", "window"):
            if contract.get(key) != first.get(key):
                raise ContractError(
                    f"{folder}: {path.name} and {first_path.name} were extracted with different {key}; "
                    "re-run 'extract' on the whole dataset, or move the stale files out"
                )
    merged = dict(first)
    for key in ("eeg_rate_range", "tr_range"):
        spans = [c[key] for _, c in contracts if c.get(key)]
        merged[key] = [min(s[0] for s in spans), max(s[1] for s in spans)] if spans else None
    kinds = {c["data"]["kind"] for _, c in contracts}
    sources = sorted({str(c["data"].get("source")) for _, c in contracts})
    merged["data"] = {
        "kind": "surrogate" if "surrogate" in kinds else "real",
        "subjects": sorted({str(s) for _, c in contracts for s in c["data"].get("subjects", [])}),
        "source": "; ".join(sources),
    }
    return merged
