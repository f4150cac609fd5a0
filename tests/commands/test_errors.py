"""Every expected failure of the command line: one `Error:` line naming the thing and what to do, exit code 1, no
traceback (`-v` shows it), and nothing created on disk by an argument error."""

from __future__ import annotations

import itertools
import json
import pickle
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from preimage.cli import main
from preimage.train.models.checkpoint import CheckpointError
from preimage.train.models.loading import load_decoder


def fails_cleanly(args: list[str], *fragments: str) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "\nError: " in "\n" + result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    return result.output


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.write_bytes(pickle.dumps({"weights": [1, 2, 3]})),
        lambda f: f.write_bytes(f.read_bytes()[:100]),
    ],
    ids=["pickle", "truncated"],
)
def test_a_run_folder_with_a_foreign_checkpoint_names_the_file(run, tmp_path, damage):
    store, run_dir, images = run
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    damage(broken / "checkpoint.safetensors")
    named = str(broken / "checkpoint.safetensors")
    fails_cleanly(["invert", str(images / "01.png"), "--decoder", str(broken), "--out", str(tmp_path / "o")], named)
    fails_cleanly(["analyze", "error", "--store", str(store), "--decoder", str(broken)], named)
    args = ["train", "--store", str(store), "--feature", "hog", "--out", str(broken), "--target-size", "16"]
    fails_cleanly([*args, "--epochs", "1", "--batch-size", "8", "--width", "16", "--resume"], named)
    assert not (tmp_path / "o").exists()
    verbose = CliRunner().invoke(main, ["-v", "analyze", "error", "--store", str(store), "--decoder", str(broken)])
    assert verbose.exit_code == 1 and isinstance(verbose.exception, CheckpointError)  # -v: the real exception


def test_a_crafted_header_is_refused_before_anything_is_allocated(run, tmp_path):
    _, run_dir, images = run
    header = json.loads(json.loads(json.dumps(_metadata(run_dir)))["header"])
    header["decoder"]["width"] = 200_000  # 720 GB of weights, were they allocated
    folder = tmp_path / "crafted"
    folder.mkdir()
    save_file({"model.x": torch.zeros(1)}, str(folder / "checkpoint.safetensors"), {"header": json.dumps(header)})
    with pytest.raises(CheckpointError, match=r"width 200000.*outside the bounds"):
        load_decoder(folder)
    header["decoder"]["width"] = 32  # within bounds, but the tensors do not fit it
    save_file({"model.x": torch.zeros(1)}, str(folder / "checkpoint.safetensors"), {"header": json.dumps(header)})
    fails_cleanly(["invert", str(images / "01.png"), "--decoder", str(folder)], "tensors do not match")


def _metadata(run_dir) -> dict:
    from safetensors import safe_open

    with safe_open(str(run_dir / "checkpoint.safetensors"), framework="pt") as f:
        return f.metadata()


def test_a_run_json_that_is_not_json_names_the_file(run, tmp_path):
    store, run_dir, _ = run
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "run.json").write_bytes(pickle.dumps({"config": 1}))
    fails_cleanly(["analyze", "error", "--store", str(store), "--decoder", str(broken)], f"{broken / 'run.json'}")


def test_a_file_named_h5_that_is_not_hdf5_is_named_and_nothing_is_created(tmp_path):
    fake = tmp_path / "images.h5"
    fake.write_text("not hdf5")
    fails_cleanly(
        ["extract", "--images", str(fake), "--store", str(tmp_path / "s.zarr")], f"{fake}: not a readable HDF5"
    )
    assert not (tmp_path / "s.zarr").exists()


def test_argument_errors_leave_no_store_behind(run, tmp_path):
    _, _, images = run
    fails_cleanly(["extract", "--images", str(tmp_path / "nowhere"), "--store", str(tmp_path / "a.zarr")])
    fails_cleanly(
        ["extract", "--images", str(images), "--store", str(tmp_path / "b.zarr"), "--feature", "nope"],
        "unknown representation 'nope'",
    )
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_a_feature_missing_from_the_store_says_what_it_holds(run, tmp_path):
    store, _, _ = run
    args = ["train", "--store", str(store), "--feature", "lbp", "--out", str(tmp_path / "r")]
    fails_cleanly(args, "has no lbp features (it holds: hog)", "--feature lbp")
    assert not (tmp_path / "r").exists()


