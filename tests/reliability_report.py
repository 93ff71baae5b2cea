"""The reliability table: every fault and bad input a test tried, what it measured, what the system did.

Tests of the ``reliability`` marker call the ``reliability`` fixture to record their rows; at the end of
the test session the rows are merged into ``docs/reliability.json`` (one entry per case, replaced when
the case runs again) and ``docs/reliability.md`` is rendered from it. The table is therefore written by
the tests themselves, never by hand.

The merge follows each test's outcome, not only the rows it recorded:

- a test that passed replaces all its earlier rows with the rows it recorded;
- a test that failed (in setup, call or teardown) marks its rows failed, with the failure named: the
  rows it recorded before failing, and its earlier rows it did not reach. A test that failed before
  recording anything and has no earlier row gets a row of its own under
  :data:`UNRECORDED_AREA`;
- a skipped test leaves its earlier rows as they are;
- a row is dropped when this session's collection shows that its test no longer exists: its module
  was collected and does not contain it, or its folder was collected and the module file is gone.
  Tests that were not collected (another file, a node id) or only deselected (``-k``, ``-m``) keep
  their rows; nothing is dropped after a collection error or with ``--lf``, whose collection hides
  tests that exist.

This module is a pytest plugin (``tests/conftest.py`` loads it): the ``reliability`` fixture and the
hooks that follow the outcomes and write the table at the end of the session.
"""

from __future__ import annotations

import fcntl
import json
import platform
import tempfile
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
JSON_PATH = DOCS / "reliability.json"
MARKDOWN_PATH = DOCS / "reliability.md"
AREAS = ("stream faults", "bad input", "load", "soak", "crash safety", "security")
# The area of the row of a test that failed before recording any row and had none before.
UNRECORDED_AREA = "failed before recording a row"
FIXTURE = "reliability"
FAILURE_CHARS = 400


@dataclass
class Row:
    """One case of the table."""

    area: str
    case: str
    measured: str
    behaviour: str
    lost: str
    passed: bool
    test: str
    date: str = ""
    # Why the test failed (empty when it passed); the failure is shown in the row.
    failure: str = ""

    @property
    def key(self) -> str:
        """The entry's key in ``reliability.json``: one entry per area and case."""
        return f"{self.area}: {self.case}"


@dataclass
class Observed:
    """What this test session saw: rows, outcomes, and which tests its collection proved to exist."""

    rows: list[Row] = field(default_factory=list)
    # Node id of each test using the fixture that ran -> its failure ("" when it passed).
    outcomes: dict[str, str] = field(default_factory=dict)
    # Node id of each collector collected without error -> node ids of what it holds.
    children: dict[str, set[str]] = field(default_factory=dict)
    collection_failed: bool = False


ROWS: list[Row] = []
SESSION = Observed(rows=ROWS)


def today() -> str:
    """The date written in a row."""
    return time.strftime("%Y-%m-%d")


def record(area: str, case: str, measured: str, behaviour: str, lost: str, passed: bool, test: str) -> None:
    """Add a row (called by the tests, through the ``reliability`` fixture).

    Parameters
    ----------
    area : str
        One of :data:`AREAS`.
    case : str
        The fault or bad input tried.
    measured : str
        The figure measured (counts, durations, memory...).
    behaviour : str
        What the system did.
    lost : str
        What was lost (``"nothing"`` is the expected answer).
    passed : bool
        Whether the expected behaviour was observed (the test asserts it too).
    test : str
        The test's node id.
    """
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}; known: {AREAS}")
    ROWS.append(Row(area, case, measured, behaviour, lost, bool(passed), test, today()))


