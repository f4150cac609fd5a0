"""``preimage features``: every representation this install can compute, with its input and output shape."""

from __future__ import annotations

import click

from .options import SIDE

FUSED_HELP = (
    "fused: maps of one model read together by one decoder, MODEL:L1+L2+... or MODEL:FIRST-LAST (extract stores "
    "each layer; a store holding them all serves it), e.g.:"
)
FUSED_EXAMPLES = ("alexnet:conv3-conv5", "alexnet:conv1-conv5")


@click.command()
@click.option(
    "--size",
    default=128,
    show_default=True,
    type=SIDE,
    help="The --size of a store: the hand-crafted shapes at that side; a model's layers as such a store "
    "holds them (every model is fed its own input side, e.g. 224 for AlexNet).",
)
@click.option(
    "--model",
    default=None,
    help="One model's layers instead, e.g. hf:facebook/dinov2-small or a folder "
    "(hf:./my-vit): each with its output shape and how it is stored.",
)
def features(size: int, model: str | None) -> None:
    """List every representation this install can compute, with parameters and output shape as a store holds it."""
    if model is not None:
        _model_layers(model)
        return
    from ..pipeline.backbones import get_config, list_backbones
    from ..pipeline.backbones.registry import computable_layers
    from ..pipeline.features import get_representation, list_representations

    ready = {name: computable_layers(get_config(name))[0] for name in list_backbones()}
    header = f"in a --size {size} store"
    click.echo(f"{'representation':28} {'input':5} {'grad':4} {'here':5} {header:18} parameters")
    for name in list_representations():
        rep = get_representation(name)
        backbone = rep.params.get("backbone")
        here = "yes" if backbone is None or rep.params["layer"] in ready[backbone] else "no*"
        side = rep.input_size or size  # a model is fed its own side, whatever the store's
        shape = "x".join(map(str, rep.output_shape(side, side)))
        params = ", ".join(f"{k}={v}" for k, v in rep.params.items())
        click.echo(f"{name:28} {rep.input:5} {'yes' if rep.differentiable else 'no':4} {here:5} {shape:18} {params}")
    click.echo(f"\n{FUSED_HELP}")
    for example in FUSED_EXAMPLES:
        rep = get_representation(example)
        shapes = " + ".join("x".join(map(str, p.stored_shape(p.input_size))) for p in rep.parts)
        click.echo(f"  {rep.name:36} {shapes}")
    click.echo("\nweights, tried in order (an explicit --weights FILE always comes first):")
    for backbone in list_backbones():
        config = get_config(backbone)
        _, source = computable_layers(config)
        found = f"present here: {source}" if source else "none present here (a download may still work)"
        click.echo(f"  {backbone}: " + "; ".join(s.name for s in config.sources) + f"\n    {found}")
    click.echo("* no weights for this layer are present here: supply a file with --weights or go online")


def _model_layers(model: str) -> None:
    """Every layer of one model in forward order: its output as a store holds it, and its kind."""
    from ..pipeline.backbones import get_config
    from ..pipeline.features import get_representation

    config = get_config(model)
    fed = config.preprocess.input_size  # a store of any --size resizes its crops to this: the shapes do not change
    crop = f", centre crop {config.preprocess.crop}" if config.preprocess.crop else ""
    click.echo(f"{model}: {config.description}; a store of any --size feeds it {fed}x{fed}{crop}")
    click.echo(f"{'layer':48} {'kind':7} stored")
    for layer in config.layers:
        try:
            rep = get_representation(f"{model}:{layer}")
            shape, kind = "x".join(map(str, rep.stored_shape(fed))), rep.kind
        except ValueError as err:  # an output preimage cannot store (a tuple, a raw token sequence)
            shape, kind = str(err).split(": ", 1)[-1][:60], "-"
        click.echo(f"{layer:48} {kind:7} {shape}")
    click.echo(f"\n{FUSED_HELP}")
