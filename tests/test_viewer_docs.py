"""The API documentation page (/docs) in chromium with every request that leaves the machine blocked."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from viewer.app import ServerState
from viewer.server import LiveServer

pytestmark = pytest.mark.browser
TOKEN = "docs-token-for-tests"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
KNOWN_PATHS = {"/healthz", "/api/status", "/api/config", "/api/history", "/api/model", "/api/analysis"}
SWAGGER_UI = "/static/vendor/swagger-ui/"
RENDER_TIMEOUT_MS = 60_000  # guards against hanging only: the page is judged by what it renders


@pytest.fixture(scope="module")
def server():
    with LiveServer(ServerState(session={"name": "docs"})) as running:
        yield running


@pytest.fixture(scope="module")
def guarded_server():
    with LiveServer(ServerState(session={"name": "docs, guarded"}, token=TOKEN)) as running:
        yield running


def offline(page) -> list[str]:
    """Abort every request whose host is not this machine; return the (growing) list of those aborted."""
    blocked: list[str] = []

    def handle(route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return blocked


def open_docs(page, url: str, blocked: list[str]) -> list[str]:
    """Open the docs page and wait for its operations; return the paths it lists, in order."""
    page.goto(url)
    try:
        page.wait_for_selector(".opblock", timeout=RENDER_TIMEOUT_MS)
    except Exception:  # Playwright's TimeoutError: say why, not only that it timed out
        pytest.fail(f"no operation rendered; blocked: {blocked}; console errors: {page.console_errors}")
    return page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")


def operation(page, path: str):
    return page.locator(f".opblock:has(.opblock-summary-path[data-path='{path}'])")


def execute(page, path: str):
    """Expand the operation, press "Try it out" then "Execute"; return the HTTP response."""
    block = operation(page, path)
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    with page.expect_response(lambda response: urlsplit(response.url).path == path) as answer:
        block.locator(".execute").click()
    shown = block.locator(".live-responses-table tbody .response-col_status").first
    shown.wait_for(timeout=RENDER_TIMEOUT_MS)
    return answer.value, shown.text_content().strip()


def test_the_api_documentation_renders_with_nothing_leaving_the_machine(page, server):
    blocked = offline(page)
    loaded: list[str] = []
    page.on("requestfinished", lambda request: loaded.append(request.url))
    listed = open_docs(page, f"{server.url}/docs", blocked)
    documented = set(json.loads(page.request.get(f"{server.url}/openapi.json").body())["paths"])
    assert KNOWN_PATHS <= documented
    assert sorted(listed) == sorted(documented)  # every operation of the API, each once
    # What the page itself loads (style, script, icon) is named in its DOM: checked there, as chromium
    # may ask for the icon after the test has looked at the requests.
    resources = page.eval_on_selector_all(
        "link[href], script[src], img[src]", "els => els.map(e => e.href || e.src)"
    )
    assert {urlsplit(url).hostname for url in resources} <= LOOPBACK, resources
    assert {f"{SWAGGER_UI}swagger-ui-bundle.js", f"{SWAGGER_UI}swagger-ui.css"} <= {
        urlsplit(url).path for url in loaded
    }
    icon = page.eval_on_selector("link[rel~='icon']", "e => e.href")
    answer = page.request.get(icon)
    assert answer.status == 200 and answer.headers["content-type"] == "image/png"
    assert blocked == []
    assert page.console_errors == []


def test_no_other_documentation_page_loads_anything_from_the_internet(page, server):
    assert page.request.get(f"{server.url}/redoc").status == 404  # FastAPI's ReDoc page (a CDN) is off
    redirect = page.request.get(f"{server.url}/docs/oauth2-redirect")
    assert redirect.status == 200
    assert re.findall(r"""(?:src|href)\s*=\s*["']?https?:""", redirect.text()) == []


def test_with_a_token_try_it_out_carries_it_to_this_server_only(page, guarded_server):
    blocked = offline(page)
    listed = open_docs(page, f"{guarded_server.url}/docs?token={TOKEN}", blocked)
    assert KNOWN_PATHS <= set(listed)
    response, shown = execute(page, "/api/status")
    assert response.request.headers.get("authorization") == f"Bearer {TOKEN}"
    assert (response.status, shown) == (200, "200")
    assert response.json()["session"] == {"name": "docs, guarded"}
    headers = page.evaluate(
        """() => ({
            here: ui.getConfigs().requestInterceptor({url: "/api/status", headers: {}}).headers,
            elsewhere: ui.getConfigs().requestInterceptor({url: "http://192.0.2.1/api/status", headers: {}})
                .headers,
        })"""
    )
    assert headers == {"here": {"Authorization": f"Bearer {TOKEN}"}, "elsewhere": {}}
    assert blocked == []
    assert page.console_errors == []


def test_without_the_token_the_page_renders_and_the_server_refuses_its_requests(page, guarded_server):
    blocked = offline(page)
    listed = open_docs(page, f"{guarded_server.url}/docs", blocked)
    assert KNOWN_PATHS <= set(listed)
    response, shown = execute(page, "/api/status")
    assert "authorization" not in response.request.headers
    assert (response.status, shown) == (401, "401")
    assert blocked == []
    # chromium reports the refused request itself, and nothing else
    assert [e for e in page.console_errors if "status of 401" not in e] == []
