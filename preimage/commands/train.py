"""``preimage train``: fit a decoder to a stored representation (recipe in :mod:`preimage.train.training.trainer`);
``preimage hoggles``: learn HOGgles' paired dictionary for HOG (Vondrick et al.)."""

from __future__ import annotations

import dataclasses

import click

from ..train.training.config import MAX_EPOCHS, TrainConfig
from .options import FRACTION, OUT_FOLDER, SEED, SIDE, STORE, count, parse_pairs, real

# The options of train, one per field of TrainConfig (their defaults are the config's own, but --width's: 128, the
# hand-crafted features' recipe, docs/quality.md); the fields not listed are the trainer's internals.
TRAIN_OPTIONS: dict[str, dict] = {
    "store": dict(type=STORE, required=True),
    "feature": dict(required=True, help="A representation in the store, e.g. hog or alexnet:conv3."),
    "out": dict(type=OUT_FOLDER, required=True, help="The run folder."),
    "target_size": dict(type=SIDE, help="Side of the reconstructed images."),
    "epochs": dict(type=count(1, MAX_EPOCHS)),
    "batch_size": dict(type=count(1, 1 << 16)),
    "lr": dict(type=real(0, 10), help="Adam's rate (0.9, 0.999), decayed at the end."),
    "decay_from": dict(type=FRACTION, help="Fraction of the steps after which the rate decays (cosine) to 1% of --lr."),
    "width": dict(
        type=count(1, 4096),
        default=128,
        help="Channels at the decoder's bottleneck (docs/quality.md: 128 hand-crafted, 64 CNN layers).",
    ),
    "upsample": dict(
        type=click.Choice(["zero-fill", "resize", "sub-pixel"]),
        help="The decoder's up-convolutions: zero-fill (the paper's), resize "
        "(nearest-neighbour, then the convolution: no checkerboard under perceptual losses) or sub-pixel "
        "(four phases per channel at the input's resolution, started equal). --init from a zero-fill decoder "
        "starts a resize one from its kernels, scaled to the same response to smooth input; from a resize "
        "decoder (or through one, from a zero-fill decoder) a sub-pixel one computing the same.",
    ),
    "seed": dict(type=SEED),
    "held_out": dict(
        type=real(0, 1, low_open=True, high_open=True), help="Fraction of ids (by path hash) kept for tests."
    ),
    "train_fraction": dict(
        type=real(0, 1, low_open=True),
        help="Train on this fraction of the training part, the same photos every time (a second path "
        "hash; smaller fractions are subsets of larger ones): learning curves. The held-out part stays "
        "whole.",
    ),
    "workers": dict(type=count(0, 256), help="DataLoader worker processes."),
    "max_steps": dict(type=count(), help="Stop after this many steps (a budget)."),
    "checkpoint_every": dict(type=count(), help="Steps between checkpoints."),
    "autoencoder": dict(
        is_flag=True,
        help="Fine-tune the CNN up to --feature's layer with the decoder, "
        "from the stored images (the upper bound of the fixed-feature decoder).",
    ),
    "augment": dict(
        type=click.Choice(["none", "flip", "crop"]),
        help="Train on mirrored (flip) or re-cropped and mirrored (crop) stored images, their features "
        "recomputed by the store's extractor (hog, lbp, sift).",
    ),
    "precision": dict(
        type=click.Choice(["auto", "fp32", "bf16"]),
        help="bf16: bfloat16 autocast (weights stay float32), 1.45-2x faster where the CPU (AVX512-BF16, AMX) or "
        "GPU computes it natively, 14x slower where it is emulated; auto: bf16 where native, else fp32.",
    ),
    "device": dict(help="auto (the GPU when torch has one, else the CPU), cpu, cuda or cuda:N."),
    "loss": dict(
        help="What a step minimises: pixel (the paper's mean squared error); deepsim (Dosovitskiy & Brox 2016b: "
        "AlexNet CONV5 features, an adversary and pixels; with --lr 0.0002); or an objective registered with "
        "preimage.train.training.objective.register_objective.",
    ),
    "loss_options": dict(
        flag="--loss-option",
        multiple=True,
        metavar="KEY=VALUE",
        help="A setting of --loss, repeatable; deepsim: pixel, feature, adversarial (the terms' weights), "
        "comparator, comparator_size (train/training/deepsim.py).",
    ),
    "init": dict(
        help="Start the decoder from a trained one (a run folder, a checkpoint or a "
        "shipped name such as alexnet:conv5) with the same --width and --target-size: fine-tuning, e.g. a pixel "
        "decoder with --loss deepsim.",
    ),
}
INTERNAL = ("buffer_shards", "log_every", "eval_rows")  # TrainConfig's fields that are not options
MOVED = ("--method", "--atoms", "--window", "--sparsity")  # left train for preimage hoggles: told in one line


