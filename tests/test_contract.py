"""A bundle carries its feature contract: extract writes it, train stores it, every use checks it."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from features.config import FEATURE_DEFINITIONS, FeatureConfig
from model.bundle import BUNDLE_FORMAT
from model.contract import (
    SYNTHETIC_WARNING,
    ContractError,
    check_live,
    check_table,
    is_synthetic,
    range_warnings,
    run_contract,
    unknown_contract,
)
from pipeline.settings import RecordingSettings, Settings
from stream.config import WindowConfig
from tests.cli import PROJECT, run_cli
from viewer.server import free_port


def contract(power_scale: str = "absolute", kind: str = "real", hop: float = 2.1, **features) -> dict:
    """A known contract with these settings, as ``extract`` writes it."""
    return {
        **run_contract(
            FeatureConfig(power_scale=power_scale, **features).to_dict(), WindowConfig(hop=hop).geometry()
        ),
        "eeg_rate_range": [250.0, 500.0],
        "tr_range": [2.1, 2.1],
        "data": {"kind": kind, "subjects": ["01", "02"], "source": "/data/set"},
    }


def test_a_live_run_computing_other_features_is_refused_naming_the_setting():
    trained = contract(power_scale="log")
    with pytest.raises(ContractError) as refused:
        check_live(trained, contract(), "my_bundle")
    message = str(refused.value)
    assert "my_bundle" in message
    assert "the bundle was trained with features.power_scale = 'log', this run computes 'absolute'" in message
    with pytest.raises(ContractError, match=r"window\.hop = 2\.1, this run computes 3\.0"):
        check_live(contract(), contract(hop=3.0), "b")
    with pytest.raises(
        ContractError, match=r"features\.alff_band = \[0\.01, 0\.08\], this run computes \[0\.01, 0\.1\]"
    ):
        check_live(contract(alff_band=(0.01, 0.08)), contract(alff_band=(0.01, 0.1)), "b")
    older = {**contract(), "feature_definitions": FEATURE_DEFINITIONS - 1}
    with pytest.raises(ContractError, match=f"feature definitions version {FEATURE_DEFINITIONS - 1}"):
        check_live(older, contract(), "b")
    # What decides only when a feature is missing is not a different feature.
    check_live(contract(min_fmri_volumes=20), contract(), "b")
    check_live(contract(), contract(), "b")


def test_a_bundle_whose_definitions_are_unknown_is_refused_live():
    with pytest.raises(
        ContractError, match=r"does not say how its features were computed.*cannot be used live"
    ):
        check_live(unknown_contract(["01"], "origin.csv"), contract(), "origin_bundle")


def test_tables_are_checked_against_the_bundle_and_unknown_only_matches_unknown():
    unknown = unknown_contract(["01"], "origin.csv")
    (note,) = check_table(unknown, unknown, "b", "t.csv")
    assert "not checked" in note
    with pytest.raises(ContractError, match=r"t\.csv carries no feature contract"):
        check_table(contract(), unknown, "b", "t.csv")
    with pytest.raises(ContractError, match="does not say how its features were computed"):
        check_table(unknown, contract(), "b", "t.csv")
    with pytest.raises(ContractError, match=r"features\.power_scale = 'log', the table holds 'absolute'"):
        check_table(contract(power_scale="log"), contract(), "b", "t.csv")
    assert check_table(contract(), contract(), "b", "t.csv") == []


def test_an_eeg_rate_or_tr_outside_the_trained_range_is_a_warning():
    trained = contract()  # 250-500 Hz, TR 2.1 s
    assert range_warnings(trained, sfreq=250.0, tr=2.1) == []
    assert range_warnings(trained, sfreq=252.0, tr=2.12) == []  # an amplifier clock slightly off
    (rate,) = range_warnings(trained, sfreq=1000.0)
    assert "EEG rate 1000 Hz is outside the range the model was trained on (250-500 Hz)" in rate
    (tr,) = range_warnings(trained, tr=1.0)
    assert "TR 1 s is outside the range the model was trained on (2.1 s)" in tr
    table = {**contract(), "tr_range": [1.0, 2.1]}
    (note,) = check_table(trained, table, "b", "t.csv")
    assert note == tr


def test_a_surrogate_bundle_warns_and_a_mismatched_one_is_refused_by_the_factory():
    from model.bundle import DEFAULT_BUNDLE, load_bundle
    from pipeline.factory import build_pipeline, model_warnings
    from stream.acquisition import Acquisition
    from stream.config import AcquisitionConfig

    shipped = load_bundle(DEFAULT_BUNDLE)
    assert is_synthetic(shipped.contract) and shipped.contract["data"]["source"] == "build/surrogate-training"
    settings = Settings(recording=RecordingSettings(enabled=False))
    config = AcquisitionConfig.for_replay("contract-never-resolved", resolve_timeout=0.1)
    log_bundle = dataclasses.replace(shipped, contract=contract(power_scale="log", kind="surrogate"))
    # Refused before any stream is looked for: nothing to find, nothing left open.
    with pytest.raises(ContractError, match=r"features\.power_scale = 'log', this run computes 'absolute'"):
        build_pipeline(settings, config, bundle=log_bundle, outlet_prefix=None)
    matching = dataclasses.replace(
        shipped,
        contract={
            **run_contract(settings.features.to_dict(), config.window.geometry()),
            "eeg_rate_range": [500.0, 500.0],
            "tr_range": [2.1, 2.1],
            "data": {"kind": "surrogate", "subjects": ["04"], "source": "surrogate"},
        },
    )
    live = build_pipeline(settings, config, bundle=matching, outlet_prefix=None, start=False)
    with live:
        assert live.warnings == [SYNTHETIC_WARNING]  # not connected: rate and TR not known yet
    acquisition = Acquisition(config)
    acquisition.windower = _windower(sfreq=250.0, tr=2.1)
    (synthetic, rate) = model_warnings(matching, acquisition)
    assert synthetic == SYNTHETIC_WARNING and "EEG rate 250 Hz is outside" in rate


def _windower(sfreq: float, tr: float):
    from stream.windower import MultiRateWindower

    return MultiRateWindower(WindowConfig(), sfreq, ["Fz", "Cz"], ["eeg", "eeg"], ["r1"], tr)


def test_the_table_contract_lists_rates_subjects_and_surrogate_data(short_dataset):
    from pipeline.table_contract import (
        table_contract,
    )
    from recordings.bids import list_runs

    runs = list_runs(short_dataset)
    table = pd.DataFrame({"subject": ["99", "99"]})
    made = table_contract(table, runs, FeatureConfig(power_scale="log"), WindowConfig(), str(short_dataset))
    assert made["feature_definitions"] == FEATURE_DEFINITIONS
    assert made["features"]["power_scale"] == "log" and made["window"] == WindowConfig().geometry()
    assert made["eeg_rate_range"] == [250.0, 250.0] and made["tr_range"] == [2.1, 2.1]
    assert made["data"] == {"kind": "surrogate", "subjects": ["99"], "source": str(short_dataset)}
    # Rows that carry their run's rate and TR win over the sidecars.
    with_columns = table.assign(sfreq=[500.0, 1000.0], tr=[1.5, 1.5])
    made_again = table_contract(with_columns, runs, FeatureConfig(), WindowConfig(), "x")
    assert made_again["eeg_rate_range"] == [500.0, 1000.0] and made_again["tr_range"] == [1.5, 1.5]


def test_a_damaged_sidecar_is_named(tmp_path):
    from pipeline.table_contract import read_table_contract

    (tmp_path / "t.json").write_text("{oops")
    with pytest.raises(ContractError, match=r"t\.json: invalid JSON"):
        read_table_contract(tmp_path / "t.parquet")
    (tmp_path / "t.json").write_text(json.dumps({"features": {}}))
    with pytest.raises(ContractError, match=r"t\.json: the feature contract lacks"):
        read_table_contract(tmp_path / "t.parquet")
    assert read_table_contract(tmp_path / "none.csv")["feature_definitions"] is None


@pytest.mark.slow
def test_a_bundle_trained_on_log_power_refuses_absolute_power_through_the_cli(short_dataset, tmp_path):
    """extract --power-scale log, train, then evaluate on absolute power and run live: both refused."""
    run = ["--subject", "99", "--run", "sleep-1"]
    log = run_cli(
        "extract", str(short_dataset), *run, "--power-scale", "log", "-o", str(tmp_path / "log.parquet")
    )
    assert log.returncode == 0, log.stderr
    absolute = run_cli("extract", str(short_dataset), *run, "-o", str(tmp_path / "abs.parquet"))
    assert absolute.returncode == 0, absolute.stderr
    sidecar = json.loads((tmp_path / "log.json").read_text())
    assert sidecar["features"]["power_scale"] == "log" and sidecar["data"]["kind"] == "surrogate"
    assert json.loads((tmp_path / "abs.json").read_text())["features"]["power_scale"] == "absolute"

    # Enough subjects for a train/validation/test split: the run's windows under four subject names.
    table = pd.read_parquet(tmp_path / "log.parquet")
    subjects = ["01", "02", "03", "04"]
    pd.concat([table.assign(subject=s) for s in subjects]).to_parquet(tmp_path / "train.parquet")
    sidecar["data"]["subjects"] = subjects
    (tmp_path / "train.json").write_text(json.dumps(sidecar))
    options = ["--folds", "0", "--epochs", "2", "--context", "2"]
    trained = run_cli("train", str(tmp_path / "train.parquet"), "-o", str(tmp_path / "bundle"), *options)
    assert trained.returncode == 0, trained.stderr[-2000:]
    stored = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert stored["format"] == BUNDLE_FORMAT and stored["contract"] == sidecar

    setting = "the bundle was trained with features.power_scale = 'log'"
    evaluated = run_cli("evaluate", str(tmp_path / "bundle"), str(tmp_path / "abs.parquet"), "--folds", "0")
    assert evaluated.returncode != 0
    assert f"{setting}, the table holds 'absolute'" in evaluated.stderr
    assert "Traceback" not in evaluated.stderr

    live = run_cli(
        "live", "--model", str(tmp_path / "bundle"), "--eeg", "name:contract-test-no-such-stream",
        "--wait", "1", "--no-record", "--port", str(free_port()),
    )  # fmt: skip
    assert live.returncode == 2
    assert f"{setting}, this run computes 'absolute'" in live.stdout
    assert "Traceback" not in live.stdout + live.stderr


def test_a_format_1_bundle_is_refused_with_a_request_to_retrain(tmp_path):
    import shutil

    from model.bundle import BundleError, load_bundle

    folder = tmp_path / "old"
    shutil.copytree(PROJECT / "model" / "default_bundle", folder)
    meta = json.loads((folder / "bundle.json").read_text())
    meta["format"] = 1
    del meta["contract"]
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(
        BundleError, match=r"bundle format 1 does not record how its features were computed.*retrain"
    ):
        load_bundle(folder)
