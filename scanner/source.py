"""The scanner side of live fMRI: a folder of volumes in, the fMRI LSL stream out.

A scanner's real-time export writes one file per volume (NIfTI ``.nii`` /
``.nii.gz``, or DICOM read through pydicom) into a folder. This module

- watches the folder by polling (:class:`VolumeFolderWatcher`): every volume
  file once, in natural order of the names, only once it is complete;
- reads each volume (:func:`read_volume`) and reduces it to region means with
  the very code of the simulators (:mod:`recordings.regions`), on a region
  layout fixed for the whole session (:class:`RegionLayout`);
- publishes them (:class:`FmriOutlet`) as the replay does: type ``fMRI``,
  channel 0 the volume index, then one channel per region, nominal rate 1/TR,
  the TR and the region description in the ``session`` child of the stream's
  description, so that :mod:`stream.acquisition` consumes it like a replay.

:class:`FmriSource` ties the three together.

Timing. A sample's timestamp is the LSL clock (``pylsl.local_clock()``) when
the volume's file was first seen in the folder, minus ``delay``: the export
latency from acquisition to the file's appearance, which the lab measures once
(for example R128 trigger to file). Detection, not the end of reading, is used
because reading waits for the file to be complete; the poll interval bounds
the detection error. When the acquisition also receives the R128 triggers it
places each volume on its trigger and only needs these stamps to be within
TR/2 of the trigger. A file already in the folder at start (``existing =
"process"``) was not seen arrive: its stamp is its modification time mapped
onto the LSL clock.

Volume index. Channel 0 is the position of the file in the folder's sequence
(0 for the first volume file watched): a file that cannot be read, or has the
wrong grid, keeps its number, so a gap in the index shows a lost volume and
later volumes keep their pairing with the scanner's triggers.

This module does not import pylsl at import time; callers set the LSL
configuration first (:func:`core.lsl_safety.use_project_lsl_config`).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.layouts import StreamIdentity, fmri_stream_info, new_identity
from recordings.regions import (
    Parcellation,
    atlas_parcellation,
    compute_epi_mask,
    grid_parcellation,
    volume_region_means,
)

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".ima")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + DICOM_SUFFIXES
EXISTING_CHOICES = ("process", "skip")
MAX_TR = 30.0
_TIME_UNIT_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


class FmriSourceError(RuntimeError):
    """A condition under which nothing can be published (no TR, unusable mask, missing pydicom)."""


class IncompleteVolumeError(OSError):
    """A volume file holds fewer bytes than its header announces (still being written?)."""


class VolumeShapeError(ValueError):
    """A volume's grid differs from the session's region layout."""


# -- the folder ----------------------------------------------------------------------------------


def natural_key(name: str) -> tuple:
    """Sort key putting ``vol2`` before ``vol10``: digit runs compare as numbers.

    Parameters
    ----------
    name : str
        File name.

    Returns
    -------
    key : tuple
        Alternating lower-case text and integers.
    """
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if index % 2 else part.lower() for index, part in enumerate(parts))


def is_volume_file(name: str) -> bool:
    """Whether a file name is a volume (NIfTI or DICOM) rather than a sidecar or a temporary file."""
    lower = name.lower()
    return not name.startswith(".") and lower.endswith(VOLUME_SUFFIXES)


def volume_stem(path: Path) -> str:
    """File name without its volume suffix (``.nii.gz`` counts as one)."""
    name = path.name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass(frozen=True)
class VolumeFile:
    """A complete volume file, as handed out by :class:`VolumeFolderWatcher`.

    Attributes
    ----------
    path : Path
        The file.
    ordinal : int
        Position in the folder's sequence of volume files (0 = first).
    detected : float
        Watcher-clock time when the file was first seen (for a file present at
        start: its modification time mapped onto that clock).
    preexisting : bool
        Whether the file was already in the folder when watching started.
    """

    path: Path
    ordinal: int
    detected: float
    preexisting: bool = False


@dataclass
class _Pending:
    path: Path
    detected: float
    preexisting: bool
    size: int = -1
    mtime_ns: int = -1
    stable_since: float = 0.0


class VolumeFolderWatcher:
    """Hand out each complete volume file of a folder once, in natural order of names.

    A file is complete when its size and modification time have not changed
    for ``settle`` seconds (and it is not empty), or as soon as a later file
    (in natural order) has appeared: exporters write volumes one after the
    other. Files are handed out in natural order of names. A file that appears
    after later ones were handed out is handed out too, with a warning. Whether
    a complete-looking file really is complete is the reader's check.

    Parameters
    ----------
    folder : path-like
        The folder the scanner's real-time export writes into.
    existing : {"process", "skip"}
        What to do with volume files already there when watching starts.
    settle : float
        Seconds a file's size must stay unchanged before it is taken as complete.
    clock : callable
        Clock of the ``detected`` times (``pylsl.local_clock`` for LSL stamps).
    wall_clock : callable
        Wall-clock time, to map a modification time onto ``clock``.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        existing: str = "skip",
        settle: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if existing not in EXISTING_CHOICES:
            raise ValueError(f"existing must be one of {EXISTING_CHOICES}, got {existing!r}")
        if settle < 0:
            raise ValueError(f"settle must be >= 0 s, got {settle}")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"watched folder {self.folder} does not exist or is not a folder")
        self.existing = existing
        self.settle = float(settle)
        self.clock = clock
        self.wall_clock = wall_clock
        self._known: set[str] = set()
        self._pending: dict[str, _Pending] = {}
        self._last_key: tuple | None = None
        self._next_ordinal = 0
        self.skipped_at_start = 0
        self._discover(self.clock(), at_start=True)  # take stock of what is already there

    def poll(self) -> list[VolumeFile]:
        """Look at the folder once; return the files that became complete, in order.

        Returns
        -------
        files : list of VolumeFile
        """
        now = self.clock()
        self._discover(now)
        self._update_sizes(now)
        return self._release(now)

    def _discover(self, now: float, *, at_start: bool = False) -> None:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as err:  # a network share may blink: try again at the next poll
            logger.warning("cannot list %s: %s", self.folder, err)
            return
        for entry in entries:
            name = entry.name
            if name in self._known or not is_volume_file(name):
                continue
            try:
                if not entry.is_file():
                    continue
            except OSError:
                continue
            self._known.add(name)
            if at_start and self.existing == "skip":
                self.skipped_at_start += 1
                continue
            detected = now
            if at_start:
                try:  # not seen arriving: its modification time stands for its arrival
                    detected = now - (self.wall_clock() - entry.stat().st_mtime)
                except OSError:
                    pass
            self._pending[name] = _Pending(Path(entry.path), detected, preexisting=at_start, stable_since=now)

    def _update_sizes(self, now: float) -> None:
        for name, pending in list(self._pending.items()):
            try:
                stat = pending.path.stat()
            except FileNotFoundError:
                logger.warning("%s disappeared before it could be read; skipped", pending.path)
                del self._pending[name]
                continue
            if (stat.st_size, stat.st_mtime_ns) != (pending.size, pending.mtime_ns):
                pending.size, pending.mtime_ns, pending.stable_since = stat.st_size, stat.st_mtime_ns, now

    def _release(self, now: float) -> list[VolumeFile]:
        ordered = sorted(self._pending, key=natural_key)
        released = []
        for position, name in enumerate(ordered):
            pending = self._pending[name]
            stable = pending.size > 0 and now - pending.stable_since >= self.settle
            followed = position + 1 < len(ordered)
            if not (stable or followed):
                break
            key = natural_key(name)
            if self._last_key is not None and key < self._last_key:
                logger.warning("%s appeared after later files were published; published now", name)
            else:
                self._last_key = key
            del self._pending[name]
            released.append(
                VolumeFile(pending.path, self._next_ordinal, pending.detected, pending.preexisting)
            )
            self._next_ordinal += 1
        return released


