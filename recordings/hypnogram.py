"""Expert hypnograms on one grid of scoring epochs, whatever file they come in.

Three kinds of file are read by :func:`read_hypnogram`:

- EDF+ annotation files such as Sleep-EDF's ``*-Hypnogram.edf``: descriptions
  ``Sleep stage W/1/2/3/4/R/?`` and ``Movement time``, each spanning a whole
  number of epochs. R&K stages 3 and 4 are both AASM N3.
- Plain text or CSV with one stage per epoch, YASA's convention: ``0`` W,
  ``1`` N1, ``2`` N2, ``3`` N3, ``4`` REM, ``-1`` artefact, ``-2`` unscored; or
  letters (``W``, ``N1``, ``N2``, ``N3``, ``R``/``REM``, ``?``). Lines starting
  with ``#`` are comments; a header line naming the column is optional.
  Numbers always follow YASA (``4`` is REM); R&K's S4 is read only as ``S4``.
- ds003768's ``sub-XX-sleep-stage.tsv`` (one hypnogram per run), through
  :func:`recordings.scoring.read_scoring`.

Epochs that cannot be staged (unscored, movement, artefact) stay in the
hypnogram as :data:`UNSCORED` with their original label, and are counted in
:attr:`Hypnogram.excluded`: nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.stages import SLEEP_STAGES, UNSCORED, canonical_stage, epoch_containing
from recordings.errors import DatasetFormatError
from recordings.scoring import REQUIRED_COLUMNS, read_scoring

EXCLUSION_REASONS: tuple[str, ...] = ("unscored", "movement", "artefact")
"""Why an epoch carries no stage, as counted in :attr:`Hypnogram.excluded`."""

_EDF_STAGE_PREFIX = "sleep stage "
_EDF_MOVEMENT = "movement time"
_YASA_CODES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "R"}
_YASA_EXCLUDED = {-1: "artefact", -2: "unscored"}
_EXCLUDED_WORDS = {
    "?": "unscored",
    "U": "unscored",
    "UNS": "unscored",
    "UNSCORED": "unscored",
    "M": "movement",
    "MT": "movement",
    "MOVEMENT": "movement",
    "MOVEMENT TIME": "movement",
    "ART": "artefact",
    "ARTEFACT": "artefact",
    "ARTIFACT": "artefact",
}
_HEADER_WORD = re.compile(r"stage|hypno|label|scor", re.IGNORECASE)
_GRID_TOLERANCE = 1e-3  # seconds; EDF+ onsets are written with finite precision


@dataclass(frozen=True)
class Hypnogram:
    """One stage per scoring epoch on a regular grid.

    Attributes
    ----------
    onsets : np.ndarray, shape (n_epochs,)
        Epoch start times in seconds from the start of the recording, every
        ``epoch_seconds``.
    stages : tuple of str
        One of :data:`core.stages.SLEEP_STAGES` or :data:`UNSCORED` per epoch.
    raw_labels : tuple of str
        The label as written in the file, per epoch.
    source : str
        The file the hypnogram was read from.
    epoch_seconds : float
        Length of one epoch.
    start_time : datetime | None
        Wall-clock time (UTC) of the hypnogram's time 0 when the file says it (EDF+ header).
    """

    onsets: np.ndarray
    stages: tuple[str, ...]
    raw_labels: tuple[str, ...]
    source: str
    epoch_seconds: float = 30.0
    start_time: datetime | None = None

    def __post_init__(self) -> None:
        if not len(self.onsets) == len(self.stages) == len(self.raw_labels):
            raise ValueError(
                f"{self.source}: {len(self.onsets)} onsets, {len(self.stages)} stages and "
                f"{len(self.raw_labels)} labels: expected one of each per epoch"
            )
        unknown = sorted(set(self.stages) - {*SLEEP_STAGES, UNSCORED})
        if unknown:
            raise ValueError(f"{self.source}: unknown stage(s) {unknown}")

    @property
    def n_epochs(self) -> int:
        """Number of epochs, scored or not."""
        return len(self.stages)

    @property
    def counts(self) -> dict[str, int]:
        """Number of epochs of each of the five stages (zeros included), in AASM order."""
        found = Counter(self.stages)
        return {stage: found[stage] for stage in SLEEP_STAGES}

    @property
    def excluded(self) -> dict[str, int]:
        """Number of epochs without a stage, by reason (:data:`EXCLUSION_REASONS`)."""
        found = Counter(
            exclusion_reason(label)
            for stage, label in zip(self.stages, self.raw_labels, strict=True)
            if stage == UNSCORED
        )
        return {reason: found[reason] for reason in EXCLUSION_REASONS}

    def stage_at(self, seconds: float) -> str | None:
        """Return the stage of the epoch containing ``seconds``.

        Parameters
        ----------
        seconds : float
            Time from the start of the recording.

        Returns
        -------
        stage : str | None
            The stage (possibly :data:`UNSCORED`), or None outside the epochs.
        """
        index = epoch_containing(self.onsets, seconds, self.epoch_seconds)
        return None if index is None else self.stages[index]


def exclusion_reason(raw_label: str) -> str:
    """Why an epoch with this label carries no stage.

    Parameters
    ----------
    raw_label : str
        The label as written in the file.

    Returns
    -------
    reason : str
        ``"movement"``, ``"artefact"`` or ``"unscored"`` (anything else, e.g.
        ds003768's "uncertain").
    """
    text = raw_label.strip().upper()
    if text.startswith("SLEEP STAGE "):
        text = text.removeprefix("SLEEP STAGE ")
    try:
        return _YASA_EXCLUDED.get(int(float(text)), "unscored")
    except (ValueError, OverflowError):
        return _EXCLUDED_WORDS.get(text, "unscored")


def read_hypnogram(
    path: str | Path, *, epoch_seconds: float = 30.0, run: tuple[str, int] | None = None
) -> Hypnogram:
    """Read a hypnogram from an EDF+ annotation file, a text/CSV file or a ds003768 TSV.

    Parameters
    ----------
    path : path-like
        The hypnogram file; its kind is told from its content.
    epoch_seconds : float
        Length of one scoring epoch.
    run : (task, run), optional
        For ds003768 scoring files, which run to read, e.g. ``("sleep", 1)``;
        needed when the file holds several runs.

    Returns
    -------
    hypnogram : Hypnogram

    Raises
    ------
    DatasetFormatError
        If the file is missing, empty, holds an unknown label or an irregular
        grid; the message names the file and the line (or annotation).
    ValueError
        If ``epoch_seconds`` is not positive, or ``run`` is given for a file
        that is not a ds003768 scoring file.
    """
    path = Path(path)
    if not np.isfinite(epoch_seconds) or epoch_seconds <= 0:
        raise ValueError(f"epoch_seconds must be a positive number of seconds, got {epoch_seconds}")
    if not path.is_file():
        raise DatasetFormatError(path, "hypnogram file not found")
    head = path.read_bytes()[:4096]
    if not head.strip():
        raise DatasetFormatError(path, "empty file: expected a hypnogram", line=1)
    if head.startswith((b"0       ", b"\xffBIOSEMI")):
        _no_run(path, run)
        return _read_edf_annotations(path, epoch_seconds)
    first_line = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    if all(column in first_line for column in REQUIRED_COLUMNS):
        return _read_ds003768(path, epoch_seconds, run)
    _no_run(path, run)
    return _read_text(path, epoch_seconds)


def _no_run(path: Path, run: tuple[str, int] | None) -> None:
    if run is not None:
        raise ValueError(
            f"{path}: run={run!r} applies only to ds003768 scoring files (sub-XX-sleep-stage.tsv)"
        )


def _read_edf_annotations(path: Path, epoch_seconds: float) -> Hypnogram:
    import mne

    try:
        annotations = mne.read_annotations(path)
    except Exception as err:  # mne raises many kinds of error on a damaged file
        raise DatasetFormatError(path, f"not a readable EDF+ annotation file ({err})") from None
    if len(annotations) == 0:
        raise DatasetFormatError(path, "no annotations (a damaged or empty EDF+ file): expected sleep stages")
    start = float(annotations.onset[0])
    onsets: list[float] = []
    stages: list[str] = []
    labels: list[str] = []
    for number, (onset, duration, description) in enumerate(
        zip(annotations.onset, annotations.duration, annotations.description, strict=True), start=1
    ):
        where = f"annotation {number} ({description!r} at {onset:g} s, {duration:g} s)"
        stage = _edf_stage(str(description))
        if stage is None:
            raise DatasetFormatError(
                path,
                f"{where}: unknown label; expected 'Sleep stage W/1/2/3/4/R/?' or 'Movement time'",
            )
        first = (onset - start) / epoch_seconds
        n_epochs = duration / epoch_seconds
        if (
            abs(first - round(first)) * epoch_seconds > _GRID_TOLERANCE
            or abs(n_epochs - round(n_epochs)) * epoch_seconds > _GRID_TOLERANCE
            or round(n_epochs) < 1
        ):
            raise DatasetFormatError(
                path, f"{where}: irregular annotation grid; expected whole {epoch_seconds:g}-s epochs"
            )
        index = round(first)
        if index < len(onsets):
            raise DatasetFormatError(
                path,
                f"{where}: overlaps the previous annotation, which ends at "
                f"{start + len(onsets) * epoch_seconds:g} s",
            )
        # A gap between annotations is kept as unscored epochs, not closed up.
        gap = index - len(onsets)
        stages += [UNSCORED] * gap + [stage] * round(n_epochs)
        labels += [""] * gap + [str(description)] * round(n_epochs)
        onsets += [start + (len(onsets) + i) * epoch_seconds for i in range(gap + round(n_epochs))]
    return Hypnogram(
        np.array(onsets), tuple(stages), tuple(labels), str(path), epoch_seconds, edf_start_time(path)
    )


def edf_start_time(path: str | Path) -> datetime | None:
    """Start date and time (UTC) in an EDF/BDF header, or None when it cannot be read.

    Parameters
    ----------
    path : path-like
        The EDF, EDF+ or BDF file.

    Returns
    -------
    start : datetime | None
        Two-digit years 85-99 are 1985-1999, others 2000-2084 (the EDF convention).
    """
    with Path(path).open("rb") as handle:
        header = handle.read(184)
    try:
        day, month, year = (int(x) for x in header[168:176].decode("ascii").split("."))
        hour, minute, second = (int(x) for x in header[176:184].decode("ascii").split("."))
        full_year = 1900 + year if year >= 85 else 2000 + year
        return datetime(full_year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except (ValueError, UnicodeDecodeError):
        return None


def _edf_stage(description: str) -> str | None:
    text = description.strip().lower()
    if text == _EDF_MOVEMENT:
        return UNSCORED
    if not text.startswith(_EDF_STAGE_PREFIX):
        return None
    code = text.removeprefix(_EDF_STAGE_PREFIX).strip()
    if code == "?":
        return UNSCORED
    stage = canonical_stage(code)  # R&K: 1-4, R; 3 and 4 are both N3
    return stage if stage in SLEEP_STAGES else None


def _read_ds003768(path: Path, epoch_seconds: float, run: tuple[str, int] | None) -> Hypnogram:
    runs = read_scoring(path)
    available = ", ".join(f"({task!r}, {number})" for task, number in runs)
    if run is None:
        if len(runs) > 1:
            raise DatasetFormatError(
                path, f"the file holds {len(runs)} runs: choose one with run=(task, number) from {available}"
            )
        (scoring,) = runs.values()
    elif run not in runs:
        raise DatasetFormatError(path, f"no run {run!r} in the file: it holds {available}")
    else:
        scoring = runs[run]
    steps = np.diff(scoring.onsets)
    irregular = np.flatnonzero(np.abs(steps - epoch_seconds) > _GRID_TOLERANCE)
    if irregular.size:
        i = int(irregular[0])
        raise DatasetFormatError(
            path,
            f"run {scoring.task}-{scoring.run}: epoch at {scoring.onsets[i + 1]:g} s follows "
            f"{scoring.onsets[i]:g} s; expected a regular grid of {epoch_seconds:g}-s epochs",
        )
    return Hypnogram(scoring.onsets, scoring.stages, scoring.raw_labels, str(path), epoch_seconds)


def _read_text(path: Path, epoch_seconds: float) -> Hypnogram:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetFormatError(path, f"not a UTF-8 text file ({err.reason})") from None
    rows = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise DatasetFormatError(path, "no epochs: expected one stage per line", line=1)
    delimiter = next((d for d in (",", "\t", ";") if d in rows[0][1]), None)
    column = 0
    number, first = rows[0]
    header = [field.strip() for field in first.split(delimiter)] if delimiter else [first]
    if len(header) > 1 or _text_stage(header[0]) is None:
        names = [i for i, name in enumerate(header) if _HEADER_WORD.search(name)]
        if not names:
            problem = (
                f"unknown label {first!r}"
                if len(header) == 1
                else f"header {header} names no stage column (e.g. 'stage')"
            )
            raise DatasetFormatError(path, f"{problem}; {_TEXT_EXPECTED}", line=number)
        column = names[0]
        rows = rows[1:]
        if not rows:
            raise DatasetFormatError(path, "no epochs after the header line", line=number)
    stages: list[str] = []
    labels: list[str] = []
    for number, line in rows:
        fields = line.split(delimiter) if delimiter else [line]
        if len(fields) != len(header):
            raise DatasetFormatError(
                path, f"expected {len(header)} field(s) like the first line, found {len(fields)}", line=number
            )
        label = fields[column].strip()
        stage = _text_stage(label)
        if stage is None:
            raise DatasetFormatError(path, f"unknown label {label!r}; {_TEXT_EXPECTED}", line=number)
        stages.append(stage)
        labels.append(label)
    onsets = np.arange(len(stages)) * epoch_seconds
    return Hypnogram(onsets, tuple(stages), tuple(labels), str(path), epoch_seconds)


_TEXT_EXPECTED = (
    "expected one stage per epoch: 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 artefact, -2 unscored "
    "(YASA), or W, N1, N2, N3, R/REM, ?"
)


def _text_stage(label: str) -> str | None:
    try:
        value = float(label)
    except ValueError:
        upper = label.strip().upper()
        if upper in _EXCLUDED_WORDS:
            return UNSCORED
        stage = canonical_stage(upper)
        return stage if stage in SLEEP_STAGES else None
    if not value.is_integer():
        return None
    code = int(value)
    if code in _YASA_CODES:
        return _YASA_CODES[code]
    return UNSCORED if code in _YASA_EXCLUDED else None
