"""The Dask cluster a batch runs on: a local one sized to this machine, or an existing one by address."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from distributed import Client

LOCAL_DASHBOARD = "127.0.0.1:8787"
Result = TypeVar("Result")


class ClusterError(RuntimeError):
    """The cluster cannot be reached or started (the message says why)."""


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    dashboard_address: str | None = LOCAL_DASHBOARD,
    connect_timeout: float = 10.0,
) -> Iterator[Client]:
    """A ``distributed.Client`` for the duration of a batch.

    Parameters
    ----------
    scheduler : str | None
        Address of an existing scheduler (``tcp://host:8786``: started with ``dask scheduler``, by
        dask-jobqueue or dask-kubernetes); a local cluster is started (and stopped at the end)
        without one.
    workers : int | None
        Workers of the local cluster (one process each, one thread each); default: one per core.
    dashboard_address : str | None
        Where the local cluster serves its dashboard (loopback by default; None: no dashboard).
    connect_timeout : float
        Seconds to wait for an existing scheduler.

    Raises
    ------
    ClusterError
        If the scheduler cannot be reached, or the local cluster does not start.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, ValueError) as err:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        try:
            yield client
        finally:
            client.close()
        return
    n_workers = workers if workers is not None else usable_cores()
    if n_workers < 1:
        raise ClusterError(f"a local cluster needs at least 1 worker, got {n_workers}")
    try:
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
            silence_logs=logging.ERROR,
        )
    except (OSError, RuntimeError) as err:
        raise ClusterError(f"the local Dask cluster did not start: {err}") from None
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def describe(client: Client) -> str:
    """Workers, threads and the dashboard's address, for the person running the batch."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
    dashboard = client.dashboard_link if info.get("services", {}).get("dashboard") else None
    text = f"Dask cluster {info.get('address', '?')}: {len(workers)} worker(s), {threads} thread(s)"
    return text + (f"; dashboard {dashboard}" if dashboard else "; no dashboard")


def fold_map(client: Client) -> Callable[[Callable[..., Result], list[tuple[Any, ...]]], list[Result]]:
    """Run calls side by side on the cluster, e.g. the folds of a cross-validation.

    The returned function calls ``function(*arguments)`` for each tuple, one task each, and returns
    the results in order. The first argument must be the same object in every tuple (the data): it
    is sent to every worker once rather than with each task.
    """

    def run(function: Callable[..., Result], arguments: list[tuple[Any, ...]]) -> list[Result]:
        if not arguments:
            return []
        shared = client.scatter(arguments[0][0], broadcast=True)
        futures = [client.submit(function, shared, *args[1:], pure=False) for args in arguments]
        return list(client.gather(futures))

    return run
