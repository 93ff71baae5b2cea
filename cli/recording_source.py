"""The recordings a command works on: a ds003768-style dataset, a recording file, or a folder of them.

``extract``, ``train``, ``evaluate`` and ``replay`` take the same ``--session PATH`` (``extract``:
its first argument): ``surrogate`` (the bundled surrogate subject), a ds003768-style dataset folder
(``sub-XX/eeg/*_eeg.vhdr`` with BOLD), one recording file (EDF/EDF+/BDF, BrainVision ``.vhdr``,
LabRecorder ``.xdf``), or a folder of recording files (searched recursively).
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.batch_extraction import JobResult, RecordingJob
    from pipeline.offline import RecordingLoader
    from pipeline.settings import Settings
    from recordings.bids import RunPaths

SESSION_HELP = (
    "'surrogate', a ds003768-style dataset folder, a recording file (.edf, .bdf, .vhdr, .xdf) "
    "or a folder of recording files"
)


def add_session_option(parser: argparse.ArgumentParser, settings: str, written_into: str) -> None:
    """Add ``--session PATH`` (recordings to extract first) to ``train`` or ``evaluate``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    settings : str
        Whose feature settings the extraction uses, for the help text (e.g. "the bundle's").
    written_into : str
        The folder the extracted table is written into, for the help text.
    """
    parser.add_argument(
        "--session",
        default=None,
        metavar="PATH",
        help=f"extract the features of these recordings first ({SESSION_HELP}), with {settings} feature "
        f"settings, into {written_into}/features/ (a feature dataset: resumable, on Dask, see the "
        "batch options)",
    )
    from cli.cluster_options import add_cluster_options

    add_cluster_options(parser, folds=True)


def add_recording_options(parser: argparse.ArgumentParser, yasa: bool = True) -> None:
    """Add ``--hypnogram``, ``--eeg-unit`` (and ``--no-yasa``) to a command."""
    parser.add_argument(
        "--hypnogram",
        default=None,
        metavar="PATH",
        help="hypnogram of a single recording file: EDF+ annotations, a text/CSV file with one stage per "
        "30-s epoch (0 W, 1 N1, 2 N2, 3 N3, 4 REM) or a ds003768 TSV (default: a file beside the "
        "recording, e.g. NAME-Hypnogram.edf or NAME.hypno.txt)",
    )
    parser.add_argument(
        "--eeg-unit",
        choices=("V", "mV", "uV"),
        default=None,
        help="the true unit of the EEG numbers when the file's header states a wrong one",
    )
    if yasa:
        parser.add_argument(
            "--no-yasa",
            action="store_true",
            help="do not stage the recordings with YASA (the field's baseline in the reports)",
        )


@dataclass
class Sources:
    """Recordings resolved from a ``--session`` argument.

    Attributes
    ----------
    loaders : list of callables
        Each reads one recording when called.
    names : list of str
        One name per recording, for messages.
    runs : list of RunPaths
        The ds003768 runs (their sidecars describe the data); empty for recording files.
    synthetic : bool | None
        Whether the data are surrogate, when known without the ds003768 sidecars.
    jobs : list of RecordingJob
        The same recordings as tasks of a batch extraction into a feature dataset.
    """

    loaders: list[RecordingLoader]
    names: list[str]
    runs: list[RunPaths] = field(default_factory=list)
    synthetic: bool | None = None
    jobs: list[RecordingJob] = field(default_factory=list)


def resolve_sources(
    session: str,
    *,
    subject: str | None = None,
    run: str | None = None,
    hypnogram: str | None = None,
    eeg_unit: str | None = None,
    dummy_scans: int | None = None,
) -> Sources:
    """The recordings named by a ``--session`` argument, filtered by subject and run (datasets).

    Raises
    ------
    SystemExit
        With a message naming the problem (missing path, no recording, unusable filter).
    """
    from pipeline.batch_extraction import RecordingJob, recording_inputs, recording_name, run_inputs
    from pipeline.offline import run_loaders
    from recordings.bids import list_runs, normalise_subject, parse_run
    from recordings.errors import DatasetFormatError
    from recordings.open import RECORDING_SUFFIXES, find_recordings, read_recording
    from simulators.surrogate import BUNDLED_RUNS, bundled_surrogate

    if session == "surrogate":
        root = bundled_surrogate((run,) if run else BUNDLED_RUNS)
    else:
        root = Path(session)
        if not root.exists():
            raise SystemExit(f"error: {session} does not exist: expected {SESSION_HELP}")
    if root.is_dir() and list_runs(root):
        runs = list_runs(root)
        if subject is not None:
            runs = [r for r in runs if r.subject == normalise_subject(subject)]
        if run is not None:
            task, number = parse_run(run)
            runs = [r for r in runs if (r.task, r.run) == (task, number)]
        if not runs:
            raise SystemExit(f"error: no run in {root} matches subject={subject} run={run}")
        if hypnogram is not None:
            raise SystemExit("error: --hypnogram is for a single recording file; a dataset has its scoring")
        run_loads = run_loaders(runs, dummy_scans)
        jobs = [
            RecordingJob(r.stem, load, run_inputs(r), (r,)) for r, load in zip(runs, run_loads, strict=True)
        ]
        return Sources(run_loads, [r.stem for r in runs], runs, jobs=jobs)
    if subject is not None or run is not None:
        raise SystemExit("error: --subject and --run select runs of a ds003768-style dataset folder")
    if root.is_dir():
        try:
            paths = find_recordings(root)
        except DatasetFormatError as err:
            raise SystemExit(f"error: {err}") from None
        if not paths:
            raise SystemExit(
                f"error: {root}: no recording found (files ending in {', '.join(RECORDING_SUFFIXES)}, "
                "or a ds003768-style dataset)"
            )
        if hypnogram is not None:
            raise SystemExit(
                "error: --hypnogram is for a single recording file; in a folder each recording's "
                "hypnogram is found beside it (NAME-Hypnogram.edf, NAME.hypno.txt, ...)"
            )
    else:
        paths = [root]
    loaders: list[RecordingLoader] = [
        functools.partial(read_recording, path, hypnogram=hypnogram, eeg_unit=eeg_unit) for path in paths
    ]
    extra = (Path(hypnogram),) if hypnogram is not None else ()
    jobs = [
        RecordingJob(
            recording_name(p, root), load, (*recording_inputs(p), *extra), synthetic=_is_surrogate(p)
        )
        for p, load in zip(paths, loaders, strict=True)
    ]
    synthetic = all(_is_surrogate(p) for p in paths)
    return Sources(loaders, [str(p) for p in paths], synthetic=synthetic, jobs=jobs)


def _is_surrogate(path: Path) -> bool:
    """Whether a recording file's JSON sidecar (``NAME.json``) marks it as surrogate data."""
    from pipeline.table_contract import SURROGATE_MARK

    sidecar = path.with_suffix(".json")
    try:
        return SURROGATE_MARK in json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def extract_to(
    sources: Sources, output: Path, settings: Settings, source: str, yasa: bool = True
) -> pd.DataFrame:
    """Extract the recordings' feature table, write it with its contract, print notes.

    Raises
    ------
    SystemExit
        When a recording cannot be read (the message names the file and the problem).
    """
    from pipeline.offline import extract_recordings, write_table
    from pipeline.table_contract import table_contract, write_table_contract
    from recordings.errors import DatasetFormatError

    try:
        table, notes = extract_recordings(
            sources.loaders,
            feature_config=settings.features,
            window_config=settings.window,
            yasa=yasa,
            artefacts=settings.artefacts,
        )
    except DatasetFormatError as err:
        raise SystemExit(f"error: {err}") from None
    for note in notes:
        print(f"note: {note}", flush=True)
    write_table(table, output)
    contract = table_contract(
        table, sources.runs, settings.features, settings.window, source, synthetic=sources.synthetic
    )
    sidecar = write_table_contract(output, contract)
    print(
        f"wrote {len(table)} windows of {len(sources.loaders)} recording(s) to {output} "
        f"(feature contract: {sidecar})",
        flush=True,
    )
    return table


