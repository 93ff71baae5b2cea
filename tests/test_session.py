import json
import shutil

import numpy as np
import pytest

from recordings.bids import RunPaths, list_runs, parse_run
from recordings.errors import DatasetFormatError
from recordings.montage import CHANNELS, SAMPLE_INDEX_CHANNEL
from recordings.scoring import read_scoring
from recordings.session import read_session


def test_session_has_everything_of_the_run(short_dataset):
    session = read_session(short_dataset, "99", "sleep-1")
    assert session.label == "sub-99_task-sleep_run-1"
    assert session.sfreq == 250.0
    assert session.ch_names == [*CHANNELS, SAMPLE_INDEX_CHANNEL]
    assert session.ch_types[:30] == ("eeg",) * 30
    assert session.ch_types[30:] == ("eog", "ecg", "misc")
    assert session.tr == 2.1
    # 120 s scored -> 57 volumes of 2.1 s, one R128 trigger each, 2 s after the EEG starts.
    assert session.n_volumes == 57
    np.testing.assert_allclose(np.diff(session.volume_times), 2.1, atol=0.5 / session.sfreq)
    assert session.volume_times[0] == pytest.approx(2.0)
    assert session.roi_means.shape == (57, session.parcellation.n_regions)
    assert session.scoring.stages == ("W", "N1", "unscored", "N3")
    assert session.scoring.raw_labels[2] == "2 (uncertain)"
    np.testing.assert_allclose(session.stage_onsets, 2.0 + np.arange(4) * 30.0)


def test_eeg_samples_in_microvolts_and_sample_index_exact(short_dataset):
    session = read_session(short_dataset, "99", "sleep-1")
    first = session.eeg_samples(0, 3000)
    middle = session.eeg_samples(2499, 2503)  # crosses a 10 s block boundary
    np.testing.assert_array_equal(first[:, -1], np.arange(3000))
    np.testing.assert_array_equal(middle[:, -1], [2499, 2500, 2501, 2502])
    eeg_rms = np.sqrt(np.mean(first[:, :30] ** 2))
    assert 1 < eeg_rms < 200  # microvolts, not volts
    tail = session.eeg_samples(session.n_times - 5, session.n_times + 50)
    assert tail.shape == (5, 33)


def test_scoring_in_dataset_matches_the_shipped_real_scoring(bundled_dataset):
    from simulators.surrogate import SHIPPED_DATASET

    session = read_session(bundled_dataset, 27, "task-sleep_run-3")
    real = read_scoring(SHIPPED_DATASET / "sourcedata" / "sub-27-sleep-stage.tsv")[("sleep", 3)]
    assert session.scoring.stages == real.stages
    assert session.n_volumes == 428
    assert session.duration == pytest.approx(903.0)


def test_list_runs_and_parse_run(short_dataset):
    runs = list_runs(short_dataset)
    assert [(r.subject, r.task, r.run) for r in runs] == [("99", "rest", 1), ("99", "sleep", 1)]
    assert parse_run("sleep-2") == ("sleep", 2)
    assert parse_run("task-rest_run-1") == ("rest", 1)
    with pytest.raises(ValueError, match="is not of the form"):
        parse_run("nap")


@pytest.fixture
def broken(tmp_path, short_dataset):
    """A copy of the short dataset to break, and the paths of its sleep-1 run."""
    root = tmp_path / "ds"
    shutil.copytree(short_dataset, root)
    return root, RunPaths(root, "99", "sleep", 1)


def test_missing_eeg_header(broken):
    root, paths = broken
    paths.eeg_header.unlink()
    with pytest.raises(DatasetFormatError, match=r"_eeg.vhdr: EEG header \(.vhdr\) not found"):
        read_session(root, "99", "sleep-1")


def test_corrupt_eeg_header(broken):
    root, paths = broken
    paths.eeg_header.write_text("this is not a BrainVision header\n")
    with pytest.raises(DatasetFormatError, match="cannot be read as BrainVision"):
        read_session(root, "99", "sleep-1")


def test_marker_file_without_volume_triggers(broken):
    root, paths = broken
    vmrk = paths.eeg_header.with_suffix(".vmrk")
    lines = [line for line in vmrk.read_text().splitlines() if "R128" not in line]
    vmrk.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"\.vmrk: no 'R128' volume-trigger markers"):
        read_session(root, "99", "sleep-1")


def test_fewer_triggers_than_volumes(broken):
    root, paths = broken
    vmrk = paths.eeg_header.with_suffix(".vmrk")
    lines = vmrk.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("Mk5=")]
    vmrk.write_text("\n".join(kept) + "\n")
    with pytest.raises(DatasetFormatError, match="56 'R128' volume triggers for the 57 volumes"):
        read_session(root, "99", "sleep-1")


def test_missing_bold(broken):
    root, paths = broken
    paths.bold.unlink()
    with pytest.raises(DatasetFormatError, match=r"_bold.nii.gz: NIfTI file not found"):
        read_session(root, "99", "sleep-1")


