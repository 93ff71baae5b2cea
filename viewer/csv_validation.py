"""Validation of an uploaded feature table (CSV) for the analysis page.

:func:`validate_csv` turns the bytes of an upload into either a table of the 11
features ready for the model, or the list of *every* problem found (never just
the first), each with the column, the file lines and a few example values that
a person needs to fix the file. It never raises: any input, however damaged,
gives a :class:`ValidationResult`. Pure functions, no I/O, no model: easy to
test and to property-test.

Lines are the file's line numbers as a text editor or spreadsheet shows them:
the header is line 1 and the first data row is line 2.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from features.names import FEATURE_NAMES
from model.dataset import ORIGIN_COLUMNS

# Columns the project's own tables carry beside the features (pipeline.offline.window_record,
# the result CSV of this page, the origin app's layout): tolerated without a warning.
KNOWN_METADATA: frozenset[str] = frozenset(
    {
        "subject",
        "task",
        "run",
        "session",
        "window",
        "start",
        "end",
        "window_start",
        "window_end",
        "stream_time",
        "wall_time",
        "time",
        "stage",
        "label",
        "usable",
        "eeg_coverage",
        "eeg_gaps",
        "bad_channels",
        "fmri_volumes",
        "fmri_staleness",
        "problems",
        "quality",
        "latency_ms",
        "predicted_label",
    }
)
# Metadata whose values are kept for the analysis (grouping into runs, scored labels).
KEPT_METADATA: tuple[str, ...] = ("subject", "task", "run", "stage", "label")
INDEX_COLUMNS: frozenset[str] = frozenset({"", "Unnamed: 0", "index"})
# First bytes of files people upload by mistake.
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?): export the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/Office document: export the sheet as CSV"),
    (b"PAR1", "a Parquet file: write it as CSV (pandas: table.to_csv(path, index=False))"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip-compressed file: decompress it first"),
    (b"\x93NUMPY", "a NumPy array file"),
)
DELIMITERS: tuple[str, ...] = (",", ";", "\t")
MAX_LISTED_COLUMNS = 20
MAX_SUGGESTED_NAME = 100
MAX_SUGGESTED_COLUMNS = 200  # unknown columns looked up for a suggestion (difflib is slow)


@dataclass(frozen=True)
class AnalysisLimits:
    """Limits on one upload.

    Attributes
    ----------
    max_bytes : int
        Largest request body accepted (enforced while reading it: HTTP 413 beyond).
    max_rows : int
        Most data rows accepted.
    max_examples : int
        Example cells quoted per problem.
    importance_rows : int
        Rows (drawn at random when there are more) used for permutation importance.
    importance_repeats : int
        Permutations of each feature.
    """

    max_bytes: int = 20_000_000
    max_rows: int = 100_000
    max_examples: int = 5
    importance_rows: int = 5_000
    importance_repeats: int = 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong (``error``) or worth knowing (``warning``) about an upload.

    Attributes
    ----------
    kind : str
        Machine-readable kind: ``too_many_bytes``, ``empty``, ``binary``, ``encoding``, ``not_csv``,
        ``missing_columns``, ``misnamed_column``, ``duplicate_columns``, ``extra_columns``,
        ``origin_layout``, ``index_column``, ``ragged_rows``, ``non_numeric``, ``empty_cells``,
        ``not_finite``, ``no_rows``, ``too_many_rows``; ``bad_parameter`` (a query parameter of the
        request, :mod:`viewer.analysis`).
    message : str
        What is wrong and how to fix it, for a person.
    severity : str
        ``"error"`` (the file is refused) or ``"warning"`` (it is analysed anyway).
    column : str | None
        The column concerned, as named in the file.
    columns : tuple of str
        The columns concerned, when several.
    lines : tuple of int
        File lines of the first examples (header = line 1).
    count : int | None
        How many cells or rows are affected in all.
    suggestion : str | None
        The known column name a misnamed column probably means.
    """

    kind: str
    message: str
    severity: str = "error"
    column: str | None = None
    columns: tuple[str, ...] = ()
    lines: tuple[int, ...] = ()
    count: int | None = None
    suggestion: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        record = asdict(self)
        record["columns"] = list(self.columns)
        record["lines"] = list(self.lines)
        return record


@dataclass
class FeatureTable:
    """A valid upload: the 11 features of every row, in file order, and the metadata kept.

    Attributes
    ----------
    header : tuple of str
        Column names as in the file.
    features : np.ndarray, shape (n_rows, 11)
        Finite float64 features in :data:`features.names.FEATURE_NAMES` order.
    metadata : dict
        Canonical name (``subject``, ``task``, ``run``, ``stage``, ``label``) to the row values
        (stripped strings), for the columns present.
    lines : np.ndarray, shape (n_rows,)
        File line of each row.
    delimiter : str
        The field separator found in the header.
    renamed : dict
        File column name to canonical name, for the origin app's names.
    """

    header: tuple[str, ...]
    features: np.ndarray
    metadata: dict[str, list[str]]
    lines: np.ndarray
    delimiter: str = ","
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        """Number of data rows."""
        return int(self.features.shape[0])


