"""``preimage sbatch``: a ready SLURM batch script for a ``preimage train`` (or one-job ``extract``) command.

The training script survives the scheduler: SLURM sends SIGUSR1 to the script a while before the time limit
(``--signal=B:USR1@SECONDS``) and at ``scancel --signal=USR1 --batch``; the script passes a SIGTERM on to the
training, which writes a checkpoint at its next step and exits, then requeues the job, whose next start resumes
(``--resume auto``) and replays exactly the batches the uninterrupted run would have seen. ``--requeue`` lets a
preempted job start again the same way.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from .options import count


def _directives(pairs: list[tuple[str, object]]) -> list[str]:
    return [f"#SBATCH --{name}={value}" for name, value in pairs if value not in (None, "")]


def _job(job_name: str, memory, time: str, partition, account, workdir) -> list[tuple[str, object]]:
    """The directives every script shares: resources, where it runs, one log across requeues."""
    return [
        ("mem", memory),
        ("time", time),
        ("partition", partition),
        ("account", account),
        ("chdir", Path(workdir).resolve()),
        ("output", f"{job_name}-%j.out"),
        ("open-mode", "append"),  # one log across requeues
    ]


def train_script(
    train_args: list[str],
    nodes: int = 1,
    processes_per_node: int = 1,
    gpus_per_node: int = 0,
    cpus_per_task: int = 2,
    time: str = "04:00:00",
    partition: str | None = None,
    account: str | None = None,
    memory: str | None = None,
    signal_seconds: int = 60,
    port: int = 29500,
    job_name: str = "preimage-train",
    workdir: str | os.PathLike = ".",
    python: str = sys.executable,
) -> str:
    """The batch script for ``preimage train TRAIN_ARGS`` on ``nodes`` nodes, ``processes_per_node`` ranks each
    (one per GPU when there are GPUs), started by torchrun and resumed after every stop."""
    args = [a for a in train_args if a not in ("--resume",)]
    if "auto" in args and args[args.index("auto") - 1] == "--resume":
        del args[args.index("auto") - 1 : args.index("auto") + 1]
    header = _directives(
        [
            ("job-name", job_name),
            ("nodes", nodes),
            ("ntasks-per-node", 1),  # one torchrun launcher per node; it starts the ranks there
            ("cpus-per-task", cpus_per_task * processes_per_node),
            ("gpus-per-node", gpus_per_node or None),
            *_job(job_name, memory, time=time, partition=partition, account=account, workdir=workdir),
            ("signal", f"B:USR1@{signal_seconds}"),  # to this script, before the time limit
        ]
    )
    command = " ".join(shlex.quote(a) for a in ["-m", "preimage", "train", *args, "--resume", "auto"])
    return "\n".join(
        [
            "#!/bin/bash",
            "# preimage train as a SLURM batch job that survives its time limit and preemption (`preimage sbatch`).",
            *header,
            "#SBATCH --requeue",
            "# --requeue: a preempted or requeued job starts again and resumes (--resume auto)",
            "",
            'first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)  # the rendezvous host',
            "stop() {  # the training stops at its next step with a checkpoint",
            '  echo "preimage sbatch: $1; the training stops at its next step with a checkpoint"',
            '  scancel --signal=TERM "$SLURM_JOB_ID.0"  # the training step: torchrun passes SIGTERM to every rank',
            '  wait "$child"',
            "}",
            "# SIGUSR1: the time limit is near (--signal), or scancel --signal=USR1 --batch: stop, requeue, resume",
            'trap \'stop SIGUSR1; scontrol requeue "$SLURM_JOB_ID" && echo "preimage sbatch: requeued"; exit 0\' USR1',
            "# SIGTERM: scancel or preemption: stop with a checkpoint (a preempted job is requeued by SLURM itself)",
            "trap 'stop SIGTERM; exit 143' TERM",
            f"export OMP_NUM_THREADS={cpus_per_task}  # torch threads per rank",
            f"srun --kill-on-bad-exit=1 {shlex.quote(python)} -m torch.distributed.run \\",
            f'  --nnodes "$SLURM_NNODES" --nproc-per-node {processes_per_node} --rdzv-id "$SLURM_JOB_ID" \\',
            f'  --rdzv-backend c10d --rdzv-endpoint "$first:{port}" \\',
            f"  {command} &",
            "child=$!",
            'wait "$child"',
            "",
        ]
    )


def extract_script(
    extract_args: list[str],
    cpus: int = 8,
    time: str = "12:00:00",
    partition: str | None = None,
    account: str | None = None,
    memory: str | None = None,
    job_name: str = "preimage-extract",
    workdir: str | os.PathLike = ".",
    python: str = sys.executable,
) -> str:
    """The batch script for ``preimage extract EXTRACT_ARGS`` as one big job (a local cluster of its cores); a
    requeued or resubmitted job finishes what is missing, since extraction resumes by itself."""
    header = _directives(
        [
            ("job-name", job_name),
            ("nodes", 1),
            ("ntasks", 1),
            ("cpus-per-task", cpus),
            *_job(job_name, memory, time=time, partition=partition, account=account, workdir=workdir),
        ]
    )
    command = " ".join(shlex.quote(a) for a in [python, "-m", "preimage", "extract", *extract_args])
    return "\n".join(
        [
            "#!/bin/bash",
            "# preimage extract as one SLURM batch job (`preimage sbatch`); run it again to finish after any stop.",
            *header,
            "#SBATCH --requeue",
            "",
            f"{command} --workers {cpus}",
            "",
        ]
    )


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--nodes", type=count(1, 100_000), default=1, show_default=True)
@click.option(
    "--processes-per-node",
    type=count(1, 1024),
    default=1,
    show_default=True,
    help="Training ranks per node: one per GPU (gloo on CPUs).",
)
@click.option("--gpus-per-node", type=count(0, 64), default=0, show_default=True)
@click.option(
    "--cpus-per-task",
    type=count(1, 4096),
    default=2,
    show_default=True,
    help="CPU cores per rank (train) or for the whole job (extract).",
)
@click.option("--time", default="04:00:00", show_default=True, help="The job's time limit.")
@click.option("--partition", default=None)
@click.option("--account", default=None)
@click.option("--mem", "memory", default=None, help="Memory per node, e.g. 32G.")
@click.option(
    "--signal-seconds",
    type=count(10, 86400),
    default=60,
    show_default=True,
    help="How long before the time limit SLURM asks the training to stop with a checkpoint.",
)
@click.option(
    "--port",
    type=click.IntRange(1024, 65535),
    default=29500,
    show_default=True,
    help="The rendezvous port on the first node.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def sbatch(
    nodes,
    processes_per_node,
    gpus_per_node,
    cpus_per_task,
    time,
    partition,
    account,
    memory,
    signal_seconds,
    port,
    command,
) -> None:
    """Print a SLURM batch script for a train or extract command: preimage sbatch [OPTIONS] train --store S ...

    Submit it with `preimage sbatch ... > job.sh && sbatch job.sh`. The training script stops before the time
    limit with a checkpoint, requeues itself and resumes; run from the folder the paths are relative to.
    """
    what, *args = command
    if what == "train":
        click.echo(
            train_script(
                list(args),
                nodes=nodes,
                processes_per_node=processes_per_node,
                gpus_per_node=gpus_per_node,
                cpus_per_task=cpus_per_task,
                time=time,
                partition=partition,
                account=account,
                memory=memory,
                signal_seconds=signal_seconds,
                port=port,
            ),
            nl=False,
        )
    elif what == "extract":
        if nodes != 1:
            raise click.UsageError("one extract job runs on one node; for many, use extract --cluster slurm --jobs N")
        click.echo(
            extract_script(list(args), cpus_per_task, time=time, partition=partition, account=account, memory=memory),
            nl=False,
        )
    else:
        raise click.UsageError(f"sbatch writes scripts for train or extract, not {what!r}")
