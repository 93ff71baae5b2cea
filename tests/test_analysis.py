"""The analysis page: real uvicorn, real HTTP, the shipped model, the validation and the browser page."""

from __future__ import annotations

import csv
import http.client
import io
import json
import math
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.stages import canonical_stage
from features.names import FEATURE_NAMES
from model import table_analysis
from viewer import analysis, analysis_sample
from viewer.app import ServerState
from viewer.csv_validation import AnalysisLimits, validate_csv
from viewer.server import LiveServer

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT / "viewer" / "static" / "analysis-sample.csv"
TOKEN = "analysis-test-token"


@pytest.fixture(scope="module")
def bundle():
    from model.bundle import load_bundle

    return load_bundle(PROJECT / "model" / "default_bundle")


@pytest.fixture(scope="module")
def server(bundle):
    with LiveServer(ServerState(bundle=bundle)) as live:
        yield live


@pytest.fixture(scope="module")
def token_server(bundle):
    with LiveServer(ServerState(bundle=bundle, token=TOKEN)) as live:
        yield live


def request(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """Status, headers and body of a GET (no body) or POST, errors included."""
    method = "GET" if body is None else "POST"
    call = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if body is not None:
        call.add_header("Content-Type", "text/csv")
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def analyse(server, body: bytes, query: str = "", headers: dict | None = None) -> tuple[int, object]:
    status, _, content = request(f"{server.url}/api/analysis{query}", body, headers)
    return status, json.loads(content)


def predictor_probabilities(bundle, table: pd.DataFrame, group_columns: list[str]) -> np.ndarray:
    """The live predictor, one row at a time, reset at every change of group (file order)."""
    from model.inference import Predictor

    predictor = Predictor(bundle)
    keys = (
        table[group_columns].astype(str).agg("|".join, axis=1)
        if group_columns
        else pd.Series([""] * len(table))
    )
    rows, previous = [], None
    for key, features in zip(keys, table[list(FEATURE_NAMES)].to_numpy(float), strict=True):
        if key != previous:
            predictor.reset()
            previous = key
        rows.append(predictor.predict(features))
    return np.array(rows)


def sample_frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE, keep_default_na=False)


def to_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


# ---------------------------------------------------------------- predictions


def test_sample_csv_downloads_and_analyses_to_the_live_predictors_probabilities(server, bundle):
    status, headers, content = request(f"{server.url}/api/analysis/sample.csv")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert content == SAMPLE.read_bytes()
    status, report = analyse(server, content)
    assert status == 200, report
    table = pd.read_csv(io.BytesIO(content), keep_default_na=False)
    assert report["rows"] == len(table) >= 300
    assert report["label_names"] == list(bundle.label_names)
    expected = predictor_probabilities(bundle, table, ["subject", "task", "run"])
    got = np.column_stack([report["probabilities"][name] for name in bundle.label_names])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert report["predicted"] == expected.argmax(axis=1).tolist()
    assert sum(report["prediction_counts"].values()) == len(table)
    assert report["lines"][:2] == [2, 3]
    # Features come back as uploaded; the correlation is numpy's.
    np.testing.assert_allclose(report["features"]["bold_mean"], table["bold_mean"])
    np.testing.assert_allclose(
        np.array(report["correlation"], float), np.corrcoef(table[list(FEATURE_NAMES)].T), atol=1e-9
    )
    # The sample is scored: importance is label-based, the agreement is reported.
    assert report["scored"]["column"] == "stage" and report["scored"]["labelled_rows"] == len(table)
    importance = report["importance"]
    assert importance["method"] == "balanced_accuracy_drop"
    assert set(importance["mean"]) == set(FEATURE_NAMES) == set(importance["sd"])
    assert importance["repeats"] == analysis.LIMITS.importance_repeats >= 2
    assert all(math.isfinite(v) and v >= 0 for v in importance["sd"].values())
    assert importance["baseline"] == pytest.approx(report["scored"]["balanced_accuracy"])
    assert report["context"]["K"] == bundle.context
    # No feature contract came with the upload: said, with the definitions the model expects.
    assert [w["kind"] for w in report["warnings"]] == ["contract_unchecked", "synthetic_model"]
    assert "feature definitions" in report["warnings"][0]["message"]
    assert report["model"]["contract"]["synthetic"] is True


def test_each_run_starts_its_own_context_and_unscored_files_get_label_free_importance(server, bundle):
    table = sample_frame().drop(columns=["stage"]).head(120)
    table["run"] = np.where(np.arange(len(table)) < 50, 1, 2)  # two runs, one after the other
    status, report = analyse(server, to_csv(table))
    assert status == 200, report
    assert report["groups"]["names"] == ["27 / sleep / 1", "27 / sleep / 2"]
    assert report["groups"]["index"][49:51] == [0, 1]
    expected = predictor_probabilities(bundle, table, ["subject", "task", "run"])
    got = np.column_stack([report["probabilities"][name] for name in bundle.label_names])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert report["scored"] is None
    assert report["importance"]["method"] == "mean_abs_probability_change"
    assert "no scored labels" in report["importance"]["description"]


