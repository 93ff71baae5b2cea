"""The analysis page's answers for a validated upload: the JSON of the 8 views, or the result CSV.

The model work (:mod:`model.table_analysis`) runs one analysis at a time (:data:`MODEL_LOCK`); these
functions are called in a worker thread, so the JSON of a large file is also serialised there.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from features.names import FEATURE_NAMES
from model.bundle import DEFAULT_BUNDLE, ModelBundle, load_bundle
from model.contract import (
    SYNTHETIC_WARNING,
    ContractError,
    check_table,
    describe,
    is_synthetic,
    validate_contract,
)
from model.table_analysis import (
    accuracy_description,
    agreement,
    permutation_importance,
    predict_table,
    run_groups,
    scored_labels,
    scored_stages,
)
from viewer.csv_validation import AnalysisLimits, FeatureTable, Problem, read_rows

MODEL_LOCK = threading.Lock()  # one analysis at a time; also guards the lazy default bundle
_default: dict[str, ModelBundle] = {}


def bundle_or_default(bundle: ModelBundle | None) -> ModelBundle:
    """``bundle``, or the shipped default bundle (loaded once) when None.

    Call with :data:`MODEL_LOCK` held.
    """
    if bundle is not None:
        return bundle
    if "bundle" not in _default:
        _default["bundle"] = load_bundle(DEFAULT_BUNDLE)
    return _default["bundle"]


def model_contract(bundle: ModelBundle | None) -> dict[str, Any]:
    """What the analysis page shows of the model before any upload: identity and feature contract."""
    with MODEL_LOCK:
        model = bundle_or_default(bundle)
    return {
        **model.identity,
        "path": Path(model.path).name if model.path else None,
        "feature_contract": model.contract,
    }


def contract_problems(
    bundle: ModelBundle | None, contract_text: str | None
) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings of an upload's feature contract against the bundle's.

    An uploaded CSV carries no contract: without one the features are taken to be computed as the
    bundle expects, and a warning says so with the bundle's definitions; with one (the ``.json``
    file ``run_stream.py extract`` writes beside a table, as the ``contract`` query parameter) a
    mismatch refuses the upload, naming the setting.

    Parameters
    ----------
    bundle : ModelBundle | None
        The server's bundle; the shipped default when None.
    contract_text : str | None
        The upload's contract as JSON text, if given.

    Returns
    -------
    errors, warnings : list of Problem
        Errors refuse the upload (422).
    """
    with MODEL_LOCK:
        model = bundle_or_default(bundle)
    name = Path(model.path).name if model.path else "in use"
    errors: list[Problem] = []
    warnings: list[Problem] = []
    if contract_text is None:
        warnings.append(
            Problem(
                "contract_unchecked",
                "the upload carries no feature contract: its features are taken to be computed as the model "
                f"expects ({describe(model.contract)}); send the table's contract (the .json file "
                "'run_stream.py extract' writes beside it) to have it checked",
                severity="warning",
            )
        )
    else:
        try:
            contract = validate_contract(json.loads(contract_text), "contract")
        except (ValueError, RecursionError) as err:  # invalid JSON, or not a contract (ContractError)
            errors.append(Problem("bad_parameter", f"contract: not a feature contract ({err})"))
        else:
            try:
                notes = check_table(model.contract, contract, name, "the uploaded table")
            except ContractError as err:
                errors.append(Problem("contract_mismatch", str(err)))
            else:
                warnings += [Problem("contract_note", note, severity="warning") for note in notes]
    if is_synthetic(model.contract):
        warnings.append(Problem("synthetic_model", SYNTHETIC_WARNING, severity="warning"))
    return errors, warnings


def analysis_json(
    table: FeatureTable, bundle: ModelBundle | None, limits: AnalysisLimits, warnings: list[dict]
) -> bytes:
    """The JSON answer of ``POST /api/analysis`` (:class:`viewer.analysis_models.AnalysisResponse`).

    Parameters
    ----------
    table : FeatureTable
        The validated upload.
    bundle : ModelBundle | None
        The server's bundle; the shipped default when None.
    limits : AnalysisLimits
        The limits in force (rows and repeats of the permutation importance).
    warnings : list of dict
        The validation's warnings, passed through.

    Returns
    -------
    content : bytes
        UTF-8 JSON (megabytes for large files).
    """
    report = analysis(table, bundle, limits)
    report["warnings"] = warnings
    return json.dumps(report, allow_nan=False, separators=(",", ":")).encode()


