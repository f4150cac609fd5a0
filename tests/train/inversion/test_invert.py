"""`preimage invert` and `preimage analyze error` on a small trained decoder."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.pipeline.contract import DRAFT_MIN_SIDE, FeatureJob, compute_features
from preimage.pipeline.decode import read_image
from preimage.pipeline.images import center_square
from preimage.train.inversion.invert import decoder_job
from preimage.train.models.loading import load_decoder
from preimage.train.training.evaluation import evaluate


def test_features_of_a_file_equal_its_stored_row(run):
    store_path, run_dir, images = run
    store = FeatureStore.open(store_path)
    job, size, _ = decoder_job(run_dir)
    assert job == FeatureJob.from_attrs(dict(store.features("hog").attrs))
    row = [str(v) for v in store.array("ids")[:].tolist()].index("07.png")
    crop = center_square(read_image(images / "07.png", DRAFT_MIN_SIDE), size)
    computed = compute_features([job], {size: crop[None]})["hog"][0]
    np.testing.assert_array_equal(computed, store.features("hog")[row])


def test_invert_writes_original_and_reconstruction(run, tmp_path):
    _, run_dir, images = run
    result = CliRunner().invoke(
        main,
        ["invert", str(images / "01.png"), str(images / "02.png"), "--decoder", str(run_dir), "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    import cv2

    picture = cv2.imread(str(tmp_path / "01.png"))
    assert picture.shape == (32, 64, 3)  # 32x32 original | reconstruction up-sampled from 16x16


def test_analyze_error_reports_the_labelled_metrics(run):
    store_path, run_dir, _ = run
    result = CliRunner().invoke(main, ["analyze", "error", "--store", str(store_path), "--decoder", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "normalised error (Dosovitskiy & Brox, image space)" in result.output and "PSNR" in result.output
    printed = float(result.output.split("image space): ")[1].split()[0])
    # the number the study prints is the paper's error of this decoder on the held-out rows, computed here apart
    store = FeatureStore.open(store_path)
    expected = evaluate(load_decoder(run_dir, store), store, feature="hog", max_rows=1000)["normalised_error"]
    assert printed == pytest.approx(expected, abs=1e-4) and 0 < printed < 2


def test_invert_names_the_file_it_cannot_read_and_writes_the_others(run, tmp_path):
    _, run_dir, images = run
    notes = tmp_path / "notes.txt"
    notes.write_text("not pixels")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["invert", str(images / "01.png"), str(notes), "--decoder", str(run_dir), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert f"{notes}: not an image" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["01.png"]  # the readable photo is not lost


def _error_of(output: str) -> float:
    return float(output.split("image space): ")[1].split()[0])


def test_analyze_error_and_layers_score_the_same_rows_alike(run, tmp_path):
    store_path, run_dir, _ = run
    error = CliRunner().invoke(main, ["analyze", "error", "--store", str(store_path), "--decoder", str(run_dir)])
    layers = CliRunner().invoke(
        main, ["analyze", "layers", "--store", str(store_path), "--decoder", str(run_dir), "--out", str(tmp_path)]
    )
    assert error.exit_code == 0 and layers.exit_code == 0, error.output + layers.output
    (row,) = json.loads((tmp_path / "layers.json").read_text())
    assert row["normalised_error"] == pytest.approx(_error_of(error.output), abs=1e-4)
    assert f"decoder hog: {run_dir}" in layers.output  # says which run it scored


def test_split_all_scores_every_row_of_a_store(run):
    store_path, run_dir, _ = run
    args = ["analyze", "error", "--store", str(store_path), "--decoder", str(run_dir), "--split"]
    every = CliRunner().invoke(main, [*args, "all"])
    held = CliRunner().invoke(main, [*args, "heldout"])
    assert every.exit_code == 0, every.output
    rows = int((FeatureStore.open(store_path).status() == 1).sum())
    assert f"on {rows} all rows" in every.output
    assert f"on {rows} all rows" not in held.output


def test_layers_names_the_newest_run_it_chose_and_takes_explicit_runs(run, tmp_path):
    store_path, run_dir, _ = run
    runs = tmp_path / "runs"
    for name in ("older", "newer"):
        shutil.copytree(run_dir, runs / name)
        time.sleep(0.05)  # distinct checkpoint times
    os.utime(runs / "newer" / "checkpoint.safetensors")
    common = ["analyze", "layers", "--store", str(store_path), "--out", str(tmp_path / "a"), "--overwrite", "--decoder"]
    chosen = CliRunner().invoke(main, [*common, str(runs)])
    assert chosen.exit_code == 0, chosen.output
    assert f"decoder hog: {runs / 'newer'} (chosen over {runs / 'older'}" in chosen.output
    explicit = CliRunner().invoke(main, [*common, str(runs / "older")])
    assert explicit.exit_code == 0 and f"decoder hog: {runs / 'older'}\n" in explicit.output
    twice = CliRunner().invoke(main, [*common, str(runs / "older"), "--decoder", str(runs / "newer")])
    assert twice.exit_code != 0 and "two runs of hog given" in twice.output
    old_spelling = CliRunner().invoke(main, [*common[:-1], "--decoders", str(runs / "older")])
    assert old_spelling.exit_code == 0 and f"decoder hog: {runs / 'older'}" in old_spelling.output


def test_invert_writes_under_out_invert_by_default(run, tmp_path, monkeypatch):
    _, run_dir, images = run
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["invert", str(images / "01.png"), "--decoder", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "invert" / f"run-{run_dir.name}" / "01.png").is_file()  # a folder per decoder


def test_the_python_api_inverts_as_the_command_does(run, tmp_path):
    import cv2

    import preimage

    _, run_dir, images = run
    CliRunner().invoke(main, ["invert", str(images / "03.png"), "--decoder", str(run_dir), "--out", str(tmp_path)])
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "03.png")), cv2.COLOR_BGR2RGB)[:, 32:]
    from_file = preimage.invert(images / "03.png", decoder=run_dir)
    assert from_file.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal((from_file[0].permute(1, 2, 0) * 255).round().byte().numpy(), written)
    pixels = cv2.cvtColor(cv2.imread(str(images / "03.png")), cv2.COLOR_BGR2RGB)
    as_floats = torch.from_numpy(pixels).float()[None] / 255  # (1, H, W, 3) in [0, 1]
    torch.testing.assert_close(preimage.invert(as_floats, decoder=run_dir), from_file)
    torch.testing.assert_close(preimage.invert(as_floats.permute(0, 3, 1, 2), decoder=run_dir), from_file)
    decoder = preimage.load_decoder(run_dir)
    assert decoder(torch.rand(2, 4, 4, 31)).shape == (2, 3, 16, 16)


def test_several_decoders_reconstruct_as_each_alone_with_each_model_run_once(photos, monkeypatch):
    """reconstruct_each: the pixel and perceptual decoders of a layer and two layers of one network share one
    forward pass per batch, and give what each gives alone."""
    import preimage.train.inversion.invert as invert

    images = [photos[name] for name in sorted(photos)][:3]
    names = ["alexnet:conv3", "alexnet:conv3+deepsim", "alexnet:conv5", "hog"]
    alone = [invert.reconstruct_arrays(images, name) for name in names]
    calls = []

    def counted(jobs, batches, timer=None):
        calls.append(sorted(job.name for job in jobs))
        return compute_features(jobs, batches, timer)

    monkeypatch.setattr(invert, "compute_features", counted)
    together = invert.reconstruct_each(images, names)
    assert calls == [["alexnet:conv3", "alexnet:conv5", "hog"]]  # one call, each feature once
    for (crops, recon), (crops_alone, recon_alone) in zip(together, alone, strict=True):
        assert np.array_equal(crops, crops_alone) and torch.equal(recon, recon_alone)
