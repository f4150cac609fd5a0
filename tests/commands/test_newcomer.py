"""What a new user hit on the third trial (issue 62): each case failed on 9ac2c2b."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import preimage
from preimage.cli import main
from preimage.pipeline.checks import ImageInputError

from ..helpers import write_crops


def test_a_file_name_that_is_not_utf8_is_inverted_and_written(photos, tmp_path):
    """Item 1: it crashed cv2.imwrite (a segfault, exit 139, an empty --out). In a child process: a crash must not
    take pytest down with it."""
    folder = tmp_path / "in"
    write_crops(folder, photos, count=1, side=96)
    name = os.fsdecode(b"\xff\xfe.png")
    (folder / "00.png").rename(folder / name)
    out = tmp_path / "out"
    args = ["invert", str(folder / name), "--feature", "hog", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "preimage", *args], capture_output=True, encoding="utf-8", errors="replace"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    written = out / name
    picture = cv2.imdecode(np.fromfile(written, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (128, 256, 3)  # original | reconstruction


@pytest.mark.parametrize("function", ["invert", "optimize"])
def test_one_colour_image_without_a_batch_axis_is_one_clear_error(function):
    """Item 3: a (512, 512, 3) array was read as 512 gray images of 512 x 3 pixels."""
    call = {"invert": lambda x: preimage.invert(x, decoder="hog"), "optimize": lambda x: preimage.optimize(x, "hog")}
    for image in (np.random.rand(64, 64, 3).astype(np.float32), torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8)):
        with pytest.raises(ImageInputError, match=r"one colour image \(H, W, 3\); pass a batch: images\[None\]"):
            call[function](image)
    with pytest.raises(ImageInputError, match="pass images"):
        call[function](np.random.rand(64, 64).astype(np.float32))
    assert preimage.invert(np.random.rand(1, 64, 64, 3).astype(np.float32), decoder="hog").shape == (1, 3, 128, 128)


def test_a_store_that_lost_its_progress_folder_is_damaged_and_repaired(photos, tmp_path):
    """Item 4: verify said "no damage" and extract --repair ended on a bare KeyError (progress/images)."""
    images = write_crops(tmp_path / "images", photos, count=12, side=64)
    store = tmp_path / "s.zarr"
    extract = ["extract", "--images", str(images), "--store", str(store), "--feature", "hog", "--size", "32"]
    assert CliRunner().invoke(main, [*extract, "--workers", "1"]).exit_code == 0
    before = preimage.FeatureStore.open(store).read_rows("features/hog", 0, 12)
    shutil.rmtree(store / "progress")
    verified = CliRunner().invoke(main, ["verify", str(store)])
    assert verified.exit_code == 1 and "progress/images" in verified.output and "progress/hog" in verified.output
    repaired = CliRunner().invoke(main, [*extract, "--workers", "1", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "no damage" in CliRunner().invoke(main, ["verify", str(store)]).output
    reopened = preimage.FeatureStore.open(store)
    assert reopened.done("images").all() and reopened.done("hog").all()
    np.testing.assert_array_equal(reopened.read_rows("features/hog", 0, 12), before)


def test_invert_never_writes_over_one_of_its_inputs(photos, tmp_path):
    """Item 5: --overwrite turned the input photo into its own 256x128 strip."""
    folder = write_crops(tmp_path / "ow", photos, count=1, side=96)
    photo = folder / "00.png"
    original = photo.read_bytes()
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(main, ["invert", str(photo), "--feature", "hog", "--out", str(folder), *extra])
        assert result.exit_code == 1 and "it is an input; choose another --out" in result.output, result.output
        assert photo.read_bytes() == original


def test_a_run_named_as_a_shipped_decoder_gets_its_own_panel(run, tmp_path):
    """Item 2: explore --decoder runs/hog answered in the shipped hog panel with the run's decoder."""
    pytest.importorskip("starlette", reason="the explore extra")
    from preimage.explore.engine import Explorer

    _, folder, _ = run
    hog = shutil.copytree(folder, tmp_path / "runs" / "hog")
    explorer = Explorer(decoders=[hog])
    mine, shipped = explorer.panels["hog (run)"], explorer.panels["hog"]
    assert (mine.model.config.target_size, shipped.model.config.target_size) == (16, 64)
    twice = Explorer(decoders=[hog, shutil.copytree(folder, tmp_path / "other" / "hog")])
    assert {"hog", "hog (run)", f"{tmp_path / 'other' / 'hog'} (run)"} <= set(twice.panels)


def test_settings_of_the_optimisation_given_to_another_method_are_refused(photos, tmp_path):
    """Item 11: invert --feature hog --steps 5 --restarts 3 (no --method optimize) ignored both in silence."""
    photo = write_crops(tmp_path / "in", photos, count=1, side=96) / "00.png"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["invert", str(photo), "--feature", "hog", "--steps", "5", "--restarts", "3", "--out", str(out)]
    )
    assert result.exit_code != 0 and "--steps, --restarts: settings of --method optimize" in result.output
    assert not out.exists()
    assert CliRunner().invoke(main, ["invert", str(photo), "--feature", "hog", "--out", str(out)]).exit_code == 0


