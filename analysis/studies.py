"""The studies behind ``preimage analyze``: each reads held-out rows of a store, runs decoders in batches and
writes its numbers (JSON, Markdown) and figures (PNG) into one folder."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import torch

from ..cache.store import FeatureStore
from ..pipeline.images import save_rgb
from ..pipeline.lookup import stored_name
from ..pipeline.names import feature_layers
from ..train.inversion.optimize import OptimizeConfig, feature_mask
from ..train.scoring.metrics import normalised_error, upsample_to
from .ablate import Classifier, ablate_top_k
from .figures import captioned_row, line_plot, tile_row
from .interpolate import interpolate
from .layers import short_name
from .perturb import PERTURBATIONS, perturb
from .report import write_json, write_markdown
from .runs import TrainedRun, decode, heldout_rows, read_features, read_images
from .sample import histograms, sample_gaussian, sample_histograms


def _grid(rows: list[np.ndarray]) -> np.ndarray:
    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(padded, axis=0)


def perturbation_study(store: FeatureStore, runs: list[TrainedRun], n: int, out: Path, columns: int = 6) -> list[Path]:
    """Normalised error of every decoder on perturbed held-out features (the decoders were trained on clean
    features: the perturbation is applied at test time), a curve per perturbation, and a grid per feature."""
    table: list[dict] = []
    files: list[Path] = []
    for run in runs:
        rows = heldout_rows(store, run.held_out, n)
        model, images = run.decoder(store), read_images(store, rows)
        features = read_features(store, run.identity, rows)
        picture_rows = [tile_row("image", images[:columns])]
        entry = {"feature": run.label, "images": len(rows)}
        for name in PERTURBATIONS:
            recon = decode(model, perturb(name, features))
            entry[name] = normalised_error(recon, images)
            picture_rows.append(tile_row(name, recon[:columns], images.shape[-1]))
        table.append(entry)
        files.append(save_rgb(out / f"perturb-{short_name(run.feature)}.png", _grid(picture_rows)))
    columns_spec = tuple((name, name, "{:.3f}") for name in PERTURBATIONS)
    labels = [short_name(row["feature"]) for row in table]
    series = {name: [row[name] for row in table] for name in PERTURBATIONS}
    return [
        write_json(out / "perturb.json", table),
        write_markdown(out / "perturb.md", "Normalised error with perturbed features", table, columns_spec),
        save_rgb(out / "perturb.png", line_plot(labels, series, "normalised error", size=(760, 380))),
        *files,
    ]


def interpolation_study(
    store: FeatureStore, runs: list[TrainedRun], pair: tuple[int, int], steps: int, out: Path
) -> list[Path]:
    """Reconstructions along the line between the features of two held-out images, one row per decoder."""
    rows = heldout_rows(store, runs[0].held_out, max(pair) + 1)[list(pair)]
    images = read_images(store, rows)
    size = images.shape[-1]
    ends = torch.zeros(steps, 3, size, size)
    ends[0], ends[-1] = images[0], images[1]
    picture_rows = [tile_row("images", ends)]
    for run in runs:
        features = read_features(store, run.identity, rows)
        recon = decode(run.decoder(store), interpolate(features[0], features[1], steps))
        picture_rows.append(tile_row(run.feature, recon, size))
    settings = {"rows": rows.tolist(), "ids": [str(store.array("ids")[int(r)]) for r in rows], "steps": steps}
    return [write_json(out / "interpolate.json", settings), save_rgb(out / "interpolate.png", _grid(picture_rows))]


def feature_array(store: FeatureStore, name: str) -> da.Array:
    """The stored feature ``name`` as a dask array, read lazily; a fused name's layers flattened one after the other,
    as a fused decoder takes them."""
    arrays = [da.from_zarr(store.features(layer)) for layer in feature_layers(name)]
    if len(arrays) == 1:
        return arrays[0]
    rows = da.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=1)
    return rows.rechunk({1: -1})  # whole rows in each block, as a stored feature's


def sampling_study(
    store: FeatureStore, runs: list[TrainedRun], vectors: int, samples: int, alpha: float, seed: int, out: Path
) -> list[Path]:
    """Random feature vectors from per-dimension histograms (dask, straight from the store) and from one
    truncated Gaussian, decoded; the sparsity of real and sampled vectors side by side."""
    table, picture_rows = [], []
    for run in runs:
        array = feature_array(store, stored_name(store, run.identity))
        shape = array.shape[1:]
        stats = histograms(array[: min(vectors, array.shape[0])])
        model = run.decoder(store)
        drawn = {
            "histograms": sample_histograms(stats, samples, alpha, seed),
            "gaussian": sample_gaussian(stats, samples, seed),
        }
        entry = {"feature": run.label, "vectors": stats.rows, "real sparsity": stats.sparsity}
        for name, values in drawn.items():
            entry[f"{name} sparsity"] = float((values == 0).float().mean())
            recon = decode(model, values.view(samples, *shape))
            picture_rows.append(tile_row(f"{run.feature} {name}", recon, 64))
        table.append(entry)
    columns = tuple((k, k, "{:.3f}") for k in ("real sparsity", "histograms sparsity", "gaussian sparsity"))
    return [
        write_json(out / "sample.json", {"alpha": alpha, "seed": seed, "rows": table}),
        write_markdown(out / "sample.md", f"Random feature vectors (alpha {alpha})", table, columns),
        save_rgb(out / "sample.png", _grid(picture_rows)),
    ]


def ablation_study(
    store: FeatureStore, run: TrainedRun, n: int, k: int, weights: str | None, out: Path, error_rows: int = 256
) -> list[Path]:
    """Reconstructions from all class scores, the top-k only and the top-k zeroed, each named by the classifier
    the scores come from (class and confidence under each of the first ``n`` pictures); per variant, over
    ``error_rows`` held-out images, how often that class is the image's and the normalised error."""
    judge = Classifier(run.feature, weights)
    rows = heldout_rows(store, run.held_out, max(n, error_rows))
    images, scores = read_images(store, rows), read_features(store, run.identity, rows)
    model = run.decoder(store)
    named = judge.name(scores)
    caption = [f"{c}\n{p:.2f}" for c, p in named[:n]]
    picture_rows = [captioned_row("image (its scores' class)", images[:n], caption)]
    table = [{"variant": "image", "images": len(rows), "predictions": [list(x) for x in named[:n]]}]
    for variant, values in ablate_top_k(scores, k).items():
        recon = decode(model, values)
        verdict = judge(upsample_to(recon, images.shape[-1]))
        caption = [f"{c}\n{p:.2f}" for c, p in verdict[:n]]
        picture_rows.append(captioned_row(variant, recon[:n], caption, images.shape[-1]))
        agree = float(np.mean([a[0] == b[0] for a, b in zip(verdict, named, strict=True)]))
        table.append(
            {
                "variant": variant,
                "images": len(rows),
                "predictions": [list(x) for x in verdict[:n]],
                "agreement": agree,
                "normalised_error": normalised_error(recon, images),
            }
        )
    columns = (
        ("agreement", "same class as the image's scores", "{:.3f}"),
        ("normalised_error", "normalised error", "{:.3f}"),
    )
    return [
        write_json(out / "ablate.json", table),
        write_markdown(
            out / "ablate.md",
            f"Class-score ablation (k = {k})",
            rows=table[1:],
            columns=columns,
            keys=("variant", "images"),
        ),
        save_rgb(out / "ablate.png", _grid(picture_rows)),
    ]


