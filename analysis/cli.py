"""``preimage analyze``: studies on feature stores and trained decoders."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def analyze() -> None:
    """Analyses of stores and decoders (more arrive with issues #5 and #6)."""


@analyze.command()
@click.option("--store", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--decoder", type=click.Path(exists=True, path_type=Path), required=True, help="A run folder.")
@click.option("--split", type=click.Choice(["heldout", "train"]), default="heldout", show_default=True)
@click.option("--rows", default=1000, show_default=True, help="At most this many rows of the split.")
def error(store: Path, decoder: Path, split: str, rows: int) -> None:
    """The paper's normalised reconstruction error, PSNR and SSIM of a decoder on a split of a store."""
    from ..cache.store import FeatureStore, StoreError
    from ..train.trainer import evaluate, load_decoder

    try:
        opened = FeatureStore.open(store)
        model = load_decoder(decoder, opened)
    except (StoreError, ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    run = json.loads((decoder / "run.json").read_text()) if (decoder / "run.json").exists() else {}
    held_out = run.get("config", {}).get("held_out", 0.1)
    feature = run.get("config", {}).get("feature") or model.config.kind
    result = evaluate(model, opened, feature, held_out, rows, split)
    if not result:
        raise click.ClickException(f"the {split} split of {store} has fewer than two readable rows")
    click.echo(f"{feature} decoder on {result[f'{split}_rows']} {split} rows of {store}:")
    click.echo(f"  normalised error (Dosovitskiy & Brox, image space): {result['normalised_error']:.4f}")
    click.echo(f"  PSNR: {result['psnr']:.2f} dB")
    click.echo(f"  SSIM (first 64 images): {result['ssim']:.4f}")
