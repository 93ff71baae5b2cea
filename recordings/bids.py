"""File names of the ds003768 BIDS layout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_RUN_PATTERN = re.compile(r"^(?:task-)?(?P<task>[A-Za-z0-9]+)[-_](?:run-)?(?P<run>\d+)$")


@dataclass(frozen=True)
class RunPaths:
    """Paths of one run of one subject in a ds003768-style dataset.

    Attributes
    ----------
    root : Path
        Dataset folder.
    subject : str
        Subject label without ``sub-`` (e.g. ``"01"``).
    task : str
        ``"rest"`` or ``"sleep"``.
    run : int
        Run number.
    """

    root: Path
    subject: str
    task: str
    run: int

    @property
    def stem(self) -> str:
        """BIDS entity string, e.g. ``sub-01_task-sleep_run-1``."""
        return f"sub-{self.subject}_task-{self.task}_run-{self.run}"

    @property
    def eeg_header(self) -> Path:
        """BrainVision header (``.vhdr``)."""
        return self.root / f"sub-{self.subject}" / "eeg" / f"{self.stem}_eeg.vhdr"

    @property
    def channels_tsv(self) -> Path:
        """BIDS channels table (optional)."""
        return self.root / f"sub-{self.subject}" / "eeg" / f"{self.stem}_channels.tsv"

    @property
    def eeg_sidecar(self) -> Path:
        """EEG JSON sidecar of the run."""
        return self.root / f"sub-{self.subject}" / "eeg" / f"{self.stem}_eeg.json"

    @property
    def bold(self) -> Path:
        """BOLD series (``.nii.gz``)."""
        return self.root / f"sub-{self.subject}" / "func" / f"{self.stem}_bold.nii.gz"

    @property
    def bold_sidecar(self) -> Path:
        """BOLD JSON sidecar holding ``RepetitionTime``."""
        return self.root / f"sub-{self.subject}" / "func" / f"{self.stem}_bold.json"

    @property
    def scoring(self) -> Path:
        """The subject's sleep-scoring TSV."""
        return self.root / "sourcedata" / f"sub-{self.subject}-sleep-stage.tsv"


def parse_run(text: str) -> tuple[str, int]:
    """Parse a run name such as ``sleep-1``, ``rest_2`` or ``task-sleep_run-3``.

    Parameters
    ----------
    text : str
        Run name.

    Returns
    -------
    task, run : str, int

    Raises
    ------
    ValueError
        If the text names no task and run number.
    """
    match = _RUN_PATTERN.match(text.strip())
    if match is None:
        raise ValueError(
            f"run {text!r} is not of the form 'TASK-N' (e.g. 'sleep-1', 'rest-2') or 'task-TASK_run-N'"
        )
    return match["task"], int(match["run"])


def normalise_subject(subject: str | int) -> str:
    """Subject label without ``sub-``, zero-padded to two digits when numeric."""
    text = str(subject).strip().removeprefix("sub-")
    return f"{int(text):02d}" if text.isdigit() else text


def list_runs(root: str | Path) -> list[RunPaths]:
    """All runs with an EEG header in a dataset folder, sorted.

    Parameters
    ----------
    root : path-like
        Dataset folder.

    Returns
    -------
    runs : list of RunPaths
    """
    root = Path(root)
    found = []
    pattern = re.compile(r"^sub-(?P<sub>[^_]+)_task-(?P<task>[^_]+)_run-(?P<run>\d+)_eeg\.vhdr$")
    for header in sorted(root.glob("sub-*/eeg/*_eeg.vhdr")):
        match = pattern.match(header.name)
        if match:
            found.append(RunPaths(root, match["sub"], match["task"], int(match["run"])))
    return sorted(found, key=lambda r: (r.subject, r.task, r.run))
