"""Hugging Face ``transformers`` vision models as backbones: ``hf:ID_OR_FOLDER:LAYER`` (``hf:facebook/dinov2-small:
encoder.layer.8``, ``hf:./my-vit:layers.3``).

Layers are the model's own ``named_modules()`` paths, in the order a forward pass calls them, taken with forward
hooks (several in one pass, which stops once the last asked layer is out). A layer whose output is a token
sequence (N, prefix + H/p * W/p, C) of a patch model becomes two representations, so nothing is dropped: the
layer itself as the grid of its patch tokens (N, C, H/p, W/p), which decoders invert like a CNN map, and
``LAYER#prefix``, its class and register tokens concatenated (N, prefix * C). Preprocessing comes from the
model's ``preprocessor_config.json`` (resize, centre crop, rescale, mean and std). Weights: a local folder, the
hub cache, or a download (not when ``HF_HUB_OFFLINE=1``); random weights only when asked (``--weights random``).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from ...runtime.extras import import_extra
from ...runtime.suggest import did_you_mean
from ..names import folder_model, source_ref
from .hooks import HookedModel, call_order
from .registry import BackboneConfig, Preprocess, WeightSource
from .weights import WeightsUnavailable


def _transformers():
    """The ``transformers`` package, or one line saying how to install it."""
    return import_extra("transformers", "models", "Hugging Face models (hf:ID:LAYER)")


def offline() -> bool:
    """Whether the hub must not be asked (``HF_HUB_OFFLINE`` or ``PREIMAGE_OFFLINE``)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "PREIMAGE_OFFLINE"))


def _local(ref: str) -> bool:
    return Path(ref).expanduser().is_dir()


def _looks_like_a_folder(ref: str) -> bool:
    """Whether ``ref`` is written as a path (``./tiny``, ``/models/x``, ``~/x``, ``a/b/c``), not a hub id."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref


@functools.cache
def _hub_reachable() -> bool:
    """Whether the hub's host answers at all (a few seconds at most), so an offline machine hears so at once rather
    than after huggingface_hub's retries."""

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        return False
    return True


def _unreachable(ref: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"{folder_model(ref)}: the Hugging Face hub cannot be reached from here and its files are not in "
        "the "
        "hub cache; online, check the network; offline, give a folder that save_pretrained wrote "
        "(hf:./FOLDER), or set HF_HUB_OFFLINE=1 to use the hub cache alone"
    )


def _hub_file(ref: str, filename: str) -> Path | None:
    """A file of a model: in its folder, or in the hub cache, or downloaded (online only); None when absent."""
    if _local(ref):
        path = Path(ref).expanduser() / filename
        return path if path.is_file() else None
    if _looks_like_a_folder(ref):
        raise WeightsUnavailable(
            f"{folder_model(ref)}: no such folder; give a folder that save_pretrained wrote, or a hub id "
            "such as hf:facebook/dinov2-small"
        )
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        cached = try_to_load_from_cache(ref, filename)
    except HFValidationError:
        raise WeightsUnavailable(
            f"{folder_model(ref)}: neither a folder nor a hub id (such as facebook/dinov2-small)"
        ) from None
    if isinstance(cached, str):
        return Path(cached)
    if offline():
        return None
    if not _hub_reachable():
        raise _unreachable(ref)
    try:
        return Path(hf_hub_download(ref, filename))
    except LocalEntryNotFoundError:  # the hub stopped answering
        raise _unreachable(ref) from None
    except Exception:  # absent from the repository: the caller says what is missing
        return None


def _read_json(ref: str, filename: str) -> dict | None:
    path = _hub_file(ref, filename)
    return json.loads(path.read_text()) if path is not None else None


