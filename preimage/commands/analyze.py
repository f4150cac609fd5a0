"""``preimage analyze``: studies on feature stores and trained decoders."""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import replace
from pathlib import Path

import click

from .options import (
    MAX_SIDE,
    OUT_FOLDER,
    SEED,
    STORE,
    WEIGHTS,
    WEIGHTS_HELP,
    batch_job_options,
    count,
    default_out,
    hidden_alias,
    model_option,
    optimize_config,
    optimize_options,
    parse_channels,
    real,
    zoo_option,
)


class DecoderArgument(click.ParamType):
    """A decoder on the command line: an existing run folder, folder of runs or checkpoint file; a shipped
    decoder's representation (``hog``, ``alexnet:conv5``); or ``zoo``, every shipped decoder."""

    name = "decoder"

    def convert(self, value, param, ctx) -> Path:
        from ..train.models.locate import decoder_path

        try:
            return decoder_path(value)
        except (FileNotFoundError, ValueError) as err:
            self.fail(str(err), param, ctx)


DECODER = DecoderArgument()


@click.group()
def analyze() -> None:
    """Studies on feature stores and trained decoders; each writes numbers and figures to --out."""


@analyze.command()
@click.option("--store", type=STORE, required=True)
@click.option(
    "--decoder", type=DECODER, required=True, help="A run folder, or a shipped decoder's representation (preimage zoo)."
)
@click.option(
    "--split",
    type=click.Choice(["heldout", "train", "all"]),
    default="heldout",
    show_default=True,
    help="heldout: the rows the run never saw; train: those it trained on; all: every row read (a store "
    "the decoder was not trained on).",
)
@click.option("--n", "rows", type=count(), default=1000, show_default=True, help="At most this many rows of the split.")
@hidden_alias("--rows", "rows", type=count())
@zoo_option
def error(store: Path, decoder: Path, split: str, rows: int) -> None:
    """The paper's normalised reconstruction error, PSNR, SSIM and LPIPS of a decoder on a split of a store (the same
    scoring as ``analyze layers``)."""
    from ..analysis.runs import read_run
    from ..cache.store import FeatureStore
    from ..train.models.zoo import ZOO_DIR
    from ..train.scoring.metrics import lpips_text
    from ..train.training.evaluation import evaluate

    if decoder == ZOO_DIR:
        raise click.UsageError(
            "analyze error scores one decoder: name a run folder or one shipped decoder, "
            "e.g. --decoder alexnet:conv5 (preimage zoo lists them); --decoder zoo is for "
            "studies"
        )
    run = read_run(decoder)
    if run is None:
        raise click.ClickException(
            f"{decoder}: not a run folder (run.json and checkpoint.safetensors) nor a shipped decoder"
        )
    opened = FeatureStore.open(store)
    model = run.decoder(opened)
    result = evaluate(
        model,
        opened,
        feature=run.identity,
        held_out=run.held_out,
        max_rows=rows,
        split=split,
        train_fraction=run.train_fraction,
    )
    if not result:
        raise click.ClickException(f"the {split} split of {store} has fewer than two readable rows")
    click.echo(f"{run.feature} decoder {decoder} on {result[f'{split}_rows']} {split} rows of {store}:")
    click.echo(f"  normalised error (Dosovitskiy & Brox, image space): {result['normalised_error']:.4f}")
    click.echo(f"  PSNR: {result['psnr']:.2f} dB")
    click.echo(f"  SSIM (first 64 images): {result['ssim']:.4f}")
    click.echo(f"  {lpips_text(result, 4).replace('LPIPS', 'LPIPS (AlexNet, v0.1):', 1)}")


def decoder_option(command):
    """``--decoder`` for the studies: run folders or folders of runs, repeatable (``--decoders``: hidden alias)."""
    spec = dict(type=DECODER, multiple=True)
    command = zoo_option(hidden_alias("--decoders", "decoders", **spec)(command))
    return click.option(
        "--decoder",
        "decoders",
        **spec,
        help="A run folder, a folder of runs (the newest run of each feature is used, and named), "
        "or a shipped decoder's representation; repeat for several [default: zoo, the decoders "
        "that ship: preimage zoo].",
    )(command)


def feature_option(default: str | None, help_text: str):
    """``--feature``: one representation or a comma-separated list (``--features``: hidden alias)."""

    def decorate(command):
        command = hidden_alias("--features", "features")(command)
        return click.option("--feature", "features", default=default, show_default=default is not None, help=help_text)(
            command
        )

    return decorate


