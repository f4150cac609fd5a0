"""timm models as backbones: ``timm:MODEL:LAYER`` (``timm:vit_small_patch16_224.augreg_in21k:blocks.8``,
``timm:resnet18.a1_in1k:layer3``), a model by its timm name with an optional pretrained tag.

Layers are the model's own ``named_modules()`` paths, taken with forward hooks as for Hugging Face models (a ViT
block's tokens become the grid of its patch tokens plus ``LAYER#prefix``). Preprocessing comes from the model's
``pretrained_cfg`` as timm's own eval transform applies it: resize to ``input_size / crop_pct``, centre crop
``input_size``, mean and std. Weights: timm's own download (online), the Hugging Face hub cache (offline), a file
(``--weights``: a state_dict or safetensors with the model's own keys), or random weights when asked.

timm imports torchvision, so it needs a torchvision built for the installed torch (PyPI pairs them; a CPU-only
torch from another index needs torchvision from the same index).
"""

from __future__ import annotations

import functools
import math

import torch

from ...runtime.extras import import_extra
from ...runtime.suggest import did_you_mean
from ..names import source_ref
from .hooks import HookedModel, call_order
from .huggingface import offline
from .registry import BackboneConfig, Preprocess, WeightSource
from .weights import WeightsUnavailable, hub_file_present


def _timm():
    """The ``timm`` package, or one line saying how to install it (and why an installed one may not import)."""
    try:
        timm = import_extra("timm", "timm", "timm models (timm:MODEL:LAYER, with a torchvision built for this torch)")
    except RuntimeError as err:  # torchvision built for another torch: 'operator torchvision::nms does not exist'
        detail = str(err).splitlines()[0]
        raise WeightsUnavailable(
            f"timm cannot be imported: its torchvision does not match torch {torch.__version__} "
            f"({detail}); install the pair from one index"
        ) from None
    return timm


def preprocess_from(data_config: dict) -> Preprocess:
    """A :class:`Preprocess` from timm's resolved data config, as its eval transform applies it to a square photo:
    resize to ``floor(size / crop_pct)``, then the central ``size`` placed as torchvision's ``CenterCrop`` places it
    (timm's ``transforms_factory``)."""
    size = int(data_config["input_size"][-1])
    crop_pct = float(data_config.get("crop_pct") or 1.0)
    if data_config.get("crop_mode", "center") != "center":
        raise ValueError(f"timm crop_mode {data_config['crop_mode']!r} is not a centre crop; preimage crops centres")
    side = math.floor(size / crop_pct)
    return Preprocess(
        side,
        tuple(data_config["mean"]),
        tuple(data_config["std"]),
        crop=size if side > size else None,
        crop_rounding="round",
    )  # torchvision's CenterCrop


def _check_name(timm, ref: str) -> None:
    """An unknown model or pretrained tag: one line with the closest names timm has."""
    architecture, _, tag = ref.partition(".")
    if not timm.is_model(architecture):
        close = did_you_mean(architecture, timm.list_models())
        hint = f"; {close}" if close else " (timm.list_models() lists them)"
        raise KeyError(f"timm has no model {architecture!r}{hint}")
    tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{architecture}.*")]
    if tag and tag not in tags:
        raise KeyError(f"timm has no weights {tag!r} for {architecture}; its tags are {', '.join(tags) or 'none'}")


@functools.cache
def timm_backbone_config(name: str) -> BackboneConfig:
    """The :class:`BackboneConfig` of ``timm:MODEL``: the architecture and preprocessing from timm's registry, the
    weights from timm's download, the hub cache or a file."""
    ref = source_ref(name)
    timm = _timm()
    _check_name(timm, ref)

    def bare():
        return timm.create_model(ref, pretrained=False)

    with torch.device("meta"):
        probe = bare()
    data_config = timm.data.resolve_model_data_config(probe)
    preprocess = preprocess_from(data_config)
    patch = getattr(getattr(probe, "patch_embed", None), "patch_size", None)
    patch = int(patch[0] if isinstance(patch, list | tuple) else patch) if patch else None

    channels_last = str(getattr(probe, "output_fmt", "NCHW")).upper() == "NHWC"  # a Swin's maps

    def build() -> HookedModel:
        return HookedModel(bare(), patch, channels_last=channels_last).eval()

    layers = call_order(build, preprocess.crop or preprocess.input_size)
    cfg = dict(probe.pretrained_cfg)
    tag = f"{cfg.get('architecture', ref)}.{cfg['tag']}" if cfg.get("tag") else ref
    source = WeightSource(
        f"timm {tag}", functools.partial(_pretrained_state, ref, cfg), present=lambda: _weights_present(cfg)
    )
    return BackboneConfig(
        name, build, layers=layers, preprocess=preprocess, sources=(source,), description=f"timm {tag}"
    )


def _cached(cfg: dict) -> bool:
    """Whether the pretrained weights' file is in the Hugging Face hub cache or torch's hub folder."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        files = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
        if any(isinstance(try_to_load_from_cache(hub_id.split("@")[0], f), str) for f in files):
            return True
    return bool(cfg.get("url")) and hub_file_present(cfg["url"].rsplit("/", 1)[-1])


def _weights_present(cfg: dict) -> bool | None:
    return True if _cached(cfg) else (False if offline() else None)


def _pretrained_state(ref: str, cfg: dict) -> dict[str, torch.Tensor]:
    """The model's pretrained weights as :class:`HookedModel` names them, loaded by timm itself (its key
    conversions, its safe loaders); offline, from the caches only."""
    timm = _timm()
    if offline() and not _cached(cfg):
        raise WeightsUnavailable(
            f"no weights for timm:{ref} in the hub cache (HF_HUB_OFFLINE is set); download them "
            "online, give --weights FILE (its state_dict or safetensors), or --weights random "
            "for a randomly initialised model (recorded as such)"
        )
    try:
        model = timm.create_model(ref, pretrained=True)
    except Exception as err:  # the hub unreachable, the file absent or unreadable
        first = (str(err).splitlines() or [type(err).__name__])[0]
        hint = "give --weights FILE or --weights random"
        raise WeightsUnavailable(f"no weights for timm:{ref}: {first}; {hint}") from None
    return {f"model.{key}": value for key, value in model.state_dict().items()}
