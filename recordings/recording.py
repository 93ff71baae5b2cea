"""One recording, whatever file it came from: signals, volume triggers, fMRI region means, hypnogram.

Every reader (:mod:`recordings.session` for the ds003768 layout, :mod:`recordings.edf`,
:mod:`recordings.brainvision`, :mod:`recordings.xdf`) returns a :class:`Recording`. All times
are seconds from the first EEG sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.channels import VOLTAGE_TYPES
from recordings.hypnogram import Hypnogram

if TYPE_CHECKING:
    import mne

    from recordings.regions import Parcellation

_BLOCK_SECONDS = 10.0

CHANNEL_TYPES: tuple[str, ...] = ("eeg", "eog", "ecg", "emg", "misc")
"""The channel types a recording's channels take."""
RAW_SCANNER_RATE = 2000.0
"""Hz: EEG with volume triggers sampled at least this fast is taken as raw in-scanner EEG (MR
amplifiers record at 5 kHz; an export already corrected is usually at a few hundred Hz)."""


def looks_in_scanner(sfreq: float, n_triggers: int, declared: bool | None = None) -> bool:
    """Whether a recording's EEG carries the scanner's artefacts (to be corrected).

    Parameters
    ----------
    sfreq : float
        EEG rate in Hz.
    n_triggers : int
        Volume triggers in the recording.
    declared : bool | None
        What the recording's sidecar says (``"InScanner"``), which wins; None when it says nothing.
    """
    if declared is not None:
        return declared
    return n_triggers >= 2 and sfreq >= RAW_SCANNER_RATE