# -- one volume ----------------------------------------------------------------------------------


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


def _nifti_tr(header) -> tuple[float | None, str]:
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
        TR given by the user (``--tr``), in seconds.
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
        tr, origin = float(explicit), "--tr"
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
                "Give it with --tr SECONDS."
            )
        tr, origin = float(value), f"RepetitionTime of {sidecar.name}"
    if not 0 < tr <= MAX_TR:
        raise FmriSourceError(f"repetition time {tr:g} s (from {origin}) is not in (0, {MAX_TR:g}] s")
    return tr, origin


# -- the regions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionLayout:
    """The regions of the session, fixed once: every volume is reduced on them.

    Attributes
    ----------
    parcellation : Parcellation
        Regions, as :mod:`recordings.regions` makes them.
    origin : str
        Where the mask and regions came from (stream metadata, messages).
    """

    parcellation: Parcellation
    origin: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel grid every volume must have."""
        return tuple(int(n) for n in self.parcellation.labels.shape)

    @property
    def n_regions(self) -> int:
        """Number of regions (channels after the volume index)."""
        return self.parcellation.n_regions

    def means(self, volume: Volume) -> np.ndarray:
        """Region means of a volume, as :func:`recordings.regions.volume_region_means`.

        Raises
        ------
        VolumeShapeError
            If the volume's grid is not the layout's.
        """
        if volume.data.shape != self.shape:
            raise VolumeShapeError(
                f"{volume.path.name}: volume of shape {volume.data.shape} does not match the session's "
                f"grid {self.shape} (fixed by {self.origin})"
            )
        return volume_region_means(volume.data, self.parcellation)

    @classmethod
    def build(
        cls,
        *,
        first_volume: Volume | None = None,
        mask_file: str | os.PathLike | None = None,
        atlas_file: str | os.PathLike | None = None,
    ) -> RegionLayout:
        """Make the layout as :func:`recordings.session.read_session` does, from what is known.

        Brain mask: ``mask_file``, else Otsu's mask of ``first_volume`` (the
        simulators use the run's temporal mean, which does not exist live).
        Regions: the atlas inside the mask, else the 3 x 3 x 3 grid parcellation.

        Parameters
        ----------
        first_volume : Volume | None
            Needed unless ``mask_file`` is given.
        mask_file, atlas_file : path-like | None
            NIfTI images on the BOLD grid.

        Returns
        -------
        layout : RegionLayout

        Raises
        ------
        FmriSourceError
            If an image cannot be read, the grids differ, or no region results.
        """
        mask = origin = None
        if mask_file is not None:
            mask = _read_image(mask_file, "mask") > 0
            origin = f"mask {Path(mask_file).name}"
        elif first_volume is None:
            raise ValueError("a region layout needs a mask file or a first volume")
        atlas = None
        if atlas_file is not None:
            atlas = _read_image(atlas_file, "atlas")
            if mask is not None and atlas.shape != mask.shape:
                raise FmriSourceError(f"atlas grid {atlas.shape} differs from the mask grid {mask.shape}")
        if mask is None:
            try:
                mask = compute_epi_mask(first_volume.data)
            except ValueError as err:
                raise FmriSourceError(f"{first_volume.path.name}: {err}") from None
            origin = f"Otsu mask of the first volume {first_volume.path.name}"
        if first_volume is not None and first_volume.data.shape != mask.shape:
            raise FmriSourceError(
                f"{first_volume.path.name}: volume grid {first_volume.data.shape} differs from the "
                f"{origin} grid {mask.shape}"
            )
        try:
            if atlas is not None:
                if atlas.shape != mask.shape:
                    raise FmriSourceError(
                        f"atlas grid {atlas.shape} differs from the volume grid {mask.shape}"
                    )
                parcellation = atlas_parcellation(atlas, mask)
                origin += f", regions of atlas {Path(atlas_file).name}"
            else:
                parcellation = grid_parcellation(mask)
        except ValueError as err:
            raise FmriSourceError(f"no usable regions ({origin}): {err}") from None
        return cls(parcellation, origin)


def _read_image(path: str | os.PathLike, what: str) -> np.ndarray:
    import nibabel as nib

    try:
        data = np.asarray(nib.load(path).dataobj)
    except Exception as err:  # nibabel raises several types for missing or broken files
        raise FmriSourceError(f"{what} {path}: cannot be read as NIfTI ({err})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise FmriSourceError(f"{what} {path}: expected a 3-D image, found shape {data.shape}")
    return data


# -- the outlet ----------------------------------------------------------------------------------


def make_identity(prefix: str = "scanner", source_id: str | None = None) -> StreamIdentity:
    """Name, type and source_id of the fMRI stream, as the replay names them.

    Parameters
    ----------
    prefix : str
        Name prefix: the stream is ``<prefix>-fMRI``.
    source_id : str | None
        Fixed source_id; by default ``<prefix>-fMRI-<8 random hex digits>``, new at every start.

    Returns
    -------
    identity : StreamIdentity
    """
    identity = new_identity(prefix, "fMRI")
    return identity if source_id is None else StreamIdentity(identity.name, identity.stype, source_id)


class FmriOutlet:
    """The fMRI LSL outlet: volume index then one region mean per channel, nominal rate 1/TR.

    Parameters
    ----------
    identity : StreamIdentity
        Name, type and source_id.
    layout : RegionLayout
        Regions (channel labels ``volume``, then the region names).
    tr : float
        Repetition time in seconds.
    metadata : dict of str to str
        Further entries of the description's ``session`` child.
    """

    def __init__(
        self,
        identity: StreamIdentity,
        layout: RegionLayout,
        tr: float,
        metadata: dict[str, str] | None = None,
    ) -> None:
        import pylsl

        self.identity = identity
        self.tr = tr
        self.metadata = dict(metadata or {})
        self.n_regions = layout.n_regions
        info = fmri_stream_info(
            identity,
            layout.parcellation.names,
            tr,
            {"regions": layout.parcellation.description, **self.metadata},
        )
        self._outlet = pylsl.StreamOutlet(info, max_buffered=360)

    def push(self, index: int, means: np.ndarray, stamp: float) -> None:
        """Publish one volume's sample with its timestamp (LSL clock)."""
        if self._outlet is None:
            raise RuntimeError("the fMRI outlet is closed")
        sample = np.concatenate([[index], np.asarray(means, dtype=np.float64)]).astype(np.float32)
        self._outlet.push_sample(sample, stamp)

    def has_consumers(self) -> bool:
        """Whether an inlet is connected."""
        return self._outlet is not None and bool(self._outlet.have_consumers())

    def close(self) -> None:
        """Unregister the stream (idempotent)."""
        self._outlet = None