# -- the plugin: fixture and hooks ---------------------------------------------------------------------
@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a row of ``docs/reliability.md``: ``reliability(area, case, measured, behaviour, lost)``."""

    def add(
        area: str, case: str, measured: str, behaviour: str, lost: str = "nothing", passed: bool = True
    ) -> None:
        record(area, case, measured, behaviour, lost, passed, request.node.nodeid)

    return add


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Note what each collector holds (the proof that a test exists, or no longer does)."""
    if report.failed:
        SESSION.collection_failed = True
    else:
        SESSION.children[report.nodeid] = {node.nodeid for node in report.result}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Note the outcome of each test that uses the ``reliability`` fixture."""
    report = yield
    if FIXTURE in getattr(item, "fixturenames", ()):
        if report.failed:
            if not SESSION.outcomes.get(item.nodeid):
                SESSION.outcomes[item.nodeid] = describe_failure(item, call, report.when)
        elif report.when == "call" and report.passed:
            SESSION.outcomes.setdefault(item.nodeid, "")
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the table when tests of the ``reliability`` marker ran (not in the default suite)."""
    if any(item.get_closest_marker("reliability") for item in getattr(session, "items", ())):
        write(trust_collection=not session.config.getoption("lf", False), rootdir=session.config.rootpath)


def describe_failure(item: pytest.Item, call: pytest.CallInfo[None], when: str) -> str:
    """The failure in one line: the exception and the line of the test file that raised it."""
    if call.excinfo is None:
        # A failure without an exception (a strict xpass).
        return f"failed in {when}" if when != "call" else "failed"
    message = " ".join(call.excinfo.exconly().split())
    if len(message) > FAILURE_CHARS:
        message = message[: FAILURE_CHARS - 1] + "…"
    lines = [entry.lineno + 1 for entry in call.excinfo.traceback if Path(entry.path) == item.path]
    where = f" ({item.nodeid.split('::')[0]}:{lines[-1]})" if lines else ""
    phase = "" if when == "call" else f"in {when}: "
    return f"{phase}{message}{where}"


