"""The optional dependencies: each module preimage imports optionally belongs to the extra named in its one-line
error, ``all`` installs every extra a user runs, and a missing one is one ``Error:`` line naming its extra (the
installed wheel's smoke run, .ci/wheel, checks the same without the modules installed at all)."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from preimage.cli import main
from preimage.runtime import extras

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
DECLARED = PYPROJECT["project"]["optional-dependencies"]


def distribution(requirement: str) -> str:
    return re.split(r"[\[<>=~!; ]", requirement, maxsplit=1)[0].lower().replace("-", "_")


def test_each_extra_declares_the_modules_it_is_named_for():
    for extra, modules in extras.EXTRAS.items():
        assert extra in DECLARED, extra
        assert sorted(modules) == sorted(distribution(r) for r in DECLARED[extra]), extra


def test_all_installs_every_extra_but_timm_and_convert():
    """timm needs a torchvision built for the installed torch; convert serves one conversion (preimage make-model)."""
    (requirement,) = DECLARED["all"]
    named = set(re.search(r"\[(.*)\]", requirement).group(1).split(","))
    assert named == set(extras.EXTRAS) - {"timm", "convert"}


def without(monkeypatch, *modules: str) -> None:
    """As if ``modules`` were not installed."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else find_spec(name, *a))
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def one_line(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_explore_without_its_extra_is_one_line_naming_it(monkeypatch):
    without(monkeypatch, "starlette", "pydantic")
    assert one_line(["explore"]) == "Error: preimage explore needs starlette, pydantic: pip install 'preimage[explore]'"


def test_an_s3_store_without_s3fs_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    pytest.importorskip("fsspec")
    without(monkeypatch, "s3fs")
    registry = sys.modules["fsspec.registry"]._registry  # the class an earlier test of this process imported
    monkeypatch.delitem(registry, "s3", raising=False)
    line = one_line(["extract", "--images", str(tmp_path), "--store", "s3://bucket/x.zarr", "--feature", "hog"])
    assert line == "Error: s3://bucket/x.zarr: stores at s3:// URLs need s3fs: pip install 'preimage[s3]'"


def test_hugging_face_and_cluster_without_their_extras_are_one_line(monkeypatch, tmp_path):
    without(monkeypatch, "transformers", "dask_jobqueue")
    assert one_line(["features", "--model", "hf:facebook/dinov2-small"]).endswith("pip install 'preimage[models]'")
    (tmp_path / "a.png").write_bytes(b"")
    store = tmp_path / "x.zarr"
    line = one_line(
        ["extract", "--images", str(tmp_path), "--store", str(store), "--feature", "hog", "--cluster", "slurm"]
    )
    assert line.endswith("pip install 'preimage[cluster]'") and not store.exists()