def extract_dataset_to(
    sources: Sources, folder: Path, settings: Settings, source: str, args: argparse.Namespace
) -> list[JobResult]:
    """Extract the recordings into a feature dataset folder (one Parquet file each), print a summary.

    Recordings already extracted with the same settings are skipped; the others run on the Dask
    cluster the options name (a local one by default; in this process with ``--workers 0`` or when
    a single recording is left and no scheduler is named). The summary table is printed and
    written to ``FOLDER/extraction-summary.tsv``.

    Raises
    ------
    SystemExit
        When the cluster cannot be started or reached.
    """
    from cli.cluster_options import cluster_for
    from pipeline.batch_extraction import (
        ExtractionSettings,
        extract_into,
        pending_jobs,
        summary_lines,
        write_summary,
    )
    from pipeline.yasa_baseline import YasaUnavailableError, import_yasa

    yasa = not args.no_yasa
    if yasa:
        try:
            import_yasa()
        except YasaUnavailableError as err:
            print(f"note: {err}", flush=True)
            yasa = False
    reading = {key: getattr(args, key, None) for key in ("dummy_scans", "eeg_unit", "hypnogram")}
    extraction = ExtractionSettings(
        settings.features, settings.window, settings.artefacts, yasa, source, reading
    )  # fmt: skip
    pending = len(pending_jobs(sources.jobs, folder, extraction))
    with cluster_for(args, tasks=pending) as client:
        results = extract_into(sources.jobs, folder, extraction, client=client)
    for line in summary_lines(results):
        print(line, flush=True)
    summary = write_summary(results, folder / "extraction-summary.tsv")
    print(f"feature dataset: {folder} ({summary.name}: this summary)", flush=True)
    return results


