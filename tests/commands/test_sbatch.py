"""`preimage sbatch`: the batch scripts it writes carry what a requeueable training and a one-job extraction need,
and are valid shell. (They run on a real SLURM in tests/test_slurm.py.)"""

from __future__ import annotations

import subprocess

from click.testing import CliRunner

from preimage.cli import main


def script(*args: str) -> str:
    result = CliRunner().invoke(main, ["sbatch", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_training_script_stops_requeues_and_resumes_on_every_node():
    text = script(
        "--nodes",
        "2",
        "--processes-per-node",
        "4",
        "--gpus-per-node",
        "4",
        "--cpus-per-task",
        "8",
        "--time",
        "24:00:00",
        "--partition",
        "gpu",
        "train",
        "--store",
        "s.zarr",
        "--feature",
        "hog",
        "--out",
        "runs/hog",
        "--resume",
    )
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --time=24:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=B:USR1@60",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
    ):
        assert line in text.splitlines(), line
    assert '--nnodes "$SLURM_NNODES" --nproc-per-node 4' in text and '--rdzv-endpoint "$first:29500"' in text
    assert "train --store s.zarr --feature hog --out runs/hog --resume auto &" in text  # --resume became auto
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text and "trap" in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_the_extraction_script_is_one_job_of_a_local_cluster():
    text = script("--cpus-per-task", "16", "--time", "12:00:00", "extract", "--images", "photos", "--store", "s.zarr")
    assert "#SBATCH --cpus-per-task=16" in text and "#SBATCH --nodes=1" in text
    assert "extract --images photos --store s.zarr --workers 16" in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    result = CliRunner().invoke(main, ["sbatch", "--nodes", "3", "extract", "--store", "s.zarr"])
    assert result.exit_code != 0 and "extract --cluster slurm --jobs N" in result.output