def mask_study(
    store: FeatureStore,
    runs: list[TrainedRun],
    n: int,
    window: int | None,
    channels: tuple[int, int] | None,
    out: Path,
    columns: int = 6,
    name: str = "mask",
) -> list[Path]:
    """Reconstructions from a spatial window or a channel range of a convolutional layer, the other features
    set to zero and the decoder trained on whole features (no retraining); error beside the unmasked one.
    Files are NAME.json, NAME.md and NAME.png, so a window study and a channel study share a folder."""

    config = OptimizeConfig(window=window, channels=channels)
    table, picture_rows = [], []
    for run in runs:
        rows = heldout_rows(store, run.held_out, n)
        images, features = read_images(store, rows), read_features(store, run.identity, rows)
        model = run.decoder(store)
        mask = feature_mask(tuple(features.shape[1:]), model.config.channels_last, config)
        whole, masked = decode(model, features), decode(model, features * mask)
        table.append(
            {
                "feature": run.label,
                "whole": normalised_error(whole, images),
                "masked": normalised_error(masked, images),
                "kept": float(mask.mean()),
            }
        )
        picture_rows += [tile_row("image", images[:columns])] if not picture_rows else []
        picture_rows += [tile_row(f"{run.feature} masked", masked[:columns], images.shape[-1])]
    label = " ".join(filter(None, [f"window {window}" if window else "", f"channels {channels}" if channels else ""]))
    columns_spec = (("kept", "fraction kept", "{:.3f}"), ("whole", "whole", "{:.3f}"), ("masked", "masked", "{:.3f}"))
    return [
        write_json(out / f"{name}.json", {"window": window, "channels": channels, "rows": table}),
        write_markdown(out / f"{name}.md", f"Reconstruction from part of a layer ({label})", table, columns_spec),
        save_rgb(out / f"{name}.png", _grid(picture_rows)),
    ]