# -- the whole source ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceConfig:
    """What :class:`FmriSource` watches, how, and how it publishes.

    Parameters
    ----------
    folder : Path
        Folder the scanner's real-time export writes volumes into.
    prefix : str
        Stream name prefix (``<prefix>-fMRI``).
    source_id : str | None
        Fixed source_id (default: ``<prefix>-fMRI-<random>``).
    tr : float | None
        Repetition time in seconds; from the first volume's header or sidecar when None.
    mask, atlas : Path | None
        Brain mask and atlas label images on the BOLD grid.
    delay : float
        Export latency in seconds, subtracted from the detection time to stamp a volume.
    existing : {"process", "skip"}
        Files already in the folder at start.
    interval : float
        Seconds between two looks at the folder.
    settle : float
        Seconds a file's size must stay unchanged to be taken as complete.
    retry_for : float
        Seconds a file that reads incomplete is retried before it is flagged and skipped.
    wait_for_consumers : float
        Seconds, counted from the outlet's creation, to hold the first volume until a
        consumer is connected (LSL does not send earlier samples to a new inlet, and the
        outlet usually appears with the first volume). Later volumes queue meanwhile;
        their stamps are not affected.
    """

    folder: Path
    prefix: str = "scanner"
    source_id: str | None = None
    tr: float | None = None
    mask: Path | None = None
    atlas: Path | None = None
    delay: float = 0.0
    existing: str = "skip"
    interval: float = 0.1
    settle: float = 0.2
    retry_for: float = 2.0
    wait_for_consumers: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "tr": self.tr is None or 0 < self.tr <= MAX_TR,
            "delay": 0 <= self.delay <= 60,
            "interval": 0 < self.interval <= 10,
            "settle": 0 <= self.settle <= 60,
            "retry_for": 0 <= self.retry_for <= 600,
            "wait_for_consumers": 0 <= self.wait_for_consumers <= 600,
            "existing": self.existing in EXISTING_CHOICES,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"SourceConfig.{name} = {getattr(self, name)!r} is out of range")