def test_a_step_budget_beyond_every_epoch_count_asks_for_fewer_steps(run, tmp_path):
    """Item 12: --max-steps 1000000000 suggested --epochs 500000000, outside --epochs' own range, "2 a epoch"."""
    store, _, _ = run
    args = ["train", "--store", str(store), "--feature", "hog", "--out", str(tmp_path / "r"), "--epochs", "1"]
    args += ["--width", "16", "--target-size", "16", "--batch-size", "8", "--max-steps", "1000000000"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "per epoch); ask for fewer --max-steps" in result.output, result.output
    assert "--epochs 1" not in result.output.split("ask for")[1]


def test_a_pickle_given_as_weights_is_refused_in_one_line_without_torchs_warning(photos, tmp_path):
    """Item 13: torch's "Detected pickle protocol 4" warning printed before preimage's refusal."""
    import pickle

    weights = tmp_path / "w.pth"
    weights.write_bytes(pickle.dumps({"features.0.weight": [1, 2]}, protocol=4))
    photo = write_crops(tmp_path / "in", photos, count=1, side=96) / "00.png"
    args = ["invert", str(photo), "--feature", "alexnet:conv1", "--weights", str(weights), "--out", str(tmp_path / "o")]
    result = subprocess.run([sys.executable, "-m", "preimage", *args], capture_output=True, text=True)  # as a user
    assert result.returncode == 1 and "loads only what cannot run code" in result.stderr, result.stderr
    assert "pickle protocol" not in result.stderr and "warning" not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("case", ["port", "not a directory", "long name"])
def test_system_errors_read_as_words_not_errno_numbers(case, photos, tmp_path):
    """Item 10: "[Errno 98] Address already in use", "[Errno 20] Not a directory", "[Errno 36] File name too long:
    '000...'" with a 300-character name written out whole."""
    import socket

    photo = write_crops(tmp_path / "in", photos, count=1, side=96) / "00.png"
    if case == "port":
        pytest.importorskip("starlette", reason="the explore extra")
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        args, words = ["explore", "--port", str(taken.getsockname()[1])], "Address already in use; another program"
    elif case == "not a directory":
        afile = tmp_path / "afile.zarr"
        afile.write_text("x")
        args = ["extract", "--images", str(photo.parent), "--store", str(afile / "sub.zarr"), "--feature", "hog"]
        words = "Not a directory"
    else:
        long = tmp_path / ("0" * 300)
        args, words = ["invert", str(photo), "--feature", f"hf:{long}:encoder.layer.1"], "File name too long"
    try:
        result = CliRunner().invoke(main, args)
    finally:
        if case == "port":
            taken.close()
    assert result.exit_code == 1 and words in result.output, result.output
    assert "[Errno" not in result.output and "0" * 100 not in result.output, result.output
    assert len(result.output.strip().splitlines()) <= 2, result.output


def test_a_list_reads_relative_paths_from_its_own_folder_and_one_of_missing_files_fails(photos, tmp_path, monkeypatch):
    """Item 8: relative paths in a .txt list resolve against the list's folder (now said in the README), and a list
    whose every line is missing is an error that leaves no store."""
    folder = write_crops(tmp_path / "lists" / "images", photos, count=3, side=64)
    listed = tmp_path / "lists" / "photos.txt"
    listed.write_text("# three crops\nimages/00.png\nimages/01.png\n\nimages/02.png\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths are the list's folder's
    store = tmp_path / "s.zarr"
    args = ["extract", "--images", str(listed), "--store", str(store), "--feature", "hog", "--size", "32"]
    assert CliRunner().invoke(main, [*args, "--workers", "1"]).exit_code == 0
    assert preimage.FeatureStore.open(store).rows == 3 and folder.is_dir()
    missing = tmp_path / "lists" / "missing.txt"
    missing.write_text("images/nope1.png\nimages/nope2.png\n")
    none = tmp_path / "none.zarr"
    args = ["extract", "--images", str(missing), "--store", str(none), "--feature", "hog", "--size", "32"]
    result = CliRunner().invoke(main, [*args, "--workers", "1"])
    assert result.exit_code == 1 and "no readable image" in result.output and not none.exists()


def test_a_taken_dashboard_port_is_not_three_lines_of_dask(photos, tmp_path):
    """Item 14: extract printed dask's "Port 8787 is already in use / Perhaps you already have a cluster running? /
    Hosting the HTTP server on port N instead" when a dashboard ran; the dashboard line names the port taken."""
    import socket

    images = write_crops(tmp_path / "images", photos, count=4, side=64)
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))
        taken.listen(1)
    except OSError:  # taken already: the case itself
        pass
    args = ["extract", "--images", str(images), "--store", str(tmp_path / "s.zarr"), "--feature", "hog"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "preimage", *args, "--size", "32", "--workers", "1"], capture_output=True, text=True
        )
    finally:
        taken.close()
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "already in use" not in said and "Hosting the HTTP server" not in said, said
    assert "dashboard http://127.0.0.1:" in said and "dashboard http://127.0.0.1:8787/" not in said


def test_the_quick_starts_second_invert_writes_beside_the_first(run, tmp_path, monkeypatch):
    """Item 6: invert --decoder runs/hog after invert --feature hog stopped at "out/invert/my.png exist(s) already":
    by default each decoder (and each method) writes in a folder named after it."""
    _, folder, images = run
    hog = shutil.copytree(folder, tmp_path / "runs" / "hog")
    monkeypatch.chdir(tmp_path)
    photo = str(images / "01.png")
    for args, written in (
        (["--feature", "hog"], "hog"),
        (["--decoder", str(hog)], "run-hog"),
        (["--feature", "hog", "--loss", "deepsim"], "hog-deepsim"),
        (["--decoder", "alexnet:conv5+deepsim"], "alexnet-conv5-deepsim"),
        (["--method", "optimize", "--feature", "hog", "--steps", "2"], "optimize-hog"),
    ):
        result = CliRunner().invoke(main, ["invert", photo, *args])
        assert result.exit_code == 0, (args, result.output)
        assert (tmp_path / "out" / "invert" / written / "01.png").is_file(), args
