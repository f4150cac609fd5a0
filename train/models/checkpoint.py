"""Checkpoints as safetensors (no code runs on load): model weights, optimizer state and a JSON header.

The header carries what a checkpoint needs to be used safely: the decoder config, the representation and the
fingerprint of the store it was trained on, the training position (epoch, step) and the learning-rate scale.
Files are written and read by :mod:`.tensorfile` (beside their final name, then renamed into place, so a kill never
leaves half a checkpoint).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from . import tensorfile

MAX_WIDTH = 4096  # decoder widths, target sizes and feature dimensions a header may declare: far above any real
MAX_TARGET = 2048  # run, far below what would exhaust memory before the weights are even compared
MAX_INPUT_VALUES = 50_000_000


class CheckpointError(ValueError):
    """A file that is not a usable preimage checkpoint or run: the message names it and says why."""


def _first_line(err: Exception) -> str:
    """An exception as one short line: safetensors' parse errors run to several."""
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def _not_a_checkpoint(path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a usable preimage checkpoint ({reason}); point to a run folder that `preimage train --out` wrote"
    )


def read_json(path: str | os.PathLike, what: str = "run.json") -> dict:
    """A run's JSON file, or a :class:`CheckpointError` naming it (a pickle or a truncated file is no run)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable {what} ({type(err).__name__}: {err})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a {what} (a JSON object was expected)")
    return value


Models = torch.nn.Module | dict[str, torch.nn.Module]
Optimizers = torch.optim.Optimizer | dict[str, torch.optim.Optimizer] | None


def _named(value, name: str) -> dict:
    """A named collection: one model (or optimiser) is the collection of that one under its usual name."""
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else {name: value}


def save(
    path: str | os.PathLike,
    models: Models,
    optimizers: Optimizers,
    header: dict,
    weights_dtype: torch.dtype | None = None,
) -> None:
    """Write named models' (and optimisers') tensors with ``header`` as JSON metadata, atomically: model ``NAME``'s
    tensors under ``NAME.``, optimiser ``NAME``'s state under ``NAME.INDEX.`` and its parameter groups in the
    metadata ``NAME_groups`` (a decoder run: ``model`` and ``optimizer``; a GAN adds its discriminator and its
    optimiser). ``weights_dtype`` (float16 for a shipped decoder) stores the models' weights in that type
    (:func:`load` casts back)."""
    tensors, metadata = {}, {}
    for name, model in _named(models, "model").items():
        tensors.update({f"{name}.{k}": _stored(v.detach(), weights_dtype) for k, v in model.state_dict().items()})
    optimizers = _named(optimizers, "optimizer")
    for name, optimizer in optimizers.items():
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"{name}.{index}.{key}"] = tensor.detach().contiguous()
        metadata[f"{name}_groups"] = json.dumps(state["param_groups"])
    if not optimizers:
        metadata["optimizer_groups"] = json.dumps(None)
    tensorfile.write(path, tensors, header=header, metadata=metadata)


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A weight tensor as saved: cast to ``dtype`` when given (scalars such as the input scale keep theirs)."""
    if dtype is not None and tensor.is_floating_point() and tensor.ndim > 0:
        tensor = tensor.to(dtype)
    return tensor.contiguous()


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint, read without loading any tensor; a :class:`CheckpointError` naming the
    file for anything that is not one of ours (a pickle, a truncated file, a foreign safetensors file)."""
    try:
        header = tensorfile.json_header(path)
    except KeyError:
        raise _not_a_checkpoint(path, "no preimage header") from None
    except Exception as err:  # safetensors raises its own error type for a file it cannot parse
        raise _not_a_checkpoint(path, _first_line(err)) from None
    if not isinstance(header, dict) or not isinstance(header.get("decoder"), dict):
        raise _not_a_checkpoint(path, "its header describes no decoder")
    return header


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a checkpoint, from its header alone (nothing is loaded)."""
    try:
        return tensorfile.shapes(path)
    except Exception as err:
        raise _not_a_checkpoint(path, _first_line(err)) from None


def check_decoder_header(path: str | os.PathLike, decoder: dict) -> None:
    """Refuse, before anything is allocated, a header whose decoder is out of all sane bounds (a crafted width of
    200000 would ask for hundreds of GB)."""
    try:
        width, target = int(decoder["width"]), int(decoder["target_size"])
        shape = [int(v) for v in decoder["input_shape"]]
    except (KeyError, TypeError, ValueError):
        raise _not_a_checkpoint(path, f"its decoder description is incomplete: {decoder}") from None
    values = math.prod(max(v, 0) for v in shape)
    if not (
        1 <= width <= MAX_WIDTH
        and 8 <= target <= MAX_TARGET
        and shape
        and all(v >= 1 for v in shape)
        and values <= MAX_INPUT_VALUES
    ):
        raise _not_a_checkpoint(
            path,
            f"its header declares width {width}, target {target}, input {shape}: outside the bounds of any "
            f"decoder (width 1-{MAX_WIDTH}, target 8-{MAX_TARGET}, at most {MAX_INPUT_VALUES:,} input values)",
        )


def check_shapes(path: str | os.PathLike, model: torch.nn.Module, prefix: str = "model.") -> None:
    """The file's tensors under ``prefix`` must have exactly the shapes of ``model`` (built on the meta device, so
    this costs no memory) before any tensor is read."""
    stored = {k.removeprefix(prefix): v for k, v in tensor_shapes(path).items() if k.startswith(prefix)}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if stored != expected:
        wrong = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))[:3]
        detail = ", ".join(f"{k}: file {stored.get(k)}, header says {expected.get(k)}" for k in wrong)
        raise _not_a_checkpoint(path, f"its tensors do not match the decoder its header describes ({detail})")


def load(path: str | os.PathLike, models: Models, optimizers: Optimizers = None) -> dict:
    """Load the named models (and optimisers) saved by :func:`save`; returns the header."""
    header = read_header(path)  # a clear error for a file that is not a checkpoint
    models, optimizers = _named(models, "model"), _named(optimizers, "optimizer")
    model_state: dict[str, dict] = {name: {} for name in models}
    optim_state: dict[str, dict] = {name: {} for name in optimizers}
    tensors, meta = tensorfile.read(path)
    for key, tensor in tensors.items():
        owner, _, rest = key.partition(".")
        if owner in model_state:
            model_state[owner][rest] = tensor
        elif owner in optim_state:
            index, name = rest.split(".", 1)
            optim_state[owner].setdefault(int(index), {})[name] = tensor
    for name, model in models.items():
        try:
            model.load_state_dict(model_state[name])
        except RuntimeError as err:
            raise ValueError(
                f"{path} does not fit the {type(model).__name__} its header describes (saved by another version of "
                f"preimage?): {str(err).splitlines()[1].strip()}"
            ) from None
    for name, optimizer in optimizers.items():
        groups = json.loads(meta.get(f"{name}_groups") or "null")
        if groups is None:
            raise ValueError(f"{path} holds no {name} state; it cannot resume training")
        optimizer.load_state_dict({"state": optim_state[name], "param_groups": groups})
    return header
