"""Errors raised when a dataset file is missing or malformed."""

from __future__ import annotations

from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset file is missing or does not follow the expected format.

    The message always names the file, and the line when there is one, with
    what was expected and what was found.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}" if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")
