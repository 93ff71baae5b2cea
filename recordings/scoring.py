"""Expert sleep scoring of ds003768: one stage per 30 s epoch.

The files are ``sourcedata/sub-XX-sleep-stage.tsv`` with columns ``session``
(e.g. ``task-sleep_run-2``), ``epoch_start_time_sec`` and
``30-sec_epoch_sleep_stage``; sub-01 has an extra leading ``subject`` column;
lines end in CRLF. Stages are ``W`` (also ``w``), ``1``, ``2``, ``3`` (NREM
1-3). Epochs marked "uncertain" or "unscorable" in any spelling, and empty
labels, are kept as :data:`UNSCORED` with their original text, never dropped.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.stages import SLEEP_STAGES, UNSCORED, epoch_containing
from recordings.errors import DatasetFormatError

STAGES: tuple[str, ...] = SLEEP_STAGES[:4]  # ds003768 has no REM

REQUIRED_COLUMNS = ("session", "epoch_start_time_sec", "30-sec_epoch_sleep_stage")
_SESSION_PATTERN = re.compile(r"^task-(?P<task>[A-Za-z0-9]+)_run-(?P<run>\d+)$")
_MERGED_TIME_AND_STAGE = re.compile(r"^(?P<time>\d+(?:\.\d+)?)\s+(?P<stage>\S.*)$")
_STAGE_CODES = {"w": "W", "1": "N1", "2": "N2", "3": "N3"}


@dataclass(frozen=True)
class RunScoring:
    """Scored stages of one run.

    Attributes
    ----------
    task : str
        ``"rest"`` or ``"sleep"``.
    run : int
        Run number within the task.
    onsets : np.ndarray, shape (n_epochs,)
        Epoch start times in seconds from the start of the run (the first fMRI
        volume).
    stages : tuple of str
        One of :data:`STAGES` or :data:`UNSCORED` per epoch.
    raw_labels : tuple of str
        The label text as written in the file.
    """

    task: str
    run: int
    onsets: np.ndarray
    stages: tuple[str, ...]
    raw_labels: tuple[str, ...]

    @property
    def n_epochs(self) -> int:
        """Number of scored epochs."""
        return len(self.stages)

    def stage_at(self, seconds: float) -> str | None:
        """Return the stage of the epoch containing ``seconds`` (run time).

        Parameters
        ----------
        seconds : float
            Time from the start of the run.

        Returns
        -------
        stage : str | None
            The stage (possibly :data:`UNSCORED`), or None outside the scored epochs.
        """
        index = epoch_containing(self.onsets, seconds)
        return None if index is None else self.stages[index]


def normalise_stage(label: str) -> str:
    """Map a ds003768 stage label to one of :data:`STAGES` or :data:`UNSCORED`.

    Parameters
    ----------
    label : str
        Label text from the scoring file, e.g. ``"W"``, ``"2"``,
        ``"1 (uncertain)"``, ``"Unscorable"`` or ``""``.

    Returns
    -------
    stage : str
        ``"W"``, ``"N1"``, ``"N2"``, ``"N3"`` or ``"unscored"``.
    """
    return _STAGE_CODES.get(label.strip().lower(), UNSCORED)


def read_scoring(path: str | Path) -> dict[tuple[str, int], RunScoring]:
    """Read one subject's ``sub-XX-sleep-stage.tsv``.

    Parameters
    ----------
    path : path-like
        The TSV file.

    Returns
    -------
    runs : dict
        ``{(task, run): RunScoring}`` in file order.

    Raises
    ------
    DatasetFormatError
        If the file is missing, has no header with the expected columns, or a
        line cannot be parsed; the message names the file and the line.

    Notes
    -----
    One real file (sub-32) has a line whose time and stage are separated by a
    space instead of a tab (``810 W``); such a line is read with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "sleep-scoring file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetFormatError(path, f"not a UTF-8 text file ({err.reason})") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DatasetFormatError(path, "empty file: expected a header line", line=1)
    header = [name.strip() for name in lines[0].split("\t")]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise DatasetFormatError(
            path,
            f"header lacks column(s) {missing}: expected tab-separated "
            f"{list(REQUIRED_COLUMNS)} (optionally after 'subject'), found {header}",
            line=1,
        )
    i_session, i_time, i_stage = (header.index(name) for name in REQUIRED_COLUMNS)

    rows: dict[tuple[str, int], list[tuple[float, str]]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) == len(header) - 1 and i_stage == len(header) - 1:
            merged = _MERGED_TIME_AND_STAGE.match(fields[i_time].strip())
            if merged is None:
                raise _bad_field_count(path, number, header, fields)
            warnings.warn(
                f"{path}, line {number}: time and stage separated by a space "
                f"({fields[i_time]!r}); read as time {merged['time']}, "
                f"stage {merged['stage']!r}",
                stacklevel=2,
            )
            fields = [*fields[:i_time], merged["time"], merged["stage"]]
        elif len(fields) != len(header):
            raise _bad_field_count(path, number, header, fields)
        session = _SESSION_PATTERN.match(fields[i_session].strip())
        if session is None:
            raise DatasetFormatError(
                path,
                f"session {fields[i_session]!r} is not of the form 'task-<name>_run-<N>'",
                line=number,
            )
        try:
            onset = float(fields[i_time])
        except ValueError:
            raise DatasetFormatError(
                path,
                f"epoch start time {fields[i_time]!r} is not a number of seconds",
                line=number,
            ) from None
        if not np.isfinite(onset) or onset < 0:
            raise DatasetFormatError(
                path, f"epoch start time {onset} must be a finite number >= 0", line=number
            )
        key = (session["task"], int(session["run"]))
        previous = rows.setdefault(key, [])
        if previous and onset <= previous[-1][0]:
            raise DatasetFormatError(
                path,
                f"epoch start {onset} s of {fields[i_session]} does not follow the "
                f"previous epoch ({previous[-1][0]} s): expected increasing times",
                line=number,
            )
        previous.append((onset, fields[i_stage].strip()))
    if not rows:
        raise DatasetFormatError(path, "no scored epochs after the header")
    return {
        (task, run): RunScoring(
            task=task,
            run=run,
            onsets=np.array([onset for onset, _ in epochs]),
            stages=tuple(normalise_stage(label) for _, label in epochs),
            raw_labels=tuple(label for _, label in epochs),
        )
        for (task, run), epochs in rows.items()
    }


def _bad_field_count(path: Path, number: int, header: list[str], fields: list[str]) -> DatasetFormatError:
    return DatasetFormatError(
        path,
        f"expected {len(header)} tab-separated fields {header}, found {len(fields)}: {fields}",
        line=number,
    )