@dataclass
class Recording:
    """One recorded run: signals, optional fMRI and an optional hypnogram.

    Attributes
    ----------
    subject, task, run : str, str, int
        Identity of the run (for a plain file: the file's stem, ``"sleep"`` and 1).
    raw : mne.io.BaseRaw
        The signals (read lazily from disk where the format allows).
    ch_types : tuple of str
        One of :data:`CHANNEL_TYPES` per channel.
    source_format : str
        ``"ds003768"``, ``"edf"``, ``"bdf"``, ``"brainvision"`` or ``"xdf"``.
    source : Path | None
        The file the signals were read from.
    volume_times : np.ndarray, shape (n_volumes,)
        Acquisition time of each fMRI volume (its trigger); empty without a scanner.
    tr : float | None
        Repetition time in seconds; None without a scanner.
    roi_means : np.ndarray, shape (n_volumes, n_regions)
        Mean BOLD signal of each region in each volume; ``n_regions`` is 0 without BOLD
        (volume triggers alone give no fMRI features).
    parcellation : Parcellation | None
        The regions behind ``roi_means`` when they come from a BOLD image.
    hypnogram : Hypnogram | None
        Scored stages on their own 30-s grid; its onsets count from ``origin``.
    origin : float
        Time 0 of the run's time base (and of the hypnogram): the first volume for
        ds003768, the hypnogram's start otherwise.
    dummy_scans : int
        Volume triggers before the first volume that have no volume in the BOLD file.
    unit_scale : np.ndarray | None
        Factor from ``raw.get_data()`` to the streamed unit per channel (volts to
        microvolts for voltage channels by default).
    region_labels : tuple of str
        Region names when there is no parcellation (an fMRI stream of an XDF file).
    in_scanner : bool
        The EEG was recorded in the scanner and still carries its gradient and pulse artefacts
        (:func:`looks_in_scanner`); the artefact correction then runs on it (``auto``).
    slices_per_volume : int | None
        Slices of one volume, when known (the BOLD sidecar's ``SliceTiming``).
    gradient_triggers : np.ndarray
        Every volume trigger (dummy scans included): where each gradient artefact starts. By
        default the volume times.
    """

    subject: str
    task: str
    run: int
    raw: mne.io.BaseRaw
    ch_types: tuple[str, ...]
    source_format: str = "ds003768"
    source: Path | None = None
    volume_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    tr: float | None = None
    roi_means: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    parcellation: Parcellation | None = None
    hypnogram: Hypnogram | None = None
    origin: float = 0.0
    dummy_scans: int = 0
    unit_scale: np.ndarray | None = None
    region_labels: tuple[str, ...] = ()
    in_scanner: bool = False
    slices_per_volume: int | None = None
    gradient_triggers: np.ndarray | None = None
    _block: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.ch_types) != len(self.raw.ch_names):
            raise ValueError(f"{len(self.raw.ch_names)} channels but {len(self.ch_types)} channel types")
        if self.unit_scale is None:
            self.unit_scale = np.array([1e6 if t in VOLTAGE_TYPES else 1.0 for t in self.ch_types])
        self.volume_times = np.asarray(self.volume_times, dtype=float)
        if self.gradient_triggers is None:
            self.gradient_triggers = self.volume_times
        self.gradient_triggers = np.asarray(self.gradient_triggers, dtype=float)
        if self.roi_means.shape[0] != self.volume_times.size and self.roi_means.size:
            raise ValueError(
                f"{self.roi_means.shape[0]} region-mean rows for {self.volume_times.size} volumes"
            )
        if not self.roi_means.size:
            self.roi_means = np.empty((self.volume_times.size, 0), dtype=np.float32)

    @property
    def label(self) -> str:
        """BIDS-style identity, e.g. ``sub-01_task-sleep_run-1``."""
        return f"sub-{self.subject}_task-{self.task}_run-{self.run}"

    @property
    def sfreq(self) -> float:
        """EEG sampling rate in Hz."""
        return float(self.raw.info["sfreq"])

    @property
    def ch_names(self) -> list[str]:
        """Channel names."""
        return list(self.raw.ch_names)

    @property
    def n_times(self) -> int:
        """Number of samples."""
        return int(self.raw.n_times)

    @property
    def duration(self) -> float:
        """Length of the recording in seconds."""
        return self.n_times / self.sfreq

    @property
    def n_volumes(self) -> int:
        """Number of fMRI volume triggers."""
        return int(self.volume_times.size)

    @property
    def region_names(self) -> tuple[str, ...]:
        """Names of the columns of ``roi_means`` (empty without BOLD)."""
        if self.parcellation is not None:
            return tuple(self.parcellation.names)
        return self.region_labels

    @property
    def has_fmri(self) -> bool:
        """Whether the recording has fMRI region means (BOLD), not just volume triggers."""
        return self.roi_means.shape[1] > 0 and self.n_volumes > 0 and self.tr is not None

    @property
    def scoring(self) -> Hypnogram | None:
        """The hypnogram (the name earlier code used for ds003768's scoring)."""
        return self.hypnogram

    @property
    def stage_onsets(self) -> np.ndarray:
        """Start of each scored epoch in seconds from the first EEG sample."""
        if self.hypnogram is None:
            return np.empty(0)
        return self.origin + np.asarray(self.hypnogram.onsets, dtype=float)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stage of each scored epoch (empty without a hypnogram)."""
        return () if self.hypnogram is None else tuple(self.hypnogram.stages)

    @property
    def channel_units(self) -> tuple[str, ...]:
        """Unit of each channel as streamed (``microvolts`` or ``none``)."""
        return tuple("microvolts" if t in VOLTAGE_TYPES else "none" for t in self.ch_types)

    def eeg_samples(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` as float32, shape (n, n_channels), voltage channels in microvolts.

        Reads go through a cached block of about 10 s, so sequential reads of small chunks
        stay cheap even at 5000 Hz.
        """
        start, stop = max(0, start), min(stop, self.n_times)
        out = np.empty((max(0, stop - start), len(self.ch_types)), dtype=np.float32)
        block_len = max(1, int(_BLOCK_SECONDS * self.sfreq))
        scale = np.asarray(self.unit_scale, dtype=float)
        position = start
        while position < stop:
            block_start = (position // block_len) * block_len
            if self._block is None or self._block[0] != block_start:
                data = self.raw.get_data(start=block_start, stop=min(block_start + block_len, self.n_times))
                self._block = (block_start, (data * scale[:, None]).T.astype(np.float32))
            block = self._block[1]
            take = min(stop, block_start + block.shape[0]) - position
            out[position - start : position - start + take] = block[
                position - block_start : position - block_start + take
            ]
            position += take
        return out


_ENTITY = re.compile(r"(?:^|_)(?P<key>sub|task|run)-(?P<value>[A-Za-z0-9]+)")
_STEM_SUFFIXES = ("-PSG", "_PSG", "_eeg", "-eeg", "_EEG")


def identity_from_path(
    path: Path, subject: str | None = None, task: str | None = None, run: int | None = None
) -> tuple[str, str, int]:
    """Subject, task and run of a plain recording file.

    BIDS entities in the name (``sub-01_task-sleep_run-2_eeg.vhdr``) are used when present;
    otherwise the subject is the file's stem without a ``-PSG``/``_eeg`` suffix, the task
    ``"sleep"`` and the run 1. Given values override both.
    """
    entities = {m["key"]: m["value"] for m in _ENTITY.finditer(path.stem)}
    stem = path.stem
    for suffix in _STEM_SUFFIXES:
        stem = stem.removesuffix(suffix)
    found_run = entities.get("run")
    return (
        str(subject) if subject is not None else entities.get("sub", stem),
        task if task is not None else entities.get("task", "sleep"),
        run if run is not None else (int(found_run) if found_run else 1),
    )
