"""One volume file read into memory (NIfTI or DICOM), and the session's repetition time.

A file is read in one go and refused when it holds fewer bytes than its header announces,
so a file still being written is never half read. nibabel (and pydicom for DICOM) are
imported when the first volume is read.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import FmriSourceError, IncompleteVolumeError
from scanner.folder_watcher import DICOM_SUFFIXES, volume_stem

MAX_TR = 30.0
GIVEN_TR_ORIGIN = "--tr or [fmri_source] tr"
_TIME_UNIT_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


@dataclass(frozen=True)
class Volume:
    """One volume read from a file.

    Attributes
    ----------
    path : Path
        Its file.
    data : np.ndarray of float32, shape (nx, ny, nz)
        Voxel values, scaled as stored (NIfTI ``scl_slope``/``scl_inter``, DICOM rescale).
    tr : float | None
        Repetition time in seconds announced by the file, if any.
    tr_origin : str
        Where ``tr`` comes from (for messages), empty when ``tr`` is None.
    """

    path: Path
    data: np.ndarray
    tr: float | None = None
    tr_origin: str = ""


def read_volume(path: str | os.PathLike) -> Volume:
    """Read one 3-D volume from a NIfTI or DICOM file.

    The file is read into memory at once, so a file rewritten meanwhile cannot
    mix two versions; a file shorter than its header announces is refused.

    Parameters
    ----------
    path : path-like
        A ``.nii``, ``.nii.gz``, ``.dcm`` or ``.ima`` file.

    Returns
    -------
    volume : Volume

    Raises
    ------
    IncompleteVolumeError
        If the file is truncated (perhaps still being written).
    FmriSourceError
        If the file is DICOM and pydicom is not installed.
    ValueError
        If the file does not hold one 3-D volume, or cannot be parsed.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return _read_dicom(path, raw)
    return _read_nifti(path, raw)


def _read_nifti(path: Path, raw: bytes) -> Volume:
    import nibabel as nib

    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (EOFError, gzip.BadGzipFile, OSError) as err:
            raise IncompleteVolumeError(f"{path.name}: incomplete gzip data ({err})") from None
    if len(raw) < 348:
        raise IncompleteVolumeError(f"{path.name}: {len(raw)} bytes, shorter than a NIfTI header")
    nifti2 = 540 in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big"))
    image_class = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    try:
        image = image_class.from_bytes(raw)
    except Exception as err:  # nibabel raises several types for a broken header
        raise ValueError(f"{path.name}: not a readable NIfTI file ({err})") from None
    header = image.header
    offset = int(getattr(image.dataobj, "offset", header.get_data_offset()))
    expected = offset + int(np.prod(image.shape)) * header.get_data_dtype().itemsize
    if len(raw) < expected:
        raise IncompleteVolumeError(f"{path.name}: {len(raw)} of the {expected} bytes its header announces")
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"{path.name}: expected one 3-D volume, found an image of shape {image.shape}")
    try:
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    except OSError as err:  # nibabel's "Expected N bytes, got M"
        raise IncompleteVolumeError(f"{path.name}: {err}") from None
    tr, origin = _nifti_tr(header)
    return Volume(path, data, tr, origin)


def _nifti_tr(header: Any) -> tuple[float | None, str]:
    """TR from pixdim[4] when > 0 and meaningful (a time unit set, or a 4-D image)."""
    pixdim4 = float(header["pixdim"][4])
    unit = header.get_xyzt_units()[1]
    if not pixdim4 > 0:
        return None, ""
    if unit in _TIME_UNIT_SECONDS:
        return pixdim4 * _TIME_UNIT_SECONDS[unit], f"NIfTI header pixdim[4] ({pixdim4:g} {unit})"
    if int(header["dim"][0]) >= 4:
        return pixdim4, f"NIfTI header pixdim[4] ({pixdim4:g}, no time unit: taken as seconds)"
    # A 3-D image with no time unit: pixdim[4] is nibabel's default of 1, not a TR.
    return None, ""


def _read_dicom(path: Path, raw: bytes) -> Volume:
    try:
        import pydicom
    except ImportError:
        raise FmriSourceError(
            f"{path.name} is a DICOM file: reading DICOM volumes needs pydicom, which is not installed. "
            "Install it with `pip install pydicom` (or export NIfTI)."
        ) from None
    with warnings.catch_warnings():  # nibabel calls its DICOM readers experimental at import
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import dicomwrappers

    try:
        dataset = pydicom.dcmread(io.BytesIO(raw))
        wrapper = dicomwrappers.wrapper_from_data(dataset)
        data = np.asarray(wrapper.get_data(), dtype=np.float32)
    except Exception as err:  # pydicom and nibabel raise many types for broken or partial files
        raise IncompleteVolumeError(f"{path.name}: not a complete DICOM volume ({err})") from None
    if data.ndim != 3:
        raise ValueError(
            f"{path.name}: expected one 3-D volume (a mosaic or multi-frame DICOM), found shape {data.shape}"
        )
    tr_ms = getattr(dataset, "RepetitionTime", None)
    if tr_ms is not None and float(tr_ms) > 0:
        return Volume(path, data, float(tr_ms) / 1000.0, f"DICOM RepetitionTime ({float(tr_ms):g} ms)")
    return Volume(path, data)


def resolve_tr(explicit: float | None, volume: Volume) -> tuple[float, str]:
    """The session's TR: ``explicit``, else the volume file's, else its JSON sidecar's.

    Parameters
    ----------
    explicit : float | None
        TR given by the user (``--tr`` or ``tr`` of the ``[fmri_source]`` configuration), in seconds.
    volume : Volume
        The first volume; its JSON sidecar is ``<name without suffix>.json``.

    Returns
    -------
    tr : float
        Seconds.
    origin : str
        Where it came from.

    Raises
    ------
    FmriSourceError
        If no source gives a TR, or the TR is not in (0, 30] s.
    """
    if explicit is not None:
        tr, origin = float(explicit), GIVEN_TR_ORIGIN
    elif volume.tr is not None:
        tr, origin = volume.tr, f"{volume.tr_origin} of {volume.path.name}"
    else:
        sidecar = volume.path.with_name(volume_stem(volume.path) + ".json")
        value = None
        if sidecar.is_file():
            try:
                value = json.loads(sidecar.read_text(encoding="utf-8")).get("RepetitionTime")
            except (json.JSONDecodeError, AttributeError, OSError) as err:
                raise FmriSourceError(f"{sidecar}: cannot read RepetitionTime ({err})") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise FmriSourceError(
                f"no repetition time for {volume.path.name}: its header gives none (pixdim[4] unset, or "
                f"without a time unit on a 3-D image), and {sidecar.name} "
                f"{'has no numeric RepetitionTime' if sidecar.is_file() else 'does not exist'}. "
                "Give it with --tr SECONDS (or tr in the [fmri_source] section of the configuration)."
            )
        tr, origin = float(value), f"RepetitionTime of {sidecar.name}"
    if not 0 < tr <= MAX_TR:
        raise FmriSourceError(f"repetition time {tr:g} s (from {origin}) is not in (0, {MAX_TR:g}] s")
    return tr, origin
