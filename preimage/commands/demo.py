"""``preimage demo``: the whole job on embedded data, in a few minutes of CPU.

Crops of the colour photos inside scikit-image go into an HDF5 stack, `extract` computes HOG into a store, a
small HOG decoder trains for a fixed number of steps, and the demo writes a picture (original | HOG glyphs |
reconstruction) of held-out crops with the paper's normalised error.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from .options import OUT_FOLDER, count, default_out

SIZE = 128


def photo_crops(count: int, seed: int = 0) -> np.ndarray:
    """``count`` random square crops (a third to all of the shorter side, mirrored half the time) at 128x128."""
    from ..pipeline.images import center_square, sample_photos

    photos = list(sample_photos().values())
    if not photos:
        raise click.ClickException("scikit-image ships no colour photos in this install")
    rng = np.random.default_rng(seed)
    crops = np.empty((count, SIZE, SIZE, 3), np.uint8)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.uniform(0.33, 1.0) * min(h, w))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = center_square(photo[top : top + side, left : left + side], SIZE)
        crops[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return crops


@click.command()
@click.option("--out", type=OUT_FOLDER, default=default_out("demo"), show_default=True)
@click.option(
    "--crops",
    type=count(64, 1 << 20),
    default=1536,
    show_default=True,
    help="Crops of scikit-image's photos to train on.",
)
@click.option(
    "--steps",
    type=count(1, 1_000_000),
    default=300,
    show_default=True,
    help="Training steps of 64 crops (about 4 minutes).",
)
@click.option("--workers", type=count(1, 256), default=None, help="Extraction worker processes [one per core].")
def demo(out: Path, crops: int, steps: int, workers: int | None) -> None:
    """Extract HOG from crops of scikit-image's photos, train a small decoder, picture what HOG keeps."""
    import cv2
    import h5py
    import torch

    from ..cache.store import FeatureStore
    from ..pipeline.cluster import local_cluster
    from ..pipeline.extract import extract
    from ..pipeline.features.hog import render_glyphs
    from ..pipeline.images import save_rgb
    from ..pipeline.sources import hdf5_source
    from ..train.models.loading import load_decoder
    from ..train.models.runfolder import RunFolder
    from ..train.scoring.metrics import lpips_text
    from ..train.training.data import split_rows
    from ..train.training.evaluation import evaluate
    from ..train.training.trainer import TrainConfig, train

    begin = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    stack = out / "crops.h5"
    with h5py.File(stack, "w") as f:
        f.create_dataset("images", data=photo_crops(crops), chunks=(64, SIZE, SIZE, 3))
    click.echo(f"1/3 wrote {crops} crops of scikit-image's photos to {stack}")

    store_path = out / "store.zarr"
    summary = extract(
        store_path,
        hdf5_source(stack, "images"),
        specs="hog",
        image_size=SIZE,
        shard_rows=64,
        client_factory=lambda: local_cluster(workers),
    )
    click.echo(f"2/3 extracted HOG into {store_path} ({summary.read} rows, {summary.seconds:.0f} s)")

    run = out / "run"
    config = TrainConfig(str(store_path), "hog", str(run), epochs=100, width=64, max_steps=steps, eval_rows=512)
    train(config, resume=RunFolder(run).started)
    store = FeatureStore.open(store_path)
    model = load_decoder(run, store)
    result = evaluate(model, store, feature="hog", held_out=config.held_out, max_rows=512)
    click.echo(
        f"3/3 trained {steps} steps; held-out crops ({result['heldout_rows']}): normalised error "
        f"{result['normalised_error']:.3f}, PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}, "
        f"{lpips_text(result)} "
        "(held-out crops come from the same photos as the training ones, so this is optimistic)"
    )

    rows = np.flatnonzero(split_rows(store, "heldout", config.held_out))[:6]
    images, features = store.array("images").oindex[rows], store.features("hog").oindex[rows]
    with torch.no_grad():
        recon = torch.nn.functional.interpolate(model(torch.from_numpy(features)), size=(SIZE, SIZE), mode="bilinear")
    recon = (recon.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    tiles = []
    for image, feature, reconstruction in zip(images, features, recon, strict=True):
        glyph = cv2.resize(render_glyphs(feature), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        glyph = np.repeat((glyph * 255).astype(np.uint8)[..., None], 3, axis=-1)
        tiles.append(np.concatenate([image, glyph, reconstruction], axis=1))
    picture = out / "hog.png"
    save_rgb(picture, np.concatenate(tiles, axis=0))
    click.echo(f"wrote {picture} (original | HOG glyphs | reconstruction) in {time.perf_counter() - begin:.0f} s")
