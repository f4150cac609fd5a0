"""Fused decoders: several layers of one model read by one decoder, from the spec to training, scoring and inverting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cache.store import FeatureStore, StoreError, feature_path
from preimage.cli import main
from preimage.pipeline.backbones import RANDOM_WEIGHTS
from preimage.pipeline.contract import DRAFT_MIN_SIDE
from preimage.pipeline.decode import read_images
from preimage.pipeline.features import expand_specs, fuse_rows, get_representation
from preimage.pipeline.identity import FusedIdentity, of_store
from preimage.pipeline.lookup import stored_name
from preimage.pipeline.names import fused_parts
from preimage.pipeline.rows import read_rows
from preimage.pipeline.sources import folder_source
from preimage.train.inversion.invert import reconstruct_arrays
from preimage.train.models.decoders import DecoderConfig, FusedDecoder, create_decoder
from preimage.train.models.loading import load_decoder
from preimage.train.training.data import ShardStream
from preimage.train.training.evaluation import evaluate
from preimage.train.training.trainer import TrainConfig, train

from ...helpers import make_store, run_extract

FUSED = "alexnet:conv3+conv4+conv5"


def test_a_spec_of_several_layers_is_one_fused_representation_and_extracts_as_its_layers():
    rep = get_representation("alexnet:conv3-conv5")
    assert rep.kind == "fused" and rep.decoder == "fused" and rep.name == FUSED
    assert [p.name for p in rep.parts] == ["alexnet:conv3", "alexnet:conv4", "alexnet:conv5"]
    assert rep.stored_shape(224) == (sum(int(np.prod(p.stored_shape(224))) for p in rep.parts),)
    assert expand_specs(FUSED) == ["alexnet:conv3", "alexnet:conv4", "alexnet:conv5"]  # extraction: each layer
    assert get_representation("alexnet:conv5").kind == "map"  # one layer is what it always was
    with pytest.raises(ValueError, match="alexnet:fc6 is a vector, not a map"):
        get_representation("alexnet:conv5+fc6")
    with pytest.raises(ValueError, match="only a decoder inverts"):
        rep.gradient_form(RANDOM_WEIGHTS)


def test_the_fused_decoder_of_one_layer_is_the_map_decoder():
    """Same weights, same function: the fused decoder adds projections, never a different trunk."""
    shape = (24, 6, 6)
    single = create_decoder(DecoderConfig("map", shape, target_size=32, width=16)).double()
    fused = create_decoder(DecoderConfig("fused", (int(np.prod(shape)),), 32, 16, parts=(shape,))).double()
    convs = [m for m in single.body.modules() if isinstance(m, torch.nn.Conv2d)]
    mine = [m for m in fused.body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(m.weight.shape) for m in convs] == [tuple(m.weight.shape) for m in mine]
    for theirs, ours in zip(convs, mine, strict=True):
        ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fused(x.reshape(3, -1)), single(x), rtol=0, atol=1e-12)


def test_a_layer_entering_at_a_finer_side_has_its_own_map_decoder_inside_the_fused_one():
    """AlexNet's conv5 starts the decoder at 8, conv3 enters at 16: with conv5's projection and the up-convolution
    from 8 at zero, the fused decoder is conv3's map decoder, weight for weight."""
    conv5, conv3 = (16, 6, 6), (24, 13, 13)
    single = create_decoder(DecoderConfig("map", conv3, target_size=64, width=32)).double()
    parts = (conv5, conv3)
    sizes = [int(np.prod(p)) for p in parts]
    fused = create_decoder(DecoderConfig("fused", (sum(sizes),), 64, 32, parts=parts)).double()
    body = fused.body
    ours = [body.projections[1], *(c[0] for c in body.mixes["16"]), *(u.conv for u in body.ups[1:]), body.out]
    theirs = [m for m in single.body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(m.weight.shape) for m in ours] == [tuple(m.weight.shape) for m in theirs]
    with torch.no_grad():
        for mine, other in zip(ours, theirs, strict=True):
            mine.load_state_dict(other.state_dict())
        for silent in (body.projections[0].weight, body.ups[0].conv.weight, body.ups[0].conv.bias):
            silent.zero_()
    generator = torch.Generator().manual_seed(0)
    x5, x3 = (torch.randn(2, *p, dtype=torch.float64, generator=generator) for p in parts)
    joined = torch.cat([x5.reshape(2, -1), x3.reshape(2, -1)], dim=1)
    torch.testing.assert_close(fused(joined), single(x3), rtol=0, atol=1e-12)


