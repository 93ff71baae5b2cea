"""Options and set-up of the Dask cluster that ``extract``, ``train`` and ``evaluate`` run batches on.

Extraction into a feature dataset runs one task per recording on a local cluster by default (one
worker process per core), in this process with ``--workers 0`` or when one recording is left, or on
an existing cluster with ``--scheduler``. The folds of a cross-validation run side by side only when
asked (``--scheduler``, or ``--workers N`` with N >= 2): on one machine TensorFlow already uses every
core for one fold, so folds gain from a cluster of several machines, not from one.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cli.common import non_negative_int

if TYPE_CHECKING:
    from distributed import Client

    from model.training import FoldMap


def add_cluster_options(parser: argparse.ArgumentParser, folds: bool = False) -> None:
    """Add ``--workers``, ``--scheduler`` and ``--dashboard``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    folds : bool
        The command cross-validates (``train``, ``evaluate``): say that the options also run its folds.
    """
    what = "extraction into a feature dataset" + (", and cross-validation folds" if folds else "")
    group = parser.add_argument_group(f"Dask cluster ({what})")
    group.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="workers of the local Dask cluster, one process each (default: one per core, at most one per "
        "recording); 0 extracts in this process, one recording after the other"
        + ("; N >= 2 also runs the cross-validation folds side by side" if folds else ""),
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (started with 'dask scheduler' and "
        "'dask worker', dask-jobqueue or dask-kubernetes); its workers must see the recordings and the "
        "output folder at the same paths" + (", and run the folds too" if folds else ""),
    )
    group.add_argument(
        "--dashboard",
        default="127.0.0.1:8787",
        metavar="HOST:PORT",
        help="where the local cluster serves its dashboard (default 127.0.0.1:8787, loopback; 'none': no "
        "dashboard pages)",
    )


@contextmanager
def cluster_for(args: argparse.Namespace, tasks: int) -> Iterator[Client | None]:
    """The Dask client a batch of ``tasks`` independent recordings runs on, or None for this process.

    A local cluster is started only for two tasks or more; its address and dashboard are printed.

    Raises
    ------
    SystemExit
        If the cluster cannot be started or reached (the message says why).
    """
    local = args.scheduler is None
    if local and (args.workers == 0 or tasks < 2):
        yield None
        return
    from pipeline.cluster import usable_cores

    with _client(args, workers=args.workers or min(usable_cores(), tasks)) as client:
        yield client


@contextmanager
def folds_runner(args: argparse.Namespace, folds: int) -> Iterator[FoldMap | None]:
    """How a cross-validation's ``folds`` run: side by side on a cluster when asked, else None (in turn)."""
    if folds < 2 or (args.scheduler is None and (args.workers is None or args.workers < 2)):
        yield None
        return
    from pipeline.cluster import fold_map

    with _client(args, workers=args.workers) as client:
        yield fold_map(client)


@contextmanager
def _client(args: argparse.Namespace, workers: int | None) -> Iterator[Client]:
    from pipeline.cluster import ClusterError, dask_client, describe

    dashboard = None if args.dashboard.lower() == "none" else args.dashboard
    try:
        with dask_client(args.scheduler, workers, dashboard) as client:
            print(describe(client), flush=True)
            yield client
    except ClusterError as err:
        raise SystemExit(f"error: {err}") from None
