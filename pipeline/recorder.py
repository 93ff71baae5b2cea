"""Session recording: every prediction, with its features and quality, written as it happens.

A session folder holds ``session.json`` (start time, configuration, model bundle
identity), ``predictions.jsonl`` (one JSON object per window, appended and
flushed to the operating system at once, so a crash loses at most the line being
written) and, when the session ends normally, ``predictions.parquet`` (the same
rows as a table) and the stop time in ``session.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pipeline.prediction import Prediction


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``predictions.jsonl``, ignoring a last line cut short by a crash."""
    records = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # only the line being written when the process died can be incomplete
    return records


class SessionRecorder:
    """A pipeline sink that records a session into its own folder.

    Parameters
    ----------
    root : path-like
        Where session folders are created.
    name : str
        Session name (the folder is ``<root>/<UTC date-time>_<name>``).
    metadata : dict
        Configuration, model bundle identity and anything else worth keeping.
    fsync : bool
        Also force each line to disk (survives a power cut, costs a disk sync per window).
    """

    def __init__(self, root: str | Path, name: str, metadata: dict[str, Any], fsync: bool = False) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.folder = Path(root) / f"{stamp}_{name}"
        self.folder.mkdir(parents=True, exist_ok=False)
        self.fsync = fsync
        self.metadata = {"name": name, "started": time.time(), **metadata}
        self._write_metadata()
        self._lines = (self.folder / "predictions.jsonl").open("a", encoding="utf-8")
        self.count = 0

    def _write_metadata(self) -> None:
        temporary = self.folder / "session.json.tmp"
        temporary.write_text(json.dumps(self.metadata, indent=2, default=str))
        os.replace(temporary, self.folder / "session.json")  # never a half-written file

    def __call__(self, prediction: Prediction) -> None:
        """Append one prediction and flush it."""
        self._lines.write(prediction.message_json + "\n")
        self._lines.flush()
        if self.fsync:
            os.fsync(self._lines.fileno())
        self.count += 1

    def close(self) -> Path:
        """Finish the session: Parquet export and stop time."""
        import pandas as pd

        self._lines.close()
        records = read_predictions(self.folder / "predictions.jsonl")
        if records:
            table = pd.json_normalize(records, sep=".")
            table.to_parquet(self.folder / "predictions.parquet", index=False)
        self.metadata.update({"stopped": time.time(), "predictions": self.count})
        self._write_metadata()
        return self.folder
