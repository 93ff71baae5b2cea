"""Extraction of many recordings into a feature dataset, one task per recording, on Dask or in-process.

Each recording is one task (:func:`extract_job`): read it, compute the features of its windows (the
code path of :func:`pipeline.offline.extract_session`, the same as live acquisition), add YASA's
stages, and write ``<recording>.parquet`` atomically into the dataset folder
(:mod:`pipeline.feature_dataset`). A task never raises for a bad recording: it returns a
:class:`JobResult` saying what went wrong, so one corrupt file does not stop a batch.

:func:`extract_into` skips the recordings already extracted with the same settings from the same
files, runs the others on a ``distributed.Client`` (any cluster: local, ``dask scheduler`` /
``dask worker``, Kubernetes, an HPC queue through dask-jobqueue) or, without one, in this process,
and returns one result per recording. A worker lost mid-task has its task run again elsewhere
(Dask's ``allowed-failures``); since a file appears only once complete, nothing is lost or written
twice. Workers must see the dataset folder and the recordings at the same paths (a shared file
system on a cluster).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.config import FeatureConfig
from pipeline.feature_dataset import (
    fingerprint,
    input_signature,
    is_up_to_date,
    read_metadata,
    recording_file,
    remove_partials,
    write_recording,
)
from pipeline.offline import RecordingLoader, extract_session, with_yasa_stages
from pipeline.table_contract import table_contract
from recordings.bids import RunPaths
from stream.config import ArtefactConfig, WindowConfig

if TYPE_CHECKING:
    from distributed import Client

EXTRACTED, SKIPPED, FAILED = "extracted", "skipped", "failed"


@dataclass(frozen=True)
class RecordingJob:
    """One recording to extract.

    Attributes
    ----------
    name : str
        Unique within the dataset and safe as a file name: the recording's table is ``name.parquet``.
    load : callable
        Reads the recording (in the worker).
    inputs : tuple of Path
        The files it is read from; their sizes and modification times decide whether it is up to date.
    runs : tuple of RunPaths
        Its ds003768 run (whose sidecars describe the data), if it is one.
    synthetic : bool | None
        Whether it is surrogate data, when known without the ds003768 sidecars.
    """

    name: str
    load: RecordingLoader
    inputs: tuple[Path, ...]
    runs: tuple[RunPaths, ...] = ()
    synthetic: bool | None = None


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything that shapes a recording's rows, and where the data came from.

    Attributes
    ----------
    features, window, artefacts : FeatureConfig, WindowConfig, ArtefactConfig
        The ``[features]``, ``[window]`` and ``[artefacts]`` settings.
    yasa : bool
        Add YASA's stage of each scored epoch (column ``yasa_stage``).
    source : str
        The session argument as typed (recorded in the contract, without this machine's paths).
    reading : dict
        Options of the readers (``dummy_scans``, ``eeg_unit``, ``hypnogram``).
    """

    features: FeatureConfig
    window: WindowConfig
    artefacts: ArtefactConfig
    yasa: bool
    source: str
    reading: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings, with their ``fingerprint`` (the source is not part of it)."""
        shaping = {
            "features": self.features.to_dict(),
            "window": dataclasses.asdict(self.window),
            "artefacts": dataclasses.asdict(self.artefacts),
            "yasa": self.yasa,
            "reading": self.reading,
        }
        shaping = json.loads(json.dumps(shaping, default=str))
        return {**shaping, "fingerprint": fingerprint(shaping)}

    @property
    def fingerprint(self) -> str:
        """Hash of the settings that shape the rows."""
        return str(self.as_dict()["fingerprint"])


@dataclass(frozen=True)
class JobResult:
    """What became of one recording.

    Attributes
    ----------
    name : str
        The recording (:attr:`RecordingJob.name`).
    status : str
        ``"extracted"``, ``"skipped"`` (already up to date) or ``"failed"``.
    windows, scored : int
        Windows written, and those with a scored stage.
    seconds : float
        Wall time of the task.
    message : str
        The error of a failed recording, or notes (e.g. no scoring, YASA could not stage it).
    """

    name: str
    status: str
    windows: int = 0
    scored: int = 0
    seconds: float = 0.0
    message: str = ""


def run_inputs(run: RunPaths) -> tuple[Path, ...]:
    """The files of a ds003768 run: its EEG, BOLD and sidecars, and its subject's scoring."""
    subject = run.root / f"sub-{run.subject}"
    return (*sorted(subject.rglob(f"{run.stem}_*")), run.scoring)


def recording_inputs(path: Path) -> tuple[Path, ...]:
    """A recording file, the files sharing its name (data, markers, sidecar) and its possible hypnograms."""
    from recordings.companions import hypnogram_candidates

    return (path, *sorted(path.parent.glob(f"{path.stem}.*")), *hypnogram_candidates(path))


def recording_name(path: Path, root: Path) -> str:
    """A dataset name for a recording file found under ``root``: its relative path, ``/`` as ``__``."""
    relative = path.relative_to(root) if root.is_dir() and path.is_relative_to(root) else Path(path.name)
    return "__".join(relative.with_suffix("").parts)


def _scored(table: Any) -> int:
    if "stage" not in table:
        return 0
    stages = table["stage"]
    return int((stages.notna() & (stages != "unscored")).sum())