@dataclass
class ValidationResult:
    """Problems found and, when there is no error, the table."""

    problems: list[Problem]
    table: FeatureTable | None = None

    @property
    def errors(self) -> list[Problem]:
        """Problems that refuse the file."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems worth knowing that do not stop the analysis."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """Whether the table can be analysed."""
        return self.table is not None


def too_large(limits: AnalysisLimits, size: int | None = None) -> Problem:
    """The problem reported when an upload exceeds ``limits.max_bytes``."""
    got = f" (this one: {size:,} bytes)" if size is not None else ""
    return Problem(
        "too_many_bytes",
        f"the file is larger than the limit of {_megabytes(limits.max_bytes)}{got}: "
        "split it or keep fewer rows",
    )


def validate_csv(data: bytes, limits: AnalysisLimits | None = None) -> ValidationResult:
    """Check an uploaded CSV of the 11 features; list every problem.

    Parameters
    ----------
    data : bytes
        The file as uploaded.
    limits : AnalysisLimits | None
        Size limits (defaults when None).

    Returns
    -------
    result : ValidationResult
        ``result.table`` is set exactly when no problem is an error.
    """
    limits = limits or AnalysisLimits()
    try:
        return _validate(bytes(data), limits)
    except Exception as err:  # a bug here must still give the user an answer, not a 500
        return ValidationResult(
            [Problem("not_csv", f"the file could not be read as CSV ({type(err).__name__})")]
        )


def read_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, fields)`` of every non-blank record of a CSV text (header included).

    Raises
    ------
    csv.Error
        On malformed CSV (e.g. a field beyond the csv module's size limit).
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    previous_end = 0
    for fields in reader:
        line = previous_end + 1
        previous_end = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        yield line, fields


def decode(data: bytes) -> tuple[str | None, list[Problem]]:
    """The text of an upload, or the problems that prevent reading it as UTF-8 text."""
    if len(data) == 0 or not data.strip():
        return None, [Problem("empty", "the file is empty: choose a CSV with a header line and data rows")]
    for magic, what in MAGIC:
        if data.startswith(magic):
            return None, [Problem("binary", f"this is not a CSV text file but {what}")]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, [Problem("encoding", "the file is UTF-16 text: save it as 'CSV UTF-8' instead")]
    head = data[:8192]
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 13))
    if b"\x00" in head or control > len(head) * 0.05:
        return None, [Problem("binary", "this is a binary file, not CSV text: export the table as CSV")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, [
            Problem(
                "encoding",
                f"the file is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}): "
                "save it as 'CSV UTF-8'",
            )
        ]
    if "\x00" in text:
        return None, [Problem("binary", "the file contains NUL characters: it is not CSV text")]
    return text, []


def _validate(data: bytes, limits: AnalysisLimits) -> ValidationResult:
    if len(data) > limits.max_bytes:
        return ValidationResult([too_large(limits, len(data))])
    text, problems = decode(data)
    if text is None:
        return ValidationResult(problems)
    delimiter = _delimiter(text)
    rows = read_rows(text, delimiter)
    try:
        first = next(rows, None)
    except csv.Error as err:
        return ValidationResult([Problem("not_csv", f"the header cannot be read as CSV: {err}")])
    if first is None:
        return ValidationResult([Problem("empty", "the file has no header line")])
    header_line, raw_header = first
    header = tuple(name.strip() for name in raw_header)
    plan, problems = _check_header(header, header_line)
    if any(p.kind == "not_csv" for p in problems):
        return ValidationResult(problems)
    body = _Body(plan, limits, len(header))
    try:
        for line, fields in rows:
            if body.n_rows >= limits.max_rows:
                body.overflow = True
                break
            body.add(line, fields)
    except csv.Error as err:
        problems.append(
            Problem("not_csv", f"the file stops being valid CSV after line {body.last_line}: {err}")
        )
    problems += body.problems()
    if any(p.severity == "error" for p in problems):
        return ValidationResult(problems)
    table = FeatureTable(
        header=header,
        features=body.matrix(),
        metadata=body.metadata,
        lines=np.asarray(body.lines, dtype=np.int64),
        delimiter=delimiter,
        renamed={name: plan.renamed[name] for name in plan.renamed},
    )
    return ValidationResult(problems, table)


def _delimiter(text: str) -> str:
    """The separator of the header line: comma unless semicolons or tabs are clearly meant."""
    first = next((line for line in io.StringIO(text) if line.strip()), "")
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _normalise(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").replace("_", " ").split())


@dataclass
class _Plan:
    """Where the features and kept metadata are in the header."""

    feature_index: dict[str, int]  # canonical feature name -> column index
    metadata_index: dict[str, int]  # canonical metadata name -> column index
    renamed: dict[str, str]
    header: tuple[str, ...]


def _check_header(header: tuple[str, ...], line: int) -> tuple[_Plan, list[Problem]]:
    problems: list[Problem] = []
    canonical: list[str | None] = []
    renamed: dict[str, str] = {}
    unknown: list[int] = []
    index_columns: list[str] = []
    for position, name in enumerate(header):
        if name in FEATURE_NAMES or name in KNOWN_METADATA:
            canonical.append(name)
        elif name in ORIGIN_COLUMNS:
            canonical.append(ORIGIN_COLUMNS[name])
            renamed[name] = ORIGIN_COLUMNS[name]
        elif name.startswith("probability_"):
            canonical.append(name)  # a result CSV of this page, uploaded again
        elif name in INDEX_COLUMNS and position == 0:
            canonical.append(None)
            index_columns.append(name or "(unnamed)")
        else:
            canonical.append(None)
            unknown.append(position)
    known = [name for name in canonical if name is not None]
    if not known and not any(_closest(header[position]) for position in unknown[:MAX_SUGGESTED_COLUMNS]):
        text = ", ".join(header)[:80]
        return _Plan({}, {}, {}, header), [
            Problem(
                "not_csv",
                f"line {line} is not a CSV header of known columns (it reads {text!r}): the first line "
                f"must name the columns, among them the 11 features {', '.join(FEATURE_NAMES)}",
                lines=(line,),
            )
        ]
    seen: dict[str, list[str]] = {}
    for name, target in zip(header, canonical, strict=True):
        if target is not None:
            seen.setdefault(target, []).append(name)
    duplicated = {target: names for target, names in seen.items() if len(names) > 1}
    if duplicated:
        described = "; ".join(
            f"{target}: {', '.join(repr(n) for n in names)}" for target, names in duplicated.items()
        )
        problems.append(
            Problem(
                "duplicate_columns",
                f"column(s) given more than once ({described}): keep one of each",
                columns=tuple(duplicated),
                lines=(line,),
            )
        )
    missing = [name for name in FEATURE_NAMES if name not in seen]
    explained: set[str] = set()
    extras: list[str] = []
    for rank, position in enumerate(unknown):
        name = header[position]
        suggestion = _closest(name) if rank < MAX_SUGGESTED_COLUMNS else None
        if suggestion is not None and suggestion in missing and suggestion not in explained:
            explained.add(suggestion)
            shown = name if len(name) <= MAX_SUGGESTED_NAME else name[:MAX_SUGGESTED_NAME] + "…"
            problems.append(
                Problem(
                    "misnamed_column",
                    f"column {shown!r} is not a known name: did you mean {suggestion!r}? Rename it.",
                    column=shown,
                    suggestion=suggestion,
                    lines=(line,),
                )
            )
        else:
            extras.append(name if suggestion is None else f"{name} (did you mean {suggestion}?)")
    still_missing = [name for name in missing if name not in explained]
    if still_missing:
        problems.append(
            Problem(
                "missing_columns",
                f"missing feature column(s): {', '.join(still_missing)}. The file needs all 11 features: "
                f"{', '.join(FEATURE_NAMES)}",
                columns=tuple(still_missing),
                lines=(line,),
            )
        )
    if extras:
        listed = ", ".join(repr(n[:MAX_SUGGESTED_NAME]) for n in extras[:MAX_LISTED_COLUMNS])
        more = f" and {len(extras) - MAX_LISTED_COLUMNS} more" if len(extras) > MAX_LISTED_COLUMNS else ""
        problems.append(
            Problem(
                "extra_columns",
                f"unknown column(s) ignored: {listed}{more}",
                severity="warning",
                columns=tuple(n[:MAX_SUGGESTED_NAME] for n in extras[:MAX_LISTED_COLUMNS]),
                count=len(extras),
                lines=(line,),
            )
        )
    if index_columns:
        problems.append(
            Problem(
                "index_column",
                "the first column has no name (an index written by pandas?): it is ignored",
                severity="warning",
                lines=(line,),
            )
        )
    if renamed:
        problems.append(
            Problem(
                "origin_layout",
                "columns named as in the origin app were read as "
                + ", ".join(f"{old} → {new}" for old, new in renamed.items())
                + ". The model was trained on 2.1-s windows: per-run averages are outside what it has seen.",
                severity="warning",
                columns=tuple(renamed),
            )
        )
    feature_index = {}
    metadata_index = {}
    for position, target in enumerate(canonical):
        if target in FEATURE_NAMES and target not in feature_index:
            feature_index[target] = position
        elif target in KEPT_METADATA and target not in metadata_index:
            metadata_index[target] = position
    return _Plan(feature_index, metadata_index, renamed, header), problems


def _closest(name: str) -> str | None:
    """The known column a misnamed one most probably means (canonical name), or None."""
    if not name or len(name) > MAX_SUGGESTED_NAME:
        return None
    candidates: dict[str, str] = {_normalise(n): n for n in (*FEATURE_NAMES, *KNOWN_METADATA)}
    candidates.update({_normalise(alias): target for alias, target in ORIGIN_COLUMNS.items()})
    # Feature names without their modality prefix ("delta_power" for eeg_delta_power) count too.
    candidates.update({_normalise(n.removeprefix("eeg_")): n for n in FEATURE_NAMES})
    match = difflib.get_close_matches(_normalise(name), list(candidates), n=1, cutoff=0.75)
    return candidates[match[0]] if match else None


class _Body:
    """Reads data rows one at a time, collecting features and problems per column."""

    def __init__(self, plan: _Plan, limits: AnalysisLimits, n_columns: int) -> None:
        self.plan = plan
        self.limits = limits
        self.n_columns = n_columns
        self.values: dict[str, list[float]] = {name: [] for name in plan.feature_index}
        self.metadata: dict[str, list[str]] = {name: [] for name in plan.metadata_index}
        self.lines: list[int] = []
        self.last_line = 1
        self.overflow = False
        # kind -> column -> (count, examples [(line, text)])
        self.cells: dict[str, dict[str, list]] = {"non_numeric": {}, "empty_cells": {}, "not_finite": {}}
        self.ragged: list = [0, []]

    @property
    def n_rows(self) -> int:
        return len(self.lines)

    def add(self, line: int, fields: list[str]) -> None:
        self.last_line = line
        self.lines.append(line)
        if len(fields) != self.n_columns:
            self._note(self.ragged, line, f"{len(fields)} fields")
        for name, position in self.plan.feature_index.items():
            if position < len(fields):
                self.values[name].append(self._number(name, line, fields[position].strip()))
            else:  # a short row: reported once as ragged, not once per missing cell
                self.values[name].append(math.nan)
        for name, position in self.plan.metadata_index.items():
            self.metadata[name].append(fields[position].strip() if position < len(fields) else "")

    def _number(self, name: str, line: int, text: str) -> float:
        column = self.plan.header[self.plan.feature_index[name]]
        if not text:
            self._note(self.cells["empty_cells"].setdefault(column, [0, []]), line, "")
            return math.nan
        try:
            if "_" in text:
                raise ValueError
            value = float(text)
        except ValueError:
            self._note(self.cells["non_numeric"].setdefault(column, [0, []]), line, text)
            return math.nan
        if not math.isfinite(value):
            self._note(self.cells["not_finite"].setdefault(column, [0, []]), line, text)
        return value

    def _note(self, record: list, line: int, text: str) -> None:
        record[0] += 1
        if len(record[1]) < self.limits.max_examples:
            record[1].append((line, text if len(text) <= 40 else text[:40] + "…"))

    def problems(self) -> list[Problem]:
        problems: list[Problem] = []
        count, examples = self.ragged
        if count:
            where = ", ".join(f"line {line} has {text}" for line, text in examples)
            problems.append(
                Problem(
                    "ragged_rows",
                    f"{count} row(s) do not have the header's {self.n_columns} fields ({where}"
                    f"{', …' if count > len(examples) else ''})",
                    lines=tuple(line for line, _ in examples),
                    count=count,
                )
            )
        wording = {
            "non_numeric": "non-numeric value(s)",
            "empty_cells": "empty cell(s)",
            "not_finite": "NaN or infinite value(s)",
        }
        for kind, columns in self.cells.items():
            for column, (count, examples) in columns.items():
                if kind == "empty_cells":
                    where = ", ".join(f"line {line}" for line, _ in examples)
                else:
                    where = ", ".join(f"line {line}: {text!r}" for line, text in examples)
                more = ", …" if count > len(examples) else ""
                problems.append(
                    Problem(
                        kind,
                        f"column {column!r}: {count} {wording[kind]} ({where}{more}); every feature must be "
                        "a finite number",
                        column=column,
                        lines=tuple(line for line, _ in examples),
                        count=count,
                    )
                )
        if self.overflow:
            problems.append(
                Problem(
                    "too_many_rows",
                    f"more than {self.limits.max_rows:,} data rows (the limit): split the file",
                    count=self.n_rows,
                )
            )
        elif self.n_rows == 0:
            problems.append(Problem("no_rows", "the file has a header but no data rows"))
        return problems

    def matrix(self) -> np.ndarray:
        columns = [np.asarray(self.values[name], dtype=np.float64) for name in FEATURE_NAMES]
        return np.stack(columns, axis=1) if columns else np.empty((0, len(FEATURE_NAMES)))


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.3g} MB"
