"""A trained run as a zoo decoder (what ``preimage build`` publishes and train/zoo/ ships): float16 weights where
they score as float32 do, the model card (held-out scores with their spread, the mean-image baseline, the
train/held-out gap, the recipe) in the file's header, and the card as text beside it (:mod:`.card`).

The held-out scores are measured on the store's rows the run never saw, with the float32 weights and with those that
ship; the training part's mean image is the baseline. ``rescore`` scores a file again with today's metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..analysis.runs import decode, heldout_rows, mean_image, read_features, read_images, read_run
from ..cache.store import FeatureStore, feature_path
from ..pipeline.images import sample_photos, to_float
from ..pipeline.names import (
    decoder_name,
    feature_layers,
    file_stem,
    fused_name,
    layer_of,
    portable_name,
    source_model,
    source_ref,
)
from ..train.inversion.invert import reconstruct_arrays
from ..train.models import checkpoint, zoo
from ..train.models.loading import load_decoder
from ..train.models.locate import locate
from ..train.models.runfolder import RunFolder
from ..train.scoring.metrics import image_scores, normalised_error, scores, spread
from ..train.training.data import split_rows
from ..train.training.deepsim import DeepSimWeights
from ..train.training.evaluation import evaluate
from .card import markdown

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


SHARED_PHOTOS = "the shared photos: Caltech-101 (9,144 JPEG) and BSDS500 (500 JPEG)"  # what the shipped ones saw


def card(
    run: Path,
    store: FeatureStore,
    name: str,
    dtype: str,
    heldout: dict,
    fp32: dict,
    baseline: float,
    about: dict | None = None,
) -> dict:
    """The model card: training data and split, recipe, time, held-out and sample-photo scores, how to reproduce.
    ``about``: what a build says of its decoders (``source`` of the photos, ``reproduce`` and ``evaluate`` commands,
    its ``build`` section); the shipped decoders' own without it."""
    saved = RunFolder(run).read()
    config, sessions = saved["config"], saved["sessions"]
    state = checkpoint.read_header(RunFolder(run).checkpoint)["state"]
    source = store.meta["source"]
    entry = {
        "feature": portable_name(config["feature"]),
        "name": name,
        "training_photos": {
            "source": SHARED_PHOTOS,
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
    if about:
        entry["training_photos"]["source"] = about["source"]
        entry.update(reproduce=about["reproduce"], evaluate=about["evaluate"], build=about["build"])
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


def split_scores(model, store: FeatureStore, feature: str, held_out: float, split: str) -> dict[str, np.ndarray]:
    """Each of the first :data:`MAX_ROWS` rows of a split scored alone (:func:`image_scores`)."""
    rows = np.flatnonzero(split_rows(store, split, held_out))[:MAX_ROWS]
    return image_scores(decode(model, read_features(store, feature, rows)), read_images(store, rows))


def export(
    run: Path, store: FeatureStore, out: Path, about: dict | None = None, quiet: bool = False, measure=None
) -> tuple[Path, dict]:
    """Write one run as a zoo decoder in ``out`` (its card: :func:`card`, ``about`` as there; ``measure(path)``: more
    of the card's fields, measured on the file as it ships); returns the file and the card."""
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
    shipped = load_decoder(tmp, store, feature)  # the spread and the gap of what ships
    tmp.unlink()
    targets = read_images(store, heldout_rows(store, trained.held_out, MAX_ROWS))
    baseline = normalised_error(mean_image(store, trained.held_out)[None].expand_as(targets), targets)
    entry = card(run, store, name=name, dtype=dtype, heldout=heldout, fp32=fp32, baseline=baseline, about=about)
    each = split_scores(shipped, store, feature, held_out=trained.held_out, split="heldout")
    entry["heldout"]["spread"] = {k: {s: round(v, 4) for s, v in spread(values).items()} for k, values in each.items()}
    train = split_scores(shipped, store, feature, held_out=trained.held_out, split="train")["normalised_error"]
    entry["train"] = {"rows": len(train), "normalised_error": round(float(train.mean()), 4)}
    entry["gap"] = round(heldout["normalised_error"] / float(train.mean()) - 1, 4)
    header = {**header, "config": RunFolder(run).read()["config"]}
    write_shipped(target, model, header=header, entry=entry, dtype=dtype, measure=measure)
    if not quiet:
        print(
            f"{name}: held-out {heldout['normalised_error']:.4f} ({dtype}; float32 {fp32['normalised_error']:.4f}), "
            f"scikit-image photos {entry['sample_photos']['normalised_error']:.4f}, "
            f"{target.stat().st_size / 1e6:.1f} MB -> {target}"
        )
    return target, entry


def write_shipped(target: Path, model, header: dict, entry: dict, dtype: str, measure=None) -> None:
    """The shipped file and its card as text, with the card's scores on scikit-image's photos measured on what
    ships; the file is replaced only once complete."""
    tmp = target.with_name(target.name + ".check")
    weights = torch.float16 if dtype == "float16" else None
    checkpoint.save(tmp, model, None, {**header, "card": entry}, weights_dtype=weights)
    entry["sample_photos"] = sample_scores(tmp)  # what ships, on photos every installation has
    if measure is not None:
        entry.update(measure(tmp))
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
