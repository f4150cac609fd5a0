"""The run folder (:mod:`preimage.train.models.runfolder`): its files named in one place, read by every reader of a run;
a run folder written before the shaping (``tests/data/before-shaping``) reads, scores and resumes unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from preimage.analysis.runs import read_run
from preimage.cli import main
from preimage.train.models.checkpoint import CheckpointError
from preimage.train.models.runfolder import RunFolder

BEFORE = Path(__file__).resolve().parents[2] / "data" / "before-shaping"


def test_the_layout_of_a_run_folder():
    run = RunFolder(BEFORE / "run")
    assert run.checkpoint.name == "checkpoint.safetensors" and run.run_file.name == "run.json"
    assert run.preview(3).name == "preview-e003.png" and run.metrics.name == "metrics.jsonl"
    assert run.started and not run.is_hoggles
    assert run.settings()["feature"] == "hog" and run.read()["config"] == run.settings()
    trained = read_run(BEFORE / "run")
    assert (trained.feature, trained.loss, trained.identity.name) == ("hog", "pixel", "hog")


def test_a_folder_without_a_finished_run_has_no_settings_and_a_foreign_run_json_is_named(tmp_path):
    assert RunFolder(tmp_path).settings() is None and not RunFolder(tmp_path).started
    shutil.copy(BEFORE / "run" / "checkpoint.safetensors", tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(CheckpointError, match=r"run\.json: not a run\.json of preimage train"):
        RunFolder(tmp_path).settings()
    (tmp_path / "run.json").write_text("{truncated")
    with pytest.raises(CheckpointError, match=r"not a readable run\.json"):
        RunFolder(tmp_path).read()


def test_a_store_and_run_written_before_the_shaping_verify_score_and_resume(tmp_path, monkeypatch):
    """Same store format: the old store verifies and scores the old run; the old run resumes for another epoch."""
    shutil.copytree(BEFORE, tmp_path / "before")
    monkeypatch.chdir(tmp_path / "before")  # run.json names its store relatively, as the user typed it

    def ok(*args) -> str:
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, (args[:2], result.output)
        return result.output

    assert "damaged" not in ok("verify", "store.zarr").lower()
    assert "normalised error" in ok("analyze", "error", "--store", "store.zarr", "--decoder", "run", "--split", "all")
    ok(
        "train",
        "--store",
        "store.zarr",
        "--feature",
        "hog",
        "--out",
        "run",
        "--target-size",
        16,
        "--epochs",
        2,
        "--batch-size",
        8,
        "--width",
        8,
        "--precision",
        "fp32",
        "--resume",
    )
    sessions = RunFolder("run").read()["sessions"]
    assert [s["epochs"] for s in sessions] == [1, 2] and sessions[-1]["from_step"] > 0