def test_result_csv_has_the_input_columns_then_the_predictions(server, bundle):
    content = SAMPLE.read_bytes()
    status, headers, body = request(f"{server.url}/api/analysis?format=csv", content)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert "attachment" in headers["content-disposition"]
    result = pd.read_csv(io.BytesIO(body), keep_default_na=False)
    original = sample_frame()
    added = ["predicted_label", *(f"probability_{name}" for name in bundle.label_names)]
    assert list(result.columns) == list(original.columns) + added
    pd.testing.assert_frame_equal(result[original.columns], original)
    _, report = analyse(server, content)
    for name in bundle.label_names:
        np.testing.assert_allclose(result[f"probability_{name}"], report["probabilities"][name], atol=1e-6)
    assert result["predicted_label"].tolist() == [bundle.label_names[i] for i in report["predicted"]]


def test_the_sample_csv_is_what_the_projects_feature_code_computes(bundled_dataset):
    regenerated = analysis_sample.sample_table(data_dir=bundled_dataset.parent)
    committed = sample_frame()
    assert list(committed.columns) == list(analysis_sample.SAMPLE_COLUMNS)
    assert len(committed) == len(regenerated)
    np.testing.assert_allclose(
        committed[list(FEATURE_NAMES)].to_numpy(float),
        regenerated[list(FEATURE_NAMES)].to_numpy(float),
        rtol=1e-7,
    )
    assert committed["stage"].tolist() == regenerated["stage"].fillna("").tolist()


# ---------------------------------------------------------------- the scored stage in its own classes

# What the stage column's values mean (the AASM stages; aliases of older notations), and the wake/sleep
# class of each stage under the default bundle's scheme (REM is sleep).
STAGE_OF = {
    **{stage: stage for stage in ("W", "N1", "N2", "N3", "R")},
    **{"Wake": "W", "2": "N2", "4": "N3", "REM": "R"},
}
WAKE_SLEEP = {"W": "wake", "N1": "sleep", "N2": "sleep", "N3": "sleep", "R": "sleep"}


def restaged(frame: pd.DataFrame, blocks: list[tuple[int, int, str]]) -> pd.DataFrame:
    """A copy of ``frame`` with the stage of rows [start, stop) set to the given values."""
    frame = frame.copy()
    for start, stop, value in blocks:
        frame.loc[start : stop - 1, "stage"] = value
    return frame


def test_the_scored_stage_keeps_its_classes_and_the_accuracy_is_in_the_bundles(server, bundle):
    assert bundle.labels == "wake-sleep"
    # Aliases, REM, an unknown value and empty cells among the real scoring of the sample.
    table = restaged(
        sample_frame(),
        [
            (0, 5, "Wake"),
            (200, 240, "N3"),
            (240, 250, "4"),
            (250, 262, "REM"),
            (262, 266, "2"),
            (300, 303, "?"),
            (303, 306, ""),
        ],
    )
    status, report = analyse(server, to_csv(table))
    assert status == 200, report
    stage = table["stage"].map(STAGE_OF)  # NaN where the value is no stage
    stages = report["stages"]
    assert stages["column"] == "stage"
    assert stages["names"] == ["W", "N1", "N2", "N3", "R"]
    got = [stages["names"][i] if i >= 0 else None for i in stages["index"]]
    assert got == [None if pd.isna(v) else v for v in stage]
    assert stages["counts"] == stage.value_counts().to_dict()
    assert stages["unscored_rows"] == int(stage.isna().sum()) == 6
    # Rows: each scored stage; columns: the bundle's predicted classes.
    predicted = pd.Series([bundle.label_names[i] for i in report["predicted"]])
    crosstab = pd.crosstab(stage, predicted).reindex(
        index=stages["names"], columns=list(bundle.label_names), fill_value=0
    )
    assert stages["confusion"] == crosstab.to_numpy().tolist()
    assert stages["maps_to"] == WAKE_SLEEP
    # The accuracy: each stage as the bundle's class it maps to; R and unknown rows not counted.
    truth = stage.map(WAKE_SLEEP)
    counted = truth.notna()
    scored = report["scored"]
    assert scored["column"] == "stage" and scored["labelled_rows"] == int(counted.sum())
    assert scored["accuracy"] == pytest.approx(float((predicted[counted] == truth[counted]).mean()))
    recalls = [float((predicted[truth == name] == name).mean()) for name in bundle.label_names]
    assert scored["balanced_accuracy"] == pytest.approx(float(np.mean(recalls)))
    assert "W → wake" in scored["against"] and "N1, N2, N3, R → sleep" in scored["against"]


