"""The scanner's export folder: each complete volume file handed out once, in natural order of names.

The watcher polls the folder (no file-system notifications: they are unreliable on network
shares). A file is complete when its size and modification time have settled, or as soon as
a later file has appeared; whether it really is complete is the reader's check
(:mod:`scanner.volume_files`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".ima")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + DICOM_SUFFIXES
EXISTING_CHOICES = ("process", "skip")

NaturalKey = tuple[str | int, ...]


def natural_key(name: str) -> NaturalKey:
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
    """A volume file seen but not handed out yet, with its last size and when it last changed."""

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
        self._last_key: NaturalKey | None = None
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
