"""Checkpoints as safetensors (no code runs on load): model weights, optimizer state and a JSON header.

The header carries what a checkpoint needs to be used safely: the decoder config, the representation and the
fingerprint of the store it was trained on, the training position (epoch, step) and the learning-rate scale.
Files are written beside their final name and renamed into place, so a kill never leaves half a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..cache.store import FeatureStore, feature_path


def store_fingerprint(store: FeatureStore, feature: str) -> dict:
    """What must match for a decoder to apply to features: the feature's attributes and the image recipe."""
    attrs = dict(store.array(feature_path(feature)).attrs)
    recipe = store.meta["recipe"]
    keep = {"representation", "extractor_version", "input", "params", "weights_sha256", "dtype", "row_shape"}
    fingerprint = {
        "feature": {k: attrs.get(k) for k in sorted(keep)},
        "image_size": recipe["image_size"],
        "crop": recipe["crop"],
    }
    text = json.dumps(fingerprint, sort_keys=True)
    return {**fingerprint, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def save(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, header: dict
) -> None:
    """Write model (and optimizer) tensors with ``header`` as JSON metadata, atomically."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    optim_meta = None
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optimizer.{index}.{key}"] = tensor.detach().contiguous()
        optim_meta = state["param_groups"]
    metadata = {"header": json.dumps(header, sort_keys=True), "optimizer_groups": json.dumps(optim_meta)}
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)


def read_header(path: str | os.PathLike) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["header"])


def load(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load weights (and optimizer state) saved by :func:`save`; returns the header."""
    model_state, optim_state = {}, {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for key in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            if key.startswith("model."):
                model_state[key.removeprefix("model.")] = f.get_tensor(key)
            elif key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                optim_state.setdefault(int(index), {})[name] = f.get_tensor(key)
    try:
        model.load_state_dict(model_state)
    except RuntimeError as err:
        raise ValueError(
            f"{path} does not fit the {type(model).__name__} its header describes (saved by another version of "
            f"preimage?): {str(err).splitlines()[1].strip()}"
        ) from None
    if optimizer is not None:
        groups = json.loads(meta["optimizer_groups"])
        if groups is None:
            raise ValueError(f"{path} holds no optimizer state; it cannot resume training")
        optimizer.load_state_dict({"state": optim_state, "param_groups": groups})
    return json.loads(meta["header"])