def test_a_stages_bundle_gets_a_square_confusion_table_and_task_labels_map_no_stage():
    blocks = [(0, 10, "W"), (10, 20, "N1"), (20, 30, "3"), (30, 40, "R")]
    data = to_csv(restaged(sample_frame().head(40), blocks))
    table = validate_csv(data, SMALL).table
    predicted = np.array([0] * 5 + [1] * 5 + [1] * 10 + [3] * 10 + [2] * 10)
    stages = table_analysis.scored_stages(table.metadata, predicted, "stages", ("W", "N1", "N2", "N3"))
    assert stages["names"] == ["W", "N1", "N3", "R"]
    assert stages["confusion"] == [[5, 5, 0, 0], [0, 10, 0, 0], [0, 0, 0, 10], [0, 0, 10, 0]]
    assert stages["maps_to"] == {"W": "W", "N1": "N1", "N3": "N3", "R": None}
    task = table_analysis.scored_stages(table.metadata, predicted % 2, "task", ("rest", "sleep"))
    assert task["names"] == stages["names"] and set(task["maps_to"].values()) == {None}
    assert "N3 → N3" in table_analysis.accuracy_description("stage", "stages", ("W", "N1", "N2", "N3"))
    assert table_analysis.accuracy_description("label", "wake-sleep", ("wake", "sleep")) == (
        "against the label column, in the bundle's classes (wake / sleep)"
    )


@pytest.mark.parametrize(
    ("value", "stage"),
    [
        ("W", "W"),
        (" wake ", "W"),
        ("n1", "N1"),
        ("S2", "N2"),
        ("3", "N3"),
        ("4", "N3"),
        ("S4", "N3"),
        ("REM", "R"),
        ("r", "R"),
        ("?", "?"),
        ("", ""),
    ],
)
def test_stage_aliases(value, stage):
    assert canonical_stage(value) == stage


def test_balanced_accuracy_is_sklearns_mean_recall_of_the_scored_classes_without_a_warning():
    from sklearn.metrics import balanced_accuracy_score

    from model.evaluation import balanced_accuracy

    # Unbalanced (8 rows of class 0, 2 of class 1), and class 2 is predicted but never scored.
    truth = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    predicted = np.array([0, 0, 0, 0, 0, 1, 2, 2, 1, 0])
    recalls = [np.sum((truth == c) & (predicted == c)) / np.sum(truth == c) for c in (0, 1)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = balanced_accuracy(truth, predicted)
    assert caught == []
    assert got == pytest.approx(np.mean(recalls)) and got != pytest.approx(np.mean(predicted == truth))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that class 2 is not in the truth
        assert got == balanced_accuracy_score(truth, predicted)


def test_no_stage_column_or_no_known_stage_gives_no_stages(server):
    _, report = analyse(server, to_csv(sample_frame().head(30).drop(columns=["stage"])))
    assert report["stages"] is None and report["scored"] is None
    _, report = analyse(server, to_csv(restaged(sample_frame().head(30), [(0, 30, "unscored")])))
    assert report["stages"] is None and report["scored"] is None
    labelled = sample_frame().head(30).drop(columns=["stage"]).assign(label=["wake"] * 10 + ["sleep"] * 20)
    _, report = analyse(server, to_csv(labelled))
    assert report["stages"] is None and report["scored"]["column"] == "label"
    assert report["scored"]["labelled_rows"] == 30


# ---------------------------------------------------------------- validation over HTTP


def kinds(report: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for problem in report["problems"]:
        found.setdefault(problem["kind"], []).append(problem)
    return found


def test_every_problem_of_a_bad_file_is_listed(server):
    table = sample_frame().head(12)
    table = table.drop(columns=["eeg_gamma_power"]).rename(columns={"eeg_alpha_power": "eeg_alpha_powr"})
    table["mystery"] = 1
    table = table.astype({"eeg_delta_power": object, "bold_mean": object, "alff_mean": object})
    table.loc[3, "eeg_delta_power"] = "high"
    table.loc[5, "eeg_delta_power"] = "1,5"
    table.loc[4, "bold_mean"] = "NaN"
    table.loc[7, "bold_mean"] = "inf"
    table.loc[6, "alff_mean"] = ""
    status, report = analyse(server, to_csv(table))
    assert status == 422
    found = kinds(report)
    assert found["missing_columns"][0]["columns"] == ["eeg_gamma_power"]
    (misnamed,) = found["misnamed_column"]
    assert misnamed["column"] == "eeg_alpha_powr" and misnamed["suggestion"] == "eeg_alpha_power"
    assert "did you mean 'eeg_alpha_power'" in misnamed["message"]
    assert found["extra_columns"][0]["severity"] == "warning" and found["extra_columns"][0]["columns"] == [
        "mystery"
    ]
    (non_numeric,) = found["non_numeric"]
    assert non_numeric["column"] == "eeg_delta_power" and non_numeric["lines"] == [5, 7]
    assert "'high'" in non_numeric["message"] and "line 5" in non_numeric["message"]
    (not_finite,) = found["not_finite"]
    assert not_finite["column"] == "bold_mean" and not_finite["lines"] == [6, 9] and not_finite["count"] == 2
    (empty_cells,) = found["empty_cells"]
    assert empty_cells["column"] == "alff_mean" and empty_cells["lines"] == [8]
    assert all(p["severity"] == "error" for k, ps in found.items() if k != "extra_columns" for p in ps)


@pytest.mark.parametrize(
    ("body", "kind", "words"),
    [
        (b"", "empty", "empty"),
        (b"  \n\n", "empty", "empty"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)), "binary", "xlsx"),
        (bytes(range(256)) * 4, "binary", "binary"),
        ("eeg_delta_power\n\xe9t\xe9\n".encode("latin-1"), "encoding", "UTF-8"),
        (b'{"rows": [1, 2, 3]}', "not_csv", "header"),
        (",".join(FEATURE_NAMES).encode() + b"\n", "no_rows", "no data rows"),
        (",".join(FEATURE_NAMES).encode() + b"\n1,2\n", "ragged_rows", "line 2 has 2 fields"),
    ],
)
def test_unreadable_files_are_refused_with_a_clear_problem(server, body, kind, words):
    status, report = analyse(server, body)
    assert status == 422
    assert kind in kinds(report), report
    assert words in " ".join(p["message"] for p in report["problems"])


