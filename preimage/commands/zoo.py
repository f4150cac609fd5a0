"""``preimage zoo``: the decoders that ship with preimage, with their model cards' numbers."""

from __future__ import annotations

import click


@click.command()
@click.argument("feature", required=False)
def zoo(feature: str | None) -> None:
    """List the decoders that ship (held-out scores on the shared photos, recipe, size), or print FEATURE's model
    card. Use one by its representation: preimage invert photo.jpg --feature alexnet:conv5."""
    from ..train.zoo import list_shipped, shipped

    if feature is not None:
        click.echo(shipped(feature).card_text.read_text().rstrip())
        return
    entries = list_shipped()
    if not entries:
        raise click.ClickException("no decoders ship with this installation (train/zoo/ is empty)")
    click.echo("Scores on the held-out part of the shared photos (rows none of them trained on); the mean image is the "
               "error of always answering the training photos' mean.\n")  # fmt: skip
    header = ("representation", "error", "mean image", "PSNR dB", "SSIM", "LPIPS", "rows", "width", "epochs", "MB")
    rows = []
    for entry in entries:
        held, recipe = entry.card["heldout"], entry.card["recipe"]
        rows.append((entry.feature, f"{held['normalised_error']:.3f}", f"{held['mean_image_error']:.3f}",
                     f"{held['psnr']:.2f}", f"{held['ssim']:.3f}",
                     f"{held['lpips']:.3f}" if "lpips" in held else "-", str(held["rows"]), str(recipe["width"]),
                     str(recipe["epochs"]), f"{entry.path.stat().st_size / 1e6:.1f}"))  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [value.rjust(w) for value, w in zip(row[1:], widths[1:], strict=True)]
        click.echo("  ".join(cells))
    click.echo(f"\nfiles: {entries[0].path.parent}; one card: preimage zoo FEATURE")
