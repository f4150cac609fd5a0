"""``preimage tour``: every representation of the paper on the photos that ship with scikit-image."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .options import OUT_FOLDER, default_out

HANDCRAFTED_SIZE = 128


@click.command()
@click.option("--out", type=OUT_FOLDER, default=default_out("tour"), show_default=True)
def tour(out: Path) -> None:
    """Compute HOG, LBP, SIFT and CNN layers on scikit-image's photos; write a picture of what HOG keeps."""
    import cv2
    import numpy as np
    import torch

    from ..pipeline.backbones import create_backbone, get_config, imagenet_class_names, list_backbones
    from ..pipeline.features import hog, lbp, sift
    from ..pipeline.features.hog import render_glyphs
    from ..pipeline.images import center_square, rgb_to_gray, sample_photos, save_rgb, to_float

    photos = sample_photos()
    if not photos:
        raise click.ClickException("scikit-image ships no colour photos in this install")
    names = list(photos)
    small = np.stack([center_square(photos[n], HANDCRAFTED_SIZE) for n in names])
    gray = rgb_to_gray(to_float(small))
    rows: list[tuple[str, tuple[int, ...], float]] = []

    def timed(label: str, fn):
        start = time.perf_counter()
        with torch.no_grad():
            result = fn()
        rows.append((label, tuple(result.shape[1:]), (time.perf_counter() - start) / len(names) * 1e3))
        return result

    hogs = timed("hog", lambda: hog(gray))
    timed("lbp", lambda: lbp(gray))
    timed("sift", lambda: sift(gray))
    toured = [(name, get_config(name).tour_layers) for name in list_backbones()]
    for backbone, layers in [(name, layers) for name, layers in toured if layers]:
        net = create_backbone(backbone)
        size = net.config.preprocess.input_size
        rgb = to_float(np.stack([center_square(photos[n], size) for n in names]))
        click.echo(f"{backbone}: weights from {net.weights.source}")
        with torch.no_grad():
            start = time.perf_counter()
            outputs = net(rgb, layers)
            per_image = (time.perf_counter() - start) / len(names) * 1e3
        for layer, value in outputs.items():
            rows.append((f"{backbone}:{layer}", tuple(value.shape[1:]), per_image))
        if net.config.class_score_layer in outputs:  # a classifier: what it sees in each photo
            top = outputs[net.config.class_score_layer].softmax(-1).max(-1)
            for name, p, c in zip(names, top.values.tolist(), top.indices.tolist(), strict=True):
                click.echo(f"  {name}: {imagenet_class_names()[c]} (ImageNet class {c}) with p={p:.2f}")

    click.echo(f"\n{'representation':28} {'shape':16} ms/image")
    for label, shape, ms in rows:
        click.echo(f"{label:28} {'x'.join(map(str, shape)):16} {ms:8.2f}")

    out.mkdir(parents=True, exist_ok=True)
    tiles = []
    for i in range(len(names)):
        glyph = cv2.resize(render_glyphs(hogs[i]), (256, 256), interpolation=cv2.INTER_AREA)
        photo = cv2.resize(small[i], (256, 256), interpolation=cv2.INTER_CUBIC)
        glyph_rgb = np.repeat((glyph * 255).astype(np.uint8)[..., None], 3, axis=-1)
        tiles.append(np.concatenate([photo, glyph_rgb], axis=1))
    picture = out / "hog.png"
    save_rgb(picture, np.concatenate(tiles, axis=0))
    click.echo(f"\nwrote {picture} (photo | HOG glyphs)")
