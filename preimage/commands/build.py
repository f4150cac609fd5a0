"""``preimage build``: one command from a model's layers and a folder of photos to a zoo of scored, carded decoders
(:mod:`preimage.build`)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import batch_job_options, count


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False), help="The folder of photos.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=True, file_okay=False), help="The zoo folder to publish."
)
@click.option(
    "--work",
    type=click.Path(file_okay=False),
    help="Where the runs and exports are kept (default OUT.build beside --out): rerun with it to resume.",
)
@click.option(
    "--store",
    type=click.Path(),
    help="The feature store (default WORK/features.zarr); one that holds the features already is reused.",
)
@click.option(
    "--loss",
    "losses",
    type=click.Choice(["pixel", "deepsim"]),
    multiple=True,
    default=("pixel", "deepsim"),
    show_default=True,
    help="The decoders to make: pixel (the paper's expected pre-image) and deepsim (perceptual), repeatable.",
)
@click.option(
    "--budget",
    help="Wall time for the whole build on this machine (45m, 3h, 1h30m): each stage's epochs chosen from rates "
    "measured here; without it, the shipped recipe.",
)
@click.option(
    "--check-images",
    type=click.Path(exists=True, file_okay=False),
    help="A second folder of photos (your domain): every decoder is scored on it too, on its card.",
)
@click.option(
    "--recipe",
    type=click.Path(exists=True, dir_okay=False),
    help='A JSON file of recipes by representation, in place of the shipped ones: {"hog": {"epochs": 30, '
    '"augment": "crop", "perceptual": [["zero-fill", 2], ["resize", 4]], "batch_size": 64}}.',
)
@click.option("--license", "license_", default="other", show_default=True, help="The cards' license (Hugging Face id).")
@click.option("--size", type=count(16, 4096), default=128, show_default=True, help="The stored images' side.")
@click.option("--float16", is_flag=True, help="Store the features as float16 (half the bytes, as extract --float16).")
@click.option("--weights", help="A backbone weights file, for built-in CNN layers (offline).")
@batch_job_options
@click.option("--until", hidden=True, help="Stop once this stage is done (what each job of a chain runs).")
def build(
    specs,
    images,
    out,
    work,
    store,
    losses,
    budget,
    check_images,
    recipe,
    license_,
    size,
    float16,
    weights,
    batch,
    until,
):
    """Build decoders of each SPEC (hog, vgg16:conv5_3, hf:FOLDER:encoder.layer.5, a fused alexnet:conv3+conv4+conv5)
    from a folder of photos into a zoo folder: extract once, a pixel and a perceptual (DeePSiM) decoder by the
    shipped recipe (a fused SPEC started from its best layer's), export each in float16 with a Hugging Face model
    card, check every card on the held-out photos, publish. Prints its plan, a line per stage and a table; run it
    again after a stop and it continues where it stopped. Use the result with --zoo OUT or PREIMAGE_ZOO=OUT.

    With --cluster slurm the extraction runs on batch workers (as extract --cluster does) and every later stage is
    a batch job after the one before (afterok), each requeued and resumed after a time limit; the last publishes."""
    from ..build.builder import build as run
    from ..build.recipe import read_recipes

    run(
        list(specs),
        images,
        out,
        store=store,
        work=work,
        losses=losses,
        budget=budget,
        check_images=check_images,
        license=license_,
        size=size,
        float16=float16,
        weights=weights,
        recipes=read_recipes(Path(recipe).read_text()) if recipe else None,
        echo=click.echo,
        until=until,
        cluster=batch,
    )
