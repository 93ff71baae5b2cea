"""The server's token: one check for the REST routes, the analysis routes and the websocket.

A server started with a token (``ServerState.token``) answers its ``/api`` routes and its websocket
only to requests carrying it: ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``. Tokens are
compared in constant time.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import HTTPException, Request
from starlette.requests import HTTPConnection

UNAUTHORISED: dict[int | str, dict[str, Any]] = {
    401: {"description": "a valid token is required (the server has one)"}
}
"""The OpenAPI description of the refusal, for the guarded routes."""


def authorised(expected: str | None, token: str | None) -> bool:
    """Whether ``token`` opens a server whose token is ``expected`` (any does when it has none).

    Parameters
    ----------
    expected : str | None
        The server's token; None when the server has none.
    token : str | None
        The token the client sent, if any.

    Returns
    -------
    bool
    """
    if expected is None:
        return True
    return token is not None and secrets.compare_digest(token.encode(), expected.encode())


def sent_token(connection: HTTPConnection) -> str | None:
    """The token a request carries: its ``Authorization: Bearer`` header, else its ``token`` parameter."""
    header = connection.headers.get("authorization", "")
    return header.removeprefix("Bearer ").strip() or connection.query_params.get("token")


def require_token(request: Request) -> None:
    """Refuse the request (401) unless it carries the server's token, when it has one.

    Usable as a FastAPI dependency; the server's state is ``request.app.state.server``.

    Raises
    ------
    fastapi.HTTPException
        401 without a valid token.
    """
    expected = getattr(request.app.state.server, "token", None)
    if not authorised(expected, sent_token(request)):
        raise HTTPException(status_code=401, detail="a valid token is required")
