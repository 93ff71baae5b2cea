"""Find LSL streams by name, type or source_id, with a timeout and a clear error."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from stream.config import StreamQuery

if TYPE_CHECKING:
    import pylsl


class StreamNotFoundError(LookupError):
    """No stream matched a query within the timeout; the message lists what was seen."""


class StreamMismatchError(ValueError):
    """A stream was found but differs from the configuration (channels, rate, format)."""


def describe_stream(info: pylsl.StreamInfo) -> str:
    """One-line description of a ``pylsl.StreamInfo``."""
    return (
        f"name={info.name()!r} type={info.type()!r} source_id={info.source_id()!r} "
        f"channels={info.channel_count()} rate={info.nominal_srate():g}"
    )


def xpath_predicate(query: StreamQuery) -> str:
    """The liblsl XPath predicate selecting the streams of a query."""
    clauses = [
        f"{field}='{value}'"
        for field, value in (("name", query.name), ("type", query.stype), ("source_id", query.source_id))
        if value is not None
    ]
    return " and ".join(clauses)


def find_stream(
    query: StreamQuery, timeout: float, *, exclude_uids: frozenset[str] = frozenset()
) -> pylsl.StreamInfo:
    """Resolve the one stream matching ``query``.

    Parameters
    ----------
    query : StreamQuery
        What the stream must match.
    timeout : float
        Seconds to wait for it.
    exclude_uids : frozenset of str
        Stream instances to ignore (e.g. a dead outlet still listed).

    Returns
    -------
    info : pylsl.StreamInfo
        The newest matching stream if several match.

    Raises
    ------
    StreamNotFoundError
        If nothing matches within ``timeout``; the message lists the streams seen.
    """
    import pylsl

    deadline = time.monotonic() + timeout
    predicate = xpath_predicate(query)
    while True:
        remaining = deadline - time.monotonic()
        found = pylsl.resolve_bypred(predicate, 1, max(0.05, min(remaining, 1.0)))
        candidates = [info for info in found if info.uid() not in exclude_uids]
        if candidates:
            return max(candidates, key=lambda info: info.created_at())
        if time.monotonic() >= deadline:
            break
    seen = pylsl.resolve_streams(wait_time=1.0)
    listing = "\n".join(f"  - {describe_stream(info)}" for info in seen) or "  (no LSL stream at all)"
    raise StreamNotFoundError(
        f"no LSL stream matching {query.describe()} within {timeout:g} s. Streams seen:\n{listing}"
    )