def test_the_coarser_layers_enter_a_fused_decoder_started_as_a_finer_layers_own():
    """Started as conv3's decoder (entering at 16), the fused decoder computes conv3's exactly, yet conv5 (entering
    at 8) gets a gradient: the up-convolution from 8 learns at once, and through it conv5's projection. Both at
    zero, neither would ever move (a conv1-conv5 decoder started as conv1's trained to conv1's numbers exactly)."""
    torch.manual_seed(0)
    conv5, conv3 = (16, 6, 6), (24, 13, 13)
    single = create_decoder(DecoderConfig("map", conv3, target_size=64, width=32)).double()
    parts = (conv5, conv3)
    fused = create_decoder(DecoderConfig("fused", (16 * 36 + 24 * 169,), 64, 32, parts=parts)).double()
    body = fused.body
    body.start_as(1, single.body)
    x5, x3 = torch.randn(4, *conv5, dtype=torch.float64), torch.randn(4, *conv3, dtype=torch.float64)
    joined = torch.cat([x5.reshape(4, -1), x3.reshape(4, -1)], dim=1)
    target = torch.rand(4, 3, 64, 64, dtype=torch.float64)
    optimizer = torch.optim.SGD(fused.parameters(), lr=0.01)
    for step in range(2):
        out = fused(joined)
        if step == 0:
            torch.testing.assert_close(out, single(x3), rtol=0, atol=1e-12)
        optimizer.zero_grad()
        (out - target).square().mean().backward()
        if step == 0:
            assert body.ups[0].conv.weight.grad.abs().sum() > 0
        else:
            assert body.projections[0].weight.grad.abs().sum() > 0
        optimizer.step()


def test_layers_on_other_grids_enter_where_the_decoder_works_at_their_side():
    torch.manual_seed(0)  # the same weights and inputs in every run: a gradient check must not meet a kink by chance
    parts = ((8, 27, 27), (16, 13, 13), (16, 6, 6))  # AlexNet's conv2 and conv3 sides, and conv5's
    config = DecoderConfig("fused", (sum(int(np.prod(p)) for p in parts),), target_size=64, width=32, parts=parts)
    decoder = create_decoder(config).double()
    body = decoder.body
    assert isinstance(body, FusedDecoder) and body.sides == [32, 16, 8] and body.start == 8
    assert sorted(body.mixes) == ["16", "32"]  # a convolution mixes each finer side's entering layers in
    x = torch.randn(2, config.input_shape[0], dtype=torch.float64, requires_grad=True)
    out = decoder(x)
    assert out.shape == (2, 3, 64, 64)
    grads = torch.autograd.grad(out.square().sum(), [p.weight for p in body.projections])
    assert all(g.abs().sum() > 0 for g in grads)  # every layer reaches the image
    tiny = ((2, 4, 4), (3, 2, 2))
    decoder = create_decoder(DecoderConfig("fused", (32 + 12,), target_size=8, width=4, parts=tiny)).double()
    assert torch.autograd.gradcheck(decoder, (torch.randn(2, 44, dtype=torch.float64, requires_grad=True),))


def test_a_fused_config_must_add_up_to_its_row():
    with pytest.raises(ValueError, match="not its parts"):
        DecoderConfig("fused", (10,), parts=((1, 2, 2),))
    config = DecoderConfig("fused", (4 + 18,), 16, 8, parts=((1, 2, 2), (2, 3, 3)))
    assert DecoderConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    assert "parts" not in DecoderConfig("map", (1, 2, 2)).as_dict()  # one-layer headers as they always were


@pytest.fixture(scope="module")
def store(tmp_path_factory, dask_client, photos):
    """96 crops with AlexNet's conv2 to conv5 (random weights: no download), in shards of 8."""
    root = tmp_path_factory.mktemp("fused")
    path = make_store(root, dask_client, photos, 32)
    specs = "alexnet:conv2-conv5"
    run_extract(path, folder_source(root / "images"), specs, dask_client, image_size=32, shard_rows=8, weights="random")
    return path, root


