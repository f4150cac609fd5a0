"""The studies of `preimage analyze`: each perturbation keeps its promise, histogram sampling reproduces the
marginals, interpolation ends at the endpoints, and every study writes every promised file on a tiny store."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

from preimage.analysis.ablate import ablate_top_k
from preimage.analysis.interpolate import interpolate
from preimage.analysis.perturb import binarize, drop_smallest, dropout, perturb
from preimage.analysis.runs import decode
from preimage.analysis.sample import histograms, sample_gaussian, sample_histograms
from preimage.cli import main
from preimage.pipeline.backbones import WeightsUnavailable, create_backbone
from preimage.pipeline.sources import folder_source
from preimage.train.models.loading import load_decoder
from preimage.train.training.trainer import TrainConfig, train

from ..helpers import make_store, run_extract


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).norm(dim=1)


@pytest.fixture
def relu_like() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.relu(torch.randn(4, 16, 6, 6, generator=g))


def test_binarize_keeps_signs_and_norm_with_one_magnitude():
    x = torch.tensor([[3.0, -4.0, 0.0, 1.0]])
    y = binarize(x)
    assert torch.equal(torch.sign(y), torch.sign(x))
    torch.testing.assert_close(_norms(y), _norms(x))
    assert len(set(y[y != 0].abs().tolist())) == 1


def test_dropout_zeroes_half_and_restores_the_norm(relu_like):
    y = dropout(relu_like, 0.5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(_norms(y), _norms(relu_like))
    kept = (y != 0).sum() / (relu_like != 0).sum()
    assert 0.4 < float(kept) < 0.6
    assert ((y == 0) | (relu_like != 0)).all()  # nothing appears where there was a zero


def test_drop_smallest_halves_the_nonzeros_and_keeps_the_largest_exactly(relu_like):
    y = drop_smallest(relu_like, 0.5)
    for row_x, row_y in zip(relu_like.flatten(1), y.flatten(1), strict=True):
        nonzero = row_x[row_x != 0]
        assert int((row_y != 0).sum()) == len(nonzero) - len(nonzero) // 2
        kept = row_y[row_y != 0]
        assert kept.min() >= nonzero.sort().values[len(nonzero) // 2 - 1]  # every kept one beats every dropped one
        assert torch.equal(row_y[row_y != 0], row_x[row_y != 0])


def test_combinations_are_binarised_and_seeded(relu_like):
    a = perturb("dropout50+binarize", relu_like, seed=3)
    b = perturb("dropout50+binarize", relu_like, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, perturb("dropout50+binarize", relu_like, seed=4))
    for row in a.flatten(1):
        assert len(set(row[row != 0].tolist())) == 1
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb("shuffle", relu_like)


def test_interpolation_ends_are_the_endpoints_and_the_path_is_straight():
    a, b = torch.rand(3, 4, 4), torch.rand(3, 4, 4)
    path = interpolate(a, b, 5)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    torch.testing.assert_close(path[2], (a + b) / 2)
    with pytest.raises(ValueError):
        interpolate(a, torch.rand(2, 4, 4), 5)


def test_histogram_sampling_reproduces_the_marginals_of_a_synthetic_store(tmp_path):
    """Three kinds of dimension (uniform, half zeros + exponential, Gaussian), written as a zarr array and read
    by dask: samples (alpha 1) pass a two-sample Kolmogorov-Smirnov test per dimension, sparsity included."""
    import zarr

    rng = np.random.default_rng(0)
    n = 4096
    columns = [rng.uniform(1, 3, n), np.where(rng.random(n) < 0.5, 0, rng.exponential(2, n)), rng.normal(0, 1, n)]
    real = np.stack(columns, 1).astype(np.float32)
    array = zarr.create_array(str(tmp_path / "v.zarr"), shape=real.shape, chunks=(64, 3), dtype="float32")
    array[:] = real
    h = histograms(da.from_zarr(str(tmp_path / "v.zarr")))
    drawn = sample_histograms(h, 20000, alpha=1.0, seed=1).numpy()
    for d in range(3):
        assert stats.ks_2samp(real[:, d], drawn[:, d]).pvalue > 0.01, f"dimension {d}"
    assert abs((drawn[:, 1] == 0).mean() - 0.5) < 0.02
    torch.testing.assert_close(sample_histograms(h, 8, 2.0, seed=5), 2 * sample_histograms(h, 8, 1.0, seed=5))
    gaussian = sample_gaussian(h, 20000).numpy()
    assert abs((gaussian == 0).mean() - h.sparsity) < 0.02


def test_gaussian_samples_are_rectified_only_for_rectified_features():
    rng = np.random.default_rng(0)
    relu = np.maximum(rng.normal(0, 1, (2048, 8)), 0).astype(np.float32)  # about half zeros, never negative
    scores = rng.normal(-2, 1, (2048, 8)).astype(np.float32)  # class scores: signed, no zeros
    rectified = sample_gaussian(histograms(da.from_array(relu, chunks=(256, 8))), 20000).numpy()
    assert rectified.min() == 0 and abs((rectified == 0).mean() - (relu == 0).mean()) < 0.02
    signed = sample_gaussian(histograms(da.from_array(scores, chunks=(256, 8))), 20000).numpy()
    assert abs(signed.mean() + 2) < 0.05 and abs(signed.std() - 1) < 0.05


def test_top_k_ablation_keeps_or_zeroes_exactly_the_largest():
    scores = torch.tensor([[5.0, -1.0, 3.0, 9.0, 0.5, 7.0, 2.0]])
    variants = ablate_top_k(scores, 2)
    assert variants["top-2 only"].tolist() == [[0, 0, 0, 9.0, 0, 7.0, 0]]
    assert variants["top-2 zeroed"].tolist() == [[5.0, -1.0, 3.0, 0, 0.5, 0, 2.0]]
    assert torch.equal(variants["all scores"], scores)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, dask_client, photos):
    """A 96-image store with HOG and EfficientNet-Lite0 class scores, and a small decoder for each."""
    try:
        create_backbone("efficientnet_lite0")
    except WeightsUnavailable as err:
        pytest.skip(f"no EfficientNet-Lite0 weights here: {err}")
    root = tmp_path_factory.mktemp("studies")
    store = make_store(root, dask_client, photos, 32)
    run_extract(
        store, folder_source(root / "images"), "efficientnet_lite0:logits", dask_client, image_size=32, shard_rows=8
    )
    for feature, name in (("hog", "hog"), ("efficientnet_lite0:logits", "logits")):
        config = TrainConfig(
            str(store),
            feature,
            str(root / "runs" / name),
            target_size=16,
            epochs=1,
            batch_size=8,
            width=16,
            eval_rows=8,
        )
        train(config, show_progress=False)
    return store, root / "runs"


STUDIES = {
    "layers": ([], ["layers.json", "layers.md", "layers.png", "layers-grid.png"]),
    "perturb": (["--n", "8"], ["perturb.json", "perturb.md", "perturb.png", "perturb-hog.png", "perturb-logits.png"]),
    "interpolate": (["--steps", "4"], ["interpolate.json", "interpolate.png"]),
    "sample": (["--vectors", "64", "--samples", "3"], ["sample.json", "sample.md", "sample.png"]),
    "ablate": (["--n", "3", "--error-rows", "6"], ["ablate.json", "ablate.md", "ablate.png"]),
    "channels": (["--feature", "hog", "--channels", "0:18"], ["channels.json", "channels.md", "channels.png"]),
    "window": (["--feature", "hog", "--window", "2"], ["window.json", "window.md", "window.png"]),
}


@pytest.mark.parametrize("study", list(STUDIES))
def test_every_study_writes_every_promised_file(tiny, tmp_path, study):
    store, runs = tiny
    args, files = STUDIES[study]
    result = CliRunner().invoke(
        main, ["analyze", study, "--store", str(store), "--decoder", str(runs), "--out", str(tmp_path), *args]
    )
    assert result.exit_code == 0, result.output
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
    index = (tmp_path / "index.md").read_text()
    assert f"## {study}" in index
    for name in files:
        if name.endswith(".png"):
            assert f"]({name})" in index


def test_studies_share_one_index(tiny, tmp_path):
    store, runs = tiny
    common = ["--store", str(store), "--decoder", str(runs), "--out", str(tmp_path)]
    for study, again in (("layers", []), ("interpolate", []), ("layers", ["--overwrite"])):
        assert CliRunner().invoke(main, ["analyze", study, *common, *again]).exit_code == 0
    index = (tmp_path / "index.md").read_text()
    assert index.count("## layers") == 1 and index.count("## interpolate") == 1


def test_interpolation_figure_ends_at_the_endpoints_reconstructions(tiny, tmp_path):
    store, runs = tiny
    from preimage.cache.store import FeatureStore

    opened = FeatureStore.open(store)
    model = load_decoder(runs / "hog", opened, "hog")
    settings_run = CliRunner().invoke(
        main,
        [
            "analyze",
            "interpolate",
            "--store",
            str(store),
            "--decoder",
            str(runs),
            "--feature",
            "hog",
            "--steps",
            "3",
            "--out",
            str(tmp_path),
        ],
    )
    assert settings_run.exit_code == 0, settings_run.output
    rows = json.loads((tmp_path / "interpolate.json").read_text())["rows"]
    features = torch.from_numpy(opened.features("hog").oindex[rows]).float()
    path = interpolate(features[0], features[1], 3)
    torch.testing.assert_close(decode(model, path)[[0, -1]], decode(model, features))


def test_ablate_needs_a_class_score_decoder(tiny, tmp_path):
    store, runs = tiny
    result = CliRunner().invoke(
        main, ["analyze", "ablate", "--store", str(store), "--decoder", str(runs), "--feature", "hog"]
    )
    assert result.exit_code != 0 and "no decoder of class scores" in result.output


def test_analyze_layers_says_how_many_photos_it_scored(tiny, tmp_path):
    """Issue 62, item 9: it scored 3 photos of a 40-photo store and its index said "up to 1000"."""
    store, runs = tiny
    args = ["analyze", "layers", "--store", str(store), "--decoder", str(runs), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "layers.json").read_text())
    counts = {row["images"] for row in table}
    assert len(counts) == 1 and 0 < min(counts) < 1000
    (scored,) = counts
    header = next(line for line in result.output.splitlines() if "normalised error" in line)
    assert header.split("|")[2].strip() == "held-out images"  # the printed table's first column after the name
    assert f"on {scored} held-out images" in (tmp_path / "index.md").read_text()
    assert "up to" not in (tmp_path / "index.md").read_text()