def extract_job(job: RecordingJob, settings: ExtractionSettings, folder: str | Path) -> JobResult:
    """Extract one recording into ``folder`` (a Dask task, or called in-process).

    Returns
    -------
    JobResult
        ``failed`` with the error when the recording cannot be read or extracted; ``skipped`` when
        the file is already up to date (a task run again after its worker was lost after writing).
    """
    start = time.perf_counter()
    folder = Path(folder)
    target = recording_file(folder, job.name)
    extraction = settings.as_dict()
    inputs = input_signature(list(job.inputs))
    if is_up_to_date(target, extraction["fingerprint"], inputs):
        return _already_there(job.name, target)
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            recording = job.load()
            table = extract_session(recording, settings.features, settings.window, settings.artefacts)
            if settings.yasa:
                table, note = with_yasa_stages(table, recording)
                if note:
                    notes.append(note.removeprefix(f"{recording.label}: "))
        if recording.hypnogram is None:
            notes.append("no scoring: windows have no stage")
        notes += sorted({str(w.message) for w in caught})
        contract = table_contract(
            table, list(job.runs), settings.features, settings.window, settings.source,
            synthetic=job.synthetic,
        )  # fmt: skip
        counts = {"windows": len(table), "scored": _scored(table)}
        metadata = {"extraction": extraction, "inputs": inputs, "contract": contract, "rows": counts}
        write_recording(target, table, metadata)
    except Exception as err:  # one bad recording must not stop the batch
        reason = str(err) or type(err).__name__
        return JobResult(job.name, FAILED, seconds=time.perf_counter() - start, message=reason)
    elapsed = time.perf_counter() - start
    return JobResult(job.name, EXTRACTED, counts["windows"], counts["scored"], elapsed, "; ".join(notes))


def _already_there(name: str, path: Path) -> JobResult:
    rows = (read_metadata(path) or {}).get("rows", {})
    return JobResult(
        name, SKIPPED, int(rows.get("windows", 0)), int(rows.get("scored", 0)),
        message="already extracted with these settings",
    )  # fmt: skip


def pending_jobs(
    jobs: Sequence[RecordingJob], folder: str | Path, settings: ExtractionSettings
) -> list[RecordingJob]:
    """The jobs whose file in ``folder`` is missing or was extracted otherwise (settings or inputs)."""
    extraction_fingerprint = settings.fingerprint
    return [
        job
        for job in jobs
        if not is_up_to_date(
            recording_file(Path(folder), job.name), extraction_fingerprint, input_signature(list(job.inputs))
        )
    ]


def extract_into(
    jobs: Sequence[RecordingJob],
    folder: str | Path,
    settings: ExtractionSettings,
    client: Client | None = None,
    progress: bool = True,
) -> list[JobResult]:
    """Extract every recording not yet up to date into ``folder``; one result per job, in job order.

    Parameters
    ----------
    jobs : sequence of RecordingJob
        The recordings (unique names).
    folder : path-like
        The dataset folder (created if missing).
    settings : ExtractionSettings
        The extraction's settings.
    client : distributed.Client | None
        Run the tasks on this cluster; in this process, one after the other, without one.
    progress : bool
        Show a progress bar (recordings done out of those to extract).

    Raises
    ------
    ValueError
        If two jobs have the same name.
    """
    from tqdm import tqdm

    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"recordings with the same name {repeated}: their tables would overwrite each other")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_partials(folder)
    pending = pending_jobs(jobs, folder, settings)
    to_extract = {job.name for job in pending}
    results = {
        name: _already_there(name, recording_file(folder, name)) for name in names if name not in to_extract
    }
    bar = tqdm(total=len(pending), desc="extracting", unit="recording", disable=not progress or not pending)
    try:
        if client is None:
            for job in pending:
                results[job.name] = extract_job(job, settings, folder)
                bar.update()
        else:
            results.update(_on_cluster(client, pending, settings, folder, bar))
    finally:
        bar.close()
        remove_partials(folder)
    return [results[name] for name in names]


def _on_cluster(
    client: Client, jobs: list[RecordingJob], settings: ExtractionSettings, folder: Path, bar: Any
) -> dict[str, JobResult]:
    from distributed import as_completed

    batch = time.time_ns()  # task keys unique to this batch
    futures = {
        client.submit(extract_job, job, settings, str(folder), key=f"extract-{job.name}-{batch}"): job
        for job in jobs
    }
    results = {}
    for future in as_completed(futures):
        job = futures[future]
        try:
            result = future.result()
        except Exception as err:  # e.g. KilledWorker: the task's workers kept dying
            result = JobResult(job.name, FAILED, message=f"{type(err).__name__}: {err}")
        if result.status == SKIPPED:
            # Run again after its worker was lost, and found its file complete: written in this batch.
            result = dataclasses.replace(result, status=EXTRACTED, message="written before a worker was lost")
        results[job.name] = result
        bar.update()
    return results


def summary_lines(results: Sequence[JobResult]) -> list[str]:
    """A plain-text table of the results, then the counts per status."""
    width = max([len("recording"), *(len(r.name) for r in results)])
    lines = [f"{'recording':<{width}}  {'status':<9} {'windows':>7} {'scored':>6} {'seconds':>7}  note"]
    for r in results:
        seconds = f"{r.seconds:7.1f}" if r.status != SKIPPED else f"{'-':>7}"
        lines.append(f"{r.name:<{width}}  {r.status:<9} {r.windows:>7} {r.scored:>6} {seconds}  {r.message}")
    counts = {status: sum(r.status == status for r in results) for status in (EXTRACTED, SKIPPED, FAILED)}
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return lines


def write_summary(results: Sequence[JobResult], path: str | Path) -> Path:
    """The results as a tab-separated file (one row per recording)."""
    import pandas as pd

    path = Path(path)
    pd.DataFrame([dataclasses.asdict(r) for r in results]).to_csv(path, sep="\t", index=False)
    return path
