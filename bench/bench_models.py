"""Hugging Face models through preimage's hooks against their bare forward pass, and the pipeline's rate for them
beside AlexNet's, in the same run.

    python bench/bench_models.py [--batch 16] [--repeats 5] [--photos 96] [--skip-pipeline]
    .venv-timm/bin/python bench/bench_models.py --skip-pipeline   # adds timm's ViT-S/16 and ResNet-50

Models: a ViT-B/16 and a ResNet-50 built from transformers' default configurations (random weights, saved as
``save_pretrained`` writes them: speed does not depend on the values). Part 1, per image on the same
preprocessed tensors: ``model(pixel_values=x)`` against ``HookedModel.forward_layers(x, [layer])`` for the last
block (the whole pass: the hooks' own cost) and a middle one (the pass stops there). Part 2: ``extract`` of the
shared photos on a local dask cluster for ``alexnet:conv5``, the ResNet's ``encoder.stages.2`` and the ViT's
``layers.6``, in images per second. Where timm imports (``.venv-timm``), part 1 also takes timm's
``vit_small_patch16_224`` and ``resnet50`` (random weights) through the same hooks.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from timing import milliseconds_per_image

from preimage.pipeline.backbones import get_config
from preimage.pipeline.names import folder_model
from preimage.runtime.memory import keep_freed_memory

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "rescale_factor": 1 / 255}
MODELS = {  # name: (config class, model class, processor settings as the hub's files give them, last, middle)
    "vit": (
        "ViTConfig",
        "ViTModel",
        {
            "size": {"height": 224, "width": 224},
            "image_mean": [0.5] * 3,
            "image_std": [0.5] * 3,
            "rescale_factor": 1 / 255,
        },
        "layers.11",
        "layers.6",
    ),
    "resnet": (
        "ResNetConfig",
        "ResNetModel",
        {"size": {"shortest_edge": 224}, "crop_pct": 0.875, **IMAGENET},
        "encoder.stages.3",
        "encoder.stages.2",
    ),
}


def save_models(root: Path) -> dict[str, str]:
    import transformers

    specs = {}
    for name, (config_class, model_class, processor, _, _) in MODELS.items():
        torch.manual_seed(0)
        model = getattr(transformers, model_class)(getattr(transformers, config_class)())
        model.save_pretrained(root / name)
        (root / name / "preprocessor_config.json").write_text(json.dumps(processor))
        specs[name] = folder_model(root / name)
    return specs


TIMM = {
    "timm-vit": ("timm:vit_small_patch16_224", ("blocks.11", "blocks.6")),
    "timm-res": ("timm:resnet50", ("layer4", "layer3")),
}


def timm_models() -> dict[str, tuple[str, tuple[str, ...]]]:
    """timm's models where timm imports (it needs a torchvision built for this torch: ``.venv-timm``)."""
    try:
        import timm  # noqa: F401
    except (ImportError, RuntimeError):
        return {}
    return TIMM


def hook_overhead(models: dict[str, tuple[str, tuple[str, ...]]], batch: int, repeats: int) -> None:
    device = torch.device("cpu")
    print(f"{'model':8} {'layer':18} {'bare ms/img':>11} {'hooked':>8} {'ratio':>6}")
    for name, (spec, layers) in models.items():
        config = get_config(spec)
        network = config.build()
        size = config.preprocess.crop or config.preprocess.input_size
        x = torch.rand(batch, 3, size, size)
        bare = milliseconds_per_image(network.run, x, repeats, device)
        for layer in layers:
            hooked = milliseconds_per_image(partial(network.forward_layers, layers=[layer]), x, repeats, device)
            print(f"{name:8} {layer:18} {bare:11.2f} {hooked:8.2f} {hooked / bare:6.3f}")


def pipeline_rates(specs: dict[str, str], photos: int, root: Path) -> None:
    from preimage.pipeline.extract import extract
    from preimage.pipeline.sources import folder_source

    if not SHARED.is_dir():
        print(f"(no shared photos at {SHARED}: pipeline rates skipped)")
        return
    source = folder_source(SHARED)
    source = source.part(0, min(photos, len(source)))
    jobs = {
        "alexnet:conv5": None,
        f"{specs['resnet']}:encoder.stages.2": "resnet encoder.stages.2",
        f"{specs['vit']}:layers.6": "vit layers.6",
    }
    print(f"\n{'representation':28} {'images/s':>9}  ({len(source)} shared photos, local cluster, one core each)")
    for spec, label in jobs.items():
        store = root / f"{abs(hash(spec))}.zarr"
        begin = time.perf_counter()
        summary = extract(store, source, spec, image_size=64, shard_rows=16, show_progress=False)
        total = time.perf_counter() - begin
        print(f"{label or spec:28} {summary.images_per_second:9.1f}  (whole call {total:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--photos", type=int, default=96)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()
    os.environ["HF_HUB_OFFLINE"] = "1"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        import importlib.util

        specs = save_models(root) if importlib.util.find_spec("transformers") else {}  # not in .venv-timm
        hf = {name: (spec, MODELS[name][3:]) for name, spec in specs.items()}
        hook_overhead({**hf, **timm_models()}, args.batch, args.repeats)
        if specs and not args.skip_pipeline:
            pipeline_rates(specs, args.photos, root)


if __name__ == "__main__":
    main()