def out_option(command):
    """``--out``, the study folder (``out/analyze`` by default; its index.md shows every study run into it), and
    ``--overwrite``: a study already in that folder is refused before any work unless it is given."""

    @functools.wraps(command)
    def guarded(*args, overwrite: bool, **kwargs):
        study = click.get_current_context().info_name
        refuse_to_overwrite(kwargs["out"], study, kwargs.get("features") if study == "compare" else None, overwrite)
        return command(*args, **kwargs)

    guarded = click.option("--overwrite", is_flag=True, help="Replace this study's results in --out.")(guarded)
    return click.option(
        "--out",
        type=OUT_FOLDER,
        default=default_out("analyze"),
        show_default=True,
        help="The study folder (index.md shows every study run into it).",
    )(guarded)


def refuse_to_overwrite(out: Path, study: str, features: str | None, overwrite: bool) -> None:
    """A study whose results ``out`` holds already (its section of index.md; for ``compare``, rows of the same
    representations: other ones accumulate) is replaced only with ``--overwrite``."""
    from ..analysis.report import INDEX

    if overwrite:
        return
    if study == "compare":
        from ..pipeline.features import expand_specs

        table = out / "compare.json"
        held = {row["feature"] for row in json.loads(table.read_text())} if table.exists() else set()
        again = sorted(held & set(expand_specs(features or "")))
        if again:
            raise click.ClickException(
                f"{out} holds the comparison of {', '.join(again)} already; pass --overwrite "
                "to replace it, or choose another --out"
            )
        return
    index = out / INDEX
    if index.exists() and f"\n## {study}\n" in "\n" + index.read_text():
        raise click.ClickException(
            f"{out} holds a {study} study already ({index}); pass --overwrite to replace it, or choose another --out"
        )


def chosen_runs(decoders: tuple[Path, ...], features: str | None, autoencoder: bool = False, store=None):
    """The runs for ``features`` under ``decoders``, each announced with how it was chosen. The whole zoo with no
    --feature (``store`` given) is the shipped decoders of the features ``store`` holds: a store of AlexNet's
    layers is not refused for the DINOv2 decoders that ship beside them."""
    from ..analysis.runs import trained_runs
    from ..train.models.zoo import ZOO_DIR

    decoders = decoders or (ZOO_DIR,)  # the decoders that ship
    runs = trained_runs(decoders, features, autoencoder)
    if store is not None and features is None and tuple(decoders) == (ZOO_DIR,):
        runs, absent = _held(runs, store)
        if absent:
            click.echo(f"shipped decoders skipped (the store holds none of their features): {', '.join(absent)}")
        if not runs and not autoencoder:
            raise click.ClickException(
                f"{store.path} holds no feature a shipped decoder takes (preimage zoo); "
                f"it holds: {', '.join(store.feature_names()) or 'none'}"
            )
    for run in runs:
        click.echo(f"decoder {run.describe()}")
    return runs


def _held(runs: list, store) -> tuple[list, list[str]]:
    """``runs`` split into those whose feature ``store`` holds (by identity: identity.stored_name) and the
    labels of the others."""
    from ..cache.store import StoreError
    from ..pipeline.lookup import stored_name

    held, absent = [], []
    for run in runs:
        try:
            stored_name(store, run.identity)
            held.append(run)
        except StoreError:
            absent.append(run.label)
    return held, absent


@analyze.command()
@click.option("--store", type=STORE, required=True)
@decoder_option
@feature_option("hog,alexnet:conv1-conv5", "The representations compared, e.g. hog,alexnet:conv1-conv5.")
@click.option("--n", type=count(), default=50, show_default=True, help="Held-out images compared.")
@out_option
@click.option("--weights", type=WEIGHTS, default=None, help=WEIGHTS_HELP)
@click.option("--columns", type=count(1, 1000), default=8, show_default=True, help="Images shown in the figure.")
@click.option(
    "--hoggles",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A HOGgles dictionary (train --method hoggles --out RUN): a third method for HOG.",
)
@model_option
@optimize_options
def compare(store, decoders, features, n, out, weights, columns, hoggles, models, **options) -> None:
    """Decoder against Mahendran & Vedaldi's optimisation (and, for HOG, HOGgles) on the same held-out images: one
    table, one figure per representation."""
    from ..analysis.compare import COLUMNS, KEYS, compare_feature, write_report
    from ..analysis.report import markdown_table, update_index
    from ..cache.store import FeatureStore
    from ..runtime.progress import StepProgress

    config = optimize_config(**options)
    table, pictures = [], {}
    opened = FeatureStore.open(store)
    dictionary = None
    if hoggles is not None:
        from ..train.inversion.hoggles import load_hoggles

        dictionary = load_hoggles(hoggles, opened)
    for run in chosen_runs(decoders, features, store=opened):
        third = dictionary if run.feature == "hog" else None
        click.echo(
            f"{run.feature}: the decoder against the optimisation{' and HOGgles' if third else ''} of {n} "
            "held-out images"
        )
        bar = StepProgress()
        rows, images = compare_feature(
            opened, run, n=n, config=config, weights=weights, progress=bar, dictionary=third, models=models
        )
        bar.close()
        table += rows
        pictures[run.label] = images
    files = write_report(out, table, pictures, columns)
    summary = (
        f"Decoder against Mahendran & Vedaldi's optimisation{' and HOGgles' if hoggles else ''} on {n} "
        f"held-out images of `{store}`."
    )
    index = update_index(out, "compare", summary, files)
    click.echo(markdown_table(table, COLUMNS, KEYS))
    click.echo(f"wrote {', '.join(str(f) for f in files)} and {index}")


