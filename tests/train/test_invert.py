"""`preimage invert` and `preimage analyze error` on a small trained decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.pipeline.decode import read_image
from preimage.pipeline.extract import DRAFT_MIN_SIDE, FeatureJob, compute_features
from preimage.pipeline.images import center_square
from preimage.train.invert import decoder_job
from preimage.train.trainer import TrainConfig, train

from .test_trainer import make_store


@pytest.fixture(scope="module")
def run(tmp_path_factory, dask_client, photos):
    root = tmp_path_factory.mktemp("invert")
    store = make_store(root, dask_client, photos, 32)
    config = TrainConfig(str(store), "hog", str(root / "run"), target_size=16, epochs=1, batch_size=8, width=16)
    train(config, show_progress=False)
    return store, root / "run", root / "images"


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
    assert torch.isfinite(torch.tensor(float(result.output.split("image space): ")[1].split()[0])))


def test_invert_names_the_file_it_cannot_read_and_writes_nothing(run, tmp_path):
    _, run_dir, images = run
    notes = tmp_path / "notes.txt"
    notes.write_text("not pixels")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["invert", str(images / "01.png"), str(notes), "--decoder", str(run_dir), "--out", str(out)]
    )
    assert result.exit_code != 0
    assert f"{notes}: not an image" in result.output
    assert not out.exists() or not any(out.iterdir())
