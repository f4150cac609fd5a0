"""``preimage invert``: reconstruct image files from their features with a trained decoder."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--decoder", type=click.Path(exists=True, path_type=Path), required=True, help="A run folder.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("inverted"), show_default=True)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None, help="Backbone weights file.")
def invert(images, decoder, out, weights) -> None:
    """Compute each image's feature as the decoder's store did, decode it, write original | reconstruction."""
    import cv2
    import numpy as np

    from ..pipeline.decode import ImageReadError
    from .invert import invert_images

    try:
        pairs = invert_images(list(images), decoder, weights)
    except (ImageReadError, ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    for path, (original, recon) in zip(images, pairs, strict=True):
        target = out / f"{path.stem}.png"
        cv2.imwrite(str(target), cv2.cvtColor(np.concatenate([original, recon], axis=1), cv2.COLOR_RGB2BGR))
        click.echo(f"wrote {target} (original | reconstruction)")
