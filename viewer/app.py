"""The FastAPI application: websocket feed and REST endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from pipeline.feed import MESSAGE_TYPES, Broadcaster, Client
from pipeline.prediction import PROTOCOL_VERSION
from viewer.analysis import router as analysis_router
from viewer.auth import UNAUTHORISED, authorised, require_token

if TYPE_CHECKING:  # for the types only: a server that only serves pages never loads the pipeline
    from model.bundle import ModelBundle
    from pipeline.pipeline import Pipeline
    from viewer.csv_validation import AnalysisLimits
    from viewer.recorded import RecordedSession

MAX_CLIENT_MESSAGE_BYTES = 4096
# Largest websocket frame the server reads at all (uvicorn's ws_max_size, see viewer.server): a bigger
# one closes that connection (code 1009) before it is held in memory. Between the two limits a message
# is read and answered with an error.
MAX_WEBSOCKET_FRAME_BYTES = 64 * 1024
STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_UI = "/static/vendor/swagger-ui"  # vendored, see its README.md: /docs loads nothing from the internet
OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Added to Swagger UI's configuration: its requests (the OpenAPI document, "Try it out") carry the token
# of the page's own ?token=, to this server only. Read in the browser: the server never echoes it.
_SWAGGER_TOKEN_INTERCEPTOR = """
    requestInterceptor: (request) => {
        const token = new URLSearchParams(window.location.search).get("token");
        if (token && new URL(request.url, window.location.href).origin === window.location.origin) {
            request.headers.Authorization = `Bearer ${token}`;
        }
        return request;
    },"""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerState:
    """What the server shows: the pipeline, the bundle, the configuration, the session."""

    broadcaster: Broadcaster = field(default_factory=Broadcaster)
    pipeline: Pipeline | None = None
    recorded: RecordedSession | None = None
    bundle: ModelBundle | None = None
    config: dict = field(default_factory=dict)
    session: dict = field(default_factory=dict)
    token: str | None = None
    analysis_limits: AnalysisLimits | None = None  # the defaults of AnalysisLimits when None
    started: float = field(default_factory=time.time)

    def history(self) -> list:
        """Predictions kept for ``/api/history``: the live pipeline's, else a recorded session's."""
        source = self.pipeline if self.pipeline is not None else self.recorded
        return list(getattr(source, "history", ()))

    def status(self) -> dict:
        """The ``status`` message: stream health, pipeline counters, clients."""
        pipeline = self.pipeline
        acquisition = getattr(pipeline, "acquisition", None)
        return {
            "type": "status",
            "version": PROTOCOL_VERSION,
            "wall_time": time.time(),
            "uptime_s": round(time.time() - self.started, 3),
            "health": acquisition.health() if acquisition is not None else None,
            "pipeline": {
                "running": bool(getattr(pipeline, "running", False)),
                "predictions": getattr(pipeline, "predictions", 0),
                "errors": getattr(pipeline, "errors", 0),
            },
            "clients": len(self.broadcaster.clients),
            "session": self.session,
        }


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a browser's ``Origin`` is this server (``Host``); no ``Origin`` means no browser page.

    Websockets are not covered by CORS: without this check any web page open in the control room's
    browser could read the feed.
    """
    if origin is None:
        return True
    return host is not None and origin.split("://", 1)[-1].rstrip("/").lower() == host.lower()


def swagger_ui_page(title: str, openapi_url: str, root_path: str = "") -> HTMLResponse:
    """Swagger UI's page for ``openapi_url``, with its script, style and icon served by this server.

    Parameters
    ----------
    title : str
        The application's title (the page's is ``"<title> - Swagger UI"``).
    openapi_url : str
        Path of the OpenAPI document.
    root_path : str
        ASGI root path when the server is mounted below a prefix (as FastAPI's own page honours it).

    Returns
    -------
    HTMLResponse
        The page; when opened as ``/docs?token=TOKEN`` its requests to this server carry the token.
    """
    root = root_path.rstrip("/")
    page = get_swagger_ui_html(
        openapi_url=root + openapi_url,
        title=f"{title} - Swagger UI",
        swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
        oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
    )
    html = bytes(page.body).decode()
    marker = "SwaggerUIBundle({"
    if html.count(marker) != 1:  # FastAPI changed its page: fail loudly rather than lose the token
        raise RuntimeError(f"FastAPI's Swagger UI page no longer has one {marker!r}")
    return HTMLResponse(html.replace(marker, marker + _SWAGGER_TOKEN_INTERCEPTOR))


