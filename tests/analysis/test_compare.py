"""`preimage analyze compare` and `preimage invert --method optimize` on a small store and decoder."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
from click.testing import CliRunner

from preimage.analysis.compare import COLUMNS, KEYS
from preimage.analysis.report import markdown_table
from preimage.analysis.runs import heldout_rows, mean_image, read_images, trained_runs
from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.train.scoring.metrics import feature_error, mean_pairwise_squared_distance, normalised_error
from preimage.train.training.trainer import TrainConfig, train

from ..helpers import make_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dask_client, photos):
    root = tmp_path_factory.mktemp("compare")
    store = make_store(root, dask_client, photos, 32)
    config = TrainConfig(
        str(store), "hog", str(root / "runs" / "hog"), target_size=16, epochs=1, batch_size=8, width=16
    )
    train(config, show_progress=False)
    return store, root / "runs", root / "images"


def test_mean_pairwise_squared_distance_by_hand():
    rows = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert mean_pairwise_squared_distance(rows) == pytest.approx((25 + 100 + 25) / 3)
    assert feature_error(rows[1:2], rows[0:1], 50.0).item() == pytest.approx(0.5)


def test_compare_writes_one_labelled_table_and_one_figure(trained, tmp_path):
    store, runs, _ = trained
    out = tmp_path / "cmp"
    args = ["analyze", "compare", "--store", str(store), "--decoder", str(runs), "--feature", "hog"]
    result = CliRunner().invoke(main, [*args, "--n", "6", "--steps", "40", "--out", str(out), "--columns", "4"])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "compare.json").read_text())
    assert [row["method"] for row in table] == ["decoder", "optimisation", "mean image"]
    for row in table:
        assert row["images"] == 6 and all(row[key] > 0 for key in ("normalised_error", "feature_error", "psnr"))
    assert table[0]["seconds_per_image"] > 0 and table[1]["seconds_per_image"] > 0
    # optimisation matches the features far better than a 1-epoch decoder does, and than the baseline
    assert table[1]["feature_error"] < min(table[0]["feature_error"], table[2]["feature_error"])
    # the baseline is the one image the layers study scores too: the training split's mean
    opened = FeatureStore.open(store)
    images = read_images(opened, heldout_rows(opened, 0.1, 6))
    expected = normalised_error(mean_image(opened, 0.1).expand(6, -1, -1, -1), images)
    assert table[2]["normalised_error"] == pytest.approx(expected, rel=1e-6)
    md = (out / "compare.md").read_text()
    assert (
        "image-space error (D&B)" in md
        and "feature-space error (M&V)" in md
        and markdown_table(table, COLUMNS, KEYS) in md
    )
    assert "![compare-hog.png](compare-hog.png)" in (out / "index.md").read_text()
    figure = cv2.imread(str(out / "compare-hog.png"))
    assert figure.shape[0] == 3 * 32 and figure.shape[1] > 4 * 32  # rows: image, decoder, optimisation


def test_compare_names_a_missing_decoder(trained, tmp_path):
    store, runs, _ = trained
    result = CliRunner().invoke(
        main, ["analyze", "compare", "--store", str(store), "--decoder", str(runs), "--feature", "alexnet:conv2"]
    )
    assert result.exit_code != 0 and "no decoder trained on alexnet:conv2" in result.output
    with pytest.raises(FileNotFoundError):
        trained_runs(tmp_path, "hog")
    assert [run.feature for run in trained_runs(runs)] == ["hog"]


def test_invert_by_optimisation_writes_every_restart(trained, tmp_path):
    _, _, images = trained
    args = ["invert", str(images / "01.png"), "--method", "optimize", "--feature", "hog", "--size", "48"]
    result = CliRunner().invoke(main, [*args, "--restarts", "3", "--steps", "30", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "||Phi(x*) - phi0||^2 / ||phi0||^2" in result.output
    assert cv2.imread(str(tmp_path / "01.png")).shape == (48, 4 * 48, 3)  # original | 3 pre-images


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "optimize", "--feature", "lbp"], "train a decoder"),
        (["--method", "optimize"], "needs --feature"),
        (["--method", "decoder"], "needs --feature F (the decoder that ships for F"),
        (["--method", "optimize", "--feature", "hog", "--channels", "x"], "START:STOP"),
    ],
)
def test_invert_explains_what_is_missing(trained, tmp_path, args, message):
    _, _, images = trained
    result = CliRunner().invoke(main, ["invert", str(images / "01.png"), *args, "--out", str(tmp_path)])
    assert result.exit_code != 0 and message in result.output


def test_compare_runs_merge_into_one_table(trained, tmp_path):
    """Representations compared one run at a time accumulate in one table; a rerun replaces its own rows."""
    store, runs, _ = trained
    args = ["analyze", "compare", "--store", str(store), "--decoder", str(runs), "--feature", "hog", "--n", "3"]
    for steps, again in (("5", []), ("6", ["--overwrite"])):  # a rerun of the same representation asks for it
        result = CliRunner().invoke(main, [*args, "--steps", steps, "--out", str(tmp_path), *again])
        assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "compare.json").read_text())
    methods = ["decoder", "optimisation", "mean image"]
    assert [(row["feature"], row["method"]) for row in rows] == [("hog", method) for method in methods]
    other = [{**row, "feature": "alexnet:conv9"} for row in rows]
    (tmp_path / "compare.json").write_text(json.dumps(other))
    assert CliRunner().invoke(main, [*args, "--steps", "5", "--out", str(tmp_path)]).exit_code == 0
    features = [row["feature"] for row in json.loads((tmp_path / "compare.json").read_text())]
    assert features == ["alexnet:conv9"] * 3 + ["hog"] * 3
