"""The batch jobs `extract --cluster` submits, for every scheduler dask-jobqueue knows: the worker gets the
extraction's malloc settings, torch's thread count, no profiler, this very Python, and the resources asked for.
(SLURM runs them for real in tests/test_slurm.py; PBS, SGE and LSF are checked here by their job scripts.)"""

from __future__ import annotations

import sys

import pytest

from preimage.pipeline.batch_cluster import BatchJobs
from preimage.runtime.memory import MALLOC_SETTINGS

dask_jobqueue = pytest.importorskip("dask_jobqueue", reason="pip install 'preimage[cluster]'")

DIRECTIVES = {"slurm": "#SBATCH", "pbs": "#PBS", "sge": "#$", "lsf": "#BSUB"}
JOBS = {"slurm": "SLURMJob", "pbs": "PBSJob", "sge": "SGEJob", "lsf": "LSFJob"}


@pytest.mark.parametrize("kind", sorted(JOBS))
def test_each_schedulers_job_script_carries_the_workers_settings(kind):
    spec = BatchJobs(
        kind,
        jobs=3,
        cores=4,
        memory="16GB",
        walltime="02:00:00",
        queue="cpu",
        account="proj",
        job_extra=("--exclusive",) if kind == "slurm" else (),
    )
    kwargs = {k: v for k, v in spec.job_kwargs().items() if k != "scheduler_options"}
    job_class = getattr(getattr(dask_jobqueue, kind), JOBS[kind])
    script = job_class(scheduler="tcp://127.0.0.1:8786", name="w", **kwargs).job_script()
    for key, value in MALLOC_SETTINGS.items():
        assert f"export {key}={value}" in script
    assert "export OMP_NUM_THREADS=4" in script and "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in script
    assert sys.executable in script and "--nthreads 4" in script
    assert DIRECTIVES[kind] in script and "cpu" in script
    if kind == "slurm":
        assert "#SBATCH --exclusive" in script and "#SBATCH -A proj" in script and "#SBATCH -t 02:00:00" in script
