"""Write surrogate sessions in the ds003768 layout, and the bundled surrogate subject.

Real parts: the stage sequence of a real subject's runs (the shipped
ds003768 scoring), the run lengths, TR 2.1 s, one R128 trigger per volume and
the 32-channel BrainCap MR montage. Synthetic parts: the EEG
(:mod:`simulators.surrogate_eeg`) and BOLD (:mod:`simulators.surrogate_bold`)
signals. The files are those of a real ds003768 run, so the reader and
everything downstream take the same path as for real data.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from core.stages import EPOCH_SECONDS
from recordings.bids import RunPaths, normalise_subject, parse_run
from recordings.montage import CHANNEL_TYPES, CHANNELS, REFERENCE, SAMPLE_INDEX_CHANNEL
from recordings.scoring import read_scoring
from simulators.night import synthesis_stages
from simulators.scanner_artefacts import ScannerArtefactSettings, contaminate, settings_record
from simulators.surrogate_bold import VOXEL_SIZE_MM, synthesize_bold
from simulators.surrogate_eeg import subject_traits, synthesize_eeg

GENERATOR_VERSION = 2
"""Version of the generated files: part of the cache folder's name, so a new version rebuilds cached
surrogates. Version 2: five stages, stage signatures YASA's stager recognises, FCz reference."""
SHIPPED_DATASET = Path(__file__).parent / "data" / "ds003768"
TR = 2.1
SCANNER_VERSION = 1  # of the in-scanner artefact simulation: part of the cache folder's name
SLICES = 35  # slices per volume, ascending, as in ds003768's sequence
LEAD_IN_SECONDS = 2.0
TAIL_SECONDS = 1.0
BUNDLED_SUBJECT = "27"
BUNDLED_RUNS = ("rest-1", "rest-2", "sleep-1", "sleep-2", "sleep-3")
DEMO_RUN = "sleep-2"
CLEAN_DERIVATIVE = Path("derivatives") / "surrogate-clean"
"""Where an in-scanner run's clean signals go, relative to the dataset folder (same layout below it)."""
_ARTEFACT_STREAM = 0x5CA7  # extra seed word: the artefacts' own random stream


def stage_index(stages: tuple[str, ...] | list[str]) -> np.ndarray:
    """Stage names to indices into ``("W", "N1", "N2", "N3", "R")`` for synthesis.

    An unscored epoch is synthesised like the closest scored epoch before it
    (after it at the start of a run); its label stays unscored.
    """
    return synthesis_stages(stages)


