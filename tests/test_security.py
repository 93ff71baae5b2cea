"""Security of the web server: token, CORS, path traversal, the OpenAPI document."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request

import pytest
from openapi_spec_validator import validate

from viewer.app import ServerState
from viewer.server import LiveServer

TOKEN = "s3cret-token-for-tests"


def request(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
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
    with LiveServer(ServerState(session={"name": "security"})) as running:
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


def test_no_cross_origin_access_is_granted(server):
    foreign = {"Origin": "http://evil.example"}
    status, headers, _ = request(f"{server.url}/api/status", headers=foreign)
    assert status == 200 and "access-control-allow-origin" not in {k.lower() for k in headers}
    preflight = {**foreign, "Access-Control-Request-Method": "GET"}
    status, headers, _ = request(f"{server.url}/api/status", headers=preflight, method="OPTIONS")
    assert status in (405, 400) and "access-control-allow-origin" not in {k.lower() for k in headers}


def test_a_websocket_from_another_origin_is_refused(server):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/ws", origin="http://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(f"ws://127.0.0.1:{server.port}/ws", origin=server.url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/vendor/uplot/../../../server.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
    ],
)
def test_no_file_outside_the_static_folder_is_served(server, path):
    assert raw_get(server.port, path) == 404


def test_static_files_are_served(server):
    for path in (
        "/",
        "/static/live.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/LICENSE",
    ):
        assert request(f"{server.url}{path}")[0] == 200, path


def test_the_token_is_required_and_never_logged(guarded_server, caplog):
    url = guarded_server.url
    with caplog.at_level(logging.DEBUG):
        assert request(f"{url}/api/status")[0] == 401
        assert request(f"{url}/api/status?token=wrong")[0] == 401
        assert request(f"{url}/api/status", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert request(f"{url}/api/status?token={TOKEN}")[0] == 200
        assert request(f"{url}/healthz")[0] == 200  # liveness needs no token
    assert TOKEN not in caplog.text


def test_binding_beyond_loopback_without_a_token_is_refused():
    with pytest.raises(ValueError, match="requires a token"):
        LiveServer(ServerState(), host="0.0.0.0")
