"""Run the live pipeline of one session: acquisition, features, model, server, LSL outlet, recorder.

Shared by ``demo`` (which replays the bundled session first) and ``live`` (which consumes
streams published by other software).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.prediction import Prediction
from pipeline.settings import Settings
from stream.config import AcquisitionConfig

if TYPE_CHECKING:
    from model.bundle import ModelBundle
    from viewer.csv_validation import AnalysisLimits


def print_prediction(prediction: Prediction) -> None:
    """One line per prediction on the terminal."""
    probabilities = " ".join(f"{name}={p:.2f}" for name, p in prediction.probabilities.items())
    truth = f"  scored={prediction.stage}" if prediction.stage else ""
    flag = "" if prediction.quality.get("usable") else "  (window flagged)"
    print(
        f"window {prediction.window:5d}  predicted={prediction.label:<6} {probabilities}{truth}{flag}",
        flush=True,
    )


def analysis_limits(settings: Settings) -> AnalysisLimits:
    """The analysis page's upload limits from the configuration."""
    from viewer.csv_validation import AnalysisLimits

    server = settings.server
    return AnalysisLimits(max_bytes=server.max_upload_bytes, max_rows=server.max_upload_rows)


def server_token(settings: Settings) -> str | None:
    """The access token from the environment variable the configuration names, if set."""
    return os.environ.get(settings.server.token_env) or None


def checked_server_token(settings: Settings) -> str | None:
    """The token, after checking that the server can listen where configured; exits with a clear message."""
    from viewer.app import is_loopback
    from viewer.server import check_port

    server = settings.server
    token = server_token(settings)
    if not is_loopback(server.host) and not token:
        raise SystemExit(
            f"error: serving on {server.host} (beyond this machine) requires a token: "
            f"set the environment variable {server.token_env}"
        )
    try:
        check_port(server.host, server.port)
    except OSError as err:
        raise SystemExit(f"error: {err} with --port") from None
    return token


def describe_model(bundle: ModelBundle) -> str:
    """Which bundle this run uses and what it was trained on, in one line."""
    from model.bundle import DEFAULT_BUNDLE

    path = bundle.path
    shipped = path is not None and Path(path).resolve() == DEFAULT_BUNDLE.resolve()
    where = "the shipped default bundle " if shipped else "bundle "
    data = bundle.contract.get("data") or {}
    kinds = {"surrogate": "synthetic (surrogate) sessions", "real": "recorded sessions"}
    kind = kinds.get(str(data.get("kind")), "unknown data")
    subjects = data.get("subjects") or []
    trained = f"trained on {kind}" + (f" of {len(subjects)} subject(s)" if subjects else "")
    return f"Model: {where}{path or '(not saved)'}: {bundle.labels}, K = {bundle.context}, {trained}"


def run_session(
    settings: Settings,
    acquisition_config: AcquisitionConfig,
    *,
    name: str,
    session_info: dict[str, Any],
    keep_going: Callable[[], bool] = lambda: True,
    outlet_prefix: str = "sleepstream",
) -> int:
    """Run until Ctrl-C (or until ``keep_going()`` is false); return the exit status.

    Parameters
    ----------
    settings : Settings
        Features, model, server and recording settings.
    acquisition_config : AcquisitionConfig
        The streams to consume and the window geometry.
    name : str
        Session name (the recording folder is ``<date>_<name>``).
    session_info : dict
        What the ``session`` messages and the recording say about the session.
    keep_going : callable
        Polled every 0.2 s; the session ends when it returns False (e.g. a replay ended).
    outlet_prefix : str
        Name prefix of the LSL prediction streams.

    Returns
    -------
    status : int
        0 after a clean stop; 2 when a stream cannot be found or does not match, or when the model
        bundle cannot be loaded or does not match the features this run computes.
    """
    from model.bundle import BundleError
    from model.contract import ContractError
    from pipeline.factory import build_pipeline
    from stream.discovery import StreamMismatchError, StreamNotFoundError
    from viewer.app import ServerState
    from viewer.server import LiveServer

    server = settings.server
    token = checked_server_token(settings)
    queries = ", ".join(f"{kind}: {query.describe()}" for kind, query in acquisition_config.queries().items())
    print(
        f"Looking for the streams ({queries}), up to {acquisition_config.resolve_timeout:g} s...", flush=True
    )
    try:
        live = build_pipeline(
            settings, acquisition_config, name=name, session_info=session_info, outlet_prefix=outlet_prefix
        )
    except (StreamNotFoundError, StreamMismatchError, BundleError, ContractError) as err:
        print(f"error: {err}", flush=True)
        return 2
    print(describe_model(live.bundle), flush=True)
    for warning in live.warnings:
        print(f"warning: {warning}", flush=True)
    # The hello message of every websocket client carries them (the live page shows them).
    session_info = {**session_info, "model_warnings": live.warnings}
    with live:
        if live.recorder is not None:
            print(f"Recording the session in {live.recorder.folder}", flush=True)
        live.pipeline.add_sink(print_prediction)
        state = ServerState(
            pipeline=live.pipeline,
            bundle=live.bundle,
            config=settings.as_dict(),
            session=session_info,
            token=token,
            analysis_limits=analysis_limits(settings),
        )
        if live.outlet is not None:
            print(f"Predictions on LSL: {live.outlet.names[0]}, {live.outlet.names[1]}", flush=True)
        with LiveServer(state, host=server.host, port=server.port) as served:
            print(
                f"Viewer: {served.url}/  (analysis page {served.url}/analysis, websocket ws://{served.host}:"
                f"{served.port}/ws, REST {served.url}/api/status, API docs {served.url}/docs)",
                flush=True,
            )
            print("The first prediction comes after 30 s of stream time. Ctrl-C to stop.", flush=True)
            try:
                while keep_going() and served.error is None:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                print("Stopping.", flush=True)
        folder = live.close()
        if folder is not None:
            print(f"Session recorded in {folder}", flush=True)
    return 0