def write_surrogate_run(
    root: str | Path,
    subject: str,
    run: str,
    *,
    sfreq: float = 250.0,
    seed: int = 0,
    sample_index_channel: bool = False,
    scoring_source: str | Path | None = None,
    scanner: ScannerArtefactSettings | None = None,
) -> RunPaths:
    """Write one surrogate run (EEG, BOLD, sidecars) into a ds003768-style folder.

    Parameters
    ----------
    root : path-like
        Dataset folder; created if missing.
    subject : str
        Real ds003768 subject whose scoring gives the stage sequence.
    run : str
        Run of that subject, e.g. ``"sleep-2"``.
    sfreq : float
        EEG rate in Hz (250 by default; the real recordings are 5000).
    seed : int
        Seed of the synthesis; the same seed gives the same files.
    sample_index_channel : bool
        Add a ``SampleIndex`` channel holding the sample number (for tests that
        check every sample arrives in order).
    scoring_source : path-like | None
        Scoring TSV to take the stages from; the shipped ds003768 file of the
        subject by default.
    scanner : ScannerArtefactSettings | None
        Record the EEG inside the scanner: gradient and ballistocardiogram artefacts
        (:mod:`simulators.scanner_artefacts`, drawn from their own random stream, so the EEG and
        EOG under them are the same as without them) locked to the volumes and to a simulated ECG
        (which replaces the ECG channel's). The R128
        markers are the volume onsets as a recorder logs them; the sidecar says ``"InScanner":
        true`` and holds the settings under ``"ScannerArtefacts"``; the clean signals are
        written with the same channels and markers under :data:`CLEAN_DERIVATIVE`. Pass
        ``sfreq=5000`` (the real amplifier's rate) for a faithful artefact.

    Returns
    -------
    paths : RunPaths
        Where the run was written.
    """
    import nibabel as nib
    import pybv

    subject = normalise_subject(subject)
    task, run_number = parse_run(run)
    root = Path(root)
    paths = RunPaths(root, subject, task, run_number)
    source = (
        Path(scoring_source)
        if scoring_source
        else SHIPPED_DATASET / "sourcedata" / f"sub-{subject}-sleep-stage.tsv"
    )
    scoring = read_scoring(source)[(task, run_number)]
    _copy_scoring(source, paths.scoring)

    rng = run_rng(seed, subject, task, run_number, sfreq)
    epochs = stage_index(scoring.stages)
    run_seconds = scoring.n_epochs * EPOCH_SECONDS
    n_volumes = int(np.floor(run_seconds / TR + 1e-9))
    n_times = round((LEAD_IN_SECONDS + run_seconds + TAIL_SECONDS) * sfreq)
    run_time = np.arange(n_times) / sfreq - LEAD_IN_SECONDS
    epoch_of_sample = np.clip((run_time // EPOCH_SECONDS).astype(int), 0, scoring.n_epochs - 1)
    traits = subject_traits(int(subject) + 1000 * seed)
    clean_eeg: np.ndarray | None = None
    if scanner is None:
        eeg = synthesize_eeg(epochs[epoch_of_sample], sfreq, rng, traits) * 1e-6  # volts, as pybv expects
        trigger_samples = np.rint((LEAD_IN_SECONDS + np.arange(n_volumes) * TR) * sfreq).astype(int)
    else:
        contamination = contaminate(
            synthesize_eeg(epochs[epoch_of_sample], sfreq, rng, traits),
            CHANNEL_TYPES,
            sfreq,
            LEAD_IN_SECONDS,
            n_volumes,
            TR,
            artefact_rng(seed, subject, task, run_number, sfreq),
            scanner,
            ch_names=CHANNELS,
        )
        eeg, clean_eeg = contamination.data, contamination.clean
        eeg *= 1e-6  # volts, in place: a night at 5 kHz is large
        clean_eeg *= 1e-6
        trigger_samples = np.rint(contamination.trigger_times * sfreq).astype(int)
        del contamination

    epoch_of_volume = np.clip(
        (np.arange(n_volumes) * TR // EPOCH_SECONDS).astype(int), 0, scoring.n_epochs - 1
    )
    bold, _ = synthesize_bold(epochs[epoch_of_volume], TR, rng)

    names, types, units, resolution = (
        list(CHANNELS),
        list(CHANNEL_TYPES),
        ["µV"] * len(CHANNELS),
        [0.1] * len(CHANNELS),
    )
    if sample_index_channel:
        eeg = np.vstack([eeg, np.arange(n_times, dtype=float)[None]])
        if clean_eeg is not None:
            clean_eeg = np.vstack([clean_eeg, np.arange(n_times, dtype=float)[None]])
        names.append(SAMPLE_INDEX_CHANNEL)
        types.append("misc")
        units.append("n/a")
        resolution.append(1.0)

    with tempfile.TemporaryDirectory(dir=_ensure(root)) as folder:
        tmp = Path(folder)
        affine = np.diag([*VOXEL_SIZE_MM, 1.0])
        image = nib.Nifti1Image(bold, affine)
        image.header.set_zooms((*VOXEL_SIZE_MM, TR))
        image.header.set_xyzt_units("mm", "sec")
        nib.save(image, tmp / paths.bold.name)
        (tmp / paths.bold_sidecar.name).write_text(json.dumps(_bold_sidecar(task), indent=2))
        sidecar = _eeg_sidecar(task, sfreq, run_seconds, sample_index_channel)
        if scanner is not None:
            sidecar.update({"InScanner": True, "ScannerArtefacts": settings_record(scanner)})
        (tmp / paths.eeg_sidecar.name).write_text(json.dumps(sidecar, indent=2))
        (tmp / paths.channels_tsv.name).write_text(
            "name\ttype\tunits\n"
            + "".join(
                f"{n}\t{t.upper() if t != 'misc' else 'MISC'}\t{u}\n"
                for n, t, u in zip(names, types, units, strict=True)
            )
        )
        outputs = [(eeg, tmp)] if clean_eeg is None else [(eeg, tmp), (clean_eeg, _ensure(tmp / "clean"))]
        for data, folder_out in outputs:
            with warnings.catch_warnings():
                # The sample-index channel has no voltage unit, which pybv reports.
                warnings.filterwarnings("ignore", message="Encountered unsupported non-voltage units")
                pybv.write_brainvision(
                    data=data,
                    sfreq=sfreq,
                    ch_names=names,
                    ref_ch_names=REFERENCE,
                    fname_base=paths.eeg_header.name.removesuffix(".vhdr"),
                    folder_out=folder_out,
                    events=[
                        {"onset": int(s), "description": 128, "type": "Response"} for s in trigger_samples
                    ],
                    resolution=resolution,
                    unit=units,
                    fmt="binary_float32",
                    overwrite=True,
                )
        # Move into place with the header last: a run is complete once its .vhdr exists.
        moves: list[tuple[str | Path, Path]] = []
        if clean_eeg is not None:
            clean_header = root / CLEAN_DERIVATIVE / paths.eeg_header.relative_to(root)
            moves += [
                (Path("clean") / clean_header.with_suffix(suffix).name, clean_header.with_suffix(suffix))
                for suffix in (".eeg", ".vmrk", ".vhdr")
            ]
        moves += [
            (paths.bold.name, paths.bold),
            (paths.bold_sidecar.name, paths.bold_sidecar),
            (paths.eeg_sidecar.name, paths.eeg_sidecar),
            (paths.channels_tsv.name, paths.channels_tsv),
            (paths.eeg_header.with_suffix(".eeg").name, paths.eeg_header.with_suffix(".eeg")),
            (paths.eeg_header.with_suffix(".vmrk").name, paths.eeg_header.with_suffix(".vmrk")),
            (paths.eeg_header.name, paths.eeg_header),
        ]
        for name, target in moves:
            _ensure(target.parent)
            os.replace(tmp / name, target)
    _write_dataset_description(root, subject)
    return paths


def run_rng(seed: int, subject: str, task: str, run_number: int, sfreq: float) -> np.random.Generator:
    """The random generator of one run: a function of the seed and the run's identity only.

    The generator's version is deliberately not part of it (it names the cache folder instead), so
    a format change does not reshuffle every surrogate.
    """
    return np.random.default_rng(
        np.random.SeedSequence([seed, int(subject), hash_task(task), run_number, int(sfreq)])
    )


def artefact_rng(seed: int, subject: str, task: str, run_number: int, sfreq: float) -> np.random.Generator:
    """The random generator of one run's scanner artefacts, apart from :func:`run_rng`.

    The clean signals draw from :func:`run_rng` only, so they are the same with or without artefacts.
    """
    return np.random.default_rng(
        np.random.SeedSequence(
            [seed, int(subject), hash_task(task), run_number, int(sfreq), _ARTEFACT_STREAM]
        )
    )


def hash_task(task: str) -> int:
    """Stable small integer for a task name (Python's ``hash`` is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(task))


def default_data_dir() -> Path:
    """Where generated data is cached: ``$SLEEPSTREAM_DATA_DIR`` or ``~/.cache/sleepstream``."""
    configured = os.environ.get("SLEEPSTREAM_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sleepstream"


def bundled_surrogate(
    runs: tuple[str, ...] = BUNDLED_RUNS,
    *,
    sfreq: float = 250.0,
    data_dir: str | Path | None = None,
    scanner: ScannerArtefactSettings | None = None,
) -> Path:
    """Return the bundled surrogate dataset folder, generating missing runs first.

    The bundled subject follows the real scoring of ds003768 sub-27 (runs
    rest-1, rest-2, sleep-1, sleep-2 and sleep-3). Each run is generated once,
    in a few seconds, and cached.

    Parameters
    ----------
    runs : tuple of str
        Runs needed now; others are generated when first asked for.
    sfreq : float
        EEG rate in Hz.
    data_dir : path-like | None
        Cache folder; :func:`default_data_dir` by default.
    scanner : ScannerArtefactSettings | None
        Record "in the scanner": the EEG carries gradient and pulse artefacts (give a raw rate,
        e.g. 5000 Hz); the clean EEG is kept beside (see :func:`write_surrogate_run`).

    Returns
    -------
    root : Path
        Dataset folder to pass to :func:`recordings.session.read_session`.
    """
    base = Path(data_dir) if data_dir else default_data_dir()
    root = base / f"surrogate-v{GENERATOR_VERSION}-sub{BUNDLED_SUBJECT}-{sfreq:g}Hz"
    if scanner is not None:
        root = root.with_name(root.name + f"-scanner{SCANNER_VERSION}")
    for run in runs:
        task, number = parse_run(run)
        if not RunPaths(root, BUNDLED_SUBJECT, task, number).eeg_header.is_file():
            write_surrogate_run(root, BUNDLED_SUBJECT, run, sfreq=sfreq, scanner=scanner)
    return root


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _copy_scoring(source: Path, target: Path) -> None:
    _ensure(target.parent)
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)


def _bold_sidecar(task: str) -> dict[str, Any]:
    return {
        "TaskName": task,
        "RepetitionTime": TR,
        "SliceTiming": [round(i * TR / SLICES, 6) for i in range(SLICES)],
        "Modality": "MR",
        "MagneticFieldStrength": 3,
        "SurrogateData": "synthetic BOLD generated by sleepstream's simulators (not a scan)",
    }


def _eeg_sidecar(task: str, sfreq: float, duration: float, sample_index: bool) -> dict[str, Any]:
    base = json.loads((SHIPPED_DATASET / f"task-{task}_eeg.json").read_text())
    base.update(
        {
            "SamplingFrequency": sfreq,
            "RecordingDuration": duration + LEAD_IN_SECONDS + TAIL_SECONDS,
            "MiscChannelCount": int(sample_index),
            "SurrogateData": "synthetic EEG generated by sleepstream's simulators (not a recording)",
        }
    )
    return base


def _write_dataset_description(root: Path, subject: str) -> None:
    target = root / "dataset_description.json"
    if target.exists():
        return
    description = {
        "Name": f"Surrogate ds003768-format session (synthetic signals, real scoring of sub-{subject})",
        "BIDSVersion": "1.4.1",
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [{"Name": "sleepstream simulators", "Version": str(GENERATOR_VERSION)}],
        "SourceDatasets": [{"DOI": "doi:10.18112/openneuro.ds003768.v1.0.13"}],
    }
    target.write_text(json.dumps(description, indent=2))
