"""The reliability table follows the tests' outcomes: failures read "no", rows of removed tests go.

Each test runs pytest in a subprocess on a small suite of ``reliability`` tests written to a temporary
folder, with the table plugin (tests/reliability_report.py) writing to that folder instead of docs/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.reliability_report import UNRECORDED_AREA

REPO = Path(__file__).resolve().parents[1]

CONFTEST = """
from pathlib import Path
from typing import Any

pytest_plugins = ("tests.reliability_report",)


def pytest_configure(config):
    from tests import reliability_report

    reliability_report.JSON_PATH = Path(__file__).parent / "reliability.json"
    reliability_report.MARKDOWN_PATH = Path(__file__).parent / "reliability.md"
"""
INI = "[pytest]\nmarkers =\n    reliability: rows of the table\naddopts = -p no:cacheprovider\n"


def suite(root: Path, files: dict[str, str]) -> None:
    """Write a suite of reliability tests (``files``: name -> body) and the plugin's configuration."""
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text(INI)
    (root / "suite").mkdir(exist_ok=True)
    for name, body in files.items():
        header = "import pytest\n\npytestmark = pytest.mark.reliability\n\n"
        (root / "suite" / name).write_text(header + textwrap.dedent(body))


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on the suite, in a process of its own (without the installed plugins: quicker)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def table(root: Path) -> dict[str, dict[str, Any]]:
    return json.loads((root / "reliability.json").read_text())


def markdown_row(root: Path, case: str) -> str:
    rows = [
        line for line in (root / "reliability.md").read_text().splitlines() if line.startswith(f"| {case} |")
    ]
    assert len(rows) == 1, rows
    return rows[0]


def row(test: str, case: str) -> str:
    return f"""
def {test}(reliability):
    reliability("stream faults", "{case}", "measured {case}", "{case} handled")
"""


FAILING = {
    "test_faults.py": row("test_passes", "a passing case")
    + """
def test_fails_after_recording(reliability):
    reliability(
        "stream faults", "a case that fails after its row", "3 windows flagged", "every window flagged"
    )
    assert 3 == 4, "one window was not flagged"

def test_fails_before_recording(reliability):
    assert [], "no prediction after the outage"
    reliability("bad input", "a case recorded only when it passes", "1 prediction", "a prediction")
"""
}


def test_a_failing_test_reads_no_in_its_row_with_the_failure(tmp_path: Path) -> None:
    suite(tmp_path, FAILING)
    # In two pytest-xdist workers, as the reliability run does.
    result = run(tmp_path, "-p", "xdist", "-n", "2")
    assert result.returncode == 1 and "2 failed, 1 passed" in result.stdout, result.stdout + result.stderr

    passing = markdown_row(tmp_path, "a passing case")
    assert passing.endswith(
        " | nothing | yes | " + table(tmp_path)["stream faults: a passing case"]["date"] + " |"
    )
    # Recorded, then failed: the row reads "no", keeps what was measured, and names the failure.
    failed = markdown_row(tmp_path, "a case that fails after its row")
    assert "| **no** |" in failed and "| 3 windows flagged |" in failed
    assert "one window was not flagged" in failed and "test_faults.py:" in failed
    assert "expected: every window flagged" in failed
    # Failed before recording anything, with no earlier row: a row of its own, under its test's node id.
    unrecorded = markdown_row(tmp_path, "suite/test_faults.py::test_fails_before_recording")
    assert "| **no** |" in unrecorded and "no prediction after the outage" in unrecorded
    assert f"## {UNRECORDED_AREA.capitalize()}" in (tmp_path / "reliability.md").read_text()
    entries = table(tmp_path)
    assert {key: entry["passed"] for key, entry in entries.items()} == {
        "stream faults: a passing case": True,
        "stream faults: a case that fails after its row": False,
        f"{UNRECORDED_AREA}: suite/test_faults.py::test_fails_before_recording": False,
    }


def test_a_passing_row_turns_to_no_when_its_test_fails_and_back_when_it_passes(tmp_path: Path) -> None:
    files = {"test_faults.py": row("test_flaky", "a fault") + row("test_steady", "another fault")}
    suite(tmp_path, files)
    assert run(tmp_path).returncode == 0
    assert "| yes |" in markdown_row(tmp_path, "a fault")

    # Now it fails before reaching its row: the earlier row is not left reading "yes".
    flaky = "\ndef test_flaky(reliability):\n    assert 1 + 1 == 3, 'the stream was not found again'\n"
    suite(tmp_path, {"test_faults.py": flaky + row("test_steady", "another fault")})
    assert run(tmp_path).returncode == 1
    failed = markdown_row(tmp_path, "a fault")
    assert "| **no** |" in failed and "the stream was not found again" in failed
    assert "not measured: the test failed first" in failed and "expected: a fault handled" in failed
    assert "| yes |" in markdown_row(tmp_path, "another fault")
    assert len(table(tmp_path)) == 2

    suite(tmp_path, files)
    assert run(tmp_path).returncode == 0
    restored = markdown_row(tmp_path, "a fault")
    assert "| measured a fault | a fault handled | nothing | yes |" in restored
    assert table(tmp_path)["stream faults: a fault"]["failure"] == ""


def test_rows_of_removed_tests_go_on_a_full_run_and_stay_on_a_partial_one(tmp_path: Path) -> None:
    suite(
        tmp_path,
        {
            "test_one.py": row("test_kept", "kept") + row("test_renamed", "renamed"),
            "test_two.py": row("test_deleted", "deleted"),
            "test_three.py": row("test_other", "other"),
        },
    )
    assert run(tmp_path).returncode == 0
    assert {entry["case"] for entry in table(tmp_path).values()} == {"kept", "renamed", "deleted", "other"}

    # test_renamed is renamed (its case too) and test_two.py is deleted.
    suite(tmp_path, {"test_one.py": row("test_kept", "kept") + row("test_new_name", "new name")})
    (tmp_path / "suite" / "test_two.py").unlink()

    # Partial runs: one other file; a node id in the changed file. Nothing of what they did not collect goes.
    assert run(tmp_path, "suite/test_three.py").returncode == 0
    assert run(tmp_path, "suite/test_one.py::test_kept").returncode == 0
    assert {entry["case"] for entry in table(tmp_path).values()} == {"kept", "renamed", "deleted", "other"}
    # -k deselects after a full collection: the tests it did not run still exist and keep their rows;
    # the collection shows the renamed and deleted ones gone.
    assert run(tmp_path, "-k", "test_other").returncode == 0
    assert {entry["case"] for entry in table(tmp_path).values()} == {"kept", "other"}

    # A full run: the rows of the renamed and the deleted tests go.
    suite(tmp_path, {"test_two.py": row("test_deleted", "deleted")})
    assert run(tmp_path).returncode == 0
    assert "deleted" in {entry["case"] for entry in table(tmp_path).values()}
    (tmp_path / "suite" / "test_two.py").unlink()
    assert run(tmp_path).returncode == 0
    assert {entry["case"] for entry in table(tmp_path).values()} == {"kept", "new name", "other"}
    page = (tmp_path / "reliability.md").read_text()
    assert "| renamed |" not in page and "| deleted |" not in page and "| new name |" in page
