"""``preimage train``: fit a decoder to a feature store."""

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def train() -> None:
    """Train an up-convolutional decoder on a feature store (not yet available: issue #4)."""
    raise click.ClickException("`preimage train` is not available yet: it arrives with issue #4 (decoders)")
