"""Extraction workers as batch jobs (SLURM, PBS, SGE, LSF) through dask-jobqueue, the library HPC users already
use for dask: ``preimage extract --cluster slurm --jobs N``.

Each job runs one dask worker with the extraction's malloc settings, the same Python, and torch on ``cores``
threads. The extraction starts as soon as one worker has come, others join as the scheduler starts their jobs,
and a worker that cannot see the store's folder (or the images) stops the run with the reason: every job must
share the filesystem the store lives on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..runtime.extras import import_extra
from ..runtime.memory import MALLOC_SETTINGS

CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}


class ClusterError(RuntimeError):
    """A batch cluster that cannot serve the extraction: no worker came, or workers cannot see the files."""


@dataclass(frozen=True)
class BatchJobs:
    """The batch jobs that carry the workers: scheduler kind, how many, each job's resources, where it runs."""

    kind: str  # 'slurm' | 'pbs' | 'sge' | 'lsf'
    jobs: int = 2
    cores: int = 1
    memory: str = "4GB"
    walltime: str = "01:00:00"
    queue: str | None = None
    account: str | None = None
    job_extra: tuple[str, ...] = ()  # more scheduler directives, e.g. '--gres=gpu:1'
    interface: str | None = None  # the network interface workers reach the scheduler on ('lo' on one node)
    worker_timeout: float = 600.0  # seconds to wait for the first worker
    log_directory: str | None = None
    dashboard_address: str = "127.0.0.1:8787"

    def job_kwargs(self) -> dict:
        """dask-jobqueue's arguments for one job."""
        prologue = [f"export {key}={value}" for key, value in MALLOC_SETTINGS.items()]
        prologue += [
            f"export OMP_NUM_THREADS={self.cores}",  # torch threads in the worker
            "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False",  # no stack sampling: 8% of the CPU
        ]
        kwargs = {
            "cores": self.cores,
            "processes": 1,
            "memory": self.memory,
            "walltime": self.walltime,
            "queue": self.queue,
            "account": self.account,
            "job_extra_directives": list(self.job_extra),
            "job_script_prologue": prologue,
            "python": sys.executable,  # the same environment as this process
            "interface": self.interface,
            "log_directory": self.log_directory,
            "job_name": "preimage-extract",
            "scheduler_options": {"dashboard_address": self.dashboard_address},
        }
        if self.kind in ("sge", "lsf"):  # their jobs name the charged account 'project'
            kwargs["project"] = kwargs.pop("account")
        if self.kind == "lsf":
            kwargs["walltime"] = self.walltime.rsplit(":", 1)[0]  # LSF takes HH:MM
        return kwargs


@contextlib.contextmanager
def batch_cluster(spec: BatchJobs, must_see: tuple[str | os.PathLike, ...] = (), announce=None) -> Iterator[object]:
    """A dask client whose workers are ``spec.jobs`` batch jobs; each worker must see every path of ``must_see``.

    Enters once the first worker has joined (a :class:`ClusterError` after ``spec.worker_timeout`` seconds
    otherwise, saying how many jobs were submitted); the jobs are cancelled on exit."""
    dask_jobqueue = import_extra("dask_jobqueue", "cluster", "--cluster (batch jobs)")  # analyze sample, the API
    from distributed import Client

    if spec.kind not in CLUSTERS:
        raise ClusterError(f"--cluster must be one of {', '.join(CLUSTERS)}, got {spec.kind!r}")
    cluster_class = getattr(dask_jobqueue, CLUSTERS[spec.kind])
    if not logging.getLogger().isEnabledFor(logging.INFO):  # the scheduler runs in this process: keep it quiet
        logging.getLogger("distributed").setLevel(logging.ERROR)
    with cluster_class(**spec.job_kwargs()) as cluster, Client(cluster) as client:
        cluster.scale(jobs=spec.jobs)
        if announce:
            announce(client, f"{spec.kind}: {spec.jobs} jobs of {spec.cores} cores and {spec.memory} submitted")
        try:
            client.wait_for_workers(1, timeout=spec.worker_timeout)
        except TimeoutError:
            raise ClusterError(
                f"no worker started within {spec.worker_timeout:.0f} s of submitting {spec.jobs} {spec.kind} jobs; "
                "see the queue (squeue, qstat, bjobs): a job may wait for resources, ask for more than a node has, "
                "or fail to start (--worker-timeout waits longer)"
            ) from None
        check_visible(client, must_see)
        yield client


def check_visible(client, paths: tuple[str | os.PathLike, ...]) -> None:
    """Every worker must see each of ``paths`` (the store's folder, the images): the same filesystem."""
    paths = tuple(str(Path(p).resolve()) for p in paths)
    seen = client.run(_existing, paths)
    for worker, found in seen.items():
        missing = [p for p, ok in zip(paths, found, strict=True) if not ok]
        if missing:
            raise ClusterError(
                f"worker {worker} cannot see {', '.join(missing)}: the store and the images must be on a "
                "filesystem every job mounts (a shared home or scratch), not on this machine's local disk"
            )


def _existing(paths: tuple[str, ...]) -> list[bool]:
    return [os.path.exists(p) for p in paths]