def _study_options(command):
    """Options every decoder study shares: the store, the decoders, which features, where."""
    command = out_option(command)
    command = feature_option(None, "Which decoders, e.g. hog,alexnet:conv1-conv5 [default: all].")(command)
    command = decoder_option(command)
    return click.option("--store", type=STORE, required=True)(command)


def _open(store: Path, decoders: tuple[Path, ...], features: str | None):
    """The opened store and the trained runs (announced)."""
    from ..cache.store import FeatureStore

    opened = FeatureStore.open(store)
    return opened, chosen_runs(decoders, features, store=opened)


@analyze.command()
@_study_options
@click.option("--n", type=count(), default=1000, show_default=True, help="Held-out images per decoder.")
@click.option("--autoencoder", is_flag=True, help="Also the runs trained with --autoencoder (encoder fine-tuned).")
def layers(store, decoders, features, out, n, autoencoder) -> None:
    """Normalised error per representation or layer (the paper's Figure 7), beside the mean-image baseline and
    the paper's figures, and a grid of reconstructions (one row per representation)."""
    from ..analysis.layers import COLUMNS, layer_errors, write_layers
    from ..analysis.report import markdown_table, update_index

    opened, runs = _open(store, decoders, features)
    if autoencoder:
        runs += chosen_runs(decoders, None, autoencoder=True, store=opened)
    table, pictures = layer_errors(opened, runs, n)
    files = write_layers(out, table, pictures)
    counts = sorted({row["images"] for row in table})
    scored = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    summary = (
        f"Each decoder on {scored} held-out images of `{store}` (--n {n}); baseline: the training split's mean image."
    )
    index = update_index(out, "layers", summary, files)
    click.echo(markdown_table(table, COLUMNS))
    click.echo(f"wrote {', '.join(str(f) for f in files)} and {index}")


def _finish(out: Path, study: str, summary: str, files: list[Path]) -> None:
    from ..analysis.report import update_index

    index = update_index(out, study, summary, files)
    for path in files:
        if path.suffix == ".md":
            click.echo(path.read_text().split("\n", 2)[-1])
    click.echo(f"wrote {', '.join(str(f) for f in files)} and {index}")


@analyze.command()
@_study_options
@click.option("--n", type=count(), default=1000, show_default=True, help="Held-out images per decoder.")
def perturb(store, decoders, features, out, n) -> None:
    """Error per layer with binarised, dropped-out and sparsified features (the paper's Figures 7 and 9)."""
    from ..analysis.studies import perturbation_study

    opened, runs = _open(store, decoders, features)
    files = perturbation_study(opened, runs, n, out)
    summary = (
        f"Each decoder on up to {n} held-out images with its features perturbed at test time (the decoders were "
        "trained on clean features)."
    )
    _finish(out, "perturb", summary, files)


@analyze.command()
@_study_options
@click.option("--pair", default="0,1", show_default=True, help="Which two held-out images (their order).")
@click.option("--steps", type=count(2, 1000), default=8, show_default=True, help="Points on the line, ends included.")
def interpolate(store, decoders, features, out, pair, steps) -> None:
    """Reconstructions along the straight line between two images' features, per layer (Figure 10)."""
    from ..analysis.studies import interpolation_study

    try:
        a, b = (int(v) for v in pair.split(","))
    except ValueError:
        raise click.BadParameter(f"write two indices, e.g. 0,1; got {pair!r}", param_hint="--pair") from None
    opened, runs = _open(store, decoders, features)
    files = interpolation_study(opened, runs, pair=(a, b), steps=steps, out=out)
    _finish(out, "interpolate", f"Held-out images {a} and {b} of `{store}`, {steps} points.", files)


