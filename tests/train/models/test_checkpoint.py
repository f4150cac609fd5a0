"""Checkpoints (:mod:`preimage.train.models.checkpoint`): safetensors with a JSON header, written atomically, read
without running code, and a file written before the shaping of the feature identity (``tests/data/before-shaping``,
made by the preimage of commit c007e77) still loads and is still recognised by the store it was trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from preimage.cache.store import FeatureStore
from preimage.pipeline.identity import FeatureIdentity
from preimage.pipeline.lookup import check_store
from preimage.train.models import checkpoint
from preimage.train.models.decoders import DecoderConfig, create_decoder
from preimage.train.models.loading import load_decoder
from preimage.train.models.locate import locate

BEFORE = Path(__file__).resolve().parents[2] / "data" / "before-shaping"


def test_a_checkpoint_saved_before_the_shaping_loads_and_matches_its_store():
    located = locate(BEFORE / "run")
    model = load_decoder(located, FeatureStore.open(BEFORE / "store.zarr"))
    assert located.header["decoder"]["kind"] == "hog" and model.config.kind == "grid"  # the kind as it was named then
    assert model.config == DecoderConfig.from_dict(located.header["decoder"])
    identity = FeatureIdentity.of_store(FeatureStore.open(BEFORE / "store.zarr"), "hog")
    assert identity.fingerprint() == located.header["fingerprint"]  # the same fingerprint, the same hash
    assert check_store(FeatureStore.open(BEFORE / "store.zarr"), located.identity) == "hog"
    with torch.no_grad():
        out = model(torch.zeros(2, *model.config.input_shape))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_save_then_load_gives_the_same_weights_and_optimiser_state(tmp_path):
    torch.manual_seed(0)
    config = DecoderConfig.from_dict(json.loads((BEFORE / "run" / "run.json").read_text())["decoder"])
    model = create_decoder(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, *config.input_shape)).square().mean().backward()
    optimizer.step()
    checkpoint.save(tmp_path / "c.safetensors", model, optimizer, {"decoder": config.as_dict(), "state": {"step": 1}})
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # written beside, renamed into place
    copy, copy_optimizer = create_decoder(config), None
    copy_optimizer = torch.optim.Adam(copy.parameters(), lr=1e-3)
    header = checkpoint.load(tmp_path / "c.safetensors", copy, copy_optimizer)
    assert header["state"] == {"step": 1}
    for a, b in zip(model.state_dict().values(), copy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    saved, loaded = optimizer.state_dict(), copy_optimizer.state_dict()  # the whole of Adam's state, every tensor
    assert json.loads(json.dumps(saved["param_groups"])) == loaded["param_groups"]  # (betas: JSON's list)
    assert saved["state"].keys() == loaded["state"].keys()
    for index, state in saved["state"].items():
        assert state.keys() == loaded["state"][index].keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(loaded["state"][index][key])), (index, key)


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path):
    pickle = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, pickle)
    with pytest.raises(checkpoint.CheckpointError, match="not a usable preimage checkpoint"):
        checkpoint.read_header(pickle)
    header = json.loads(json.dumps(locate(BEFORE / "run").header))
    header["decoder"]["width"] = 200_000  # a crafted width asks for hundreds of GB: refused before allocating
    with pytest.raises(checkpoint.CheckpointError, match="outside the bounds"):
        checkpoint.check_decoder_header(pickle, header["decoder"])


def test_a_checkpoint_whose_tensors_differ_from_its_header_is_refused_before_loading(tmp_path):
    shutil.copytree(BEFORE / "run", tmp_path / "run")
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    config = DecoderConfig.from_dict({**run_json["decoder"], "width": run_json["decoder"]["width"] * 2})
    with torch.device("meta"):
        wider = create_decoder(config)
    with pytest.raises(checkpoint.CheckpointError, match="do not match the decoder its header describes"):
        checkpoint.check_shapes(tmp_path / "run" / "checkpoint.safetensors", wider)


def test_a_save_killed_while_writing_leaves_the_previous_file_readable(tmp_path, monkeypatch):
    """Files are written beside their name and renamed (train/models/tensorfile.py): a save that dies half-way
    leaves the previous checkpoint whole (issue 61: written in place, no test noticed)."""
    import safetensors.torch

    from preimage.train.models import tensorfile

    path = tmp_path / "checkpoint.safetensors"
    tensorfile.write(path, {"w": torch.ones(4)}, header={"step": 1})

    def dies_half_way(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b'\x08\x00\x00\x00\x00\x00\x00\x00{"w":')  # the first bytes of a file, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        tensorfile.write(path, {"w": torch.zeros(4)}, header={"step": 2})
    tensors, _ = tensorfile.read(path)
    assert torch.equal(tensors["w"], torch.ones(4)) and tensorfile.json_header(path) == {"step": 1}
