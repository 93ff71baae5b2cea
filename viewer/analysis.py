"""The analysis page: upload a CSV of the 11 features, get the shipped model's predictions and 8 views.

Routes (an :class:`fastapi.APIRouter` included by :func:`viewer.app.create_app`):

- ``GET /analysis``: the page (``viewer/static/analysis.html``; the charts are drawn in the browser).
- ``GET /api/analysis/sample.csv``: a sample upload (:mod:`viewer.analysis_sample`).
- ``GET /api/analysis/model``: the model the analysis uses, with its feature contract (what the
  uploaded features must mean).
- ``POST /api/analysis``: the CSV as the raw request body; JSON with the predictions, the feature
  statistics, the correlation matrix, the permutation importance and, with a ``stage`` column, the
  scored stage in its own classes with its confusion table against the predicted classes, or
  (``?format=csv``) the input columns with the predicted label and class probabilities appended.
  An uploaded CSV carries no feature contract: ``?contract=`` may give the table's (the ``.json``
  file ``run_stream.py extract`` writes beside it), and a mismatch with the bundle's refuses the
  upload (422, naming the setting); without it a warning says the features are taken to be
  computed as the bundle expects, and which definitions those are.

The body is read with a byte limit (HTTP 413 beyond, without reading the rest); problems with the
file are all listed (HTTP 422, see :mod:`viewer.csv_validation`). The token is required as on every
``/api`` route when the server has one (:mod:`viewer.auth`). The answers are built by
:mod:`viewer.analysis_report` (the model work in :mod:`model.table_analysis`) in a worker thread, one
analysis at a time, so the live feed served by the same event loop is never held up; their schema is
:mod:`viewer.analysis_models`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from viewer.analysis_models import PROBLEM_RESPONSES, AnalysisResponse
from viewer.analysis_report import analysis_json, contract_problems, model_contract, result_csv
from viewer.analysis_sample import SAMPLE_CSV
from viewer.auth import UNAUTHORISED, require_token
from viewer.csv_validation import AnalysisLimits, Problem, too_large, validate_csv

PAGE = Path(__file__).parent / "static" / "analysis.html"
LIMITS = AnalysisLimits()  # the limits in force when the server sets none (tests may replace them)
FORMATS = ("json", "csv")

router = APIRouter(tags=["analysis"])


class BodyTooLargeError(Exception):
    """The request body exceeds the byte limit."""


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused as soon as it exceeds ``max_bytes`` (never read whole first).

    Raises
    ------
    BodyTooLargeError
        When the declared Content-Length, or the bytes received so far, exceed the limit.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLargeError(int(declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLargeError(None)
    return bytes(body)


def problems_response(status: int, detail: str, problems: list[Problem]) -> JSONResponse:
    """A 413/422 answer listing the problems."""
    return JSONResponse(
        {"detail": detail, "problems": [p.to_dict() for p in problems]},
        status_code=status,
    )


@router.get("/analysis", include_in_schema=False)
def analysis_page() -> FileResponse:
    """The analysis page."""
    return FileResponse(PAGE)


@router.get(
    "/api/analysis/sample.csv",
    summary="A sample CSV for the analysis page",
    description="Real feature rows (one per 2.1-s window) of the bundled surrogate session, with the "
    "scored stage, in the layout the analysis accepts.",
    response_class=FileResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **UNAUTHORISED},
)
def sample_csv(request: Request) -> FileResponse:
    """Download the sample CSV."""
    require_token(request)
    return FileResponse(SAMPLE_CSV, media_type="text/csv", filename="sleepstream-sample-features.csv")


@router.get(
    "/api/analysis/model",
    summary="The model the analysis uses and its feature contract",
    description="Identity, labels, context and the feature contract of the bundle that predicts the "
    "uploads: the feature definitions and settings, window geometry, EEG rate and TR ranges and the data "
    "it was trained on (contract.synthetic: surrogate sessions).",
    responses=UNAUTHORISED,
)
async def analysis_model(request: Request) -> dict:
    """The analysis model's identity and feature contract."""
    require_token(request)
    return await asyncio.to_thread(model_contract, getattr(request.app.state.server, "bundle", None))


@router.post(
    "/api/analysis",
    summary="Predict every row of a CSV of the 11 features and analyse it",
    description="Send the CSV file as the raw request body (Content-Type text/csv). Rows are consecutive "
    "2.1-s windows in file order, grouped into runs by subject/task/run columns when present. Answers "
    "JSON (predictions, statistics, correlation, permutation importance), or with format=csv the input "
    "columns followed by predicted_label and probability_<class>. Every problem of a refused file is "
    "listed (422); a body over the byte limit is refused as soon as the limit is passed (413).",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        200: {
            "model": AnalysisResponse,
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "the analysis (JSON), or the result table (format=csv)",
        },
        **PROBLEM_RESPONSES,
    },
)
async def analyse(
    request: Request,
    # Checked here, not by FastAPI, so that a wrong value is answered like every other refused upload:
    # 422 with a list of problems (the documented answer), not FastAPI's own validation error.
    format: str = Query(
        "json",
        description="json: the analysis; csv: the result table",
        json_schema_extra={"enum": list(FORMATS)},
    ),
    contract: str | None = Query(
        None,
        description="the table's feature contract as JSON (the .json file 'run_stream.py extract' writes "
        "beside it); checked against the bundle's: a mismatch refuses the upload, naming the setting",
    ),
) -> Response:
    """Validate, predict and analyse an uploaded feature table."""
    require_token(request)
    if format not in FORMATS:
        shown = format if len(format) <= 40 else format[:40] + "…"
        problem = Problem("bad_parameter", f"format={shown!r} is not one of {', '.join(FORMATS)}")
        return problems_response(422, problem.message, [problem])
    state = request.app.state.server
    limits: AnalysisLimits = getattr(state, "analysis_limits", None) or LIMITS
    try:
        data = await read_body(request, limits.max_bytes)
    except BodyTooLargeError as err:
        problem = too_large(limits, err.args[0])
        return problems_response(413, problem.message, [problem])
    result = await asyncio.to_thread(validate_csv, data, limits)
    if result.table is None:
        detail = f"{len(result.errors)} problem(s) prevent the analysis of this file"
        return problems_response(422, detail, result.problems)
    bundle = getattr(state, "bundle", None)
    contract_errors, contract_warnings = await asyncio.to_thread(contract_problems, bundle, contract)
    if contract_errors:
        return problems_response(422, contract_errors[0].message, contract_errors)
    if format == "csv":
        text = await asyncio.to_thread(result_csv, data, result.table, bundle)
        return Response(
            text,
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="sleepstream-predictions.csv"'},
        )
    warnings = [p.to_dict() for p in result.warnings + contract_warnings]
    content = await asyncio.to_thread(analysis_json, result.table, bundle, limits, warnings)
    return Response(content, media_type="application/json")
