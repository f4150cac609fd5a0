"""The dask clusters extraction and the studies run on: a local one (one worker process per core) or an existing
scheduler; batch-job clusters are in :mod:`.batch_cluster`. Started and stopped here, nowhere else."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

from ..runtime.device import available_cores
from ..runtime.memory import MALLOC_SETTINGS

DASHBOARD_ADDRESS = "127.0.0.1:8787"  # the local cluster's dashboard: loopback, as the scheduler


def worker_config() -> dict:
    """The local cluster's dask settings: workers spawned with :data:`~.memory.MALLOC_SETTINGS`, and without the
    statistical profiler, which samples every thread's stack every 10 ms (8% of the CPU time on 2 cores) for a
    dashboard page that extraction does not need (the task stream stays)."""
    import dask

    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **MALLOC_SETTINGS}
    return {"distributed.worker.profile.enabled": False, "distributed.nanny.pre-spawn-environ": environ}


@contextlib.contextmanager
def local_cluster(
    workers: int | None = None, announce=None, dashboard_address: str = DASHBOARD_ADDRESS
) -> Iterator[object]:
    """A client of a ``distributed.LocalCluster``: one single-threaded worker process per core (by default), each
    running torch on ``cores // workers`` threads.

    ``announce(client)`` is called once it is up (the CLI prints the dashboard address there). The dashboard
    listens on loopback unless ``dashboard_address`` says otherwise (``:8787`` is every interface); the
    scheduler always does.
    """

    import dask
    from distributed import Client, LocalCluster

    cores = available_cores()
    workers = workers or cores
    verbose = logging.getLogger().isEnabledFor(logging.INFO)  # preimage -v
    if not verbose:  # the scheduler runs in this process: keep it quiet
        logging.getLogger("distributed").setLevel(logging.ERROR)
    worker_logs = "ERROR" if verbose else "CRITICAL"  # the workers' own logs (pipeline/worker_start.py)
    environ = dict(os.environ)
    with (
        _quiet_port_warning(),
        dask.config.set(worker_config()),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
            silence_logs=logging.ERROR,
            env={
                "OMP_NUM_THREADS": str(max(1, cores // workers)),  # torch threads in each worker process
                "PREIMAGE_WORKER_LOGS": worker_logs,
            },
            preload=["preimage.pipeline.worker_start"],
        ) as cluster,
        Client(cluster) as client,
    ):
        _restore_environ(environ)
        if announce:
            announce(client)
        yield client


@contextlib.contextmanager
def _quiet_port_warning() -> Iterator[None]:
    """Without dask's three-line "Port 8787 is already in use ... Hosting the HTTP server on port N instead": the
    dashboard line preimage prints names the port taken."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
        yield


def _restore_environ(saved: dict[str, str]) -> None:
    """Undo what dask's nannies leave in this process's environment (they set ``pre-spawn-environ`` here before
    spawning: OMP_NUM_THREADS=1 and the malloc settings would reach every later child of the caller)."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


@contextlib.contextmanager
def remote_cluster(address: str, announce=None) -> Iterator[object]:
    """A client of an existing dask scheduler (its workers must see the store's path and set their threads)."""
    from distributed import Client

    with Client(address) as client:
        if announce:
            announce(client)
        yield client