def test_invert_keeps_same_named_inputs_apart_and_overwrites_only_when_asked(run, tmp_path):
    _, run_dir, images = run
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(images / "01.png", a / "photo.png")
    shutil.copy(images / "02.png", b / "photo.png")
    out = tmp_path / "out"
    args = ["invert", str(a / "photo.png"), str(b / "photo.png"), "--decoder", str(run_dir), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    first = {name: (out / name / "photo.png").read_bytes() for name in ("a", "b")}
    assert first["a"] != first["b"]  # two pictures, not one written twice
    fails_cleanly(args, f"{out / 'a' / 'photo.png'}", "--overwrite")
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0


def test_export_and_studies_refuse_to_overwrite_unless_asked(run, tmp_path):
    store, run_dir, _ = run
    unrelated = tmp_path / "unrelated.h5"
    unrelated.write_bytes(b"someone else's data")
    fails_cleanly(["export", str(store), "--h5", str(unrelated)], f"{unrelated} exists already", "--overwrite")
    assert unrelated.read_bytes() == b"someone else's data"
    assert CliRunner().invoke(main, ["export", str(store), "--h5", str(unrelated), "--overwrite"]).exit_code == 0

    study = ["analyze", "layers", "--store", str(store), "--decoder", str(run_dir), "--out", str(tmp_path / "s")]
    assert CliRunner().invoke(main, study).exit_code == 0
    before = (tmp_path / "s" / "layers.json").read_bytes()
    fails_cleanly(study, "holds a layers study already", "--overwrite")
    assert (tmp_path / "s" / "layers.json").read_bytes() == before
    assert CliRunner().invoke(main, [*study, "--overwrite"]).exit_code == 0


def test_train_never_writes_over_another_runs_folder(run, tmp_path):
    store, run_dir, _ = run
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    (other / "checkpoint.safetensors").unlink()  # a folder another run began
    args = ["train", "--store", str(store), "--feature", "hog", "--out", str(other), "--width", "32"]
    fails_cleanly(args, "holds the run.json of another run (other batch_size, target_size, width)")


def test_a_usage_mistake_is_one_error_line_naming_the_help(tmp_path):
    """A missing store, a store that is a file, a size out of range, a missing image: one line, exit 1."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args, fragment in [
        (["train", "--store", str(tmp_path / "none"), "--feature", "hog", "--out", str(tmp_path / "r")], "--store"),
        (["info", str(afile)], "is a file, not a store"),
        (
            ["extract", "--size", "7", "--store", str(tmp_path / "s.zarr"), "--feature", "hog"],
            "'--size': 7 is not in the range",
        ),
        (["invert", str(tmp_path / "none.jpg"), "--feature", "hog"], "does not exist"),
        (["features", "--size", "0"], "--size"),
    ]:
        output = fails_cleanly(args, fragment, "--help")
        assert "Usage:" not in output and len(output.strip().splitlines()) == 1, output
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "r").exists()


def test_features_lists_each_layer_as_a_store_of_that_size_holds_it():
    from preimage.pipeline.contract import stored_row_shape

    for size in (16, 48, 128):
        result = CliRunner().invoke(main, ["features", "--size", str(size)])
        assert result.exit_code == 0, result.output
        rows = {line.split()[0]: line.split()[4] for line in result.output.splitlines()[1:] if line[:1].strip()}
        c, h, w = stored_row_shape("alexnet:conv3", 224)  # every CNN is fed its own side
        assert rows["alexnet:conv3"] == f"{h}x{w}x{c}" == "13x13x384"
        assert rows["hog"] == "x".join(map(str, stored_row_shape("hog", size)))


def test_a_misspelt_representation_or_a_missing_model_folder_says_what_was_meant(tmp_path):
    extract = ["extract", "--store", str(tmp_path / "s.zarr"), "--feature"]
    fails_cleanly([*extract, "hgo"], "did you mean hog?")
    fails_cleanly([*extract, "hf:./no-such-folder:layers.1"], "hf:./no-such-folder: no such folder")
    assert not (tmp_path / "s.zarr").exists()


def test_invert_writes_every_readable_image_and_reports_the_others(run, tmp_path):
    _, run_dir, images = run
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    out = tmp_path / "inverted"
    output = fails_cleanly(
        ["invert", str(images / "01.png"), str(notes), "--decoder", str(run_dir), "--out", str(out)],
        "1 of 2 files skipped",
        f"{notes}: not an image",
    )
    assert (out / "01.png").is_file() and not (out / "notes.png").exists(), output
    fails_cleanly(
        ["invert", str(notes), "--decoder", str(run_dir), "--out", str(tmp_path / "none")], "no readable image"
    )
    assert not (tmp_path / "none").exists()


def test_too_few_rows_for_a_batch_names_the_option(run, tmp_path):
    store, _, _ = run
    fails_cleanly(
        [
            "train",
            "--store",
            str(store),
            "--feature",
            "hog",
            "--out",
            str(tmp_path / "r"),
            "--batch-size",
            "10000",
            "--epochs",
            "1",
        ],
        "fewer than one batch of 10000",
        "--batch-size",
    )


def test_a_run_writes_a_bounded_number_of_previews():
    from preimage.train.training.trainer import MAX_PREVIEWS, previewed

    for epochs in (1, 5, 12, 13, 200):
        written = [e for e in range(epochs) if previewed(e, epochs)]
        assert len(written) <= MAX_PREVIEWS and written[-1] == epochs - 1  # bounded, the last epoch always
        if epochs <= MAX_PREVIEWS:
            assert written == list(range(epochs))  # few epochs: every one
        else:
            gaps = [b - a for a, b in itertools.pairwise(written)]
            assert len(written) >= MAX_PREVIEWS // 2 and max(gaps) <= -(-epochs // MAX_PREVIEWS)  # evenly spread
    assert [e for e in range(13) if previewed(e, 13)] == [1, 3, 5, 7, 9, 11, 12]  # by hand: every 2nd, and the last
    assert [e for e in range(200) if previewed(e, 200)] == [*range(16, 187, 17), 199]  # every 17th, and the last


BEFORE_SHAPING_STORE = Path(__file__).resolve().parents[1] / "data" / "before-shaping" / "store.zarr"


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--batch-size", "0", "Invalid value for '--batch-size': 0 is not in the range 1<=x<=65536"),
        ("--epochs", "0", "Invalid value for '--epochs': 0 is not in the range 1<=x<=1000000"),
        ("--held-out", "1.5", "Invalid value for '--held-out': 1.5 is not in the range 0<x<1"),
        ("--lr", "nan", "Invalid value for '--lr': 'nan' is not a finite number"),
        (
            "--target-size",
            "64 --batch-size 8",
            "stored images of 32 pixels cannot be averaged down to 64 (--target-size)",
        ),
    ],
)
def test_a_training_setting_out_of_range_is_one_line_and_leaves_no_run(tmp_path, option, value, says):
    """Issue 49: --batch-size 0 was a ZeroDivisionError, --epochs 0 left an untrained run, --held-out 1.5 ended in
    'give --batch-size 1 or less'; a --target-size the stored images cannot be averaged down to left a run folder
    with an untrained checkpoint (found by the fuzz tests)."""
    store = tmp_path / "store.zarr"
    shutil.copytree(BEFORE_SHAPING_STORE, store)
    fails_cleanly(
        ["train", "--store", str(store), "--feature", "hog", "--out", str(tmp_path / "run"), option, *value.split()],
        says,
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "setting, says",
    [
        ({"batch_size": 0}, "--batch-size must be at least 1; got 0"),
        ({"epochs": 0}, "--epochs must be at least 1; got 0"),
        ({"held_out": 1.5}, "--held-out is the fraction of photos kept out of training, in (0, 1); got 1.5"),
        ({"lr": float("nan")}, "--lr must be a finite number, at least 0; got nan"),
    ],
)
def test_the_python_api_refuses_the_same_settings_before_writing(tmp_path, setting, says):
    from preimage.train.training.trainer import TrainConfig, train

    config = TrainConfig(str(BEFORE_SHAPING_STORE), "hog", str(tmp_path / "run"), **setting)
    with pytest.raises(ValueError, match=re.escape(says)):
        train(config, show_progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["invert", "--method", "optimize", "--feature", "hog"], ["extract"], ["features"]])
@pytest.mark.parametrize("size", ["7", "100000"])
def test_an_image_side_out_of_range_is_refused_by_every_command_alike(tmp_path, args, size):
    """Issue 49: invert --size 100000 was a cv2 traceback (30 GB asked), --size 7 was accepted by invert alone."""
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((32, 32, 3), 128, np.uint8))
    where = {
        "invert": [str(photo), "--out", str(tmp_path / "out")],
        "extract": ["--images", str(tmp_path), "--store", str(tmp_path / "s.zarr")],
        "features": [],
    }[args[0]]
    result = CliRunner().invoke(main, [*args, *where, "--size", size])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"Invalid value for '--size': {size} is not in the range 16<=x<=4096" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.zarr").exists()


def test_extract_names_the_one_option_that_is_wrong(tmp_path):
    """Issue 49: --size 7 and --shard-rows 0 each gave one combined message."""
    result = CliRunner().invoke(
        main, ["extract", "--images", str(tmp_path), "--store", str(tmp_path / "s.zarr"), "--shard-rows", "0"]
    )
    assert result.exit_code == 1 and "'--shard-rows': 0 is not in the range 1<=x<=1048576" in result.output
    assert "--size" not in result.output.split("Error:")[-1]


def test_a_mistyped_name_gets_the_nearest_names_not_the_whole_list(tmp_path):
    """Issue 49: invert --feature hgo, invert --feature alexnet:cnv5, zoo hgo and features --model alexnt listed
    everything; train --feature hgo suggested an extract that would itself fail."""
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((32, 32, 3), 128, np.uint8))
    store = tmp_path / "store.zarr"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "before-shaping" / "store.zarr", store)
    for args, says in [
        (["invert", str(photo), "--feature", "hgo", "--out", str(tmp_path / "o")], "did you mean hog?"),
        (
            ["invert", str(photo), "--feature", "alexnet:cnv5", "--out", str(tmp_path / "o")],
            "did you mean alexnet:conv5",
        ),
        (["zoo", "hgo"], "did you mean hog?"),
        (["features", "--model", "alexnt"], "did you mean alexnet?"),
        (["train", "--store", str(store), "--feature", "hgo", "--out", str(tmp_path / "r")], "did you mean hog?"),
    ]:
        output = fails_cleanly(args, says)
        assert "shipped: " not in output and "preimage extract" not in output, output
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


def test_a_folder_without_a_readable_image_is_refused_and_leaves_no_store(tmp_path):
    """Issue 49: a folder of non-images made a store of unreadable rows and exited 0 (train then said '0 training
    rows ... give --batch-size 1 or less')."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_text("not a photo")
    (folder / "notes.txt").write_text("x")
    store = tmp_path / "s.zarr"
    args = ["extract", "--images", str(folder), "--store", str(store), "--feature", "hog", "--workers", "1"]
    fails_cleanly(args, "no readable image among the 2 files", "a.jpg: not an image", "nothing was written")
    assert not store.exists()


def test_invert_has_the_max_pixels_its_refusal_names(tmp_path):
    """Issue 49: invert refused a bomb saying to use --max-pixels, which invert did not have."""
    from ..bad_images import header_only_png

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(header_only_png(30000, 30000))
    output = fails_cleanly(["invert", str(bomb), "--feature", "hog", "--out", str(tmp_path / "o")], "--max-pixels")
    assert "900,000,000" in output or "30000x30000" in output, output
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 128, np.uint8))
    args = ["invert", str(photo), "--feature", "hog", "--out", str(tmp_path / "p")]
    fails_cleanly([*args, "--max-pixels", "1000"], "--max-pixels")  # 4,096 pixels: refused at this bound
    assert CliRunner().invoke(main, [*args, "--max-pixels", "5000"]).exit_code == 0
    assert (tmp_path / "p" / "photo.png").is_file()