@analyze.command()
@_study_options
@click.option(
    "--vectors", type=count(), default=4096, show_default=True, help="Stored vectors the histograms are built from."
)
@click.option(
    "--samples",
    type=count(1, 10_000),
    default=8,
    show_default=True,
    help="Random vectors drawn per feature and method.",
)
@click.option(
    "--alpha",
    type=real(0, 1000, low_open=True),
    default=2.0,
    show_default=True,
    help="Scale of the histogram samples (the paper's 2).",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@batch_job_options
def sample(store, decoders, features, out, vectors, samples, alpha, seed, batch) -> None:
    """Reconstructions of random feature vectors drawn from per-dimension histograms and from one truncated
    Gaussian (Figure 11); the histograms are computed with dask from the store (on batch jobs with --cluster)."""
    from ..analysis.studies import sampling_study

    opened, runs = _open(store, decoders, features)
    with contextlib.ExitStack() as stack:
        if batch:  # the histograms' dask graph then runs on the jobs' workers
            from ..pipeline.batch_cluster import batch_cluster

            logs = str(Path(out).resolve() / "jobs")  # the jobs' own logs, beside the study's output
            client = stack.enter_context(
                batch_cluster(replace(batch, dashboard_address=":0", log_directory=logs), (store,))
            )
            click.echo(f"dask: {batch.jobs} {batch.kind} jobs; dashboard {client.dashboard_link}")
        files = sampling_study(opened, runs, vectors=vectors, samples=samples, alpha=alpha, seed=seed, out=out)
    _finish(out, "sample", f"Histograms over the first {vectors} stored vectors; alpha {alpha}; seed {seed}.", files)


@analyze.command()
@_study_options
@click.option("--n", type=count(), default=8, show_default=True, help="Held-out images in the figure.")
@click.option(
    "--error-rows", type=count(), default=256, show_default=True, help="Held-out images the table is computed on."
)
@click.option(
    "--k", type=count(), default=5, show_default=True, help="How many of the largest scores are kept or zeroed."
)
@click.option("--weights", type=WEIGHTS, default=None, help=WEIGHTS_HELP)
def ablate(store, decoders, features, out, n, error_rows, k, weights) -> None:
    """Reconstructions from all class scores, the top-k only and the top-k zeroed, each named by the classifier
    (the paper's coloured-apple study); --features picks the class-score decoder (default: the first found)."""
    from ..analysis.studies import ablation_study
    from ..pipeline.features import get_representation

    opened, runs = _open(store, decoders, features or None)
    scores = [run for run in runs if get_representation(run.feature).class_scores]
    if not scores:
        where = ", ".join(map(str, decoders))
        raise click.ClickException(
            f"no decoder of class scores under {where}; train one on e.g. efficientnet_lite0:logits"
        )
    files = ablation_study(opened, scores[0], n=n, k=k, weights=weights, out=out, error_rows=error_rows)
    summary = f"{scores[0].feature}, k = {k}: figure of {n} held-out images, table over up to {error_rows}."
    _finish(out, "ablate", summary, files)


def _mask_command(name: str, help_text: str):
    @analyze.command(name=name, help=help_text)
    @_study_options
    @click.option("--n", type=count(), default=256, show_default=True, help="Held-out images per decoder.")
    @click.option(
        "--window", type=count(1, MAX_SIDE), default=None, help="Keep the central WxW cells of the feature map."
    )
    @click.option("--channels", default=None, help="Keep channels START:STOP.")
    def command(store, decoders, features, out, n, window, channels) -> None:
        from ..analysis.studies import mask_study

        parsed = parse_channels(channels)
        if window is None and parsed is None:
            raise click.UsageError("give --window W and/or --channels START:STOP")
        opened, runs = _open(store, decoders, features)
        files = mask_study(opened, runs, n=n, window=window, channels=parsed, out=out, name=name)
        kept = " and ".join(
            filter(
                None,
                [f"the central {window}x{window} cells" if window else "", f"channels {channels}" if channels else ""],
            )
        )
        summary = (
            f"Only {kept} kept, the other features set to zero and decoded by the decoder trained on "
            "whole features (no retraining)."
        )
        _finish(out, name, summary, files)

    return command


channels = _mask_command("channels", "Reconstructions from a subset of a layer's channels (features masked).")
window = _mask_command("window", "Reconstructions from a spatial window of a layer (features masked).")
