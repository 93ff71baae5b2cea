"""Offline feature tables: whole sessions through the very same windower and extractor.

A recorded session is fed to :class:`stream.windower.MultiRateWindower` in the
order a live acquisition would receive it (EEG in 1 s chunks; each volume's
trigger and fMRI sample when the EEG reaches its acquisition time; each truth
marker at its epoch start), and every window goes through
:class:`features.extractor.FeatureExtractor`. Live and offline tables are
therefore computed by one code path (asserted by the tests).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from core.windows import Window
from features.config import FeatureConfig
from features.extractor import FeatureExtractor, FeatureVector
from recordings.bids import RunPaths, list_runs
from recordings.session import Session, read_session
from stream.config import WindowConfig
from stream.windower import MultiRateWindower

CHUNK_SECONDS = 1.0


def session_windows(session: Session, window_config: WindowConfig | None = None) -> Iterator[Window]:
    """Windows of a recorded session, as a live acquisition would cut them.

    Times are seconds from the first EEG sample of the recording. The session's volume
    times are its volumes' own triggers (dummy scans already left out), so each volume is
    stamped at its trigger: an export latency of 0, no dummy scan.
    """
    config = dataclasses.replace(window_config or WindowConfig(), expected_latency=0.0, dummy_scans=0)
    windower = MultiRateWindower(
        config,
        session.sfreq,
        session.ch_names,
        session.ch_types,
        session.parcellation.names,
        session.tr,
        use_triggers=True,
        use_truth=session.scoring is not None,
    )
    sfreq = session.sfreq
    chunk = max(1, int(CHUNK_SECONDS * sfreq))
    volume_times = session.volume_times
    onsets = session.stage_onsets
    stages = list(session.scoring.stages) if session.scoring is not None else []
    sent_volumes = sent_stages = 0
    for start in range(0, session.n_times, chunk):
        stop = min(session.n_times, start + chunk)
        windower.add_eeg(np.arange(start, stop) / sfreq, session.eeg_samples(start, stop))
        now = (stop - 1) / sfreq
        due = int(np.searchsorted(volume_times, now, side="right"))
        if due > sent_volumes:
            windower.add_triggers(volume_times[sent_volumes:due])
            windower.add_fmri(
                np.arange(sent_volumes, due),
                volume_times[sent_volumes:due],
                session.roi_means[sent_volumes:due],
            )
            sent_volumes = due
        due = int(np.searchsorted(onsets, now, side="right"))
        if due > sent_stages:
            windower.add_truth(onsets[sent_stages:due], stages[sent_stages:due])
            sent_stages = due
        yield from windower.poll()
    yield from windower.flush()


def window_record(
    window: Window, features: FeatureVector, run_origin: float = 0.0
) -> dict[str, float | str | None]:
    """One table row: window bounds, the 11 features, quality flags and the scored stage.

    Besides the features: ``start``, ``end`` and ``epoch_start`` (onset of the scored epoch
    the stage comes from, NaN when none) in seconds from ``run_origin``; ``sfreq`` (nominal
    EEG rate, Hz) and ``tr`` (s); ``problems`` (texts joined by ``"; "``) and
    ``problem_codes`` (the codes joined by ``";"``), window problems first.

    Parameters
    ----------
    window : Window
        The window.
    features : FeatureVector
        Its features.
    run_origin : float
        Time of the run's first volume on the window's clock; bounds are
        given in seconds from it (the scoring's time base).
    """
    quality = window.quality
    problems = quality.problems + features.problems
    record: dict[str, float | str | None] = {
        "window": window.index,
        "start": round(window.start - run_origin, 6),
        "end": round(window.end - run_origin, 6),
        "epoch_start": math.nan if window.epoch_start is None else round(window.epoch_start - run_origin, 6),
        "sfreq": window.sfreq,
        "tr": window.tr,
    }
    record.update(features.as_dict())
    record.update(
        {
            "usable": bool(quality.usable and features.complete),
            "eeg_coverage": quality.eeg_coverage,
            "eeg_gaps": quality.gaps,
            "bad_channels": ";".join(quality.bad_channels),
            "fmri_volumes": quality.fmri_volumes,
            "fmri_staleness": quality.fmri_staleness,
            "problems": "; ".join(p.text for p in problems),
            "problem_codes": ";".join(p.code.value for p in problems),
            "stage": window.stage,
        }
    )
    return record


def extract_session(
    session: Session,
    feature_config: FeatureConfig | None = None,
    window_config: WindowConfig | None = None,
) -> pd.DataFrame:
    """Feature table of one session: one row per window.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``subject, task, run, window, start, end, epoch_start`` (seconds from
        the run's first volume), ``sfreq``, ``tr``, the 11 features, quality flags
        (``problems``, ``problem_codes``) and ``stage`` (see :func:`window_record`).
    """
    extractor = FeatureExtractor(feature_config)
    origin = float(session.volume_times[0])
    rows = [window_record(w, extractor.compute(w), origin) for w in session_windows(session, window_config)]
    table = pd.DataFrame(rows)
    table.insert(0, "run", session.run)
    table.insert(0, "task", session.task)
    table.insert(0, "subject", session.subject)
    return table


def extract_dataset(
    root: str | Path,
    runs: list[RunPaths] | None = None,
    feature_config: FeatureConfig | None = None,
    window_config: WindowConfig | None = None,
    progress: bool = True,
    dummy_scans: int | None = None,
) -> pd.DataFrame:
    """Feature table of many runs of a ds003768-style dataset, with a progress bar.

    Parameters
    ----------
    root : path-like
        Dataset folder.
    runs : list of RunPaths | None
        Runs to extract; every run with EEG by default.
    dummy_scans : int | None
        Volume triggers before each run's first volume (see :func:`recordings.session.read_session`).
    """
    from tqdm import tqdm

    runs = list_runs(root) if runs is None else runs
    if not runs:
        raise FileNotFoundError(f"{root}: no sub-*/eeg/*_eeg.vhdr run found")
    tables = []
    for paths in tqdm(runs, desc="extracting", unit="run", disable=not progress):
        session = read_session(
            paths.root, paths.subject, f"{paths.task}-{paths.run}", dummy_scans=dummy_scans
        )
        tables.append(extract_session(session, feature_config, window_config))
    return pd.concat(tables, ignore_index=True)


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a feature table as CSV or Parquet, by the file's extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        raise ValueError(f"{path}: the output must end in .csv or .parquet")
    return path
