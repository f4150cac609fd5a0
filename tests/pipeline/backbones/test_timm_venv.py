"""The timm source from the main suite: its tests run in ``.venv-timm`` (PyPI's torch with its torchvision, made by
``bash .ci/setup --timm``), and without timm a ``timm:`` model is one line saying how to install it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from preimage.cli import main

from ...helpers import write_crops

ROOT = Path(__file__).resolve().parents[3]
PYTHON = ROOT / ".venv-timm" / "bin" / "python"


def test_the_timm_tests_pass_in_their_own_venv():
    if not PYTHON.exists():
        if os.environ.get("PREIMAGE_REQUIRE_TIMM"):
            pytest.fail(f"PREIMAGE_REQUIRE_TIMM is set but {PYTHON} is missing: run bash .ci/setup --timm")
        pytest.skip("no .venv-timm: bash .ci/setup --timm makes it (4.8 GB)")
    # one process: .venv-timm has no pytest-xdist, and the outer run already uses both cores
    command = [
        str(PYTHON),
        "-m",
        "pytest",
        "-q",
        "-o",
        "addopts=-ra",
        "-p",
        "no:cacheprovider",
        "tests/pipeline/backbones/test_timm.py",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed here")
def test_without_timm_a_timm_model_is_one_line(photos, tmp_path):
    folder = write_crops(tmp_path / "images", photos, 2, 64)
    store = tmp_path / "x.zarr"
    result = CliRunner().invoke(
        main, ["extract", "--images", str(folder), "--store", str(store), "--feature", "timm:resnet18:layer2"]
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: timm models (timm:MODEL:LAYER, with a torchvision built for this torch) needs timm: "
        "pip install 'preimage[timm]'"
    )
    assert not store.exists()
