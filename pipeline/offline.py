"""Offline feature tables: whole sessions through the very same windower and extractor.

A recording is fed to :class:`stream.windower.MultiRateWindower` in the
order a live acquisition would receive it (EEG in 1 s chunks; each volume's
trigger and fMRI sample when the EEG reaches its acquisition time; each truth
marker at its epoch start), and every window goes through
:class:`features.extractor.FeatureExtractor`. Live and offline tables are
therefore computed by one code path (asserted by the tests).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.windows import Window
from features.config import FeatureConfig
from features.extractor import FeatureExtractor, FeatureVector
from recordings.bids import RunPaths, list_runs
from recordings.recording import Recording
from recordings.session import read_session
from stream.artefact_correction import ArtefactCorrection
from stream.config import ArtefactConfig, WindowConfig
from stream.windower import MultiRateWindower

CHUNK_SECONDS = 1.0


def session_windows(
    session: Recording, window_config: WindowConfig | None = None, artefacts: ArtefactConfig | None = None
) -> Iterator[Window]:
    """Windows of a recording, as a live acquisition would cut them.

    Times are seconds from the first EEG sample of the recording. The recording's volume
    times are its volumes' own triggers (dummy scans already left out), so each volume is
    stamped at its trigger: an export latency of 0, no dummy scan. A recording without
    BOLD is cut as an EEG-only session (no fMRI, no triggers; the TR argument is unused).
    EEG recorded in the scanner (``Recording.in_scanner``, with ``artefacts.correction`` auto, or
    ``on``) goes through the artefact correction, its triggers (dummy scans included) fed just
    before the EEG they start in, as a live trigger stream delivers them.
    """
    config = dataclasses.replace(window_config or WindowConfig(), expected_latency=0.0, dummy_scans=0)
    artefacts = artefacts or ArtefactConfig()
    correction = (
        ArtefactCorrection(
            artefacts,
            session.sfreq,
            session.ch_names,
            session.ch_types,
            tr=session.tr,
            slices_per_volume=session.slices_per_volume,
            feature_rate=config.feature_rate_hz,
        )
        if artefacts.enabled(session.in_scanner)
        else None
    )
    gradient_triggers = session.gradient_triggers if correction is not None else None
    sent_gradient = 0
    has_fmri = session.has_fmri
    windower = MultiRateWindower(
        config,
        session.sfreq,
        session.ch_names,
        session.ch_types,
        session.region_names,
        session.tr if has_fmri and session.tr is not None else config.hop,
        use_triggers=has_fmri,
        use_truth=session.hypnogram is not None,
        use_fmri=has_fmri,
        correction=correction,
    )
    sfreq = session.sfreq
    chunk = max(1, int(CHUNK_SECONDS * sfreq))
    volume_times = session.volume_times if has_fmri else np.empty(0)
    onsets = session.stage_onsets
    stages = list(session.stages)
    sent_volumes = sent_stages = 0
    for start in range(0, session.n_times, chunk):
        stop = min(session.n_times, start + chunk)
        if gradient_triggers is not None:
            due = int(np.searchsorted(gradient_triggers, (stop - 1) / sfreq, side="right"))
            windower.add_gradient_triggers(gradient_triggers[sent_gradient:due])
            sent_gradient = due
        windower.add_eeg(np.arange(start, stop) / sfreq, session.eeg_samples(start, stop))
        now = (stop - 1) / sfreq
        due = int(np.searchsorted(volume_times, now, side="right"))
        if due > sent_volumes:
            windower.add_triggers(volume_times[sent_volumes:due], gradient=False)
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
    session: Recording,
    feature_config: FeatureConfig | None = None,
    window_config: WindowConfig | None = None,
    artefacts: ArtefactConfig | None = None,
) -> pd.DataFrame:
    """Feature table of one recording: one row per window (in-scanner EEG corrected).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``subject, task, run, window, start, end, epoch_start`` (seconds from
        the run's origin: its first volume, or its hypnogram's start), ``sfreq``, ``tr``
        (NaN without BOLD), the 11 features (the fMRI ones NaN without BOLD), quality
        flags (``problems``, ``problem_codes``) and ``stage`` (see :func:`window_record`).
    """
    extractor = FeatureExtractor(feature_config)
    origin = float(session.origin)
    rows = [
        window_record(w, extractor.compute(w), origin)
        for w in session_windows(session, window_config, artefacts)
    ]
    table = pd.DataFrame(rows)
    if not session.has_fmri and not table.empty:
        table["tr"] = math.nan
    table.insert(0, "run", session.run)
    table.insert(0, "task", session.task)
    table.insert(0, "subject", session.subject)
    return table


RecordingLoader = Callable[[], Recording]
"""Reads one recording when called (so that a batch holds one recording in memory at a time)."""


def with_yasa_stages(table: pd.DataFrame, recording: Recording) -> tuple[pd.DataFrame, str | None]:
    """The table with YASA's stage of each window's epoch (column ``yasa_stage``), and a note.

    YASA, the field's pretrained stager, stages the recording's scored epochs from its EEG (see
    :mod:`pipeline.yasa_baseline`). The table is returned unchanged, with a note saying why,
    when the recording has no hypnogram or no EEG channel.

    Raises
    ------
    pipeline.yasa_baseline.YasaUnavailableError
        When YASA is not installed.
    """
    from pipeline.yasa_baseline import add_yasa_column, stage_recording

    if recording.hypnogram is None or table.empty:
        return table, None
    try:
        staging = stage_recording(recording)
    except ValueError as err:  # no EEG channel
        return table, f"{recording.label}: not staged by YASA ({err})"
    note = f"{recording.label}: {'; '.join(staging.notes)}" if staging.notes else None
    return add_yasa_column(table, staging, offset=float(recording.origin)), note


def extract_recordings(
    loaders: Sequence[RecordingLoader],
    feature_config: FeatureConfig | None = None,
    window_config: WindowConfig | None = None,
    progress: bool = True,
    yasa: bool = True,
    artefacts: ArtefactConfig | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Feature table of many recordings (any format), one after the other, with a progress bar.

    Parameters
    ----------
    loaders : sequence of callables
        Each reads one recording (:func:`recordings.open.read_recording`, or a ds003768 run).
    feature_config, window_config : FeatureConfig | None, WindowConfig | None
        Settings of the extraction.
    progress : bool
        Show a progress bar.
    yasa : bool
        Add YASA's stage of each window's epoch (column ``yasa_stage``) where YASA can stage
        the recording, so that evaluations show the field's baseline on the same epochs.
    artefacts : ArtefactConfig | None
        In-scanner artefact correction (default: ``auto``, for recordings made in the scanner).

    Returns
    -------
    table : pandas.DataFrame
        The rows of every recording (see :func:`extract_session`).
    notes : list of str
        What could not be done and why (e.g. YASA not installed or a recording too short for it).
    """
    from tqdm import tqdm

    from pipeline.yasa_baseline import YasaUnavailableError

    tables: list[pd.DataFrame] = []
    notes: list[str] = []
    for load in tqdm(loaders, desc="extracting", unit="recording", disable=not progress):
        recording = load()
        table = extract_session(recording, feature_config, window_config, artefacts)
        if yasa:
            try:
                table, note = with_yasa_stages(table, recording)
            except YasaUnavailableError as err:
                table, note, yasa = table, str(err), False
            if note is not None:
                notes.append(note)
        tables.append(table)
    if not tables:
        raise ValueError("no recording to extract")
    return pd.concat(tables, ignore_index=True), notes


def run_loaders(runs: list[RunPaths], dummy_scans: int | None = None) -> list[RecordingLoader]:
    """One loader per run of a ds003768-style dataset (see :func:`recordings.session.read_session`)."""
    return [
        functools.partial(read_session, paths.root, paths.subject, f"{paths.task}-{paths.run}",
                          dummy_scans=dummy_scans)
        for paths in runs
    ]  # fmt: skip


def extract_dataset(
    root: str | Path,
    runs: list[RunPaths] | None = None,
    feature_config: FeatureConfig | None = None,
    window_config: WindowConfig | None = None,
    progress: bool = True,
    dummy_scans: int | None = None,
    yasa: bool = False,
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
    yasa : bool
        Add YASA's stages (see :func:`extract_recordings`).
    """
    runs = list_runs(root) if runs is None else runs
    if not runs:
        raise FileNotFoundError(f"{root}: no sub-*/eeg/*_eeg.vhdr run found")
    table, _ = extract_recordings(
        run_loaders(runs, dummy_scans), feature_config, window_config, progress=progress, yasa=yasa
    )
    return table


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
