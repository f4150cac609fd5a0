"""``preimage invert``: reconstruct image files from their features, with a trained decoder or by optimisation."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .options import (
    OUT_FOLDER,
    SIDE,
    WEIGHTS,
    WEIGHTS_HELP,
    count,
    default_out,
    model_option,
    optimize_config,
    optimize_options,
    zoo_option,
)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--method",
    type=click.Choice(["decoder", "optimize", "hoggles"]),
    default="decoder",
    show_default=True,
    help="A trained decoder (one pass), Mahendran & Vedaldi's optimisation (gradient steps), or a HOGgles "
    "paired dictionary (--decoder RUN of train --method hoggles).",
)
@click.option(
    "--decoder",
    default=None,
    help="A run folder (preimage train --out) [default: the decoder that ships for --feature: preimage zoo].",
)
@click.option(
    "--feature",
    default=None,
    help="The representation, e.g. alexnet:conv3: its shipped decoder, or what --method optimize matches.",
)
@click.option(
    "--loss",
    default="pixel",
    show_default=True,
    help="With --feature: which of its shipped decoders, "
    "by the loss it was trained with: pixel (the paper's expected pre-image) or deepsim (sharp, "
    "photo-like: Dosovitskiy & Brox 2016b); preimage zoo lists them.",
)
@click.option(
    "--size",
    type=SIDE,
    default=None,
    help="With --method optimize: input side [default: 128 HOG, the backbone's size for CNN layers].",
)
@click.option("--out", type=OUT_FOLDER, default=default_out("invert"), show_default=True)
@click.option("--weights", type=WEIGHTS, default=None, help=WEIGHTS_HELP)
@model_option
@click.option(
    "--max-pixels",
    type=count(1, 1 << 40),
    default=None,
    help="Refuse an image larger than this when decoded (about 16 bytes a pixel to decode) [default: 64 Mpx, "
    "as extract].",
)
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist already.")
@zoo_option
@optimize_options
def invert(
    images, method, decoder, feature, loss, size, out, weights, models, max_pixels, overwrite, **options
) -> None:
    """Write original | reconstruction(s) for each image: the feature is computed from the image itself. Inputs
    with the same name from different folders keep their folders under --out."""
    import numpy as np

    ctx = click.get_current_context()
    if not _given(ctx, "out"):  # each decoder or method its own folder: no two collide
        out = out / _label(method, decoder, feature, loss)
    if method != "optimize":  # the optimisation's settings, given to another method, would be ignored
        given = [f"--{name.replace('_', '-')}" for name in options if _given(ctx, name)]
        if given:
            raise click.UsageError(f"{', '.join(given)}: settings of --method optimize, not of --method {method}")
    targets = [out / name for name in output_names(images)]
    inputs = {Path(path).resolve() for path in images}
    clobbered = [str(t) for t in targets if t.resolve() in inputs]
    if clobbered:  # never written over, with or without --overwrite
        raise click.ClickException(
            f"{', '.join(clobbered[:3])} would be written over, and it is an input; choose another --out"
        )
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise click.ClickException(
            f"{', '.join(existing[:3])} exist(s) already ({len(existing)} in all); pass "
            "--overwrite to replace them, or choose another --out"
        )

    from ..pipeline.images import save_rgb, to_uint8

    arrays, skipped = _readable(images, max_pixels)
    if not arrays:
        raise click.ClickException(f"no readable image among the {len(images)} given: {'; '.join(skipped.values())}")
    targets = [t for t, path in zip(targets, images, strict=True) if path not in skipped]
    images = tuple(path for path in images if path not in skipped)
    if method == "hoggles":
        from ..train.inversion.invert import invert_arrays
        from ..train.models.locate import locate

        if decoder is None or not Path(decoder).exists() or locate(decoder).method != "hoggles":
            raise click.UsageError("--method hoggles needs --decoder RUN, a folder of preimage train --method hoggles")
        rows = [[original, recon] for original, recon in invert_arrays(arrays, decoder)]
    elif method == "decoder":
        if decoder is None and feature is None:
            raise click.UsageError(
                "--method decoder needs --feature F (the decoder that ships for F: preimage zoo) "
                "or --decoder RUN (your own run)"
            )
        if decoder is not None and feature is not None:
            raise click.UsageError(
                "give --feature (a shipped decoder) or --decoder (a run), not both; where a run's model from a "
                "source is now: --model FOLDER"
            )
        from ..train.inversion.invert import invert_arrays
        from ..train.models.locate import feature_decoder, locate
        from ..train.models.zoo import PIXEL

        if decoder is not None and loss != PIXEL:
            raise click.UsageError(
                "--loss chooses among the decoders that ship for --feature; a run folder "
                "(--decoder) was trained with its own"
            )
        located = locate(decoder) if decoder is not None else feature_decoder(feature, loss, weights)
        click.echo(f"decoder: {located.path}")
        count = f"{len(arrays)} image{'s' if len(arrays) > 1 else ''}"  # a model loads for seconds before anything
        click.echo(f"computing {located.identity.portable_name} of {count} and decoding it...", err=True)
        pairs = invert_arrays(arrays, located, weights, models=models)
        rows = [[original, recon] for original, recon in pairs]
    else:
        if feature is None:
            raise click.UsageError("--method optimize needs --feature, e.g. --feature alexnet:conv3")
        from ..runtime.progress import StepProgress
        from ..train.inversion.optimize import invert_files

        bar = StepProgress()
        crops, result = invert_files(
            [str(p) for p in images],
            feature,
            config=optimize_config(**options),
            size=size,
            weights=weights,
            progress=bar,
            max_pixels=max_pixels,
        )
        bar.close()
        rows = []
        for i, crop in enumerate(crops):
            pre_images = result.images[i].expand(-1, 3, -1, -1)
            rows.append(list(to_uint8(crop.expand(3, -1, -1)[None])) + list(to_uint8(pre_images)))
            errors = ", ".join(f"{e:.4f}" for e in result.relative_error[i].tolist())
            click.echo(f"{images[i]}: ||Phi(x*) - phi0||^2 / ||phi0||^2 = {errors}")
    for target, row in zip(targets, rows, strict=True):
        target = save_rgb(target, np.concatenate(row, axis=1))
        click.echo(f"wrote {target} (original | {' | '.join(['reconstruction'] * (len(row) - 1))})")
    if skipped:
        raise click.ClickException(
            f"{len(skipped)} of {len(skipped) + len(images)} files skipped, the others "
            f"written: {'; '.join(skipped.values())}"
        )


def _label(method: str, decoder: str | None, feature: str | None, loss: str) -> str:
    """The default output folder's name for what reconstructs: a shipped decoder's file name (``alexnet-conv5``,
    ``hog-deepsim``), ``run-NAME`` for a run folder, ``optimize-FEATURE``, ``hoggles-NAME``."""
    from ..pipeline.names import file_stem, split_decoder_name

    if method == "optimize":
        return f"optimize-{file_stem(feature or 'none')}"
    if decoder is None:
        return file_stem(feature or "none", loss)
    path = Path(decoder)
    if not path.exists():  # a shipped decoder's name given as --decoder
        return file_stem(*split_decoder_name(str(decoder)))
    return f"{method if method == 'hoggles' else 'run'}-{path.stem if path.is_file() else path.name}"


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (or by the environment), not left at its default."""
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _readable(paths: tuple[Path, ...], max_pixels: int | None) -> tuple[list, dict[Path, str]]:
    """The images that can be read, and for each file that cannot, why; one unreadable file loses no other."""
    from ..pipeline.contract import DRAFT_MIN_SIDE
    from ..pipeline.decode import DEFAULT_MAX_PIXELS, ImageReadError, read_image

    arrays, skipped = [], {}
    for path in paths:
        try:
            arrays.append(read_image(path, DRAFT_MIN_SIDE, max_pixels or DEFAULT_MAX_PIXELS))
        except ImageReadError as err:
            skipped[path] = f"{path}: {err}"
            click.echo(f"skipped {path}: {err}", err=True)
    return arrays, skipped


def output_names(paths: tuple[Path, ...] | list[Path]) -> list[str]:
    """A distinct output name for each input: its stem (``photo.png``) where that is unique, else its path under the
    inputs' common folder (``a/photo.png``, ``b/photo.png``), keeping the extension where only it differs."""
    resolved = [Path(p).resolve() for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path()
    for name in (
        lambda p: p.stem,
        lambda p: str(p.relative_to(common).with_suffix("")),
        lambda p: str(p.relative_to(common)),
    ):
        names = [name(p) + ".png" for p in resolved]
        if len(set(names)) == len(names):
            return names
    raise click.ClickException("the same file is given twice")  # only identical paths remain
