"""docs/models.md: what decoders reconstruct from a ViT, a DINOv2 and a ResNet at several depths.

    python references/models_results.py ../shared/data/photos out/models

No pretrained weights of these models can be had on the machines this project is built on (only the package
registry is reachable), so each model is built from its Hugging Face configuration with random weights (seed 0),
saved as ``save_pretrained`` writes it, beside the preprocessing its hub files give: every figure says so. With
real weights the same commands apply (``hf:facebook/dinov2-small:...``). Steps, each resumable: the models'
folders; one store per model of every 4th shared photo (``--size 128``); a 64-px decoder per layer; ``analyze
layers`` on the 1,000 held-out rows of each store.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "rescale_factor": 1 / 255}
MODELS = {  # name: (config, model class, its hub preprocessing, layers)
    "vit-s16": ("ViTConfig", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                  intermediate_size=1536, image_size=224, patch_size=16), "ViTModel",
                {"size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                 "rescale_factor": 1 / 255}, ["layers.2", "layers.5", "layers.11"]),
    "dinov2-s14": ("Dinov2Config", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                        image_size=224, patch_size=14), "Dinov2Model",
                   {"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
                    **IMAGENET},
                   ["encoder.layer.2", "encoder.layer.5", "encoder.layer.11"]),
    "resnet-18": ("ResNetConfig", dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                       embedding_size=64), "ResNetModel",
                  {"size": {"shortest_edge": 224}, "crop_pct": 0.875, **IMAGENET},
                  ["encoder.stages.0", "encoder.stages.1", "encoder.stages.2", "encoder.stages.3"]),
}  # fmt: skip
PREIMAGE = [sys.executable, "-m", "preimage"]


def save_model(root: Path, name: str) -> Path:
    import transformers

    config_class, settings, model_class, processor, _ = MODELS[name]
    folder = root / "models" / name
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        model = getattr(transformers, model_class)(getattr(transformers, config_class)(**settings))
        model.eval().save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def run(*args: str) -> None:
    print("$ preimage", " ".join(args), flush=True)
    subprocess.run([*PREIMAGE, *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--every", type=int, default=4, help="every Nth photo of the sorted list")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    listing = args.out / "photos.txt"
    paths = sorted(p for p in args.photos.rglob("*") if p.is_file())[:: args.every]
    listing.write_text("".join(f"{p.resolve()}\n" for p in paths))
    for name, (*_, layers) in MODELS.items():
        folder = save_model(args.out, name)
        specs = [f"hf:{folder}:{layer}" for layer in layers]
        store = args.out / f"{name}.zarr"
        run("extract", "--images", str(listing), "--store", str(store), "--feature", ",".join(specs), "--size", "128")
        runs = []
        for spec, layer in zip(specs, layers, strict=True):
            out = args.out / "runs" / f"{name}-{layer.replace('.', '-')}"
            run("train", "--store", str(store), "--feature", spec, "--out", str(out), "--epochs", str(args.epochs),
                "--width", str(args.width), "--target-size", "64", "--resume", "auto")  # fmt: skip
            runs += ["--decoder", str(out)]
        run("analyze", "layers", "--store", str(store), *runs, "--out", str(args.out / "layers" / name), "--overwrite")


if __name__ == "__main__":
    main()