def small(store, out, feature=FUSED, **kwargs) -> TrainConfig:
    base = dict(target_size=16, epochs=1, batch_size=8, width=16, eval_rows=16, precision="fp32")
    return TrainConfig(str(store), feature, str(out), **{**base, **kwargs})


def test_training_reads_only_its_layers_arrays(store, monkeypatch):
    path, _ = store
    read: list[str] = []
    original = FeatureStore.read_rows

    def recording(self, name, start, stop):
        read.append(name)
        return original(self, name, start, stop)

    monkeypatch.setattr(FeatureStore, "read_rows", recording)
    stream = ShardStream(str(path), FUSED, batch_size=8, target_size=16)
    x, y = next(iter(stream))
    assert x.shape == (8, get_representation(FUSED).stored_shape(224)[0]) and y.shape == (8, 3, 16, 16)
    layers = [feature_path(f"alexnet:conv{i}") for i in (3, 4, 5)]
    assert set(read) == {"images", *layers}  # not conv2, which the store holds too
    opened = FeatureStore.open(path)  # the row is each layer's rows, flattened one after the other, in order
    rows = fuse_rows([opened.read_rows(layer, 0, 8) for layer in layers])
    np.testing.assert_array_equal(read_rows(opened, FUSED, 0, 8), rows)


def test_train_resume_score_and_invert_a_fused_decoder(store, photos):
    path, root = store
    out = root / "fused"
    result = train(small(path, out, feature="alexnet:conv3-conv5"), show_progress=False)
    assert result["normalised_error"] > 0
    saved = json.loads((out / "run.json").read_text())
    assert saved["config"]["feature"] == FUSED and saved["decoder"]["kind"] == "fused"
    assert [p[0] for p in saved["decoder"]["parts"]] == [384, 256, 256]
    again = train(small(path, out, epochs=2), resume=True, show_progress=False)
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert len(sessions) == 2 and 0 < sessions[1]["from_step"] < sessions[1]["schedule_steps"]  # went on, not over
    opened = FeatureStore.open(path)
    decoder = load_decoder(out, opened)
    # what the resumed run reported is what its saved decoder scores on the held-out rows
    rescored = evaluate(decoder, opened, feature=FUSED, max_rows=small(path, out).eval_rows)
    assert again["normalised_error"] == pytest.approx(rescored["normalised_error"], abs=1e-6)
    assert decoder.input_scale.shape == (3,) and (decoder.input_scale != 1).all()  # each layer at its own scale
    trained = of_store(opened, FUSED)
    assert isinstance(trained, FusedIdentity) and trained.layers == ("conv3", "conv4", "conv5")
    # a new photo's fused row, computed as the store computed it, decodes as the stored row does
    files = [root / "images" / str(name) for name in opened.array("ids")[:4].tolist()]
    crops, recon = reconstruct_arrays(read_images(files, DRAFT_MIN_SIDE), out)
    np.testing.assert_array_equal(crops, opened.read_rows("images", 0, 4))
    with torch.no_grad():
        expected = decoder(torch.from_numpy(read_rows(opened, FUSED, 0, 4)).float())
    torch.testing.assert_close(recon, expected.clamp(0, 1), rtol=0, atol=1e-4)


