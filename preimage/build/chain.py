"""A build on a SLURM cluster (``preimage build --cluster slurm``): the extraction through dask-jobqueue's batch
workers, as ``preimage extract --cluster slurm`` does, then every later stage as its own batch job, each waiting for
the one before (``--dependency=afterok``). Each job runs the same build command up to its stage (``--until``), so a
job that is requeued, or run again by hand, resumes as the build does; the last job does whatever is left (a fused
decoder's stages, known once its layers are scored; the check; publishing)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from ..pipeline.batch_cluster import BatchJobs
from .recipe import Stage
from .stages import BuildError

JOB_NAME = "preimage-build"


def stage_script(args: list[str], until: str | None, jobs: BatchJobs, workdir: Path, index: int) -> str:
    """A batch script that runs ``preimage build ARGS --until STAGE`` (the whole build without ``until``), and on
    SIGUSR1 (the time limit near) or SIGTERM stops it at its next step with a checkpoint, then requeues itself."""
    command = [sys.executable, "-m", "preimage", "build", *args, *(["--until", until] if until else [])]
    directives = [
        ("job-name", JOB_NAME),
        ("nodes", 1),
        ("ntasks", 1),
        ("cpus-per-task", jobs.cores),
        ("mem", jobs.memory),
        ("time", jobs.walltime),
        ("partition", jobs.queue),
        ("account", jobs.account),
        ("chdir", workdir.resolve()),
        ("output", f"{JOB_NAME}-{index:02d}-%j.out"),
        ("open-mode", "append"),
        ("signal", "B:USR1@60"),
    ]
    return "\n".join(
        [
            "#!/bin/bash",
            f"# preimage build, {'up to ' + until if until else 'what is left'} (preimage build --cluster slurm)",
            *(f"#SBATCH --{name}={value}" for name, value in directives if value not in (None, "")),
            *(f"#SBATCH {extra}" for extra in jobs.job_extra),
            "#SBATCH --requeue",
            'stop() { kill -TERM "$child"; wait "$child"; }  # the training stops at its next step, checkpointed',
            'trap \'stop; scontrol requeue "$SLURM_JOB_ID" && echo "preimage build: requeued"; exit 0\' USR1',
            "trap 'stop; exit 143' TERM",
            f"export OMP_NUM_THREADS={jobs.cores}",
            " ".join(map(shlex.quote, command)) + " &",
            "child=$!",
            'wait "$child"',
            "",
        ]
    )


def submit(args: list[str], stages: list[Stage], pending: list[Stage], jobs: BatchJobs, folder: Path) -> list[str]:
    """Submit one job per pending stage (each ``afterok`` the one before), then one for what is left; returns the job
    ids. The scripts are kept in ``folder``."""
    if jobs.kind != "slurm":
        raise BuildError(f"--cluster {jobs.kind}: a build's chain of jobs runs on slurm; extract with --cluster alone")
    folder.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    steps = [*(s.label for s in pending if s.kind in ("train", "export")), None]
    for index, until in enumerate(steps, 1):
        script = folder / f"{index:02d}-{(until or 'rest').replace(' ', '-').replace(':', '-').replace('/', '-')}.sh"
        script.write_text(stage_script(args, until, jobs, workdir=folder, index=index))
        command = ["sbatch", "--parsable", *([f"--dependency=afterok:{ids[-1]}"] if ids else []), str(script)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"sbatch {script.name}: {done.stderr.strip() or done.stdout.strip()}")
        ids.append(done.stdout.strip().split(";")[0])
    return ids