# -- the merge -----------------------------------------------------------------------------------------
def write(trust_collection: bool = True, rootdir: Path | None = None) -> None:
    """Merge this session into ``docs/reliability.json`` and render ``docs/reliability.md``.

    Parameters
    ----------
    trust_collection : bool
        Whether the collection shows every test of the modules it collected (not with ``--lf``).
    rootdir : Path or None
        The folder node ids are relative to (to tell a deleted test module); None never drops a
        module as deleted.
    """
    if not ROWS and not SESSION.outcomes:
        return
    # pytest-xdist workers finish at about the same time: one merge at a time.
    with open(Path(tempfile.gettempdir()) / "sleepstream-reliability.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
        exists = None
        if trust_collection and not SESSION.collection_failed:
            exists = Existence(SESSION.children, rootdir)
        entries = merge(entries, SESSION.rows, SESSION.outcomes, exists)
        JSON_PATH.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        MARKDOWN_PATH.write_text(render(entries))


def merge(
    entries: dict[str, dict[str, Any]],
    rows: Iterable[Row],
    outcomes: dict[str, str],
    exists: Existence | None = None,
) -> dict[str, dict[str, Any]]:
    """The table after a session: earlier entries, this session's rows and the outcomes of its tests.

    Parameters
    ----------
    entries : dict
        The earlier table (``reliability.json``): key -> row fields.
    rows : iterable of Row
        The rows recorded in this session.
    outcomes : dict
        Node id of each test that ran -> its failure (``""`` when it passed).
    exists : Existence or None
        What the collection proves about which tests exist; None drops no row as stale.

    Returns
    -------
    dict
        The new table.
    """
    rows = list(rows)
    recorded = {row.test for row in rows}
    # Every earlier row of a test that ran is replaced by what the test gives now.
    kept = {key: entry for key, entry in entries.items() if entry["test"] not in outcomes}
    if exists is not None:
        kept = {key: entry for key, entry in kept.items() if exists(entry["test"]) is not False}
    new = {row.key: row for row in rows}
    for test, failure in outcomes.items():
        if not failure:
            continue
        earlier = [Row(**entry) for entry in entries.values() if entry["test"] == test]
        for row in earlier:
            if row.key not in new:
                # Not measured this time: the test failed before reaching it.
                new[row.key] = Row(row.area, row.case, "", row.behaviour, row.lost, False, test, today())
        if test not in recorded and not earlier:
            new[f"{UNRECORDED_AREA}: {test}"] = Row(UNRECORDED_AREA, test, "", "", "", False, test, today())
        for row in new.values():
            if row.test == test:
                row.passed, row.failure = False, failure
    return {**kept, **{key: asdict(row) for key, row in new.items()}}


class Existence:
    """Whether a test exists, as far as a session's collection shows it.

    Parameters
    ----------
    children : dict
        Node id of each collector collected without error -> node ids of what it holds.
    rootdir : Path or None
        The folder node ids are relative to.
    """

    def __init__(self, children: dict[str, set[str]], rootdir: Path | None) -> None:
        self.children = children
        self.rootdir = rootdir

    def __call__(self, nodeid: str) -> bool | None:
        """True or False when the collection shows it, None when it does not tell.

        Parameters
        ----------
        nodeid : str
            A test's node id (``tests/test_x.py::test_y[param]``), or a collector's.

        Returns
        -------
        bool or None
            Whether the node exists; None when neither it nor any of its parents is shown.
        """
        parent = self.parent(nodeid)
        if parent is None:
            return None
        if parent in self.children:
            if nodeid in self.children[parent]:
                return True
            if "::" in nodeid:
                return False
            # A file or folder missing from its folder: gone only if it is gone from the disk (a file
            # left out of the collection, by --ignore for instance, still exists).
            return None if self.rootdir is None or (self.rootdir / nodeid).exists() else False
        return False if self(parent) is False else None

    @staticmethod
    def parent(nodeid: str) -> str | None:
        """The node id of the collector holding a node (``"."`` for the root folder)."""
        if "::" in nodeid:
            return nodeid.rsplit("::", 1)[0]
        if nodeid in (".", ""):
            return None
        return str(PurePosixPath(nodeid).parent)


# -- the page ------------------------------------------------------------------------------------------
def render(entries: dict[str, dict[str, Any]]) -> str:
    """The Markdown page of the table."""
    lines = [
        "# Reliability and security",
        "",
        "<!-- Generated by the reliability tests (tests/reliability_report.py): do not edit by hand. -->",
        "",
        "Every row is a fault or a bad input that a test of the `reliability` marker injected into the "
        "running system (`.ci/run` runs them all; `.venv/bin/python -m pytest -m reliability` by hand), "
        "the figure it measured, what the system did, and what was lost. Rows follow the tests' outcomes: "
        '"yes" when the test passed, **no** when it failed, with the failure named beside the behaviour '
        "that was expected. Rows of tests that no longer exist are dropped.",
        "",
        f"Machine of the last run: {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}.",
        "",
    ]
    for area in (*AREAS, UNRECORDED_AREA):
        rows = [entry for entry in entries.values() if entry["area"] == area]
        if not rows:
            continue
        header = "| case | measured | what the system did | lost | ok | run |"
        lines += [f"## {area.capitalize()}", "", header, "|---|---|---|---|---|---|"]
        for entry in sorted(rows, key=lambda e: e["case"]):
            cells = [entry["case"], *outcome_cells(entry), entry["lost"],
                     "yes" if entry["passed"] else "**no**", entry["date"]]  # fmt: skip
            lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def outcome_cells(entry: dict[str, Any]) -> tuple[str, str]:
    """The "measured" and "what the system did" cells: the failure, when the test failed."""
    failure = entry.get("failure", "")
    if not failure:
        return entry["measured"], entry["behaviour"]
    measured = entry["measured"] or "not measured: the test failed first"
    expected = f"; expected: {entry['behaviour']}" if entry["behaviour"] else ""
    return measured, f"**test failed**: {failure}{expected}"


def cell(value: object) -> str:
    """A table cell: pipes escaped, on one line."""
    return str(value).replace("|", "\\|").replace("\n", " ")
