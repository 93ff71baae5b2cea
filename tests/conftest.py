"""Shared fixtures. LSL is confined to loopback before anything imports pylsl."""

from __future__ import annotations

from core.lsl_safety import PROJECT_LSL_CONFIG, use_project_lsl_config

# Always the loopback configuration, even when a lab's LSLAPICFG is exported: test streams never go
# onto a lab network.
use_project_lsl_config(PROJECT_LSL_CONFIG)

import contextlib  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from simulators.surrogate import write_surrogate_run  # noqa: E402

# The reliability table: the ``reliability`` fixture, and the hooks that write docs/reliability.md from
# the tests' outcomes at the end of a run of the ``reliability`` marker.
pytest_plugins = ("tests.reliability_report",)

# A short test session: 4 scored epochs (W, N1, N2, N3), so replays take seconds.
SHORT_SCORING = (
    "session\tepoch_start_time_sec\t30-sec_epoch_sleep_stage\r\n"
    "task-sleep_run-1\t0\tW\r\n"
    "task-sleep_run-1\t30\t1\r\n"
    "task-sleep_run-1\t60\t2 (uncertain)\r\n"
    "task-sleep_run-1\t90\t3\r\n"
    "task-rest_run-1\t0\tW\r\n"
    "task-rest_run-1\t30\tW\r\n"
)


@pytest.fixture(scope="session")
def short_dataset(tmp_path_factory) -> Path:
    """A surrogate dataset with two short runs (120 s and 60 s) and a SampleIndex channel."""
    root = tmp_path_factory.mktemp("short")
    scoring = root / "short-scoring.tsv"
    scoring.write_bytes(SHORT_SCORING.encode())
    for run in ("sleep-1", "rest-1"):
        write_surrogate_run(root, "99", run, sample_index_channel=True, scoring_source=scoring, seed=7)
    return root


@pytest.fixture(scope="session")
def bundled_dataset(tmp_path_factory) -> Path:
    """The bundled surrogate subject's sleep-2 and sleep-3 runs (W, N1, N2 and N3 epochs)."""
    from simulators.surrogate import bundled_surrogate

    return bundled_surrogate(("sleep-2", "sleep-3"), data_dir=tmp_path_factory.mktemp("bundled"))


@pytest.fixture
def unique_prefix() -> str:
    """A stream-name prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTEFACTS = Path(__file__).parent / "artefacts"


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, headless, driven by Playwright (never Playwright's own browser download).

    Browser tests are skipped when chromium is not installed, unless ``SLEEPSTREAM_REQUIRE_BROWSER``
    is set (CI sets it after installing chromium), in which case they fail. Module-scoped: Playwright's
    synchronous API keeps an event loop running in this thread, which later ``asyncio.run`` calls refuse.
    """
    import os

    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("SLEEPSTREAM_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, request):
    """A fresh browser page; its console errors fail the test; a screenshot is saved at the end."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.console_errors = errors
    yield page
    ARTEFACTS.mkdir(exist_ok=True)
    with contextlib.suppress(Exception):
        page.screenshot(path=str(ARTEFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(scope="session")
def scanner_dataset(tmp_path_factory) -> Path:
    """A 2-minute N2 surrogate run recorded in the scanner at 5 kHz (gradients, ECG, BCG), clean beside."""
    from simulators.scanner_artefacts import ScannerArtefactSettings

    root = tmp_path_factory.mktemp("scanner")
    scoring = root / "scanner-scoring.tsv"
    lines = ["session\tepoch_start_time_sec\t30-sec_epoch_sleep_stage"]
    lines += [f"task-sleep_run-1\t{30 * k}\t2" for k in range(4)]
    scoring.write_text("\r\n".join(lines) + "\r\n")
    write_surrogate_run(
        root, "98", "sleep-1", sfreq=5000.0, scoring_source=scoring, seed=5, scanner=ScannerArtefactSettings()
    )
    return root
