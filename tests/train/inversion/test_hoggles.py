"""HOGgles: the lasso is solved, the dictionary couples its halves, learning resumes, foreign HOG is refused."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.pipeline.features import hog
from preimage.runtime.progress import Progress
from preimage.train.inversion.hoggles import (
    HogglesConfig,
    learn_dictionary,
    load_hoggles,
    normalise_rows,
    sample_pairs,
    sparse_code,
)

from .conftest import SMALL


def test_sparse_codes_satisfy_the_nonnegative_lasso_optimality_conditions():
    """KKT of min 1/2||x - Da||^2 + l ||a||_1, a >= 0: the gradient is -l where a > 0 and at least -l where a = 0."""
    generator = torch.Generator().manual_seed(0)
    atoms = torch.randn(60, 30, generator=generator, dtype=torch.float64)
    atoms /= atoms.norm(dim=0)
    x = torch.randn(10, 60, generator=generator, dtype=torch.float64)
    codes = sparse_code(x, atoms, 0.1, 3000)
    gradient = (codes @ atoms.T - x) @ atoms
    active = codes > 1e-8
    assert active.any() and (~active).any()
    assert torch.allclose(gradient[active], torch.full_like(gradient[active], -0.1), atol=1e-6)
    assert (gradient[~active] >= -0.1 - 1e-6).all()
    assert (codes >= 0).all()


def test_learning_lowers_the_lasso_objective_of_fresh_pairs(stores):
    paths, _ = stores
    store = FeatureStore.open(paths[64])
    gray = torch.from_numpy(store.take("images", np.arange(80))).float().mean(-1) / 255
    grids = torch.from_numpy(store.take("features/hog", np.arange(80)))
    fresh = sample_pairs(gray, grids, count=200, window=5, cell=8, generator=torch.Generator().manual_seed(99))

    def objective(model) -> float:
        atoms = torch.cat([model.gray, model.hog])
        codes = sparse_code(fresh, atoms, SMALL.sparsity, 200)
        return float((0.5 * ((codes @ atoms.T - fresh) ** 2).sum(1) + SMALL.sparsity * codes.sum(1)).mean())

    untrained = learn_dictionary(gray, grids, HogglesConfig(**{**SMALL.__dict__, "steps": 0}), 8)
    trained = learn_dictionary(gray, grids, SMALL, 8)
    assert objective(trained) < 0.9 * objective(untrained)


def test_the_hog_of_an_atoms_image_half_comes_back_close_to_its_hog_half(learned):
    """The coupling: each atom's gray patch, stretched to [0, 1], has (in its central window) the HOG its HOG half
    holds, far closer than the HOG half of another atom."""
    model = load_hoggles(learned)
    side = model.patch_side
    patches = model.gray.T.reshape(-1, side, side)
    low = patches.flatten(1).min(1).values[:, None, None]
    high = patches.flatten(1).max(1).values[:, None, None]
    images = (patches - low) / (high - low)
    grids = hog(images)[:, 1:6, 1:6]  # the window's 5x5 cells inside the 7x7 of the patch
    computed = normalise_rows(grids.flatten(1))
    halves = normalise_rows(model.hog.T)
    similarity = computed @ halves.T  # cosine: row i is atom i's image against every HOG half
    matching = similarity.diagonal()
    others = (similarity.sum(1) - matching) / (len(matching) - 1)
    assert float(matching.median()) > 0.5
    assert float((matching - others).median()) > 0.3


def test_learning_resumes_to_what_an_uninterrupted_run_learns(stores, tmp_path):
    paths, _ = stores
    store = FeatureStore.open(paths[64])
    gray = torch.from_numpy(store.take("images", np.arange(40))).float().mean(-1) / 255
    grids = torch.from_numpy(store.take("features/hog", np.arange(40)))
    config = HogglesConfig(**{**SMALL.__dict__, "steps": 70})

    class Kill(Progress):
        def update(self, n):
            super().update(n)
            if self.done == 60:
                raise KeyboardInterrupt

    killer = Kill(config.steps, "steps", io.StringIO())
    with pytest.raises(KeyboardInterrupt):
        learn_dictionary(
            gray, grids, config=config, cell_size=8, state_file=tmp_path / "state.safetensors", progress=killer
        )
    resumed = learn_dictionary(gray, grids, config=config, cell_size=8, state_file=tmp_path / "state.safetensors")
    whole = learn_dictionary(gray, grids, config, 8)
    torch.testing.assert_close(resumed.gray, whole.gray)
    torch.testing.assert_close(resumed.hog, whole.hog)
    other = HogglesConfig(**{**config.__dict__, "atoms": 40})
    with pytest.raises(ValueError, match=r"other settings \(atoms"):
        learn_dictionary(gray, grids, config=other, cell_size=8, state_file=tmp_path / "state.safetensors")


def test_a_dictionary_refuses_hog_computed_differently(stores, learned):
    paths, _ = stores
    load_hoggles(learned, FeatureStore.open(paths[64]))
    with pytest.raises(ValueError, match="computed differently"):
        load_hoggles(learned, FeatureStore.open(paths[48]))


def test_train_and_invert_with_method_hoggles(stores, tmp_path):
    paths, folder = stores
    run = tmp_path / "run"
    args = ["hoggles", "--store", str(paths[64]), "--out", str(run), "--atoms", "32", "--steps", "5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    inverted = CliRunner().invoke(
        main, ["invert", str(folder / "03.png"), "--method", "hoggles", "--decoder", str(run), "--out", str(out)]
    )
    assert inverted.exit_code == 0, inverted.output
    picture = cv2.imread(str(out / "03.png"))
    assert picture.shape == (64, 128, 3)
    reconstruction = picture[:, 64:]
    assert (reconstruction[..., 0] == reconstruction[..., 1]).all()  # gray, as HOGgles reconstructs
    assert reconstruction.min() == 0 and reconstruction.max() == 255  # stretched to the full range, as ihog does
    assert dictionary_learned(run).shape[1] == 32  # --atoms went to the dictionary
    for old in (["--method", "hoggles"], ["--atoms", "32"], ["--window", "3"], ["--sparsity", "0.1"]):
        moved = ["train", *old, "--feature", "hog", "--store", str(paths[64]), "--out", str(tmp_path / "x")]
        result = CliRunner().invoke(main, moved)  # an old invocation: one line saying where its options went
        assert result.exit_code != 0 and "preimage hoggles --store S --out RUN" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_compare_gains_hoggles_as_a_third_method_for_hog(stores, learned, tmp_path):
    import json

    from preimage.train.training.trainer import TrainConfig, train

    paths, _ = stores
    run = tmp_path / "hog"
    train(
        TrainConfig(str(paths[64]), "hog", str(run), target_size=16, epochs=1, batch_size=8, width=16),
        show_progress=False,
    )
    out = tmp_path / "cmp"
    args = [
        "analyze",
        "compare",
        "--store",
        str(paths[64]),
        "--decoder",
        str(run),
        "--feature",
        "hog",
        "--hoggles",
        str(learned),
        "--n",
        "4",
        "--steps",
        "20",
        "--out",
        str(out),
        "--columns",
        "3",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = json.loads((out / "compare.json").read_text())
    assert [row["method"] for row in table] == ["decoder", "optimisation", "hoggles", "mean image"]
    hoggles_row = table[2]
    assert hoggles_row["images"] == 4 and hoggles_row["normalised_error"] > 0 and hoggles_row["seconds_per_image"] > 0
    assert cv2.imread(str(out / "compare-hog.png")).shape[0] == 4 * 64  # image, decoder, optimisation, hoggles
    foreign = CliRunner().invoke(main, [*args[:3], str(paths[48]), *args[4:], "--overwrite"])
    assert foreign.exit_code == 1 and "computed differently" in foreign.output


def dictionary_learned(run):
    """The gray atoms of a HOGgles run's dictionary file."""
    from preimage.train.models import tensorfile
    from preimage.train.models.runfolder import RunFolder

    return tensorfile.read(RunFolder(run).dictionary)[0]["gray"]
