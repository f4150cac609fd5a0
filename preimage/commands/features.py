"""``preimage features``: every representation this install can compute, with its input and output shape."""

from __future__ import annotations

import click


@click.command()
@click.option("--size", default=224, show_default=True, help="Square image size for the output shapes.")
def features(size: int) -> None:
    """List every representation this install can compute, with parameters and output shape."""
    from ..pipeline.backbones import get_config, list_backbones
    from ..pipeline.backbones.registry import computable_layers
    from ..pipeline.features import get_representation, list_representations

    ready = {name: computable_layers(get_config(name))[0] for name in list_backbones()}
    header = f"output at {size}x{size}"
    click.echo(f"{'representation':28} {'input':5} {'grad':4} {'here':5} {header:18} parameters")
    for name in list_representations():
        rep = get_representation(name)
        backbone = rep.params.get("backbone")
        here = "yes" if backbone is None or rep.params["layer"] in ready[backbone] else "no*"
        shape = "x".join(map(str, rep.output_shape(size, size)))
        params = ", ".join(f"{k}={v}" for k, v in rep.params.items())
        click.echo(f"{name:28} {rep.input:5} {'yes' if rep.differentiable else 'no':4} {here:5} {shape:18} {params}")
    click.echo("\nweights, tried in order (an explicit --weights FILE always comes first):")
    for backbone in list_backbones():
        config = get_config(backbone)
        _, source = computable_layers(config)
        found = f"present here: {source}" if source else "none present here (a download may still work)"
        click.echo(f"  {backbone}: " + "; ".join(s.name for s in config.sources) + f"\n    {found}")
    click.echo("* no weights for this layer are present here: supply a file with --weights or go online")
