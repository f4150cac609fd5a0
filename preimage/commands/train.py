"""``preimage train``: fit a decoder to a stored representation (recipe in :mod:`preimage.train.training.trainer`)."""

from __future__ import annotations

import click

from .options import FRACTION, OUT_FOLDER, SEED, SIDE, STORE, count, parse_pairs, real


@click.command()
@click.option("--store", type=STORE, required=True)
@click.option(
    "--feature", default=None, help="A representation in the store, e.g. hog or alexnet:conv3 (--method hoggles: hog)."
)
@click.option(
    "--method",
    type=click.Choice(["decoder", "hoggles"]),
    default="decoder",
    show_default=True,
    help="decoder: the up-convolutional network; hoggles: Vondrick et al.'s paired dictionary for HOG "
    "(--atoms, --window, --sparsity; --max-steps dictionary updates, default 1000).",
)
@click.option(
    "--atoms",
    type=count(1, 1 << 20),
    default=1024,
    show_default=True,
    help="--method hoggles: dictionary size (ihog's).",
)
@click.option(
    "--window", type=count(1, 64), default=5, show_default=True, help="--method hoggles: HOG cells per window side."
)
@click.option(
    "--sparsity", type=real(0, 1e6), default=0.02, show_default=True, help="--method hoggles: the lasso's lambda."
)
@click.option("--out", type=OUT_FOLDER, required=True, help="The run folder.")
@click.option("--target-size", type=SIDE, default=64, show_default=True, help="Side of the reconstructed images.")
@click.option("--epochs", type=count(1, 1_000_000), default=10, show_default=True)
@click.option("--batch-size", type=count(1, 1 << 16), default=64, show_default=True)
@click.option(
    "--lr", type=real(0, 10), default=1e-3, show_default=True, help="Adam's rate (0.9, 0.999), decayed at the end."
)
@click.option(
    "--decay-from",
    type=FRACTION,
    default=0.7,
    show_default=True,
    help="Fraction of the steps after which the rate decays (cosine) to 1% of --lr.",
)
@click.option(
    "--width",
    type=count(1, 4096),
    default=128,
    show_default=True,
    help="Channels at the decoder's bottleneck (docs/quality.md: 128 hand-crafted, 64 CNN layers).",
)
@click.option(
    "--upsample",
    type=click.Choice(["zero-fill", "resize", "sub-pixel"]),
    default="zero-fill",
    show_default=True,
    help="The decoder's up-convolutions: zero-fill (the paper's), resize "
    "(nearest-neighbour, then the convolution: no checkerboard under perceptual losses) or sub-pixel "
    "(four phases per channel at the input's resolution, started equal). --init from a zero-fill decoder "
    "starts a resize one from its kernels, scaled to the same response to smooth input; from a resize "
    "decoder (or through one, from a zero-fill decoder) a sub-pixel one computing the same.",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--held-out",
    type=real(0, 1, low_open=True, high_open=True),
    default=0.1,
    show_default=True,
    help="Fraction of ids (by path hash) kept for tests.",
)
@click.option(
    "--train-fraction",
    type=real(0, 1, low_open=True),
    default=1.0,
    show_default=True,
    help="Train on this fraction of the training part, the same photos every time (a second path "
    "hash; smaller fractions are subsets of larger ones): learning curves. The held-out part stays "
    "whole.",
)
@click.option("--workers", type=count(0, 256), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--max-steps", type=count(), default=None, help="Stop after this many steps (a budget).")
@click.option("--checkpoint-every", type=count(), default=100, show_default=True, help="Steps between checkpoints.")
@click.option(
    "--resume",
    type=click.Choice(["yes", "auto"]),
    is_flag=False,
    flag_value="yes",
    default=None,
    help="Continue the run in --out from its last checkpoint; --resume auto: continue it if it has one, "
    "start it otherwise (one batch script for the first start and every requeue).",
)
@click.option(
    "--autoencoder",
    is_flag=True,
    help="Fine-tune the CNN up to --feature's layer with the decoder, "
    "from the stored images (the upper bound of the fixed-feature decoder).",
)
@click.option(
    "--augment",
    type=click.Choice(["none", "flip", "crop"]),
    default="none",
    show_default=True,
    help="Train on mirrored (flip) or re-cropped and mirrored (crop) stored images, their features "
    "recomputed by the store's extractor (hog, lbp, sift).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="bf16: bfloat16 autocast (weights stay float32), 1.45-2x faster where the CPU (AVX512-BF16, AMX) or "
    "GPU computes it natively, 14x slower where it is emulated; auto: bf16 where native, else fp32.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (the GPU when torch has one, else the CPU), cpu, cuda or cuda:N.",
)
@click.option(
    "--loss",
    default="pixel",
    show_default=True,
    help="What a step minimises: pixel (the paper's mean squared error); deepsim (Dosovitskiy & Brox 2016b: "
    "AlexNet CONV5 features, an adversary and pixels; with --lr 0.0002); or an objective registered with "
    "preimage.train.training.objective.register_objective.",
)
@click.option(
    "--loss-option",
    "loss_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of --loss, repeatable; deepsim: pixel, feature, adversarial (the terms' weights), "
    "comparator, comparator_size (train/training/deepsim.py).",
)
@click.option(
    "--init",
    default=None,
    help="Start the decoder from a trained one (a run folder, a checkpoint or a "
    "shipped name such as alexnet:conv5) with the same --width and --target-size: fine-tuning, e.g. a pixel "
    "decoder with --loss deepsim.",
)
def train(
    store,
    feature,
    method,
    atoms,
    window,
    sparsity,
    out,
    target_size,
    epochs,
    batch_size,
    lr,
    decay_from,
    width,
    upsample,
    seed,
    held_out,
    train_fraction,
    workers,
    max_steps,
    checkpoint_every,
    resume,
    autoencoder,
    augment,
    precision,
    device,
    loss,
    loss_options,
    init,
) -> None:
    """Train an up-convolutional decoder on a feature store, resumably (metrics, previews, checkpoints in --out).

    With torchrun, each rank reads its own shards of the store and gradients are averaged (gloo on CPUs, nccl
    on GPUs, one GPU per rank): torchrun --nproc-per-node 2 -m preimage train ...

    SIGTERM, SIGINT or SIGUSR1 stop it at the next step with a checkpoint; it exits with 128 + the signal's number
    (143, 130, 138). `preimage sbatch train ...` writes a batch script that requeues and resumes it.
    """
    if method == "hoggles":
        if feature not in (None, "hog"):
            raise click.UsageError(f"--method hoggles inverts HOG; got --feature {feature}")
        from ..runtime.progress import Progress
        from ..train.inversion.hoggles import HogglesConfig, train_hoggles

        config = HogglesConfig(atoms=atoms, window=window, sparsity=sparsity, steps=max_steps or 1000, seed=seed)
        bar = Progress(config.steps, "steps")
        target = train_hoggles(store, out, config=config, held_out=held_out, progress=bar)
        bar.close()
        click.echo(f"paired dictionary: {target} (preimage invert IMAGE --method hoggles --decoder {out})")
        return
    if feature is None:
        raise click.UsageError("--method decoder needs --feature, e.g. --feature hog")
    from ..train.scoring.metrics import lpips_text
    from ..train.training.trainer import TrainConfig
    from ..train.training.trainer import train as run

    config = TrainConfig(
        str(store),
        feature,
        out=str(out),
        target_size=target_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        decay_from=decay_from,
        width=width,
        upsample=upsample,
        seed=seed,
        held_out=held_out,
        train_fraction=train_fraction,
        workers=workers,
        checkpoint_every=checkpoint_every,
        max_steps=max_steps,
        autoencoder=autoencoder,
        device=device,
        augment=augment,
        precision=precision,
        loss=loss,
        loss_options=parse_pairs(loss_options, "--loss-option"),
        init=init,
    )
    result = run(config, resume={"yes": True, "auto": "auto"}.get(resume, False), announce=click.echo)
    if result:
        click.echo(
            f"held-out ({result['heldout_rows']} images): normalised error {result['normalised_error']:.3f}, "
            f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}, {lpips_text(result)}"
        )
    click.echo(f"run folder: {out} (checkpoint.safetensors, metrics.jsonl, preview-eNNN.png)")
