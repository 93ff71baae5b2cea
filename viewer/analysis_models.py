"""The analysis page's answers as pydantic models: the OpenAPI schema of ``/api/analysis``.

The answers themselves are built as plain JSON (:mod:`viewer.analysis_report`); these models
document them in ``/openapi.json`` and ``/docs``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from viewer.auth import UNAUTHORISED


class ProblemModel(BaseModel):
    """One problem of an upload (see :class:`viewer.csv_validation.Problem`)."""

    kind: str = Field(
        description=(
            "machine-readable kind, e.g. missing_columns, non_numeric, too_many_rows; "
            "contract_mismatch (the upload's feature contract differs from the model's), "
            "contract_unchecked (no contract sent), contract_note, synthetic_model"
        )
    )
    message: str = Field(description="what is wrong and how to fix it")
    severity: Literal["error", "warning"]
    column: str | None = None
    columns: list[str] = []
    lines: list[int] = Field([], description="file lines of the first examples (header = line 1)")
    count: int | None = None
    suggestion: str | None = Field(None, description="the known column a misnamed one probably means")


class ProblemsResponse(BaseModel):
    """The upload was refused: every problem found."""

    detail: str
    problems: list[ProblemModel]


class AnalysisResponse(BaseModel):
    """Predictions and the data of the 8 views, as column arrays over the rows."""

    rows: int
    feature_names: list[str]
    label_names: list[str]
    features: dict[str, list[float]]
    probabilities: dict[str, list[float]] = Field(description="class name -> probability of every row")
    predicted: list[int] = Field(description="index into label_names of every row")
    prediction_counts: dict[str, int]
    lines: list[int] = Field(description="file line of every row (header = line 1)")
    groups: dict[str, Any] = Field(description="names of the row groups (runs) and the group of every row")
    scored: dict[str, Any] | None = Field(
        description="scored labels in the bundle's classes (accuracy, balanced accuracy), when the file has "
        "a usable column"
    )
    stages: dict[str, Any] | None = Field(
        description="the scored stage in its own classes (W, N1, N2, N3, R: those present), the stage of "
        "every row and the confusion table (stage x predicted class), when the file has a stage column"
    )
    feature_stats: dict[str, dict[str, float | None]] = Field(
        description="mean, sd, min, max of every feature; None where it overflows (values near 1e308)"
    )
    correlation: list[list[float | None]] = Field(description="11 x 11 Pearson correlation of the features")
    importance: dict[str, Any] = Field(description="permutation importance: method, mean and sd per feature")
    context: dict[str, Any]
    model: dict[str, Any]
    warnings: list[ProblemModel]


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **UNAUTHORISED,
    413: {"model": ProblemsResponse, "description": "the body is larger than the byte limit"},
    422: {"model": ProblemsResponse, "description": "the file is not a usable CSV of the 11 features"},
}
"""The refusals of ``POST /api/analysis`` in the OpenAPI schema."""