def table_argument(args: argparse.Namespace, extracted: Path, settings: Settings) -> str:
    """The feature table a ``train``/``evaluate`` run reads: ``FEATURES``, or ``--session`` extracted.

    With ``--session`` the recordings are extracted into the feature dataset folder ``extracted``
    first (:func:`extract_dataset_to`: recordings extracted before with the same settings are kept).

    Raises
    ------
    SystemExit
        When neither or both of a table and ``--session`` are given, or a recording fails.
    """
    if (args.features is None) == (args.session is None):
        raise SystemExit("error: give either a feature table or --session PATH (recordings), not both")
    if args.features is not None:
        for option in ("hypnogram", "eeg_unit"):
            if getattr(args, option) is not None:
                raise SystemExit(f"error: --{option.replace('_', '-')} applies to --session recordings only")
        return str(args.features)
    sources = resolve_sources(args.session, hypnogram=args.hypnogram, eeg_unit=args.eeg_unit)
    results = extract_dataset_to(sources, extracted, settings, args.session, args)
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(
            f"error: {len(failed)} recording(s) failed ({', '.join(failed)}; reasons above): fix or remove "
            "them and run again (the recordings extracted are kept and skipped)"
        )
    return str(extracted)


def settings_of_bundle(settings: Settings, contract: dict) -> Settings:
    """Settings whose features and window geometry are those a bundle's contract records.

    A bundle without a known contract leaves the settings as they are.
    """
    from features.config import FeatureConfig

    features = contract.get("features")
    window = contract.get("window")
    if not isinstance(features, dict) or not isinstance(window, dict):
        return settings
    import dataclasses

    settings = dataclasses.replace(settings, features=FeatureConfig.from_dict(features))
    return settings.replace("window", **window)
