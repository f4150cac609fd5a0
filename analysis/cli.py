"""``preimage analyze``: studies on feature stores and trained decoders."""

import click


@click.group()
def analyze() -> None:
    """Analyses of stores and decoders (not yet available: issues #4, #5 and #6)."""


@analyze.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def error() -> None:
    """Normalised reconstruction error, PSNR and SSIM of a decoder (issue #4)."""
    raise click.ClickException("`preimage analyze error` is not available yet: it arrives with issue #4")
