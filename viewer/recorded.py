"""A recorded session served as history, so the live page can show a past night."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

from pipeline.recorder import read_predictions


class RecordedMessage:
    """One recorded prediction message, answering like a live ``Prediction`` for ``/api/history``."""

    __slots__ = ("message",)

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message

    @property
    def stream_time(self) -> float:
        """LSL time of the window's end."""
        return float(self.message["stream_time"])

    def to_message(self) -> dict[str, Any]:
        """The message as it was sent live."""
        return self.message


class RecordedSession:
    """The predictions of a session folder (``predictions.jsonl``), served as history.

    Parameters
    ----------
    folder : path-like
        A folder written by :class:`pipeline.recorder.SessionRecorder`.

    Raises
    ------
    FileNotFoundError
        If the folder has no ``predictions.jsonl``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        lines = self.folder / "predictions.jsonl"
        if not lines.is_file():
            raise FileNotFoundError(f"{self.folder} is not a session folder: it has no predictions.jsonl")
        self.history = deque(RecordedMessage(record) for record in read_predictions(lines))
        self.predictions = len(self.history)
        metadata = self.folder / "session.json"
        self.metadata: dict[str, Any] = json.loads(metadata.read_text()) if metadata.is_file() else {}
