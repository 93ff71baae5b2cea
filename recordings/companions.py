"""Hypnograms beside a recording: found by naming convention, read, and placed on the EEG's time base."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from recordings.errors import DatasetFormatError
from recordings.hypnogram import Hypnogram, read_hypnogram

_SLEEP_EDF_PSG = "-PSG"
_SLEEP_EDF_PREFIX = 6  # SC4001E0-PSG.edf pairs with SC4001EC-Hypnogram.edf
_DIRECT_NAMES = 5


def hypnogram_candidates(recording: Path) -> list[Path]:
    """The file names a recording's hypnogram may have, in the order they are tried.

    ``<stem>-Hypnogram.edf``, ``<stem>.hypno.txt``, ``<stem>_hypnogram.txt``/``.csv``/``.tsv``;
    then, for a Sleep-EDF ``XXXXXXxx-PSG.edf``, any ``XXXXXX*-Hypnogram.edf`` (same first six
    characters).
    """
    folder, stem = recording.parent, recording.stem
    names = [f"{stem}-Hypnogram.edf", f"{stem}.hypno.txt"]
    names += [f"{stem}_hypnogram.{ext}" for ext in ("txt", "csv", "tsv")]
    found = [folder / name for name in names]
    if stem.endswith(_SLEEP_EDF_PSG) and len(stem) > _SLEEP_EDF_PREFIX:
        found += sorted(folder.glob(f"{stem[:_SLEEP_EDF_PREFIX]}*-Hypnogram.edf"))
    return found


def find_hypnogram(recording: str | Path) -> Path | None:
    """The hypnogram file beside ``recording`` by naming convention (see :func:`hypnogram_candidates`).

    Raises
    ------
    DatasetFormatError
        If several Sleep-EDF hypnograms match, naming them.
    """
    recording = Path(recording)
    candidates = hypnogram_candidates(recording)
    direct = [path for path in candidates[:_DIRECT_NAMES] if path.is_file()]
    if direct:
        return direct[0]
    sleep_edf = [path for path in candidates[_DIRECT_NAMES:] if path.is_file()]
    if len(sleep_edf) > 1:
        raise DatasetFormatError(
            recording,
            f"several hypnograms match: {', '.join(p.name for p in sleep_edf)}; name the right one",
        )
    return sleep_edf[0] if sleep_edf else None


def load_hypnogram(path: str | Path, task: str, run: int) -> Hypnogram:
    """Read a hypnogram file; from a ds003768 scoring TSV, the run ``(task, run)``."""
    try:
        return read_hypnogram(path, run=(task, run))
    except DatasetFormatError:
        raise
    except ValueError:  # not a ds003768 file: it holds one hypnogram
        return read_hypnogram(path)


def hypnogram_origin(
    hypnogram: Hypnogram, recording_start: datetime | None, duration: float, recording: str | Path
) -> float:
    """Seconds from the first EEG sample to the hypnogram's time 0.

    0 unless both files give their start time (EDF/EDF+ headers), then their difference.

    Raises
    ------
    DatasetFormatError
        If the hypnogram's epochs do not overlap the recording at all.
    """
    origin = 0.0
    if hypnogram.start_time is not None and recording_start is not None:
        origin = (hypnogram.start_time - recording_start).total_seconds()
    if hypnogram.n_epochs:
        first = origin + float(hypnogram.onsets[0])
        last = origin + float(hypnogram.onsets[-1]) + hypnogram.epoch_seconds
        if last <= 0 or first >= duration:
            raise DatasetFormatError(
                recording,
                f"the hypnogram {hypnogram.source} covers {first:g} to {last:g} s of the recording, "
                f"which lasts {duration:g} s: no epoch overlaps it (is it the right hypnogram?)",
            )
    return origin
