"""How the scanner-side source watches its folder and publishes: the ``[fmri_source]`` settings.

Kept apart from the source itself so that reading the configuration imports no
imaging library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scanner.folder_watcher import EXISTING_CHOICES
from scanner.volume_files import MAX_TR


@dataclass(frozen=True)
class SourceConfig:
    """What :class:`scanner.source.FmriSource` publishes, and how it watches its folder.

    The folder itself is not part of it: it is given to each source (``--watch``).

    Parameters
    ----------
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