def create_app(state: ServerState) -> FastAPI:
    """Build the application around a server state."""
    app = FastAPI(
        title="sleepstream",
        version=str(PROTOCOL_VERSION),
        openapi_url=OPENAPI_URL,
        description="Live EEG + fMRI sleep-state predictions: websocket feed and REST API.",
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: /docs is served below
        redoc_url=None,
    )
    app.state.server = state

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(analysis_router)  # the analysis page and /api/analysis

    @app.get("/", include_in_schema=False)
    def live_page() -> FileResponse:
        """The live page: probability, hypnogram, features, stream health."""
        return FileResponse(STATIC_DIR / "live.html")

    @app.get(DOCS_URL, include_in_schema=False)
    def docs_page(request: Request) -> HTMLResponse:
        """The interactive API documentation: Swagger UI from the package (no token needed: it is static)."""
        return swagger_ui_page(app.title, OPENAPI_URL, request.scope.get("root_path", ""))

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def docs_oauth2_redirect() -> HTMLResponse:
        """Swagger UI's OAuth2 redirect page (self-contained), as FastAPI's default docs serve it."""
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness: the server answers."""
        return {"ok": True}

    # The token is checked as a dependency: before the parameters are validated, so that a request
    # without it learns nothing but 401.
    guard = [Depends(require_token)]

    @app.get("/api/status", dependencies=guard, responses=UNAUTHORISED)
    def status() -> dict:
        """Stream health, pipeline counters and connected clients."""
        return state.status()

    @app.get("/api/config", dependencies=guard, responses=UNAUTHORISED)
    def config() -> dict:
        """The configuration the pipeline runs with."""
        return state.config

    @app.get(
        "/api/model",
        dependencies=guard,
        responses={**UNAUTHORISED, 404: {"description": "no model bundle loaded"}},
    )
    def model_info() -> dict:
        """The model bundle: identity, labels, context, feature contract, metrics, versions.

        ``contract`` summarises the feature contract (``synthetic``: trained on surrogate data, the
        live page's banner); ``feature_contract`` is the contract itself (``docs/model.md``).
        """
        bundle = state.bundle
        if bundle is None:
            raise HTTPException(status_code=404, detail="no model bundle loaded")
        return {
            **bundle.identity,
            "feature_contract": bundle.contract,
            "metrics": bundle.metrics,
            "versions": bundle.versions,
            "training": bundle.training,
        }

    @app.get("/api/history", dependencies=guard, responses=UNAUTHORISED)
    def history(
        since: float = Query(0.0, description="only predictions with stream_time > since"),
        limit: int = Query(500, ge=1, le=5000),
    ) -> JSONResponse:
        """Predictions after ``since``, oldest first, at most ``limit`` (page forward with ``since``)."""
        records = state.history()
        picked = [p.message for p in records if p.stream_time > since][:limit]
        return JSONResponse(picked)

    @app.websocket("/ws")
    async def feed(websocket: WebSocket, types: str = "", token: str | None = None) -> None:
        """The live feed: predictions, status and session messages (``docs/protocol.md``)."""
        if not authorised(state.token, token):
            await websocket.close(code=1008, reason="a valid token is required")
            return
        if not same_origin(websocket.headers.get("origin"), websocket.headers.get("host")):
            await websocket.close(code=1008, reason="cross-origin connections are refused")
            return
        wanted = {t for t in types.split(",") if t} or set(MESSAGE_TYPES)
        unknown = wanted - set(MESSAGE_TYPES)
        await websocket.accept()
        if unknown:
            await websocket.send_json({"type": "error", "version": PROTOCOL_VERSION,
                                       "error": f"unknown message type(s) {sorted(unknown)}; "
                                                f"known: {list(MESSAGE_TYPES)}"})  # fmt: skip
            await websocket.close(code=1003)
            return
        client = state.broadcaster.subscribe(wanted)
        await websocket.send_json({"type": "session", "version": PROTOCOL_VERSION, "event": "connected",
                                   "session": state.session, "subscribed": sorted(wanted)})  # fmt: skip
        sender = asyncio.create_task(_send_loop(websocket, client))
        receiver = asyncio.create_task(_receive_loop(websocket, client, state))
        stalled = asyncio.create_task(client.stalled.wait())
        try:
            done, _ = await asyncio.wait({sender, receiver, stalled}, return_when=asyncio.FIRST_COMPLETED)
            if stalled in done:
                with contextlib.suppress(Exception):
                    await websocket.close(code=1013, reason="client too slow: messages were dropped")
        finally:
            for task in (sender, receiver, stalled):
                task.cancel()
            state.broadcaster.unsubscribe(client)

    return app


async def _send_loop(websocket: WebSocket, client: Client) -> None:
    while True:
        message = await client.queue.get()
        if client.dropped > client.reported_dropped:
            await websocket.send_json(
                {"type": "drops", "version": PROTOCOL_VERSION, "dropped": client.dropped}
            )
            client.reported_dropped = client.dropped
        text = getattr(message, "text", None)  # the broadcaster encodes each message once
        await websocket.send_text(text if text is not None else json.dumps(message, separators=(",", ":")))


async def _receive_loop(websocket: WebSocket, client: Client, state: ServerState) -> None:
    """Accept ``{"subscribe": [...]}`` messages; anything else gets an error message."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None or len(text.encode()) > MAX_CLIENT_MESSAGE_BYTES:
                problem = f"send JSON text of at most {MAX_CLIENT_MESSAGE_BYTES} bytes"
                await websocket.send_json({"type": "error", "version": PROTOCOL_VERSION, "error": problem})
                continue
            try:
                request = json.loads(text)
                wanted = set(request["subscribe"])
                if not wanted or not wanted <= set(MESSAGE_TYPES):
                    raise ValueError
            except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: "[[[[…" in 4 kB
                await websocket.send_json({"type": "error", "version": PROTOCOL_VERSION,
                                           "error": 'expected {"subscribe": [types]} with types among '
                                                    f"{list(MESSAGE_TYPES)}"})  # fmt: skip
                continue
            client.types = wanted
            await websocket.send_json({"type": "session", "version": PROTOCOL_VERSION, "event": "subscribed",
                                       "session": state.session, "subscribed": sorted(wanted)})  # fmt: skip
    except WebSocketDisconnect:
        return