def test_too_many_rows_is_refused(server, monkeypatch):
    monkeypatch.setattr(analysis, "LIMITS", AnalysisLimits(max_rows=100))
    status, report = analyse(server, to_csv(sample_frame().head(101)))
    assert status == 422 and "too_many_rows" in kinds(report)
    assert "more than 100 data rows" in report["problems"][0]["message"]
    status, _ = analyse(server, to_csv(sample_frame().head(100)))
    assert status == 200


def test_a_body_over_the_byte_limit_is_refused_before_it_is_read(server):
    # Declared too large: answered 413 without the server waiting for (or reading) the body.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.putrequest("POST", "/api/analysis")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Content-Length", str(analysis.LIMITS.max_bytes + 1))
    connection.endheaders()
    response = connection.getresponse()
    report = json.loads(response.read())
    connection.close()
    assert response.status == 413
    assert report["problems"][0]["kind"] == "too_many_bytes" and "20 MB" in report["detail"]


def test_a_streamed_body_is_cut_off_at_the_byte_limit(server, monkeypatch):
    monkeypatch.setattr(analysis, "LIMITS", AnalysisLimits(max_bytes=4000))
    content = SAMPLE.read_bytes()
    chunks = (content[i : i + 1000] for i in range(0, 10_000, 1000))  # no Content-Length: chunked
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request(
        "POST", "/api/analysis", body=chunks, headers={"Content-Type": "text/csv"}, encode_chunked=True
    )
    response = connection.getresponse()
    report = json.loads(response.read())
    connection.close()
    assert response.status == 413 and report["problems"][0]["kind"] == "too_many_bytes"
    assert "0.004 MB" in report["detail"]


def test_origin_layout_and_extra_columns_are_warnings(server):
    table = sample_frame().head(30)
    origin = {value: key for key, value in analysis_origin_columns().items()}
    table = table.rename(columns=origin).drop(columns=["window", "start", "end", "usable", "stage"])
    table["Unknown Thing"] = "x"
    status, report = analyse(server, to_csv(table))
    assert status == 200, report
    found = kinds({"problems": report["warnings"]})
    assert set(found) == {"origin_layout", "extra_columns", "contract_unchecked", "synthetic_model"}
    assert "Delta Power → eeg_delta_power" in found["origin_layout"][0]["message"]


def table_contract_of(bundle, **features) -> str:
    """The bundle's own contract with some feature settings changed, as the JSON of a table's sidecar."""
    contract = json.loads(json.dumps(bundle.contract))
    contract["features"].update(features)
    return json.dumps(contract)


def test_a_table_contract_that_differs_from_the_bundles_refuses_the_upload(server, bundle):
    import urllib.parse

    body = to_csv(sample_frame().head(20))
    refused = urllib.parse.urlencode({"contract": table_contract_of(bundle, power_scale="log")})
    status, report = analyse(server, body, f"?{refused}")
    assert status == 422, report
    (problem,) = report["problems"]
    assert problem["kind"] == "contract_mismatch"
    assert "features.power_scale = 'absolute', the table holds 'log'" in problem["message"]
    status, _ = analyse(server, body, f"?format=csv&{refused}")
    assert status == 422
    status, report = analyse(server, body, "?" + urllib.parse.urlencode({"contract": "{not json"}))
    assert status == 422 and report["problems"][0]["kind"] == "bad_parameter"
    # The bundle's own contract: accepted, and no longer "unchecked".
    same = urllib.parse.urlencode({"contract": table_contract_of(bundle)})
    status, report = analyse(server, body, f"?{same}")
    assert status == 200, report
    assert [w["kind"] for w in report["warnings"]] == ["synthetic_model"]