def test_a_store_lacking_one_layer_is_one_error_line_naming_it(store, tmp_path, dask_client):
    path, root = store
    out = root / "fused-for-errors"
    train(small(path, out), show_progress=False)
    other = tmp_path / "other.zarr"
    source = folder_source(root / "images")
    run_extract(other, source, "alexnet:conv3+conv4", dask_client, image_size=32, shard_rows=8, weights="random")
    with pytest.raises(StoreError, match=r"has no alexnet:conv5 features"):
        stored_name(FeatureStore.open(other), FusedIdentity.of_store(FeatureStore.open(path), FUSED))
    for args in (
        ["analyze", "error", "--store", str(other), "--decoder", str(out)],
        ["train", "--store", str(other), "--feature", FUSED, "--out", str(tmp_path / "run")],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("Error:") and "has no alexnet:conv5 features" in last, result.output
        assert "did you mean" not in last and "--feature alexnet:conv5" in last  # how to add it, no misspelling
    assert not (tmp_path / "run").exists()


def test_analyze_layers_shows_the_fused_decoder_after_the_layers_it_reads(store, tmp_path):
    path, _ = store
    runs = tmp_path / "runs"
    train(small(path, runs / "fused"), show_progress=False)
    for layer in ("conv3", "conv5"):
        train(small(path, runs / layer, feature=f"alexnet:{layer}"), show_progress=False)
    for i, features in enumerate(([], ["--features", "alexnet:conv3-conv5"])):
        args = ["analyze", "layers", "--store", str(path), "--decoders", str(runs), "--n", "8"]
        result = CliRunner().invoke(main, [*args, *features, "--out", str(tmp_path / f"layers{i}")])
        assert result.exit_code == 0, result.output
        table = json.loads((tmp_path / f"layers{i}" / "layers.json").read_text())
        assert [row["feature"] for row in table] == ["alexnet:conv3", "alexnet:conv5", FUSED]
    assert fused_parts(FUSED) == ["alexnet:conv3", "alexnet:conv4", "alexnet:conv5"] and fused_parts("hog") is None


def test_the_projections_entering_together_start_as_one_convolution_over_their_channels():
    """He's initialisation of the convolution over the layers' channels side by side: the sum of the projections
    starts with the variance of one map decoder's first convolution, whatever the number of layers."""
    torch.manual_seed(0)
    parts = ((384, 16, 16), (384, 16, 16), (96, 16, 16))
    config = DecoderConfig("fused", (sum(int(np.prod(p)) for p in parts),), target_size=64, width=128, parts=parts)
    projections = create_decoder(config).body.projections
    variance = sum(float(p.weight.var()) * p.in_channels for p in projections) * 9  # of the summed output, unit input
    he = 2 / (1 + 0.2**2)  # He's gain for a leaky ReLU of slope 0.2: the map decoder's first convolution
    assert variance == pytest.approx(he, rel=0.05)
    assert float(projections[2].weight.std()) == pytest.approx(float(projections[0].weight.std()), rel=0.05)


def test_the_explorer_shows_a_fused_decoder_beside_the_others(store):
    from preimage.explore.engine import ExploreError, Explorer

    path, root = store
    out = root / "fused-for-explorer"
    train(small(path, out), show_progress=False)
    explorer = Explorer([out], store=path)
    panel = "fused-for-explorer (run)"  # a run's panel
    assert panel in explorer.panels
    photo = next(iter(explorer.store_photos(2).values()))
    features = explorer.features(photo, panel)
    assert features.shape == (1, get_representation(FUSED).stored_shape(224)[0])
    assert explorer.reconstruct(photo, panel)["png"].startswith("data:image/png")
    assert explorer.sample(panel, seed=0)["png"].startswith("data:image/png")  # from the store
    with pytest.raises(ExploreError, match="several layers read together"):
        explorer.reconstruct(photo, panel, kind="window")


def test_a_fused_decoder_starts_as_its_best_layers_own_decoder(store, tmp_path):
    """``--init`` with one of the layers' own decoders: the fused decoder's first reconstructions are that decoder's,
    exactly; training goes on from there. A layer entering at a coarser side than another is refused in one line."""
    from preimage.train.training.trainer import build, start_from

    path, _ = store
    single_run = tmp_path / "conv3"
    train(small(path, single_run, feature="alexnet:conv3"), show_progress=False)
    opened = FeatureStore.open(path)
    fused = build(small(path, tmp_path / "unused"), opened)
    start_from(fused, str(single_run), opened, FUSED)
    single = load_decoder(single_run, opened)
    with torch.no_grad():
        ours = fused(torch.from_numpy(read_rows(opened, FUSED, 0, 8)).float())
        theirs = single(torch.from_numpy(read_rows(opened, "alexnet:conv3", 0, 8)).float())
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    result = train(small(path, tmp_path / "fused", init=str(single_run)), show_progress=False)
    assert result["normalised_error"] > 0
    conv5_run = tmp_path / "conv5"
    train(small(path, conv5_run, feature="alexnet:conv5"), show_progress=False)
    with pytest.raises(ValueError, match="entering at its finest side"):
        start_from(build(small(path, tmp_path / "unused"), opened), str(conv5_run), opened, FUSED)
