"""``run_stream.py serve``: the web server alone (analysis page, API), or a recorded session."""

from __future__ import annotations

import argparse
import time
from typing import Any

from cli.common import add_server_options, stop_on_signals


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    serve = commands.add_parser(
        "serve",
        help="serve the viewer without acquisition: the analysis page, or a recorded session",
        description=(
            "Serve the web application without acquiring: the analysis page (upload a CSV of the 11 "
            "features, get the shipped model's predictions and 8 plots), the API docs and, with --session, "
            "a recorded session folder shown on the live page. Ctrl-C stops."
        ),
    )
    add_server_options(serve)
    serve.add_argument("--model", default=None, metavar="DIR", help="model bundle (default: the shipped one)")
    serve.add_argument("--session", default=None, metavar="DIR", help="a recorded session folder to show")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C."""
    from cli.session_runner import analysis_limits, checked_server_token
    from model.bundle import load_bundle
    from viewer.app import ServerState
    from viewer.recorded import RecordedSession
    from viewer.server import LiveServer

    settings = args.settings.replace("server", host=args.host, port=args.port)
    settings = settings.replace("model", bundle=args.model)
    server = settings.server
    token = checked_server_token(settings)
    recorded = None
    session: dict[str, Any] = {"name": "analysis", "mode": "serve"}
    if args.session:
        try:
            recorded = RecordedSession(args.session)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        session = {"name": recorded.metadata.get("name", recorded.folder.name), "mode": "recorded",
                   "folder": str(recorded.folder), "predictions": recorded.predictions}  # fmt: skip
    bundle = load_bundle(settings.model.bundle_path)
    state = ServerState(
        recorded=recorded,
        bundle=bundle,
        config=settings.as_dict(),
        session=session,
        token=token,
        analysis_limits=analysis_limits(settings),
    )
    stop_on_signals()
    with LiveServer(state, host=server.host, port=server.port) as live:
        print(
            f"Viewer: {live.url}/  analysis page: {live.url}/analysis  API docs: {live.url}/docs", flush=True
        )
        if recorded is not None:
            print(f"Showing {recorded.predictions} recorded predictions of {recorded.folder}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        try:
            while live.error is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("Stopping.", flush=True)
    return 0