@pytest.mark.browser
def test_the_page_shows_what_the_model_expects(page, server, bundle):
    status, _, content = request(f"{server.url}/api/analysis/model")
    assert status == 200
    model = json.loads(content)
    assert model["feature_contract"] == bundle.contract
    assert model["contract"]["synthetic"] is True
    page.goto(f"{server.url}/analysis")
    page.wait_for_function("document.querySelector('#model-contract').textContent.length > 0", timeout=30_000)
    text = page.text_content("#model-contract")
    assert model["contract"]["description"] in text and "surrogate" in text
    assert page.is_visible("#model-synthetic")
    assert page.console_errors == []


def analysis_origin_columns() -> dict[str, str]:
    from model.dataset import ORIGIN_COLUMNS

    return ORIGIN_COLUMNS


# ---------------------------------------------------------------- token, page, OpenAPI


def test_the_token_is_enforced_when_the_server_has_one(token_server):
    content = SAMPLE.read_bytes()
    assert analyse(token_server, content)[0] == 401
    assert analyse(token_server, content, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(f"{token_server.url}/api/analysis/sample.csv")[0] == 401
    assert request(f"{token_server.url}/api/analysis/sample.csv?token={TOKEN}")[0] == 200
    assert analyse(token_server, content, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert analyse(token_server, content, query=f"?token={TOKEN}")[0] == 200
    status, _, page = request(f"{token_server.url}/analysis")  # the page itself is static
    assert status == 200 and b'data-viz="trends"' in page


def test_the_page_and_openapi_describe_the_analysis(server):
    status, headers, page = request(f"{server.url}/analysis")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert page.count(b"data-viz=") == 8 and b'href="/"' in page
    assert b"http://" not in page and b"https://" not in page  # nothing from the internet
    _, _, document = request(f"{server.url}/openapi.json")
    paths = json.loads(document)["paths"]
    post = paths["/api/analysis"]["post"]
    assert post["summary"] and {"200", "401", "413", "422"} <= set(post["responses"])
    assert "text/csv" in post["requestBody"]["content"]
    assert "/api/analysis/sample.csv" in paths and "/analysis" not in paths


# ---------------------------------------------------------------- validation properties (hypothesis)

SMALL = AnalysisLimits(max_bytes=20_000, max_rows=40)


def check_result(result, limits: AnalysisLimits = SMALL) -> None:
    assert isinstance(result.problems, list)
    assert result.ok == (result.table is not None) == (not result.errors)
    for problem in result.problems:
        assert problem.severity in ("error", "warning") and problem.message
        json.dumps(problem.to_dict())
    if result.table is not None:
        features = result.table.features
        assert features.shape == (result.table.n_rows, len(FEATURE_NAMES))
        assert 1 <= result.table.n_rows <= limits.max_rows and np.isfinite(features).all()


@given(st.binary(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_problems_or_a_table(data):
    check_result(validate_csv(data, SMALL))


@given(st.text(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_any_text_gives_problems_or_a_table(text):
    check_result(validate_csv(text.encode("utf-8"), SMALL))


COLUMN = st.one_of(
    st.sampled_from((*FEATURE_NAMES, "subject", "run", "stage", "Delta Power", "eeg_alpha_powr", "")),
    st.text(max_size=12),
)
CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.sampled_from(("", "NaN", "inf", "1,5", "1_000", " 2.5 ", "W", '"', "\r")),
    st.text(max_size=8),
)


@st.composite
def csv_like(draw) -> bytes:
    """CSV-shaped text: a header of mostly plausible names, rows of mostly plausible cells."""
    header = draw(st.lists(COLUMN, min_size=1, max_size=16))
    if draw(st.booleans()):
        header = list(FEATURE_NAMES) + header[:3]
    rows = draw(st.lists(st.lists(CELL, min_size=len(header) - 1, max_size=len(header) + 1), max_size=45))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)  # quoting as a real writer
    return (delimiter.join(header) + "\n" + out.getvalue()).encode()


@given(csv_like())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_csv_shaped_input_gives_problems_or_a_table(data):
    check_result(validate_csv(data, SMALL))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(st.lists(finite, min_size=11, max_size=11), min_size=1, max_size=40), st.data())
@settings(max_examples=150, deadline=None)
def test_a_valid_table_round_trips_and_one_bad_cell_is_pinpointed(rows, data):
    frame = pd.DataFrame(rows, columns=list(FEATURE_NAMES))
    frame.insert(0, "subject", "01")
    result = validate_csv(to_csv(frame), SMALL)
    assert result.ok, result.problems
    np.testing.assert_array_equal(result.table.features, np.array(rows))
    assert result.table.metadata["subject"] == ["01"] * len(rows)
    row = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.sampled_from(FEATURE_NAMES))
    bad = data.draw(st.sampled_from(["abc", "", "nan", "-inf", "1.2.3"]))
    frame = frame.astype({column: object})
    frame.loc[row, column] = bad
    result = validate_csv(to_csv(frame), SMALL)
    assert not result.ok
    (problem,) = result.errors
    assert problem.column == column and problem.lines == (row + 2,) and problem.count == 1


# ---------------------------------------------------------------- the page in a browser

CANVASES_DRAWN = """
() => [...document.querySelectorAll('[data-viz]')].map((section) => {
  const painted = [...section.querySelectorAll('canvas')].some((canvas) => {
    if (!canvas.width || !canvas.height) return false;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
    return false;
  });
  return [section.dataset.viz, section.dataset.rendered === 'true', painted];
})
"""


@pytest.mark.browser
def test_the_page_renders_the_8_visualisations_of_the_sample(page, server):
    page.goto(f"{server.url}/analysis")
    page.set_input_files("#csv-file", str(SAMPLE))
    page.wait_for_selector('[data-viz="trends"][data-rendered="true"]', timeout=60_000)
    drawn = page.evaluate(CANVASES_DRAWN)
    assert [name for name, _, _ in drawn] == [
        "feature-distributions",
        "prediction-distribution",
        "feature-importance",
        "probability-heatmap",
        "correlation",
        "probability-distributions",
        "entry",
        "trends",
    ]
    assert all(rendered and painted for _, rendered, painted in drawn), drawn
    assert page.locator("#feature-histograms .uplot").count() == len(FEATURE_NAMES)
    assert page.locator("#trend-probabilities .uplot").count() == 1
    assert "balanced accuracy" in page.inner_text("#importance-caption")
    assert "Row 1 of 416" in page.inner_text("#entry-title")
    page.click("#entry-next")
    assert "Row 2 of 416" in page.inner_text("#entry-title")
    with page.expect_download(timeout=30_000) as download:
        page.click("#download-results")
    path = download.value.path()
    header = Path(path).read_text().splitlines()[0]
    assert header.endswith("stage,predicted_label,probability_wake,probability_sleep")
    assert download.value.suggested_filename == "analysis-sample-predictions.csv"
    assert page.console_errors == []


@pytest.mark.browser
def test_the_page_lists_the_errors_of_a_malformed_csv(page, server):
    page.goto(f"{server.url}/analysis")
    table = sample_frame().head(10).drop(columns=["eeg_theta_power"]).astype({"bold_mean": object})
    table.loc[2, "bold_mean"] = "oops"
    page.set_input_files(
        "#csv-file", files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": to_csv(table)}]
    )
    page.wait_for_selector("#problem-list li.error", timeout=30_000)
    items = page.locator("#problem-list li.error").all_inner_texts()
    assert len(items) == 2
    assert any("eeg_theta_power" in item for item in items)
    assert any("'oops'" in item and "line 4" in item for item in items)
    assert "cannot be analysed" in page.inner_text("#status")
    assert page.locator("#results").is_hidden()
    # The 422 answer itself is the only thing the browser may log.
    assert [e for e in page.console_errors if "status of 422" not in e] == []


DROP_FILE = """
(text) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([text], "dropped.csv", { type: "text/csv" }));
  const zone = document.getElementById("dropzone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}
"""


@pytest.mark.browser
def test_a_dropped_file_is_analysed_and_the_page_passes_its_token_on(page, token_server):
    page.goto(f"{token_server.url}/analysis?token={TOKEN}")
    assert page.get_attribute("#nav-live", "href") == f"/?token={TOKEN}"
    assert page.get_attribute("#sample-link", "href") == f"/api/analysis/sample.csv?token={TOKEN}"
    page.evaluate(DROP_FILE, SAMPLE.read_text())
    page.wait_for_selector('[data-viz="trends"][data-rendered="true"]', timeout=60_000)
    assert "dropped.csv: 416 rows analysed" in page.inner_text("#status")
    assert page.console_errors == []


def upload(page, server, frame: pd.DataFrame, name: str = "upload.csv") -> None:
    """Open the page, give it ``frame`` as a CSV file, wait until every view is drawn."""
    page.goto(f"{server.url}/analysis")
    page.set_input_files("#csv-file", files=[{"name": name, "mimeType": "text/csv", "buffer": to_csv(frame)}])
    page.wait_for_selector('[data-viz="trends"][data-rendered="true"]', timeout=60_000)


# The x-axis title of each feature's histogram: its name and unit (docs/features.md).
FEATURE_AXIS_TITLES = {
    "eeg_delta_power": "EEG delta power (µV²)",
    "eeg_theta_power": "EEG theta power (µV²)",
    "eeg_alpha_power": "EEG alpha power (µV²)",
    "eeg_beta_power": "EEG beta power (µV²)",
    "eeg_gamma_power": "EEG gamma power (µV²)",
    "eeg_spectral_entropy": "EEG spectral entropy (0–1, no unit)",
    "eeg_mean_coherence": "EEG mean coherence (0–1, no unit)",
    "bold_mean": "BOLD mean (% of baseline)",
    "bold_variance": "BOLD variance (%²)",
    "alff_mean": "ALFF mean (%/√Hz)",
    "alff_variance": "ALFF variance ((%/√Hz)²)",
}

# Per histogram: its title, the text of its axis titles, and where they are against its plot area.
HISTOGRAM_AXES = """
(selector) => [...document.querySelectorAll(selector + ' .multiple')].map((cell) => {
  const plot = cell.querySelector('.u-over').getBoundingClientRect();
  const x = cell.querySelector('.axis-label.x');
  const y = cell.querySelector('.axis-label.y');
  const box = (el) => el && el.getBoundingClientRect();
  const shown = (el) => !!el && box(el).width > 0 && box(el).height > 0;
  return {
    title: cell.querySelector('h3').textContent,
    x: x && x.textContent,
    y: y && y.textContent,
    xBelow: shown(x) && box(x).top >= plot.bottom && box(x).left < plot.right && box(x).right > plot.left,
    yLeft: shown(y) && box(y).right <= plot.left && box(y).top < plot.bottom && box(y).bottom > plot.top,
    yUpright: shown(y) && box(y).height > box(y).width,
  };
})
"""


@pytest.mark.browser
def test_every_histogram_has_axis_titles(page, server):
    upload(page, server, sample_frame())
    features = page.evaluate(HISTOGRAM_AXES, "#feature-histograms")
    assert len(features) == len(FEATURE_NAMES)
    for name, found in zip(FEATURE_NAMES, features, strict=True):
        assert found["x"] == FEATURE_AXIS_TITLES[name], found
        assert found["y"] == "count of windows", found
        assert found["xBelow"] and found["yLeft"] and found["yUpright"], found
    probabilities = page.evaluate(HISTOGRAM_AXES, "#probability-histograms")
    assert [(p["title"], p["x"], p["y"]) for p in probabilities] == [
        ("P(wake)", "probability of wake", "count of windows"),
        ("P(sleep)", "probability of sleep", "count of windows"),
    ]
    assert all(p["xBelow"] and p["yLeft"] and p["yUpright"] for p in probabilities), probabilities
    assert page.console_errors == []


# The colour scale: its tick labels and where they sit against the bar; the bar's colour at its top and
# bottom rows, and the colour of the matrix cells (i, j) asked for, sampled inside each cell's corner.
CORRELATION_SCALE = """
(cells) => {
  const scale = document.getElementById('correlation-scale');
  const bar = document.getElementById('correlation-scale-bar');
  const barBox = bar.getBoundingClientRect();
  if (scale.hidden || !bar.width || !barBox.height) return { visible: false };
  const pixel = (canvas, x, y) => {
    const ratio = canvas.width / canvas.clientWidth;
    return [...canvas.getContext('2d').getImageData(Math.floor(x * ratio), Math.floor(y * ratio), 1, 1).data];
  };
  const matrix = document.getElementById('correlation-heatmap');
  const { left, top, cell } = matrix._layout;
  return {
    visible: true,
    title: scale.querySelector('.colorbar-title').textContent,
    ticks: [...scale.querySelectorAll('.tick')].map((tick) => {
      const box = tick.getBoundingClientRect();
      return [tick.textContent, (box.top + box.bottom) / 2 - barBox.top, barBox.height];
    }),
    barTop: pixel(bar, 2, 0),
    barBottom: pixel(bar, 2, bar.clientHeight - 0.5),
    cells: cells.map(([i, j]) => pixel(matrix, left + j * cell + 3, top + i * cell + 3)),
  };
}
"""


@pytest.mark.browser
def test_the_correlation_matrix_has_a_colour_scale_from_minus_1_to_1(page, server):
    table = sample_frame().head(200)
    table["alff_variance"] = -table["eeg_delta_power"]  # r = -1 with delta; r = 1 on the diagonal
    upload(page, server, table)
    delta, alff_variance = FEATURE_NAMES.index("eeg_delta_power"), FEATURE_NAMES.index("alff_variance")
    scale = page.evaluate(CORRELATION_SCALE, [[delta, delta], [delta, alff_variance]])
    assert scale["visible"], "no colour scale beside the correlation matrix"
    assert scale["title"] == "Pearson r"
    assert [text for text, _, _ in scale["ticks"]] == ["1", "0.5", "0", "−0.5", "−1"]
    # Each label at its place on the bar: 1 at the top, −1 at the bottom (within 2 px).
    for (_, centre, height), value in zip(scale["ticks"], [1, 0.5, 0, -0.5, -1], strict=True):
        assert centre == pytest.approx((1 - value) / 2 * height, abs=2)
    # The bar's ends are the colours the matrix gives r = 1 and r = -1.
    one, minus_one = scale["cells"]
    assert scale["barTop"] == one and scale["barBottom"] == minus_one
    assert one != minus_one
    assert page.console_errors == []


# The scored band of the row-by-row heatmap: its colour at the given rows (the middle of its height).
SCORED_BAND = """
(rows) => {
  const canvas = document.getElementById('probability-heatmap');
  const layout = canvas._layout;
  const band = layout.bands.find((b) => b.label === 'scored stage');
  if (!band) return null;
  const ratio = canvas.width / canvas.clientWidth;
  const total = Number(document.getElementById('entry-row').max);
  return rows.map((row) => {
    const x = layout.left + ((row + 0.5) / total) * layout.width;
    const y = band.top + band.height / 2;
    return [...canvas.getContext('2d').getImageData(Math.floor(x * ratio), Math.floor(y * ratio), 1, 1).data];
  });
}
"""
SWATCH_COLOURS = """
(selector) => [...document.querySelectorAll(selector)].map((item) => [
  item.textContent, getComputedStyle(item.querySelector('.swatch')).backgroundColor])
"""


def rgb(css: str) -> list[int]:
    """[r, g, b, 255] of a computed CSS colour 'rgb(r, g, b)'."""
    return [int(v) for v in css.removeprefix("rgb(").removesuffix(")").split(",")] + [255]


@pytest.mark.browser
def test_the_scored_stages_are_shown_in_their_own_classes(page, server, bundle):
    blocks = [(0, 104, "W"), (104, 208, "N1"), (208, 312, "N2"), (312, 416, "N3")]
    table = restaged(sample_frame(), blocks)
    upload(page, server, table)
    _, report = analyse(server, to_csv(table))
    predicted = pd.Series([bundle.label_names[i] for i in report["predicted"]])
    crosstab = pd.crosstab(table["stage"], predicted).reindex(
        index=["W", "N1", "N2", "N3"], columns=list(bundle.label_names), fill_value=0
    )
    # Scored stage (rows, its own classes) x predicted class (columns, the bundle's classes).
    header = page.locator("#confusion-table thead th").all_inner_texts()
    assert [text.strip() for text in header[1:3]] == ["wake", "sleep"]
    rows = page.locator("#confusion-table tbody tr")
    assert [rows.nth(i).get_attribute("data-stage") for i in range(rows.count())] == ["W", "N1", "N2", "N3"]
    for i, stage in enumerate(crosstab.index):
        cells = rows.nth(i).locator("td")
        counts = [int(cells.nth(k).get_attribute("data-count")) for k in range(len(bundle.label_names))]
        assert counts == crosstab.loc[stage].tolist()
        assert cells.nth(len(bundle.label_names) + 1).inner_text() == WAKE_SLEEP[stage]
    # The row-by-row heatmap: a stage legend, and each block of rows in its own stage's colour.
    legend = page.evaluate(SWATCH_COLOURS, "#heatmap-legend-stages [data-stage]")
    assert [stage for stage, _ in legend] == ["W", "N1", "N2", "N3"]
    colours = [rgb(colour) for _, colour in legend]
    assert len({tuple(c) for c in colours}) == 4
    assert page.evaluate(SCORED_BAND, [(start + stop) // 2 for start, stop, _ in blocks]) == colours
    # Per-stage probability distributions, and the stage of the row shown.
    assert page.locator("#probability-legend [data-group]").all_inner_texts() == [
        "scored W",
        "scored N1",
        "scored N2",
        "scored N3",
    ]
    page.fill("#entry-row", "350")
    page.dispatch_event("#entry-row", "change")
    assert "scored N3 (counts as sleep)" in page.inner_text("#entry-title")
    assert page.locator("#trend-hypnogram .uplot").count() == 1
    # The accuracy is labelled with what it is measured in.
    terms, values = (page.locator(f"#summary {tag}").all_inner_texts() for tag in ("dt", "dd"))
    summary = dict(zip(terms, values, strict=True))
    assert summary["Scored stages"] == "W · N1 · N2 · N3"
    truth = table["stage"].map(WAKE_SLEEP)
    assert summary["Accuracy (stage as wake / sleep)"] == f"{100 * (predicted == truth).mean():.1f} %"
    assert page.console_errors == []


@pytest.mark.browser
def test_without_a_stage_column_the_stage_views_are_hidden(page, server):
    upload(page, server, sample_frame().drop(columns=["stage"]))
    assert page.locator("#confusion").is_hidden()
    assert page.locator("#trend-hypnogram").is_hidden()
    assert page.locator("#probability-split-label").is_hidden()
    split = page.locator("#probability-legend [data-group]").all_inner_texts()
    assert split == ["predicted wake", "predicted sleep"]
    assert page.locator("#heatmap-legend-stages").count() == 0
    assert "scored" not in page.inner_text("#entry-title")
    terms = page.locator("#summary dt").all_inner_texts()
    assert terms and not any(term.startswith(("Accuracy", "Scored")) for term in terms)
    assert page.console_errors == []