def analysis(table: FeatureTable, bundle: ModelBundle | None, limits: AnalysisLimits) -> dict[str, Any]:
    """The analysis of a validated upload, as a JSON-ready dict without the warnings."""
    features = table.features
    groups, group_names = run_groups(table.metadata, table.n_rows)
    with MODEL_LOCK:
        model = bundle_or_default(bundle)
        probabilities = predict_table(model, features, groups)
        scored = scored_labels(table.metadata, model.labels, model.label_names)
        labels = scored[0] if scored else None
        importance = permutation_importance(
            model,
            features,
            groups,
            labels,
            max_rows=limits.importance_rows,
            repeats=limits.importance_repeats,
        )
    names = list(model.label_names)
    predicted = probabilities.argmax(axis=1)
    scored_record = None
    if scored is not None:
        labels, column = scored
        scored_record = {
            "column": column,
            "against": accuracy_description(column, model.labels, model.label_names),
            "labels": labels.tolist(),
            **agreement(labels, predicted),
        }
    return {
        "rows": table.n_rows,
        "feature_names": list(FEATURE_NAMES),
        "label_names": names,
        "features": {name: features[:, j].tolist() for j, name in enumerate(FEATURE_NAMES)},
        "probabilities": {name: np.round(probabilities[:, i], 7).tolist() for i, name in enumerate(names)},
        "predicted": predicted.tolist(),
        "prediction_counts": {name: int(np.sum(predicted == i)) for i, name in enumerate(names)},
        "lines": table.lines.tolist(),
        "groups": {"names": group_names, "index": groups.tolist()},
        "scored": scored_record,
        "stages": scored_stages(table.metadata, predicted, model.labels, model.label_names),
        "feature_stats": feature_stats(features),
        "correlation": correlation(features),
        "importance": importance,
        "context": {
            "K": model.context,
            "padding": "the first K-1 rows of each group repeat the group's first row to fill the context "
            "(as in training and the live predictor)",
        },
        "model": {**model.identity, "path": Path(model.path).name if model.path else None},
    }


def feature_stats(features: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Mean, sd, min and max of every feature (:func:`column_stats`)."""
    return {name: column_stats(column) for name, column in zip(FEATURE_NAMES, features.T, strict=True)}


def column_stats(column: np.ndarray) -> dict[str, float | None]:
    """Mean, sd, min and max of one column; None for a figure beyond the float range.

    Values near the float limit (an upload may hold 1e308) overflow the sums: the mean and sd are
    then computed on the column divided by its largest magnitude and scaled back.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(column))
        sd = float(np.std(column, ddof=1)) if column.size > 1 else 0.0
        if not (math.isfinite(mean) and math.isfinite(sd)):
            peak = float(np.max(np.abs(column)))
            unit = column / peak
            mean = float(np.mean(unit)) * peak
            sd = float(np.std(unit, ddof=1)) * peak if column.size > 1 else 0.0
    figures = {"mean": mean, "sd": sd, "min": float(np.min(column)), "max": float(np.max(column))}
    return {key: value if math.isfinite(value) else None for key, value in figures.items()}


def correlation(features: np.ndarray) -> list[list[float | None]]:
    """Pearson correlation of the features; None where a feature is constant (or fewer than 2 rows)."""
    if features.shape[0] < 2:
        return [[None] * len(FEATURE_NAMES) for _ in FEATURE_NAMES]
    # The correlation does not depend on each column's scale: dividing by its largest magnitude keeps
    # the sums of squares finite for values near the float limit.
    peaks = np.abs(features).max(axis=0)
    features = features / np.where(peaks > 0, peaks, 1.0)
    centred = features - features.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix = (centred.T @ centred) / np.outer(norms, norms)
    return [[float(v) if np.isfinite(v) else None for v in row] for row in np.clip(matrix, -1.0, 1.0)]


def result_csv(data: bytes, table: FeatureTable, bundle: ModelBundle | None) -> str:
    """The input columns (as written in the file) with ``predicted_label`` and ``probability_<class>``.

    Parameters
    ----------
    data : bytes
        The upload as received.
    table : FeatureTable
        Its validated table.
    bundle : ModelBundle | None
        The server's bundle; the shipped default when None.

    Returns
    -------
    text : str
        Comma-separated, one line per record; columns of the added names in the input (from an
        earlier run) are replaced.
    """
    groups, _ = run_groups(table.metadata, table.n_rows)
    with MODEL_LOCK:
        model = bundle_or_default(bundle)
        probabilities = predict_table(model, table.features, groups)
    names = list(model.label_names)
    added = ["predicted_label", *(f"probability_{name}" for name in names)]
    text = data.decode("utf-8-sig")
    records = read_rows(text, table.delimiter)
    _, header = next(records)
    keep = [i for i, name in enumerate(header) if name.strip() not in added]  # results of an earlier run
    out = io.StringIO()
    minimal = csv.writer(out, lineterminator="\n")
    # The csv module quotes a field holding "\r" only when "\r" is in the line terminator: a row with
    # one is written fully quoted, or a reader would see a line break inside the field.
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def write(cells: list[str]) -> None:
        (quoted if any("\r" in cell for cell in cells) else minimal).writerow(cells)

    write([header[i] for i in keep] + added)
    for row, (_, fields) in enumerate(records):
        p = probabilities[row]
        write([fields[i] for i in keep] + [names[int(np.argmax(p))], *(f"{v:.6g}" for v in p)])
    return out.getvalue()