def config_options(command):
    """One click option per field of :class:`TrainConfig` in :data:`TRAIN_OPTIONS`, in the config's order, with the
    config's default unless the table gives one."""
    for spec in reversed(dataclasses.fields(TrainConfig)):
        if spec.name not in TRAIN_OPTIONS:
            continue
        option = dict(TRAIN_OPTIONS[spec.name])
        flag = option.pop("flag", "--" + spec.name.replace("_", "-"))
        if not option.get("required") and not option.get("multiple"):
            option.setdefault("default", spec.default)
            option.setdefault("show_default", not option.get("is_flag") and option["default"] is not None)
        command = click.option(flag, spec.name, **option)(command)
    return command


def _moved(ctx: click.Context, param: click.Parameter, value) -> None:
    """An option that left train, given: one line naming the command that takes it now (before any other check)."""
    if value is not None and (param.name, value) != ("method", "decoder"):  # what train always did: still fine
        raise click.UsageError(
            f"{param.opts[0]} is not an option of train: HOGgles' dictionary learning is its own command now, "
            "preimage hoggles --store S --out RUN [--atoms N] [--window N] [--sparsity X] [--steps N]",
            ctx,
        )


def moved_options(command):
    """The options that left train, hidden: given, they say in one line which command takes them now."""
    for flag in MOVED:
        command = click.option(flag, hidden=True, default=None, expose_value=False, is_eager=True, callback=_moved)(
            command
        )
    return command


@click.command()
@config_options
@click.option(
    "--resume",
    type=click.Choice(["yes", "auto"]),
    is_flag=False,
    flag_value="yes",
    default=None,
    help="Continue the run in --out from its last checkpoint; --resume auto: continue it if it has one, "
    "start it otherwise (one batch script for the first start and every requeue).",
)
@moved_options
def train(resume, **settings) -> None:
    """Train an up-convolutional decoder on a feature store, resumably (metrics, previews, checkpoints in --out).

    With torchrun, each rank reads its own shards of the store and gradients are averaged (gloo on CPUs, nccl
    on GPUs, one GPU per rank): torchrun --nproc-per-node 2 -m preimage train ...

    SIGTERM, SIGINT or SIGUSR1 stop it at the next step with a checkpoint; it exits with 128 + the signal's number
    (143, 130, 138). `preimage sbatch train ...` writes a batch script that requeues and resumes it. HOGgles'
    paired dictionary: preimage hoggles.
    """
    from ..train.scoring.metrics import lpips_text
    from ..train.training.trainer import train as run

    settings["store"], settings["out"] = str(settings["store"]), str(settings["out"])
    settings["loss_options"] = parse_pairs(settings["loss_options"], "--loss-option")
    config = TrainConfig(**settings)
    result = run(config, resume={"yes": True, "auto": "auto"}.get(resume, False), announce=click.echo)
    if result:
        click.echo(
            f"held-out ({result['heldout_rows']} images): normalised error {result['normalised_error']:.3f}, "
            f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}, {lpips_text(result)}"
        )
    click.echo(f"run folder: {config.out} (checkpoint.safetensors, metrics.jsonl, preview-eNNN.png)")


@click.command()
@click.option("--store", type=STORE, required=True, help="A store holding hog (its training rows are learned from).")
@click.option("--out", type=OUT_FOLDER, required=True, help="The run folder.")
@click.option("--atoms", type=count(1, 1 << 20), default=1024, show_default=True, help="Dictionary size (ihog's).")
@click.option("--window", type=count(1, 64), default=5, show_default=True, help="HOG cells per window side.")
@click.option("--sparsity", type=real(0, 1e6), default=0.02, show_default=True, help="The lasso's lambda.")
@click.option("--steps", type=count(), default=1000, show_default=True, help="Dictionary updates.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--held-out",
    type=real(0, 1, low_open=True, high_open=True),
    default=0.1,
    show_default=True,
    help="Fraction of ids (by path hash) kept for tests: the decoders' split.",
)
def hoggles(store, out, atoms, window, sparsity, steps, seed, held_out) -> None:
    """Learn HOGgles' paired dictionary (Vondrick et al. 2013) from a store's HOG and images, resumably; invert
    with preimage invert IMAGE --method hoggles --decoder RUN."""
    from ..runtime.progress import Progress
    from ..train.inversion.hoggles import HogglesConfig, train_hoggles

    config = HogglesConfig(atoms=atoms, window=window, sparsity=sparsity, steps=steps, seed=seed)
    bar = Progress(config.steps, "steps")
    target = train_hoggles(store, out, config=config, held_out=held_out, progress=bar)
    bar.close()
    click.echo(f"paired dictionary: {target} (preimage invert IMAGE --method hoggles --decoder {out})")
