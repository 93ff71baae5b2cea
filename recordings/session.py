"""One recorded run of simultaneous EEG-fMRI, read from a ds003768-style dataset, as a :class:`Recording`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.layouts import VOLUME_TRIGGER
from recordings.bids import RunPaths, normalise_subject, parse_run
from recordings.brainvision import open_brainvision, table_channel_types, volume_trigger_times
from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram
from recordings.recording import Recording, looks_in_scanner
from recordings.regions import (
    Parcellation,
    atlas_parcellation,
    compute_epi_mask,
    grid_parcellation,
    region_means,
)
from recordings.scoring import read_scoring

if TYPE_CHECKING:
    import mne
    from nibabel.spatialimages import SpatialImage


def read_session(
    root: str | Path,
    subject: str | int,
    run: str,
    *,
    mask: str | Path | None = None,
    atlas: str | Path | None = None,
    dummy_scans: int | None = None,
) -> Recording:
    """Read one run of a ds003768-style BIDS dataset.

    Parameters
    ----------
    root : path-like
        Dataset folder (holding ``sub-XX/`` and ``sourcedata/``).
    subject : str | int
        Subject label, e.g. ``"01"`` or ``1``.
    run : str
        Run, e.g. ``"sleep-1"`` or ``"task-rest_run-2"``.
    mask : path-like | None
        Brain mask NIfTI on the BOLD grid; computed from the data when ``None``.
    atlas : path-like | None
        Integer label image on the BOLD grid; a grid parcellation of the mask
        is used when ``None``.
    dummy_scans : int | None
        Volume triggers recorded before the first volume of the BOLD file (dummy scans).
        None: when there are more triggers than volumes, the count comes from the BOLD
        sidecar (BIDS ``NumberOfVolumesDiscardedByUser`` plus
        ``NumberOfVolumesDiscardedByScanner``); without it, such a run is refused.

    Returns
    -------
    recording : Recording
        The run; its hypnogram counts from the first volume (``origin``).

    Raises
    ------
    DatasetFormatError
        If a file is missing or malformed; the message names the file.
    """
    task, run_number = parse_run(run)
    paths = RunPaths(Path(root), normalise_subject(subject), task, run_number)
    raw = open_brainvision(paths.eeg_header)
    ch_types = table_channel_types(paths.channels_tsv, raw.ch_names)
    triggers = _volume_triggers(raw, paths.eeg_header)
    tr = _repetition_time(paths)
    bold_img = _load_nifti(paths.bold, ndim=4)
    n_volumes = bold_img.shape[3]
    skipped = _dummy_scans(paths, triggers.size, n_volumes, dummy_scans)
    all_triggers = triggers
    triggers = triggers[skipped:]
    if triggers.size > n_volumes:
        warnings.warn(
            f"{paths.eeg_header.with_suffix('.vmrk')}: the last {triggers.size - n_volumes} volume "
            f"trigger(s) have no volume in {paths.bold.name}; they are ignored",
            stacklevel=2,
        )
    spacing = float(np.median(np.diff(triggers))) if triggers.size > 1 else tr
    if abs(spacing - tr) > 0.01 * tr:
        warnings.warn(
            f"{paths.bold_sidecar}: RepetitionTime is {tr:g} s but the volume triggers are "
            f"{spacing:.4g} s apart; volume times follow the triggers",
            stacklevel=2,
        )
    bold = np.asarray(bold_img.dataobj, dtype=np.float32)
    parcellation = _parcellation(bold, mask, atlas)
    scoring = _run_scoring(paths)
    return Recording(
        subject=paths.subject,
        task=task,
        run=run_number,
        raw=raw,
        ch_types=ch_types,
        volume_times=triggers[:n_volumes],
        tr=tr,
        roi_means=region_means(bold, parcellation),
        parcellation=parcellation,
        hypnogram=scoring,
        origin=float(triggers[0]),
        dummy_scans=skipped,
        source_format="ds003768",
        source=paths.eeg_header,
        in_scanner=looks_in_scanner(float(raw.info["sfreq"]), all_triggers.size, _declared_in_scanner(paths)),
        slices_per_volume=_slices_per_volume(paths),
        gradient_triggers=all_triggers,
    )


def _volume_triggers(raw: mne.io.BaseRaw, header: Path) -> np.ndarray:
    times = volume_trigger_times(raw)
    if not times.size:
        raise DatasetFormatError(
            header.with_suffix(".vmrk"),
            f"no '{VOLUME_TRIGGER}' volume-trigger markers: expected one per fMRI volume",
        )
    if np.any(np.diff(times) <= 0):
        raise DatasetFormatError(header.with_suffix(".vmrk"), "two volume triggers at the same time")
    return times


DISCARDED_VOLUME_KEYS = ("NumberOfVolumesDiscardedByUser", "NumberOfVolumesDiscardedByScanner")
"""BOLD sidecar keys (BIDS) counting dummy scans: volumes whose triggers precede the file's first."""


