"""``preimage zoo``: the decoders that ship with preimage, with their model cards' numbers."""

from __future__ import annotations

import click


@click.command()
@click.argument("name", required=False)
def zoo(name: str | None) -> None:
    """List the decoders that ship (held-out scores on the shared photos, recipe, size), or print NAME's model
    card. Pixel decoders are named by their representation, others by REPRESENTATION+LOSS. Use one with preimage
    invert photo.jpg --feature alexnet:conv5 [--loss deepsim]."""
    from ..train.models.zoo import list_shipped, shipped

    if name is not None:
        click.echo(shipped(name).card_text.read_text().rstrip())
        return
    entries = list_shipped()
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
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in (0, 1)]
        cells += [value.rjust(w) for value, w in zip(row[2:], widths[2:], strict=True)]
        click.echo("  ".join(cells))
    click.echo(f"\nfiles: {entries[0].path.parent}; one card: preimage zoo NAME")
