"""``preimage zoo``: the decoders that ship with preimage, with their model cards' numbers."""

from __future__ import annotations

import click

from .options import zoo_option


@click.command()
@click.argument("name", required=False)
@zoo_option
def zoo(name: str | None) -> None:
    """List the decoders that ship (held-out scores on the shared photos, recipe, size), or print NAME's model
    card. Pixel decoders are named by their representation, others by REPRESENTATION+LOSS. Use one with preimage
    invert photo.jpg --feature alexnet:conv5 [--loss deepsim]. Built decoders in --zoo folders (or those
    PREIMAGE_ZOO names) are listed first, and found first by name."""
    from ..train.models.zoo import ZOO_DIR, list_zoo, shipped

    if name is not None:
        click.echo(shipped(name).card_text.read_text().rstrip())
        return
    entries = list_zoo()
    if not entries:
        raise click.ClickException("no decoders ship with this installation (train/zoo/ is empty)")
    click.echo(
        "Scores on the held-out part of the shared photos (rows none of them trained on); the mean image is the "
        "error of always answering the training photos' mean. Pixel decoders minimise the paper's "
        "error; deepsim ones (Dosovitskiy & Brox 2016b) look like photos, judged by LPIPS (lower is "
        "closer).\n"
    )
    header = ("name", "loss", "error", "mean image", "PSNR dB", "SSIM", "LPIPS", "rows", "width", "epochs", "MB")
    rows = []
    for entry in entries:
        held, recipe = entry.card["heldout"], entry.card["recipe"]
        rows.append(
            (
                entry.name,
                entry.loss,
                f"{held['normalised_error']:.3f}",
                f"{held['mean_image_error']:.3f}",
                f"{held['psnr']:.2f}",
                f"{held['ssim']:.3f}",
                f"{held['lpips']:.3f}" if "lpips" in held else "-",
                str(held["rows"]),
                str(recipe["width"]),
                str(recipe["epochs"]),
                f"{entry.path.stat().st_size / 1e6:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    folders = list(dict.fromkeys(entry.path.parent for entry in entries))
    for folder in folders:
        if len(folders) > 1:  # a user's built decoders first, then those that ship
            click.echo(f"{'shipped with preimage' if folder == ZOO_DIR else 'built'}: {folder}")
        chosen = [row for row, entry in zip(rows, entries, strict=True) if entry.path.parent == folder]
        for row in [header, *chosen]:
            cells = [row[i].ljust(widths[i]) for i in (0, 1)]
            cells += [value.rjust(w) for value, w in zip(row[2:], widths[2:], strict=True)]
            click.echo("  ".join(cells))
        click.echo("")
    click.echo(f"files: {', '.join(map(str, folders))}; one card: preimage zoo NAME")