@dataclass(frozen=True)
class PublishedVolume:
    """What was published for one volume (for progress lines and tests)."""

    index: int
    path: Path
    stamp: float
    detected: float
    published: float
    means: np.ndarray = field(repr=False)


class FmriSource:
    """Watch a folder, reduce each new volume to region means, publish it on LSL.

    The region layout and the TR are fixed by the first readable volume (or at
    once, from ``--mask`` and ``--tr``); the outlet is created as soon as both
    are known. Nothing in a volume file stops the source: an incomplete file is
    retried for ``retry_for`` seconds then flagged and skipped, a volume of
    another grid is skipped, each with a log line naming the file.

    Parameters
    ----------
    config : SourceConfig
        Folder, layout files, timing.
    on_volume : callable | None
        Called with a :class:`PublishedVolume` after each push.
    on_stream : callable | None
        Called with the :class:`FmriOutlet` once it exists.
    clock : callable | None
        The LSL clock (default ``pylsl.local_clock``).
    """

    def __init__(
        self,
        config: SourceConfig,
        *,
        on_volume: Callable[[PublishedVolume], None] | None = None,
        on_stream: Callable[[FmriOutlet], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if clock is None:
            import pylsl

            clock = pylsl.local_clock
        self.config = config
        self.clock = clock
        self.identity = make_identity(config.prefix, config.source_id)
        self.watcher = VolumeFolderWatcher(
            config.folder, existing=config.existing, settle=config.settle, clock=clock
        )
        self.on_volume = on_volume
        self.on_stream = on_stream
        self.layout = (
            RegionLayout.build(mask_file=config.mask, atlas_file=config.atlas) if config.mask else None
        )
        self.tr: float | None = config.tr
        self.tr_origin = "--tr" if config.tr is not None else ""
        self.outlet: FmriOutlet | None = None
        self.published = 0
        self.skipped = 0
        self._ready: deque[VolumeFile] = deque()
        self._first_failure: dict[Path, float] = {}
        self._stop = threading.Event()
        self._outlet_created = 0.0
        self._open_outlet_if_ready()

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Poll and publish every ``interval`` seconds until ``stop`` is set."""
        self._stop = stop
        while not stop.is_set():
            self.step()
            stop.wait(self.config.interval)

    def close(self) -> None:
        """Close the outlet (idempotent)."""
        if self.outlet is not None:
            self.outlet.close()

    def __enter__(self) -> FmriSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- one look at the folder ------------------------------------------------------------------
    def step(self) -> int:
        """Look at the folder once and publish every volume that is ready.

        Returns
        -------
        n : int
            Volumes published.

        Raises
        ------
        FmriSourceError
            If the session cannot be set up (no TR, no usable mask, DICOM without pydicom).
        """
        self._ready.extend(self.watcher.poll())
        count = 0
        while self._ready:
            item = self._ready[0]
            volume = self._read(item)
            if volume is _RETRY:
                break
            self._ready.popleft()
            if volume is not None and self._publish(item, volume):
                count += 1
        return count

    def _read(self, item: VolumeFile) -> Volume | object | None:
        """The volume, None if the file is to be skipped, or ``_RETRY``."""
        try:
            volume = read_volume(item.path)
        except FmriSourceError:
            raise
        except FileNotFoundError:
            self._skip(item, "the file disappeared before it could be read")
            return None
        except (IncompleteVolumeError, OSError) as err:
            first = self._first_failure.setdefault(item.path, self.clock())
            if self.clock() - first < self.config.retry_for:
                return _RETRY
            self._skip(item, f"still incomplete after {self.config.retry_for:g} s of retries: {err}")
            return None
        except ValueError as err:
            self._skip(item, str(err))
            return None
        self._first_failure.pop(item.path, None)
        return volume

    def _publish(self, item: VolumeFile, volume: Volume) -> bool:
        if self.layout is None:
            self.layout = RegionLayout.build(
                first_volume=volume, mask_file=self.config.mask, atlas_file=self.config.atlas
            )
        if self.tr is None:
            self.tr, self.tr_origin = resolve_tr(None, volume)
        self._open_outlet_if_ready()
        try:
            means = self.layout.means(volume)
        except VolumeShapeError as err:
            self._skip(item, str(err))
            return False
        if self.published == 0:
            self._wait_for_consumer()
        stamp = item.detected - self.config.delay
        self.outlet.push(item.ordinal, means, stamp)
        self.published += 1
        if self.on_volume is not None:
            self.on_volume(
                PublishedVolume(item.ordinal, item.path, stamp, item.detected, self.clock(), means)
            )
        return True

    def _wait_for_consumer(self) -> None:
        deadline = self._outlet_created + self.config.wait_for_consumers
        while not self.outlet.has_consumers() and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.02)

    def _skip(self, item: VolumeFile, reason: str) -> None:
        self._first_failure.pop(item.path, None)
        self.skipped += 1
        logger.error("volume %d (%s) skipped: %s", item.ordinal, item.path.name, reason)

    def _open_outlet_if_ready(self) -> None:
        if self.outlet is not None or self.layout is None or self.tr is None:
            return
        metadata = {
            "source": "fmri-source: a scanner's real-time export folder",
            "tr_origin": self.tr_origin,
            "regions_origin": self.layout.origin,
            "stamp": "LSL clock when the volume file was detected, minus export_delay",
            "export_delay": f"{self.config.delay:g}",
        }
        self.outlet = FmriOutlet(self.identity, self.layout, self.tr, metadata)
        self._outlet_created = time.monotonic()
        if self.on_stream is not None:
            self.on_stream(self.outlet)


_RETRY = object()
