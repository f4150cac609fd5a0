"""The architecture contract (pyproject's [tool.importlinter]) and what importing the light entry points costs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import preimage

ROOT = Path(__file__).resolve().parents[1]
# where each package's source lies: pyproject maps the top-level folders into preimage.*
PACKAGES = {
    "": ROOT / "preimage",
    "pipeline": ROOT / "pipeline",
    "train": ROOT / "train",
    "analysis": ROOT / "analysis",
    "cache": ROOT / "cache",
}


def installed_layout(target: Path) -> Path:
    """A copy of the package's Python files laid out as it installs (preimage/pipeline/..., preimage/train/...),
    which import-linter can walk; the folders in place are mapped by setuptools, which it cannot follow."""
    for sub, source in PACKAGES.items():
        for path in source.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            copy = target / "preimage" / sub / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
    shutil.copyfile(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_layer_contract_holds(tmp_path):
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    tree = installed_layout(tmp_path)
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--config", "pyproject.toml"],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and "KEPT" in result.stdout


def test_the_layout_copy_is_complete(tmp_path):
    """Every package pyproject installs is in the copy the contract is checked on (nothing escapes the check)."""
    tree = installed_layout(tmp_path)
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for name in packages:
        assert (tree / name.replace(".", "/") / "__init__.py").is_file(), name


def test_loading_a_shipped_decoder_imports_neither_dask_click_nor_cv2():
    code = (
        "import sys, preimage; preimage.load_decoder('hog'); "
        "print(sorted({'dask', 'distributed', 'click', 'cv2'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_importing_preimage_imports_no_torch():
    result = subprocess.run(
        [sys.executable, "-c", "import sys, preimage; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"
    assert preimage.__version__
