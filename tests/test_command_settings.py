"""``fmri-source`` and ``train`` take their settings from the one configuration file, flags winning."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pylsl
import pytest

from run_stream import main
from tests.cli import CliProcess, run_cli
from tests.feature_tables import surrogate_feature_table

HAXBY_MASK = Path(__file__).parent / "data" / "haxby2001" / "sub001_brain_mask_25mm.nii.gz"
# Bounds that only guard against hanging: every wait ends on its event.
BOUND = 60.0


def test_config_prints_the_fmri_source_and_train_sections_and_reads_them_back(tmp_path):
    printed = run_cli("config", timeout=BOUND)
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout
    assert "\n[fmri_source]\n" in text and "\n[train]\n" in text
    assert "wait_for_consumers = 5.0" in text and "# tr =   (not set)" in text  # the command's defaults
    assert 'labels = "wake-sleep"' in text and "epochs = 60" in text
    edited = tmp_path / "lab.toml"
    edited.write_text(
        text.replace("# tr =   (not set)", "tr = 2.1")
        .replace("# mask =   (not set)", 'mask = "masks/lab.nii.gz"')
        .replace("epochs = 60", "epochs = 12")
    )
    again = run_cli("--config", str(edited), "config", timeout=BOUND)
    assert again.returncode == 0, again.stderr
    assert "tr = 2.1" in again.stdout and 'mask = "masks/lab.nii.gz"' in again.stdout
    assert "epochs = 12" in again.stdout


@pytest.mark.lsl
def test_fmri_source_publishes_with_the_files_settings_and_its_flags_win(tmp_path, unique_prefix):
    folder = tmp_path / "export"
    folder.mkdir()
    config = tmp_path / "scanner.toml"
    config.write_text(
        "[fmri_source]\n"
        f'prefix = "{unique_prefix}-from-file"\n'
        "tr = 0.5\n"
        f"mask = {json.dumps(str(HAXBY_MASK))}\n"
        "interval = 0.05\n"
    )
    # The mask and the TR from the file open the stream at once, before any volume.
    source = CliProcess(
        "--config", str(config), "fmri-source", "--watch", str(folder), "--prefix", unique_prefix
    )
    try:
        published = source.wait_for(lambda line: line.startswith("Publishing "), timeout=BOUND)
        source.wait_for(lambda line: line.startswith("Press Ctrl-C"), timeout=BOUND)
        found = pylsl.resolve_byprop("name", f"{unique_prefix}-fMRI", 1, BOUND)
        assert found, "the stream was not found"
        rate = found[0].nominal_srate()
        assert source.stop(signal.SIGINT, timeout=BOUND) == 0
    finally:
        source.kill()
    assert published.startswith(f"Publishing {unique_prefix}-fMRI ")  # --prefix beats the file's prefix
    assert "TR 0.5 s (from --tr or [fmri_source] tr)" in published
    assert rate == pytest.approx(1 / 0.5)
    assert any(line.startswith(f"Watching {folder} every 0.05 s ") for line in source.lines)


def test_train_uses_the_files_settings_and_its_flags_win(tmp_path):
    table = surrogate_feature_table(subjects=("04", "09", "15"), runs_per_subject=1)
    table.to_csv(tmp_path / "features.csv", index=False)
    config = tmp_path / "train.toml"
    config.write_text(
        "[train]\ncontext = 2\nfolds = 0\nepochs = 1\nbatch_size = 64\npatience = 1\nseed = 7\n"
        "fmri_dropout = 0.25\n"
    )
    bundle = tmp_path / "bundle"
    status = main(
        ["--config", str(config), "train", str(tmp_path / "features.csv"), "-o", str(bundle), "--seed", "3"]
    )
    assert status == 0
    recorded = json.loads((bundle / "bundle.json").read_text())["training"]["config"]
    assert recorded == {
        "labels": "wake-sleep", "context": 2, "context_candidates": [1, 2, 4, 8], "inner_folds": 3,
        "inner_epochs": 20, "folds": 0, "epochs": 1, "batch_size": 64, "patience": 1,
        "seed": 3,  # the flag's, not the file's 7
        "fmri_dropout": 0.25,
    }  # fmt: skip
    assert json.loads((bundle / "report.json").read_text())["config"] == recorded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fmri_source]\ntr = 0\n", "[fmri_source]: SourceConfig.tr = 0.0 is out of range"),
        ("[fmri_source]\nexisting = 'all'\n", "[fmri_source]: SourceConfig.existing = 'all' is out of range"),
        ("[fmri_source]\ninterval = 'fast'\n", "[fmri_source] interval = 'fast': expected float"),
        ("[fmri_source]\nmask = 3\n", "[fmri_source] mask = 3: expected Path"),
        ("[fmri_source]\nfolder = '/data'\n", "[fmri_source]: unknown key(s) ['folder']"),
        ("[train]\nfolds = 1\n", "[train]: TrainConfig.folds must be 0 (none) or >= 2, got 1"),
        ("[train]\nlabels = 'rem'\n", "[train]: TrainConfig.labels: unknown label scheme 'rem'"),
        ("[train]\nepochs = 'many'\n", "[train] epochs = 'many': expected int"),
        ("[train]\nlearning_rate = 0.1\n", "[train]: unknown key(s) ['learning_rate']"),
    ],
)
def test_a_bad_value_in_the_new_sections_names_the_file_section_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    if text.startswith("[fmri_source]"):
        command = ["fmri-source", "--watch", str(tmp_path)]
    else:
        command = ["train", "t.csv", "-o", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as refused:
        main(["--config", str(path), *command])
    assert str(refused.value).startswith(f"error: {path}: {message}")
    assert not (tmp_path / "b").exists()


def test_the_command_line_shows_the_message_without_a_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\ncontext = -1\n")
    result = run_cli("--config", str(path), "train", "t.csv", "-o", str(tmp_path / "b"), timeout=BOUND)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {path}: [train]: TrainConfig.context must be 0 (choose by nested cross-validation) "
        "or >= 1, got -1\n"
    )


def test_a_bad_flag_is_refused_by_the_sections_own_checks(tmp_path):
    with pytest.raises(SystemExit) as refused:
        main(["train", "t.csv", "-o", str(tmp_path / "b"), "--folds", "1"])
    assert str(refused.value) == "error: [train]: TrainConfig.folds must be 0 (none) or >= 2, got 1"
    result = run_cli("fmri-source", "--watch", str(tmp_path), "--delay", "100", timeout=BOUND)
    assert result.returncode == 2
    assert result.stderr.endswith("error: [fmri_source]: SourceConfig.delay = 100.0 is out of range\n")
    assert "Traceback" not in result.stderr and "Watching" not in result.stdout


def test_artefact_correction_on_without_a_trigger_stream_is_refused(tmp_path):
    with pytest.raises(SystemExit) as refused:
        main(["live", "--eeg", "type:EEG", "--fmri", "none", "--artefacts", "on", "--no-record"])
    assert "no volume-trigger stream is configured" in str(refused.value)
    path = tmp_path / "bad.toml"
    path.write_text("[artefacts]\ncorrection = 'always'\n")
    with pytest.raises(SystemExit) as refused:
        main(["--config", str(path), "live", "--no-record"])
    expected = "[artefacts]: ArtefactConfig.correction = 'always' must be one of auto, on, off"
    assert expected in str(refused.value)
