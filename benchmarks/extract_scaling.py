"""Dataset-scale extraction: recordings per minute, serial and on a Dask LocalCluster of 1 and 2 workers.

Run ``python -m benchmarks.extract_scaling``. The recordings are surrogate nights (EDF at 100 Hz:
8 EEG channels, EOG, chin EMG and ECG, with their hypnograms; ``run_stream.py surrogate --night``),
following each real Sleep-EDF hypnogram shipped in ``simulators/data/sleep-edf/`` with ``--seeds``
seeds: by default 12 nights, cropped to the sleep period with a margin (about 7 hours each).
Each is extracted as ``run_stream.py extract NIGHTS -o OUT/`` extracts it (every window's 11
features, YASA's stage of every scored epoch, one Parquet file written per night) by

- serial: :func:`pipeline.batch_extraction.extract_into` without a cluster, one night after the
  other in this process (``--workers 0``), modules already imported;
- Dask, 1 worker and 2 workers: a fresh ``LocalCluster`` (one single-threaded process per worker,
  loopback), timed from before the cluster starts (its start is also given alone) to the last file.

Each path writes into its own empty folder, and the three tables must be equal. Recordings per minute
are the nights divided by the wall time; the CPU time of one night is the median of the tasks' own
times.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LSLAPICFG", str(PROJECT / "core" / "lsl_api.cfg"))  # before anything imports pylsl

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from benchmarks.results_file import add_results_option, recorded  # noqa: E402

WORK = PROJECT / "build" / "extract-scaling"


def write_nights(folder: Path, seeds: int) -> list[Path]:
    """The surrogate nights (written once, reused by later runs)."""
    from simulators.night import shipped_hypnograms, surrogate_night, write_night

    written = []
    for seed in range(seeds):
        for hypnogram in shipped_hypnograms():
            name = f"{hypnogram.name.split('-')[0]}-seed{seed}"
            edf = folder / f"{name}.edf"
            if not edf.is_file():
                write_night(surrogate_night(hypnogram, seed=seed), folder, name)
            written.append(edf)
    return written


def main() -> None:
    """Write the nights, extract them three ways, print the rates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="nights per shipped hypnogram (default 2)")
    add_results_option(parser, "extract_scaling")
    args = parser.parse_args()

    import pandas as pd

    from cli.recording_source import resolve_sources
    from model.dataset import read_feature_table
    from pipeline.batch_extraction import EXTRACTED, ExtractionSettings, extract_into
    from pipeline.cluster import dask_client
    from pipeline.settings import Settings

    with recorded("extract_scaling", args, packages=("dask", "distributed", "yasa", "pyarrow")):
        nights = WORK / "nights"
        paths = write_nights(nights, args.seeds)
        sources = resolve_sources(str(nights))
        hours = sum(_hours(p) for p in paths)
        print(f"{len(paths)} surrogate nights, {hours:.1f} h of EEG in all ({hours / len(paths):.1f} h each)")
        defaults = Settings()
        settings = ExtractionSettings(defaults.features, defaults.window, defaults.artefacts, True, "nights")
        tables = {}
        for label, workers in (("serial", 0), ("dask_1_worker", 1), ("dask_2_workers", 2)):
            out = WORK / label
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            if workers == 0:
                startup = 0.0
                results = extract_into(sources.jobs, out, settings, progress=False)
            else:
                with dask_client(workers=workers, dashboard_address="127.0.0.1:0") as client:
                    startup = time.perf_counter() - start
                    results = extract_into(sources.jobs, out, settings, client=client, progress=False)
            wall = time.perf_counter() - start
            assert all(r.status == EXTRACTED for r in results), [r for r in results if r.status != EXTRACTED]
            per_night = statistics.median(r.seconds for r in results)
            print(
                f"extract_scaling.{label}: {len(results) / wall * 60:.2f} recordings per minute "
                f"({len(results)} nights in {wall:.1f} s wall time, cluster start {startup:.1f} s; "
                f"{len(results) / (wall - startup) * 60:.2f} per minute once started; "
                f"median {per_night:.1f} s per night in its task)",
                flush=True,
            )
            tables[label] = read_feature_table(out)
        for table in tables.values():
            pd.testing.assert_frame_equal(table, tables["serial"])
        print(f"the three tables are equal ({len(tables['serial'])} windows)")


def _hours(edf: Path) -> float:
    import mne

    raw = mne.io.read_raw_edf(edf, preload=False, verbose="error")
    return float(raw.times[-1]) / 3600


if __name__ == "__main__":
    main()