@pytest.mark.parametrize("damaged", ["zarr.json", "features/hog/zarr.json"])
def test_a_damaged_zarr_json_is_named_with_what_repair_cannot_rebuild(tmp_path, damaged):
    """Issue 49: one byte changed in a zarr.json made verify, info, train and extract --repair say only 'Invalid
    control character at: line 1 column 10'."""
    store = tmp_path / "store.zarr"
    shutil.copytree(BEFORE_SHAPING_STORE, store)
    metadata = bytearray((store / damaged).read_bytes())
    metadata[9] = 0x01
    (store / damaged).write_bytes(bytes(metadata))
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    says = (f"{store / damaged} is damaged (Invalid control character at line", "extract --repair cannot rebuild")
    for args in (
        ["info", str(store)],
        ["verify", str(store)],
        ["train", "--store", str(store), "--feature", "hog", "--out", str(tmp_path / "run"), "--target-size", "16"],
        ["extract", "--images", str(images), "--store", str(store), "--feature", "hog", "--repair"],
    ):
        output = fails_cleanly(args, *says)
        assert len([line for line in output.splitlines() if line.startswith("Error:")]) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("suffix", [".txt", ".pt", ".safetensors"])
def test_a_weights_file_that_is_not_one_is_the_error_never_skipped_for_other_weights(tmp_path, suffix):
    """Found by the fuzz tests: invert --weights NOTES.txt was a 40-line UnpicklingError traceback (a .safetensors
    one a SafetensorError); and a given file that could not be loaded was skipped for the next source of weights,
    so once the error was a WeightsUnavailable, the picture came from weights the user did not give."""
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((40, 40, 3), 90, np.uint8))
    notes = tmp_path / f"notes{suffix}"
    notes.write_text("not what was asked for")
    out = tmp_path / "out"
    output = fails_cleanly(
        ["invert", str(photo), "--feature", "alexnet:conv1", "--weights", str(notes), "--out", str(out)]
    )
    assert f"Error: {notes} is not a" in output and len(output.strip().splitlines()[-1]) < 300
    assert not out.exists()