def test_bold_that_is_not_nifti(broken):
    root, paths = broken
    paths.bold.write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetFormatError, match="cannot be read as NIfTI"):
        read_session(root, "99", "sleep-1")


def test_missing_bold_sidecar(broken):
    root, paths = broken
    paths.bold_sidecar.unlink()
    with pytest.raises(DatasetFormatError, match="sidecar not found: it must give RepetitionTime"):
        read_session(root, "99", "sleep-1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"RepetitionTime": 2.1,', r"invalid JSON"),
        ('{"TaskName": "sleep"}', r"RepetitionTime must be a number of seconds in \[0.1, 30\], found None"),
        ('{"RepetitionTime": "2.1"}', r"found '2.1'"),
        ('{"RepetitionTime": 2100}', r"found 2100"),
    ],
)
def test_bad_bold_sidecar(broken, content, message):
    root, paths = broken
    paths.bold_sidecar.write_text(content)
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_session(root, "99", "sleep-1")
    assert str(paths.bold_sidecar) in str(info.value)


def test_mask_on_another_grid(broken, tmp_path):
    import nibabel as nib

    root, _ = broken
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.uint8), np.eye(4)), mask)
    with pytest.raises(DatasetFormatError, match="mask grid"):
        read_session(root, "99", "sleep-1", mask=mask)


def test_mask_and_atlas_are_used(broken, tmp_path):
    import nibabel as nib

    root, paths = broken
    shape = nib.load(paths.bold).shape[:3]
    atlas = np.zeros(shape, np.int16)
    atlas[: shape[0] // 2] = 3
    atlas[shape[0] // 2 :] = 8
    atlas_path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), atlas_path)
    session = read_session(root, "99", "sleep-1", atlas=atlas_path)
    assert session.parcellation.names == ("atlas-3", "atlas-8")
    assert session.roi_means.shape == (57, 2)


def test_sidecar_json_gives_tr_not_a_constant(broken):
    root, paths = broken
    meta = json.loads(paths.bold_sidecar.read_text())
    meta["RepetitionTime"] = 2.0
    paths.bold_sidecar.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="RepetitionTime is 2 s but the volume triggers are 2.1 s apart"):
        session = read_session(root, "99", "sleep-1")
    assert session.tr == 2.0


def test_run_missing_from_scoring_gives_no_truth(broken):
    root, paths = broken
    paths.scoring.write_text(
        "session\tepoch_start_time_sec\t30-sec_epoch_sleep_stage\r\ntask-rest_run-1\t0\tW\r\n"
    )
    with pytest.warns(UserWarning, match="no epochs scored for sub-99_task-sleep_run-1"):
        session = read_session(root, "99", "sleep-1")
    assert session.scoring is None


def drop_first_volumes(paths: RunPaths, count: int) -> None:
    """Leave the first ``count`` volumes out of the BOLD file (their triggers stay: dummy scans)."""
    import nibabel as nib

    image = nib.load(paths.bold)
    data = np.asarray(image.dataobj)[..., count:]
    nib.save(nib.Nifti1Image(data, image.affine, image.header), paths.bold)


def test_dummy_scan_triggers_before_the_first_volume(broken, short_dataset):
    root, paths = broken
    whole = read_session(short_dataset, "99", "sleep-1")
    drop_first_volumes(paths, 3)
    # 57 triggers, 54 volumes, no count given: refused with the numbers and the way out.
    with pytest.raises(DatasetFormatError, match=r"57 'R128' volume triggers for the 54 volumes") as refused:
        read_session(root, "99", "sleep-1")
    assert "--dummy-scans" in str(refused.value) and "NumberOfVolumesDiscardedByUser" in str(refused.value)
    session = read_session(root, "99", "sleep-1", dummy_scans=3)
    assert session.n_volumes == 54 and session.dummy_scans == 3
    np.testing.assert_allclose(session.volume_times, whole.volume_times[3:])
    # The scoring's time origin is the first volume's trigger, after the dummy scans.
    np.testing.assert_allclose(session.stage_onsets, whole.volume_times[3] + np.arange(4) * 30.0)
    with pytest.raises(
        DatasetFormatError, match=r"57 'R128' volume triggers for 4 dummy scan\(s\) and the 54"
    ):
        read_session(root, "99", "sleep-1", dummy_scans=4)
    # The count from the BOLD sidecar (BIDS).
    sidecar = json.loads(paths.bold_sidecar.read_text())
    paths.bold_sidecar.write_text(json.dumps({**sidecar, "NumberOfVolumesDiscardedByUser": 3}))
    from_sidecar = read_session(root, "99", "sleep-1")
    assert from_sidecar.dummy_scans == 3
    np.testing.assert_allclose(from_sidecar.volume_times, session.volume_times)
    # Zero: the extra triggers come after the last volume (ignored, with a warning).
    with pytest.warns(UserWarning, match="the last 3 volume trigger"):
        trailing = read_session(root, "99", "sleep-1", dummy_scans=0)
    np.testing.assert_allclose(trailing.volume_times, whole.volume_times[:54])