def _dummy_scans(paths: RunPaths, n_triggers: int, n_volumes: int, given: int | None) -> int:
    """Triggers to skip before the first volume: ``given``, else the sidecar's count when needed."""
    vmrk = paths.eeg_header.with_suffix(".vmrk")
    if given is not None:
        if given < 0:
            raise ValueError(f"dummy_scans must be >= 0, got {given}")
        if n_triggers < given + n_volumes:
            raise DatasetFormatError(
                vmrk,
                f"{n_triggers} '{VOLUME_TRIGGER}' volume triggers for {given} dummy scan(s) and the "
                f"{n_volumes} volumes of {paths.bold.name}: expected at least {given + n_volumes}",
            )
        return given
    if n_triggers < n_volumes:
        raise DatasetFormatError(
            vmrk,
            f"{n_triggers} '{VOLUME_TRIGGER}' volume triggers for the {n_volumes} "
            f"volumes of {paths.bold.name}: expected one trigger per volume",
        )
    if n_triggers == n_volumes:
        return 0
    meta = _sidecar(paths.bold_sidecar)
    counts = [meta.get(key) for key in DISCARDED_VOLUME_KEYS if key in meta]
    if not counts:
        raise DatasetFormatError(
            vmrk,
            f"{n_triggers} '{VOLUME_TRIGGER}' volume triggers for the {n_volumes} volumes of "
            f"{paths.bold.name}: which {n_triggers - n_volumes} trigger(s) have no volume is unknown; "
            f"give the dummy scans before the first volume with --dummy-scans N (0 if the extra "
            f"triggers come after the last volume), or {DISCARDED_VOLUME_KEYS[0]} in "
            f"{paths.bold_sidecar.name}",
        )
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise DatasetFormatError(
            paths.bold_sidecar, f"{' and '.join(DISCARDED_VOLUME_KEYS)} must be whole numbers >= 0"
        )
    count = sum(int(c) for c in counts if c is not None)
    if n_triggers < count + n_volumes:
        raise DatasetFormatError(
            vmrk,
            f"{n_triggers} '{VOLUME_TRIGGER}' volume triggers for {count} dummy scan(s) (from "
            f"{paths.bold_sidecar.name}) and the {n_volumes} volumes of {paths.bold.name}: expected at "
            f"least {count + n_volumes}; give the right count with --dummy-scans N",
        )
    return count


def _sidecar(sidecar: Path) -> dict:
    """The BOLD sidecar's JSON object."""
    if not sidecar.is_file():
        raise DatasetFormatError(sidecar, "BOLD sidecar not found: it must give RepetitionTime")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetFormatError(sidecar, f"invalid JSON ({err.msg})", line=err.lineno) from None
    return meta if isinstance(meta, dict) else {}


def _declared_in_scanner(paths: RunPaths) -> bool | None:
    """The EEG sidecar's ``InScanner`` (a simulated in-scanner run says so), or None."""
    if not paths.eeg_sidecar.is_file():
        return None
    try:
        meta = json.loads(paths.eeg_sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    declared = meta.get("InScanner") if isinstance(meta, dict) else None
    return declared if isinstance(declared, bool) else None


def _slices_per_volume(paths: RunPaths) -> int | None:
    """Slices per volume: the length of the BOLD sidecar's ``SliceTiming`` (BIDS), if given."""
    timing = _sidecar(paths.bold_sidecar).get("SliceTiming")
    return len(timing) if isinstance(timing, list) and timing else None


def _repetition_time(paths: RunPaths) -> float:
    sidecar = paths.bold_sidecar
    meta = _sidecar(sidecar)
    tr = meta.get("RepetitionTime")
    if not isinstance(tr, (int, float)) or isinstance(tr, bool) or not 0.1 <= tr <= 30:
        raise DatasetFormatError(
            sidecar, f"RepetitionTime must be a number of seconds in [0.1, 30], found {tr!r}"
        )
    return float(tr)


def _load_nifti(path: Path, ndim: int) -> SpatialImage:
    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    if not path.is_file():
        raise DatasetFormatError(path, "NIfTI file not found")
    try:
        image = nib.load(path)
        if not isinstance(image, SpatialImage):
            raise TypeError(f"a {type(image).__name__}, not an image on a voxel grid")
        shape = image.shape
    except Exception as err:  # nibabel raises several types for broken files
        raise DatasetFormatError(path, f"cannot be read as NIfTI: {err}") from None
    if len(shape) != ndim:
        raise DatasetFormatError(path, f"expected a {ndim}-D image, found shape {shape}")
    return image


def _parcellation(bold: np.ndarray, mask: str | Path | None, atlas: str | Path | None) -> Parcellation:
    if mask is not None:
        mask_image = _load_nifti(Path(mask), ndim=3)
        brain = np.asarray(mask_image.dataobj) > 0
        if brain.shape != bold.shape[:3]:
            raise DatasetFormatError(mask, f"mask grid {brain.shape} differs from BOLD grid {bold.shape[:3]}")
    else:
        brain = compute_epi_mask(bold.mean(axis=3))
    if atlas is not None:
        atlas_data = np.asarray(_load_nifti(Path(atlas), ndim=3).dataobj)
        if atlas_data.shape != bold.shape[:3]:
            raise DatasetFormatError(
                atlas, f"atlas grid {atlas_data.shape} differs from BOLD grid {bold.shape[:3]}"
            )
        return atlas_parcellation(atlas_data, brain)
    return grid_parcellation(brain)


def _run_scoring(paths: RunPaths) -> Hypnogram | None:
    if not paths.scoring.is_file():
        return None
    runs = read_scoring(paths.scoring)
    scoring = runs.get((paths.task, paths.run))
    if scoring is None:
        warnings.warn(f"{paths.scoring}: no epochs scored for {paths.stem}", stacklevel=3)
        return None
    return Hypnogram(scoring.onsets, scoring.stages, scoring.raw_labels, str(paths.scoring))
