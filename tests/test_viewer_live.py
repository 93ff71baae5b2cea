"""The live page in chromium: predictions arrive, charts read at a glance, it reconnects, memory is bounded.

Every test serves the page from a real uvicorn server and feeds it through the real websocket feed:
either a replay consumed by the real acquisition and pipeline, or prediction messages built by
:class:`pipeline.prediction.Prediction` and published on the server's broadcaster (what the pipeline's
sink does).
"""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

from core.problems import ProblemCode, problem
from pipeline.prediction import Prediction
from tests.sessions import TEST_SETTINGS, live_session
from viewer.app import ServerState
from viewer.server import LiveServer, free_port

pytestmark = pytest.mark.browser
PROJECT_BUNDLE = "model/default_bundle"
STAGE_AXIS = ["N3", "N2", "N1", "R", "W"]  # the stage axis, bottom to top
# Typical magnitudes of the fMRI metrics (the default bundle's training means): a shared axis would
# squash all but the BOLD mean flat.
FMRI_TYPICAL = {"bold_mean": 787.6, "bold_variance": 0.66, "alff_mean": 2.12, "alff_variance": 0.119}
FMRI_UNITS = {"bold_mean": "scanner units", "bold_variance": "%²", "alff_mean": "%", "alff_variance": "%²"}


def fmri_units(bundle) -> dict[str, str]:
    """The fMRI units the page shows for this bundle's feature settings (docs/features.md)."""
    features = bundle.contract.get("features") or {}
    units = dict(FMRI_UNITS)
    if features.get("bold_level", "raw") != "raw":
        units["bold_mean"] = "% of baseline"
    measure = features.get("alff_measure")
    if measure == "alff":
        units.update(alff_mean="%/√Hz", alff_variance="(%/√Hz)²")
    elif measure == "falff":
        units.update(alff_mean="fraction", alff_variance="fraction²")
    return units


EEG_FEATURES = (
    "eeg_delta_power", "eeg_theta_power", "eeg_alpha_power", "eeg_beta_power", "eeg_gamma_power",
    "eeg_spectral_entropy", "eeg_mean_coherence",
)  # fmt: skip


@pytest.fixture(scope="module")
def bundle():
    from model.bundle import load_bundle
    from tests.cli import PROJECT

    return load_bundle(PROJECT / PROJECT_BUNDLE)


@pytest.fixture(scope="module")
def stage_bundle(bundle):
    """A bundle that predicts the five stages (an untrained network: only its labels matter here)."""
    from model.architecture import build_fusion_model
    from model.labels import label_names

    names = label_names("stages")
    return dataclasses.replace(
        bundle,
        model=build_fusion_model(bundle.context, len(names)),
        labels="stages",
        label_names=names,
        path=None,
    )


def live_value(page, expression: str):
    return page.evaluate(f"window.sleepstreamLive.{expression}")


def wait_until(page, condition: str, timeout_s: float) -> None:
    page.wait_for_function(f"window.sleepstreamLive && ({condition})", timeout=timeout_s * 1000)


def wait_drawn(page, windows: int, timeout_s: float) -> None:
    """Wait until the page has received ``windows`` windows and redrawn its charts with all of them."""
    live = "window.sleepstreamLive"
    wait_until(page, f"{live}.windows() === {windows} && {live}.drawnWindows() === {windows}", timeout_s)