def preprocess_from(processor: dict, model_config) -> Preprocess:
    """A :class:`Preprocess` from an image processor's settings: the square a store feeds (the resize), the
    centre crop, the rescale and the normalisation, as the processor applies them to a square photo."""
    size = processor.get("size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    side = size.get("shortest_edge") or size.get("height") or getattr(model_config, "image_size", None) or 224
    crop = None
    if processor.get("do_center_crop"):
        crop_size = processor.get("crop_size") or {}
        crop = crop_size.get("height") if isinstance(crop_size, dict) else crop_size
    if "crop_pct" in processor and processor.get("crop_pct") and side < 384:  # ConvNeXt / ResNet: resize, crop
        crop, side = side, int(side / processor["crop_pct"])
    rescale = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    normalise = processor.get("do_normalize", True)
    mean = tuple(processor.get("image_mean", (0.0, 0.0, 0.0))) if normalise else (0.0, 0.0, 0.0)
    std = tuple(processor.get("image_std", (1.0, 1.0, 1.0))) if normalise else (1.0, 1.0, 1.0)
    return Preprocess(int(side), mean, std, pixel_range=255 * rescale, crop=int(crop) if crop and crop < side else None)


def _patch_size(model_config) -> int | None:
    patch = getattr(model_config, "patch_size", None)
    return int(patch[0] if isinstance(patch, list | tuple) else patch) if patch else None


@functools.cache
def hf_backbone_config(name: str) -> BackboneConfig:
    """The :class:`BackboneConfig` of ``hf:ID_OR_FOLDER``: the architecture from its ``config.json``, the
    preprocessing from its ``preprocessor_config.json``, the weights from the same place."""
    ref = source_ref(name)
    transformers = _transformers()
    settings = _read_json(ref, "config.json")
    if settings is None:
        where = (
            "that folder has no config.json"
            if _local(ref)
            else ("not in the hub cache, and HF_HUB_OFFLINE is set" if offline() else "no such model on the hub")
        )
        raise WeightsUnavailable(
            f"{name}: {where}; give a model id (hf:facebook/dinov2-small) or a folder that save_pretrained wrote"
        )
    model_config = _known_architecture(name, settings, transformers)
    tower = _image_tower(model_config)
    processor = _read_json(ref, "preprocessor_config.json")
    if processor is None:
        raise WeightsUnavailable(
            f"{name}: no preprocessor_config.json, so its preprocessing is unknown; save the "
            "model's image processor beside it (processor.save_pretrained(folder))"
        )
    preprocess = preprocess_from(processor, tower)
    patch = _patch_size(tower)

    def build() -> HookedModel:
        return HookedModel(transformers.AutoModel.from_config(tower), patch, "pixel_values").eval()

    layers = call_order(build, preprocess.crop or preprocess.input_size)
    source = WeightSource(
        f"Hugging Face {'folder' if _local(ref) else 'hub'} {ref}",
        functools.partial(_pretrained_state, ref, tower),
        present=lambda: _weights_present(ref),
    )
    return BackboneConfig(
        name,
        build,
        layers=layers,
        preprocess=preprocess,
        sources=(source,),
        description=f"Hugging Face {tower.model_type} ({ref})",
    )


def _known_architecture(name: str, settings: dict, transformers):
    """The config of an architecture transformers has built in; a model whose config names code of its own
    (``auto_map``: remote code) or an unknown ``model_type`` is one line, and no code of the model's is run."""
    if settings.get("auto_map"):
        named = ", ".join(sorted({str(v) for v in settings["auto_map"].values()}))[:200]
        raise WeightsUnavailable(
            f"{name}: its config.json names code of its own to run (auto_map: {named}); preimage runs no model's "
            "code, only architectures transformers has built in"
        )
    kind = str(settings.get("model_type", ""))
    known = transformers.CONFIG_MAPPING
    if kind not in known:
        close = did_you_mean(kind, known.keys())
        hint = f"; {close}" if close else ""
        raise WeightsUnavailable(
            f"{name}: model_type {kind[:60]!r} in its config.json is not an architecture transformers "
            f"{transformers.__version__} has built in{hint}"
        )
    return transformers.AutoConfig.for_model(**settings)


def _image_tower(model_config):
    """The config of the model that takes the images: an image-text model's vision tower (CLIP, SigLIP: their
    ``vision_config``), else the model's own."""
    vision = getattr(model_config, "vision_config", None)
    if vision is None or not hasattr(model_config, "text_config"):
        return model_config
    return vision


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _weights_present(ref: str) -> bool:
    if _local(ref):
        return any((Path(ref).expanduser() / f).is_file() for f in WEIGHT_FILES)
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(ref, f), str) for f in WEIGHT_FILES)


def _pretrained_state(ref: str, tower) -> dict[str, torch.Tensor]:
    """The model's pretrained weights as :class:`HookedModel` names them: ``from_pretrained`` reads the files
    (safetensors, or torch files with ``weights_only``), renames old checkpoints' keys and drops a task model's
    prefix; tensors the files lack (a pooler never trained) stay out, so the hash is that of what was trained."""
    transformers = _transformers()
    if not _weights_present(ref) and (_local(ref) or offline()):
        where = f"the folder {ref}" if _local(ref) else "the hub cache (HF_HUB_OFFLINE is set)"
        raise WeightsUnavailable(
            f"no weights for {ref} in {where}; download them online, or give --weights random "
            "for a randomly initialised model (recorded as such)"
        )
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its load report lists what preimage leaves out anyway
    transformers.logging.disable_progress_bar()
    try:
        model_class = transformers.MODEL_MAPPING[type(tower)]  # an image-text model's vision tower alone
        model, info = model_class.from_pretrained(
            ref, local_files_only=_local(ref) or offline(), output_loading_info=True
        )
    except OSError as err:
        raise WeightsUnavailable(f"no weights for {ref}: {str(err).splitlines()[0]}") from None
    except pickle.UnpicklingError as err:  # a torch file holding more than tensors: loading it could run code
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        raise WeightsUnavailable(
            f"{ref}: its weights are a pickle (pytorch_model.bin) that holds more than tensors"
            f"{f' ({found.group(1)})' if found else ''}; preimage loads only files that cannot run code: if you trust "
            "it, convert it to model.safetensors (torch.load(..., weights_only=False), then "
            "safetensors.torch.save_file of its tensors) and remove the .bin"
        ) from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
    missing = set(info.get("missing_keys", ()))
    return {f"model.{key}": value for key, value in model.state_dict().items() if key not in missing}
