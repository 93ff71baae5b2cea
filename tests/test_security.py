"""Security of the web server: token, CORS, websocket origin, path traversal, upload limits, OpenAPI.

These tests run in the default suite and, in the reliability run, write their rows of
``docs/reliability.md``.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request

import pytest
from openapi_spec_validator import validate

from viewer.app import ServerState
from viewer.csv_validation import AnalysisLimits
from viewer.server import LiveServer

pytestmark = pytest.mark.security
TOKEN = "s3cret-token-for-tests"


def request(
    url: str, headers: dict | None = None, method: str = "GET", data: bytes | None = None
) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def raw_get(port: int, path: str) -> int:
    """A GET with the path sent exactly as given (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server():
    limits = AnalysisLimits(max_bytes=100_000, max_rows=50)
    with LiveServer(ServerState(session={"name": "security"}, analysis_limits=limits)) as running:
        yield running


@pytest.fixture(scope="module")
def guarded_server():
    with LiveServer(ServerState(session={"name": "guarded"}, token=TOKEN)) as running:
        yield running


def test_the_openapi_document_is_valid(server):
    status, _, body = request(f"{server.url}/openapi.json")
    assert status == 200
    document = json.loads(body)
    validate(document)  # raises on an invalid OpenAPI 3.x document
    assert {"/api/status", "/api/config", "/api/history", "/api/model", "/healthz"} <= set(document["paths"])


def test_no_cross_origin_access_is_granted(server, reliability):
    foreign = {"Origin": "http://evil.example"}
    status, headers, _ = request(f"{server.url}/api/status", headers=foreign)
    assert status == 200 and "access-control-allow-origin" not in {k.lower() for k in headers}
    preflight = {**foreign, "Access-Control-Request-Method": "GET"}
    pre_status, headers, _ = request(f"{server.url}/api/status", headers=preflight, method="OPTIONS")
    assert pre_status in (405, 400) and "access-control-allow-origin" not in {k.lower() for k in headers}
    reliability(
        "security", "REST request and CORS preflight from another origin",
        f"GET answered {status} without Access-Control-Allow-Origin; preflight answered {pre_status}",
        "no CORS grant: a page of another site cannot read the API",
    )  # fmt: skip


def test_a_websocket_from_another_origin_is_refused(server, reliability):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/ws", origin="http://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(f"ws://127.0.0.1:{server.port}/ws", origin=server.url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session"
    reliability(
        "security", "websocket handshake from another origin (cross-site websocket hijacking)",
        f"handshake answered HTTP {refused.value.response.status_code}; same-origin handshake accepted",
        "refused: a page of another site cannot read the feed; lab programs (no Origin) unaffected",
    )  # fmt: skip


TRAVERSALS = (
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static/vendor/uplot/../../../server.py",
    "/static/..\\app.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/../../etc/passwd",
    "/static/%00../app.py",
)


def test_no_file_outside_the_static_folder_is_served(server, reliability):
    statuses = {path: raw_get(server.port, path) for path in TRAVERSALS}
    assert all(status in (400, 404) for status in statuses.values()), statuses
    reliability(
        "security", "path traversal on the file-serving routes (`..`, encoded `..`, absolute paths, NUL)",
        f"{len(statuses)} paths: answered " + ", ".join(f"{s}×{list(statuses.values()).count(s)}"
                                                        for s in sorted(set(statuses.values()))),
        "nothing outside viewer/static/ served",
    )  # fmt: skip


def test_static_files_are_served(server):
    for path in (
        "/",
        "/static/live.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/LICENSE",
    ):
        assert request(f"{server.url}{path}")[0] == 200, path


def test_the_token_is_required_and_never_logged(guarded_server, caplog, reliability):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = guarded_server.url
    refused = []
    with caplog.at_level(logging.DEBUG):
        for path in ("/api/status", "/api/status?token=wrong", "/api/history?token=" + TOKEN[:-1],
                     "/api/model", "/api/config"):  # fmt: skip
            refused.append(request(f"{url}{path}")[0])
        refused.append(request(f"{url}/api/status", headers={"Authorization": "Bearer wrong"})[0])
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{guarded_server.port}/ws?token=wrong", open_timeout=10)
        assert request(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert request(f"{url}/api/status?token={TOKEN}")[0] == 200
        assert request(f"{url}/healthz")[0] == 200  # liveness needs no token
    assert set(refused) == {401}
    assert TOKEN not in caplog.text
    reliability(
        "security", "requests without the token or with a wrong one (REST, websocket)",
        f"{len(refused)} REST requests answered 401, the websocket handshake refused; "
        f"{len(caplog.records)} log records, none holding the token",
        "refused; the token (compared in constant time) never appears in the logs",
    )  # fmt: skip


def test_uploads_beyond_the_limits_are_refused(server, reliability):
    header = "eeg_delta_power,eeg_theta_power\n"
    too_big = (header + "1,2\n" * 40_000).encode()
    status_bytes, _, body = request(f"{server.url}/api/analysis", method="POST", headers={}, data=too_big)
    too_long = (header + "1,2\n" * 60).encode()
    status_rows, _, body_rows = request(
        f"{server.url}/api/analysis", method="POST", headers={}, data=too_long
    )
    assert status_bytes == 413 and "too_many_bytes" in body.decode()
    assert status_rows in (413, 422) and "too_many_rows" in body_rows.decode()
    assert request(f"{server.url}/healthz")[0] == 200
    reliability(
        "security", "CSV uploads beyond the configured limits (100 kB, 50 rows in this test; 20 MB and "
        "100,000 rows by default)",
        f"{len(too_big)} bytes answered {status_bytes}; 60 rows answered {status_rows}",
        "refused with the limit named, the body not read past the limit; the server goes on",
    )  # fmt: skip


def test_binding_beyond_loopback_without_a_token_is_refused(reliability):
    with pytest.raises(ValueError, match="requires a token") as refused:
        LiveServer(ServerState(), host="0.0.0.0")
    reliability(
        "security", "serving on 0.0.0.0 without a token", f"refused at start: {refused.value}",
        "the server does not start",
    )  # fmt: skip
