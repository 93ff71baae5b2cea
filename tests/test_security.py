"""Security of the web server: token, CORS, websocket origin, path traversal, upload limits, OpenAPI.

These tests run in the default suite and, in the reliability run, write their rows of
``docs/reliability.md``.
"""

from __future__ import annotations

import http.client
import io
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


class ServerOutput:
    """Everything uvicorn logs, as its own formatters print it, at DEBUG level (access log included).

    The server is configured at warning level, and uvicorn's loggers do not propagate to pytest's
    capture: :meth:`listen` lowers their levels (call it once the server has started: uvicorn
    configures its loggers then) and adds a handler with uvicorn's formatters writing to a buffer,
    as uvicorn's own handlers write to the console.
    """

    def __init__(self) -> None:
        from uvicorn.logging import AccessFormatter, DefaultFormatter

        self._text = io.StringIO()
        access = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'  # uvicorn's format
        formatters = {
            "uvicorn.access": AccessFormatter(access, use_colors=False),
            "uvicorn.error": DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False),
        }
        self._handlers = {name: logging.StreamHandler(self._text) for name in formatters}
        for name, handler in self._handlers.items():
            handler.setFormatter(formatters[name])
        self._levels = {name: logging.getLogger(name).level for name in formatters}

    def listen(self) -> None:
        for name, handler in self._handlers.items():
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).addHandler(handler)

    def close(self) -> None:
        for name, handler in self._handlers.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(self._levels[name])

    def text(self) -> str:
        return self._text.getvalue()


@pytest.fixture
def server_output():
    output = ServerOutput()
    try:
        yield output
    finally:
        output.close()


def test_the_token_is_required_and_never_logged(server_output, reliability):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    refused = []
    with LiveServer(ServerState(session={"name": "logged"}, token=TOKEN)) as guarded:
        server_output.listen()  # uvicorn configured its loggers when the server started
        url = guarded.url
        paths = ("/api/status", "/api/status?token=wrong", "/api/history?token=" + TOKEN[:-1],
                 "/api/model", "/api/config?limit=3&token=" + TOKEN + "x")  # fmt: skip
        for path in paths:
            refused.append(request(f"{url}{path}")[0])
        refused.append(request(f"{url}/api/status", headers={"Authorization": "Bearer wrong"})[0])
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{guarded.port}/ws?token=wrong", open_timeout=10)
        assert request(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert request(f"{url}/api/status?token={TOKEN}")[0] == 200
        with connect(f"ws://127.0.0.1:{guarded.port}/ws?types=session&token={TOKEN}", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["event"] == "connected"
        assert request(f"{url}/healthz")[0] == 200  # liveness needs no token
    assert set(refused) == {401}
    output = server_output.text()
    lines = output.splitlines()
    # uvicorn logged every request (access log) and websocket handshake, query strings included ...
    requests = [line for line in lines if '"GET /' in line]
    assert len(requests) >= len(refused) + 3, output
    assert sum("/api/status?token=" in line for line in requests) == 2, output
    assert sum('"WebSocket /ws?' in line for line in lines) == 2, output
    # ... and neither the token nor any value given for it appears.
    for secret in (TOKEN, TOKEN[:-1], TOKEN + "x", "token=wrong"):
        assert secret not in output, [line for line in lines if secret in line]
    reliability(
        "security", "requests without the token or with a wrong one (REST, websocket)",
        f"{len(refused)} REST requests answered 401, the websocket handshake refused; uvicorn's output at "
        f"debug level ({len(lines)} lines, {len(requests)} access-log lines with their query strings) "
        "holds neither the token nor the wrong values given for it",
        "refused; the token (compared in constant time) never appears in the logs: the value of every "
        "token= query parameter is redacted in uvicorn's access and error logs",
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