def wait_for(predicate, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; the bound only guards against hanging."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def legend_values(page, chart: str) -> dict[str, str]:
    """Legend label to the value it shows, for every uPlot chart under ``#chart-<chart>``."""
    return page.evaluate(
        """(selector) => Object.fromEntries([...document.querySelectorAll(`${selector} .u-legend .u-series`)]
            .map((row) => [row.querySelector('.u-label').textContent.replace(/:$/, ''),
                           row.querySelector('.u-value').textContent]))""",
        f"#chart-{chart}",
    )


def legend_text(chart: str, entry: int) -> str:
    """JavaScript for the value that entry ``entry`` (0: the session time) of a chart's legend shows."""
    return f"document.querySelectorAll('#chart-{chart} .u-value')[{entry}].textContent"


def fmri_legend(page) -> dict[str, str]:
    """The value each fMRI chart's legend shows (its time entry is hidden: the other charts show it)."""
    legend = legend_values(page, "fmri")
    legend.pop("session time")
    assert set(legend) == {"BOLD mean", "BOLD variance", "ALFF mean", "ALFF variance"}
    return legend


def sleep_probability(window: int) -> float:
    return 0.2 + 0.6 * (window % 5) / 4


def synthetic_message(
    window: int, stage: str | None = "N2", fmri: bool = True, fmri_used: bool = True
) -> dict:
    """A prediction message as the pipeline sends it; ``fmri=False``: NaN fMRI features (sent as null).

    ``fmri_used=False``: predicted from the EEG alone, flagged as the pipeline flags it.
    """
    sleep = sleep_probability(window)
    features = {name: 1.0 + window % 7 for name in EEG_FEATURES}
    for name, typical in FMRI_TYPICAL.items():
        features[name] = typical * (1 + 0.01 * (window % 3)) if fmri else math.nan
    message = Prediction(
        window=window,
        stream_time=1000.0 + 2.1 * window,
        wall_time=time.time(),
        label="sleep" if sleep > 0.5 else "wake",
        probabilities={"wake": 1 - sleep, "sleep": sleep},
        features=features,
        quality={"usable": window % 10 != 3, "problems": [], "feature_problems": []},
        stage=stage,
        latency_ms=3.0,
        fmri_used=fmri_used,
    ).to_message()
    if not fmri_used:
        flag = problem(ProblemCode.PREDICTED_WITHOUT_FMRI, reason="the newest fMRI volume is 9.0 s old")
        message["quality"]["problems"] = [flag.text]
        message["quality"]["problem_codes"] = [flag.as_dict()]
    return message


def stage_message(window: int, stage: str) -> dict:
    """A prediction of a bundle that predicts stages: most of the probability on ``stage``."""
    message = synthetic_message(window, stage=stage)
    names = ("W", "N1", "N2", "N3", "R")
    message["probabilities"] = {name: (0.6 if name == stage else 0.1) for name in names}
    message["label"] = stage
    return message


@pytest.mark.lsl
def test_during_a_replay_predictions_arrive_and_the_hypnogram_grows(
    page, short_dataset, unique_prefix, bundle
):
    player, live, state = live_session(short_dataset, unique_prefix, bundle, speed=10)
    pipeline = state.pipeline
    try:
        with LiveServer(state) as server:
            page.goto(f"{server.url}/")
            wait_until(page, "window.sleepstreamLive.windows() >= 3", 60)
            first = live_value(page, "hypnogramLength()")
            wait_until(page, f"window.sleepstreamLive.hypnogramLength() >= {first + 5}", 60)
            wait_until(page, "document.querySelector('#health tbody tr[data-stream=eeg]') !== null", 10)
            assert live_value(page, "connection()") == "connected"
            assert page.text_content("#state-label") in {"wake", "sleep"}
            assert live_value(page, "scoredLength()") > 0  # the replay carries the expert scoring
            eeg_row = page.text_content("#health tbody tr[data-stream=eeg]")
            assert "connected" in eeg_row and "250.00" in eeg_row
            # The fMRI row says how volumes meet their triggers, as the acquisition reports it.
            wait_until(
                page, "(document.querySelector('#health tbody tr[data-stream=fmri]') || {}).textContent"
                "?.includes('latency')", 30,
            )  # fmt: skip
            fmri_health = pipeline.acquisition.health()["streams"]["fmri"]
            fmri_row = page.text_content("#health tbody tr[data-stream=fmri]")
            assert fmri_health["pairing"] and "latency" in fmri_row
            assert {"run_start": "run start", "expected_latency": "expected latency"}.get(
                fmri_health["pairing"], "unverified"
            ) in fmri_row
            for chart in ("probability", "hypnogram", "bands", "fmri"):
                assert page.locator(f"#chart-{chart} canvas").count() >= 1
            # The default bundle predicts wake or sleep: a two-level track, wake on top as W is.
            axes = live_value(page, "hypnogramAxes()")
            assert axes["predicted"]["ticks"] == ["sleep", "wake"]
            assert axes["scored"]["ticks"] == STAGE_AXIS
            # Each level of the two-level track is as tall as a stage level: the tracks read as one scale.
            level = axes["scored"]["pixelsPerUnit"]
            assert axes["predicted"]["pixelsPerUnit"] == pytest.approx(level, abs=0.5)
            # Every prediction made reaches the page; then it shows the last one's window number.
            live.close()
            wait_for(lambda: not pipeline.running, 30, "the pipeline to finish")
            made = pipeline.predictions
            wait_drawn(page, made, 30)
            last = pipeline.history[-1]
            assert page.text_content("#window-number") == str(last.window)
            assert page.text_content("#windows-received") == f"{made} received by this page"
            # Not hovering: the legend shows the newest window's values.
            probabilities = legend_values(page, "probability")
            for label, p in last.probabilities.items():
                assert probabilities[f"P({label})"] == f"{p:.2f}"
            assert legend_values(page, "hypnogram")["predicted"] == last.label
    finally:
        live.close()
        player.stop()
    assert page.console_errors == []


def test_legends_show_the_latest_window_until_a_plot_is_hovered(page, bundle):
    with LiveServer(ServerState(bundle=bundle, session={"name": "legends"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        messages = [synthetic_message(window) for window in range(10)]
        for message in messages:
            server.publish(message)
        wait_drawn(page, 10, 20)
        last = messages[-1]
        assert legend_values(page, "probability") == {
            "session time": "0:00:18",
            "P(wake)": f"{last['probabilities']['wake']:.2f}",
            "P(sleep)": f"{last['probabilities']['sleep']:.2f}",
        }
        assert legend_values(page, "hypnogram")["predicted"] == last["label"]
        assert legend_values(page, "hypnogram")["scored"] == "N2"
        assert legend_values(page, "bands")["delta"] == f"{last['features']['eeg_delta_power']:#.3g} µV²"
        fmri = fmri_legend(page)
        short = {"scanner units": " a.u.", "% of baseline": " %", "%²": " %²", "(%/√Hz)²": " (%/√Hz)²"}
        units = fmri_units(bundle)
        shown = (("BOLD mean", "bold_mean"), ("ALFF variance", "alff_variance"))
        for title, metric in shown:
            unit = short.get(units[metric], " ")
            assert fmri[title].endswith(unit), fmri
            assert float(fmri[title].removesuffix(unit)) == pytest.approx(last["features"][metric], rel=1e-3)
        # Hovering the first window of one chart: every chart's legend shows that window (shared cursor).
        plot = page.locator("#chart-probability .u-over").bounding_box()
        page.mouse.move(plot["x"] + 1, plot["y"] + plot["height"] / 2)
        wait_until(page, f"{legend_text('probability', 0)} === '0:00:00'", 10)
        assert legend_values(page, "probability")["P(wake)"] == f"{messages[0]['probabilities']['wake']:.2f}"
        assert legend_values(page, "bands")["session time"] == "0:00:00"
        # Leaving it: the latest again.
        page.mouse.move(5, 5)
        wait_until(page, f"{legend_text('probability', 0)} === '0:00:18'", 10)
        assert legend_values(page, "probability")["P(wake)"] == f"{last['probabilities']['wake']:.2f}"
        assert legend_values(page, "bands")["session time"] == "0:00:18"
    assert page.console_errors == []


def test_each_fmri_metric_has_its_own_axis_and_unit(page, bundle):
    with LiveServer(ServerState(bundle=bundle, session={"name": "fmri axes"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        for window in range(12):
            server.publish(synthetic_message(window))
        wait_drawn(page, 12, 20)
        axes = {axis["metric"]: axis for axis in live_value(page, "fmriAxes()")}
        assert set(axes) == set(FMRI_TYPICAL)
        assert all(axis["drawn"] == 12 for axis in axes.values())
        for metric, typical in FMRI_TYPICAL.items():
            axis = axes[metric]
            low, high = typical, typical * 1.02  # the values published
            # The axis spans this metric's values, and not the others': no flat line at the bottom.
            assert axis["min"] <= low and axis["max"] >= high, axis
            assert axis["max"] - axis["min"] < 10 * (high - low), axis
            assert axis["label"] == fmri_units(bundle)[metric]
            assert fmri_units(bundle)[metric] in axis["title"]
            assert len(axis["ticks"]) >= 2
        assert page.get_attribute("#chart-fmri", "data-state") == "ok"
        assert page.is_hidden("#fmri-note")
    assert page.console_errors == []


def test_fmri_values_that_stop_leave_a_gap_not_zeros(page, bundle):
    with LiveServer(ServerState(bundle=bundle, session={"name": "fmri stops"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        messages = [synthetic_message(window, fmri=window < 6) for window in range(10)]
        assert messages[-1]["features"]["bold_mean"] is None  # NaN is sent as null
        for message in messages:
            server.publish(message)
        wait_drawn(page, 10, 20)
        assert page.get_attribute("#chart-fmri", "data-state") == "missing"
        for points in live_value(page, "fmriPoints()"):
            assert all(v is not None for v in points[:6]) and points[6:] == [None] * 4
        assert all(axis["drawn"] == 6 for axis in live_value(page, "fmriAxes()"))
        assert set(fmri_legend(page).values()) == {"no data"}
        assert page.is_visible("#fmri-note") and "no fMRI data" in page.text_content("#fmri-note")
        assert page.locator("#chart-fmri .multiple[data-missing=true] .no-data").count() == 4
        assert legend_values(page, "bands")["delta"] != "no data"  # EEG is still drawn
        assert page.is_hidden("#bands-note")
        # Data back: the note goes.
        server.publish(synthetic_message(10))
        wait_until(page, "document.querySelector('#chart-fmri').dataset.state === 'ok'", 10)
        assert page.is_hidden("#fmri-note")
    assert page.console_errors == []


@pytest.mark.lsl
def test_with_the_fmri_stream_lost_the_page_shows_no_fmri_data_and_keeps_drawing_eeg(
    page, short_dataset, unique_prefix, bundle, monkeypatch
):
    """A replay whose fMRI stream is lost: fMRI features null, the stream shown lost, EEG goes on."""
    import pylsl

    import viewer.server
    from pipeline.factory import build_pipeline
    from recordings.session import read_session
    from simulators.replay import SessionPlayer
    from stream.config import AcquisitionConfig, StreamQuery

    monkeypatch.setattr(viewer.server, "STATUS_INTERVAL", 0.5)
    session = read_session(short_dataset, "99", "sleep-1")
    # The scanner's fMRI export: a stream of its own, lost once the acquisition has found it.
    scanner = pylsl.StreamInfo(
        f"{unique_prefix}-scanner", "fMRI", 1 + session.parcellation.n_regions, 1 / session.tr, "float32",
        f"{unique_prefix}-scanner",
    )  # fmt: skip
    scanner.desc().append_child("session").append_child_value("tr", f"{session.tr:g}")
    scanner_outlet = pylsl.StreamOutlet(scanner)
    player = SessionPlayer(session, speed=10, loop=True, with_truth=True, prefix=unique_prefix)
    player.start()
    config = dataclasses.replace(
        AcquisitionConfig.for_replay(unique_prefix, with_truth=True, resolve_timeout=10),
        fmri=StreamQuery(name=f"{unique_prefix}-scanner"),
    )
    live = build_pipeline(TEST_SETTINGS, config, bundle=bundle, outlet_prefix=None)
    acquisition, pipeline = live.acquisition, live.pipeline
    state = ServerState(pipeline=pipeline, bundle=bundle, session={"name": unique_prefix})
    try:
        with LiveServer(state) as server:
            page.goto(f"{server.url}/")
            fmri_row = "#health tbody tr[data-stream=fmri]"
            wait_until(page, f"document.querySelector('{fmri_row}') !== null", 30)
            assert "connected" in page.text_content(fmri_row)
            del scanner_outlet  # the last reference: liblsl destroys the outlet
            wait_until(page, f"document.querySelector('{fmri_row}').textContent.includes('lost')", 30)
            wait_for(lambda: not acquisition.fmri.connected, 5, "the acquisition to see the fMRI stream lost")
            assert "lost" in acquisition.health()["streams"]["fmri"]["error"]
            # Predictions go on, with the fMRI features null.
            wait_until(page, "window.sleepstreamLive.windows() >= 3", 60)
            seen = live_value(page, "windows()")
            eeg_points = sum(live_value(page, "bandPoints()"))
            wait_until(page, f"window.sleepstreamLive.windows() >= {seen + 3}", 60)
            assert sum(live_value(page, "bandPoints()")) > eeg_points  # EEG is still drawn
            made = list(pipeline.history)
            assert made and all(p.message["features"]["bold_mean"] is None for p in made)
            assert all(p.message["features"]["eeg_delta_power"] is not None for p in made)
            wait_until(page, "document.querySelector('#chart-fmri').dataset.state === 'missing'", 10)
            assert all(axis["drawn"] == 0 for axis in live_value(page, "fmriAxes()"))
            assert all(v is None for points in live_value(page, "fmriPoints()") for v in points)
            note = page.text_content("#fmri-note")
            assert "no fMRI data" in note and "fMRI stream is lost" in note, note
            assert set(fmri_legend(page).values()) == {"no data"}
            assert legend_values(page, "probability")["P(wake)"] != "—"
            row = page.locator(fmri_row)
            assert "lost" in row.text_content() and row.get_attribute("class") == "bad"
            assert "connected" in page.text_content("#health tbody tr[data-stream=eeg]")
            # The page's window number is the feed's, as the console prints it.
            live.close()
            wait_for(lambda: not pipeline.running, 30, "the pipeline to finish")
            wait_until(page, f"window.sleepstreamLive.windows() === {pipeline.predictions}", 30)
            assert page.text_content("#window-number") == str(pipeline.history[-1].window)
    finally:
        live.close()
        player.stop()
    assert page.console_errors == []


def test_the_fmri_note_picks_fmri_problems_by_their_codes(page, bundle):
    """The note under the fMRI charts gives the texts of the fMRI problem codes, never the others'."""
    with LiveServer(ServerState(bundle=bundle, session={"name": "fmri codes"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        message = synthetic_message(0, fmri=False)
        # Texts that would fool a word match: the code decides, the text is only shown.
        message["quality"]["problem_codes"] = [
            {"code": "fmri_stale", "text": "scanner export late by 4.20 s", "seconds": 4.2},
            {"code": "eeg_gaps", "text": "1 EEG gap(s) near the fMRI trigger", "count": 1, "seconds": 0.5},
        ]
        message["quality"]["feature_problem_codes"] = [
            {"code": "fmri_features_need_volumes", "text": "5 volumes, need 8", "volumes": 5, "minimum": 8}
        ]
        server.publish(message)
        wait_drawn(page, 1, 20)
        note = page.text_content("#fmri-note")
        assert "scanner export late by 4.20 s" in note and "5 volumes, need 8" in note, note
        assert "EEG gap" not in note
    assert page.console_errors == []


def test_a_model_trained_on_synthetic_data_shows_a_banner(page, bundle):
    """The banner: from /api/model's contract (surrogate data) and the session's model warnings."""
    assert bundle.contract["data"]["kind"] == "surrogate"
    rate = "EEG rate 1000 Hz is outside the range the model was trained on (250 Hz): treat with caution"
    session = {"name": "synthetic", "model_warnings": [rate]}
    with LiveServer(ServerState(bundle=bundle, session=session)) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "(window.sleepstreamLive.modelBanner() || '').includes('EEG rate 1000 Hz')", 20)
        banner = live_value(page, "modelBanner()")
        assert "model trained on synthetic data" in banner
        assert page.is_visible("#model-banner")
        box = page.locator("#model-banner").bounding_box()
        assert box["y"] < 200 and box["height"] > 20  # at the top of the page, not a footnote
    features = {**bundle.contract["features"], "bold_level": "baseline-percent", "alff_measure": "alff"}
    data = {"kind": "real", "subjects": ["01"], "source": "/data"}
    real = dataclasses.replace(bundle, contract={**bundle.contract, "features": features, "data": data})
    with LiveServer(ServerState(bundle=real, session={"name": "real"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "document.querySelector('#footer-model').textContent.includes('definitions')", 20)
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        assert live_value(page, "modelBanner()") is None
        assert page.is_hidden("#model-banner")
        # The fMRI units follow the model's feature settings (scale-free BOLD level, ALFF density).
        units = {axis["metric"]: axis["label"] for axis in live_value(page, "fmriAxes()")}
        assert units == fmri_units(real) and units["bold_mean"] == "% of baseline"
    assert page.console_errors == []


def test_a_bundle_that_predicts_stages_is_drawn_on_the_scored_stage_axis(page, stage_bundle):
    stages = ["W", "N1", "N2", "N3", "N2", "R", "R", "W", "N2"]
    with LiveServer(ServerState(bundle=stage_bundle, session={"name": "stages"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        for window, stage in enumerate(stages):
            server.publish(stage_message(window, stage))
        wait_drawn(page, len(stages), 20)
        axes = live_value(page, "hypnogramAxes()")
        assert axes["predicted"]["ticks"] == STAGE_AXIS == axes["scored"]["ticks"]
        predicted, scored = axes["predicted"], axes["scored"]
        assert (predicted["min"], predicted["max"]) == (scored["min"], scored["max"])
        assert predicted["pixelsPerUnit"] == pytest.approx(scored["pixelsPerUnit"], abs=0.5)
        # Predicted and scored agree here: the two tracks are the same line on the same axis.
        assert live_value(page, "predictedLevels()") == [STAGE_AXIS.index(s) for s in stages]
        assert live_value(page, "predictedLevels()") == live_value(page, "scoredLevels()")
        assert legend_values(page, "hypnogram")["predicted"] == "N2"
        assert page.text_content("#state-label") == "N2"
    assert page.console_errors == []


def test_five_stages_with_rem_at_its_own_level_for_predictions_and_truth(page, stage_bundle):
    """W on top, REM on its own level below it with a thick bar, then N1, N2, N3: both tracks."""
    predicted = ["W", "N1", "R", "R", "R", "N2", "N3", "N3", "N2", "R", "W"]
    scored = ["W", "N1", "N1", "R", "R", "N2", "N3", "N2", "N2", "R", "R"]
    rem = STAGE_AXIS.index("R")
    with LiveServer(ServerState(bundle=stage_bundle, session={"name": "five stages"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        for window, (guess, truth) in enumerate(zip(predicted, scored, strict=True)):
            message = stage_message(window, guess)
            message["stage"] = truth
            server.publish(message)
        wait_drawn(page, len(predicted), 20)
        axes = live_value(page, "hypnogramAxes()")
        # Five levels on both tracks, bottom to top N3, N2, N1, R, W.
        assert axes["predicted"]["ticks"] == axes["scored"]["ticks"] == ["N3", "N2", "N1", "R", "W"]
        assert live_value(page, "predictedLevels()") == [STAGE_AXIS.index(s) for s in predicted]
        assert live_value(page, "scoredLevels()") == [STAGE_AXIS.index(s) for s in scored]

        def bar(stages: list[str]) -> list[int | None]:
            """The REM bar: at the REM level over every REM window, up to the next window."""
            after_rem = [False, *(stage == "R" for stage in stages[:-1])]
            pairs = zip(stages, after_rem, strict=True)
            return [rem if stage == "R" or late else None for stage, late in pairs]

        assert live_value(page, "predictedRemBar()") == bar(predicted)
        assert live_value(page, "scoredRemBar()") == bar(scored)
        assert legend_values(page, "hypnogram")["predicted"] == "W"
        assert legend_values(page, "hypnogram")["scored"] == "R"
        # The REM bar is drawn on the canvas: its colour appears at the REM level of both tracks.
        colour = live_value(page, "remColour")
        for track in ("predicted", "scored"):
            assert page.evaluate(
                """([id, colour]) => {
                    const chart = document.querySelector(`#${id} canvas`);
                    const context = chart.getContext("2d");
                    const want = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
                    const { data } = context.getImageData(0, 0, chart.width, chart.height);
                    for (let i = 0; i < data.length; i += 4) {
                        if (want.every((v, k) => Math.abs(data[i + k] - v) < 8)) return true;
                    }
                    return false;
                }""",
                [f"chart-hypnogram-{track}", colour],
            ), f"no REM bar drawn on the {track} track"
        assert page.text_content("#state-label") == "W"
    assert page.console_errors == []


def test_windows_predicted_without_fmri_are_marked(page, bundle):
    """The modalities fact, the strip under the predicted hypnogram, the reason on hover."""
    without = {4, 5, 6, 9}
    with LiveServer(ServerState(bundle=bundle, session={"name": "without fMRI"})) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        for window in range(10):
            server.publish(synthetic_message(window, fmri_used=window not in without))
        wait_drawn(page, 10, 20)
        assert live_value(page, "withoutFmri()") == len(without)
        # The strip covers each window predicted without fMRI, up to the next window.
        expected = [i in without or (i - 1) in without for i in range(10)]
        assert live_value(page, "withoutFmriStrip()") == expected
        assert legend_values(page, "hypnogram")["without fMRI"] == "EEG only"
        fact = page.locator("#fmri-used")
        assert fact.text_content() == "EEG only" and fact.get_attribute("class") == "without-fmri"
        assert "9.0 s old" in fact.get_attribute("title")
        server.publish(synthetic_message(10))
        wait_drawn(page, 11, 20)
        assert fact.text_content() == "EEG + fMRI" and not fact.get_attribute("class")
        assert legend_values(page, "hypnogram")["without fMRI"] == "—"
    assert page.console_errors == []


@pytest.mark.lsl
def test_an_eeg_only_session_shows_every_window_predicted_without_fmri(
    page, short_dataset, unique_prefix, bundle, monkeypatch
):
    """A live session without an fMRI stream: the health table's fMRI row says so and counts the windows."""
    import viewer.server
    from core.layouts import stream_name
    from pipeline.factory import build_pipeline
    from pipeline.settings import RecordingSettings, Settings, StreamSettings
    from recordings.session import read_session
    from simulators.replay import SessionPlayer

    monkeypatch.setattr(viewer.server, "STATUS_INTERVAL", 0.5)
    session = read_session(short_dataset, "99", "sleep-1")
    player = SessionPlayer(session, speed=10, loop=True, with_truth=True, prefix=unique_prefix)
    player.start()
    streams = StreamSettings(
        eeg=f"name:{stream_name(unique_prefix, 'EEG')}", fmri="none",
        truth=f"name:{stream_name(unique_prefix, 'Truth')}", resolve_timeout=30,
    )  # fmt: skip
    settings = Settings(streams=streams, recording=RecordingSettings(enabled=False))
    live = build_pipeline(settings, settings.acquisition(), bundle=bundle, outlet_prefix=None)
    pipeline = live.pipeline
    state = ServerState(pipeline=pipeline, bundle=bundle, session={"name": unique_prefix})
    try:
        with LiveServer(state) as server:
            page.goto(f"{server.url}/")
            wait_until(page, "window.sleepstreamLive.windows() >= 3", 60)
            fmri_row = "#health tbody tr[data-stream=fmri]"
            wait_until(page, f"document.querySelector('{fmri_row}') !== null", 30)
            live.close()
            wait_for(lambda: not pipeline.running, 30, "the pipeline to finish")
            made = pipeline.predictions
            wait_drawn(page, made, 30)
            assert all(not p.fmri_used for p in pipeline.history)
            assert live_value(page, "withoutFmri()") == made
            assert all(live_value(page, "withoutFmriStrip()"))
            assert page.text_content("#fmri-used") == "EEG only"
            assert "no fMRI stream" in page.get_attribute("#fmri-used", "title")
            # The next status shows the count in the fMRI row, which says the session has no fMRI.
            wait_until(
                page,
                f"document.querySelector('{fmri_row}').lastElementChild.textContent === '{made}'",
                30,
            )
            row = page.text_content(fmri_row)
            assert "none: EEG only" in row
            assert f"predicted without fMRI {made}" in page.text_content("#health-summary")
            headers = page.locator("#health thead th").all_text_contents()
            assert headers[-1] == "predicted without fMRI"
    finally:
        live.close()
        player.stop()
    assert page.console_errors == []


def test_the_page_reconnects_by_itself_and_fills_in_what_it_missed(page, bundle):
    port = free_port()
    first_state = ServerState(bundle=bundle, session={"name": "before"})
    with LiveServer(first_state, port=port) as server:
        page.goto(f"{server.url}/")
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        for window in range(4):
            server.publish(synthetic_message(window))
        wait_until(page, "window.sleepstreamLive.windows() === 4", 20)
    wait_until(page, "window.sleepstreamLive.connection() === 'reconnecting'", 20)
    assert "retrying" in page.text_content("#connection")
    second_state = ServerState(bundle=bundle, session={"name": "after"})
    with LiveServer(second_state, port=port) as server:
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 30)
        for window in range(4, 9):
            server.publish(synthetic_message(window))
        wait_until(page, "window.sleepstreamLive.windows() === 9", 20)
        # The feed numbers windows from 0 (as the console does): the last is window 8, the ninth received.
        assert page.text_content("#window-number") == "8"
        assert page.text_content("#windows-received") == "9 received by this page"
    real_errors = [
        e for e in page.console_errors if "ERR_CONNECTION_REFUSED" not in e and "WebSocket" not in e
    ]
    assert real_errors == []


def test_the_page_keeps_a_bounded_history(page, bundle):
    with LiveServer(ServerState(bundle=bundle, session={"name": "long night"})) as server:
        page.goto(f"{server.url}/?keep_hours=0.05")  # 86 windows
        wait_until(page, "window.sleepstreamLive.connection() === 'connected'", 20)
        limit = live_value(page, "maxPoints") + live_value(page, "trimSlack")
        for window in range(400):
            server.publish(synthetic_message(window))
            if window % 100 == 99:  # let the browser keep up: a healthy client is not cut off
                wait_until(page, f"window.sleepstreamLive.windows() === {window + 1}", 20)
        assert live_value(page, "windows()") == 400
        assert 0 < live_value(page, "hypnogramLength()") <= limit
        assert page.text_content("#window-number") == "399"
        # After the oldest windows were dropped, the legend still shows the newest one.
        wanted = f"{synthetic_message(399)['probabilities']['wake']:.2f}"
        wait_until(page, f"{legend_text('probability', 1)} === '{wanted}'", 10)
    assert page.console_errors == []


def test_an_in_scanner_session_shows_its_artefact_correction(
    page, scanner_dataset, unique_prefix, bundle, monkeypatch
):
    """A replay of raw 5-kHz in-scanner EEG: corrected live, and the page shows the correction's state."""
    import viewer.server
    from recordings.session import read_session
    from simulators.replay import SessionPlayer
    from tests.sessions import replay_pipeline

    monkeypatch.setattr(viewer.server, "STATUS_INTERVAL", 0.5)
    session = read_session(scanner_dataset, "98", "sleep-1")
    player = SessionPlayer(session, speed=8, loop=True, with_truth=True, prefix=unique_prefix)
    player.start()
    live = replay_pipeline(unique_prefix, bundle)
    pipeline = live.pipeline
    state = ServerState(pipeline=pipeline, bundle=bundle, session={"name": unique_prefix})
    try:
        with LiveServer(state) as server:
            page.goto(f"{server.url}/")
            wait_until(page, "window.sleepstreamLive.windows() >= 3", 120)
            table = "document.getElementById('artefacts')"
            wait_until(page, f"!{table}.hidden && {table}.querySelectorAll('tbody td.ok').length === 2", 60)
            rows = page.locator("#artefacts tbody tr").all_text_contents()
            assert rows[0].startswith("MR gradient") and "ready" in rows[0] and "TR 2.100 s" in rows[0]
            assert rows[1].startswith("pulse (BCG)") and "beats from the ECG" in rows[1] and "bpm" in rows[1]
            assert "5000 → 250 Hz" in rows[2]
            health = live.acquisition.health()["artefacts"]
            assert health["gradient"]["template_ready"] and health["bcg"]["template_ready"]
            assert pipeline.predictions >= 3
    finally:
        live.close()
        player.stop()
    assert page.console_errors == []
