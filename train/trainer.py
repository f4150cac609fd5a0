"""The training loop: a decoder learns the expected pre-image from stored features (pixel MSE, Adam).

A run lives in one folder: ``run.json`` (settings, decoder config, the store's fingerprint),
``checkpoint.safetensors`` (the last good state), ``metrics.jsonl`` (one line per log step and per evaluation),
``preview-eNNN.png`` (held-out images | reconstructions). Training is resumable at any step: the data order is
a function of (seed, epoch), so a resumed run replays exactly the batches an uninterrupted one would have seen.
A loss that turns NaN or jumps far above its recent median rolls back to the last checkpoint at half the rate.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore, feature_path
from ..pipeline.features import get_representation
from ..pipeline.progress import Progress
from ..pipeline.signals import STOP_SIGNALS, Interrupted, StopRequest, on_signals
from . import checkpoint, zoo
from .autoencoder import AutoEncoder
from .data import ShardStream, split_rows
from .decoders import Decoder, DecoderConfig, create_decoder
from .metrics import Smoothed, scores, upsample_to
from .precision import PrecisionWarning, check_precision, hardware, machine, resolve_precision, step_loss

CHECKPOINT = "checkpoint.safetensors"
MAX_ROLLBACKS = 8


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in ``run.json``)."""

    store: str
    feature: str
    out: str
    target_size: int = 64
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    decay_from: float = 0.7  # fraction of the steps after which the rate decays (cosine) to 1% of it
    width: int = 256
    seed: int = 0
    held_out: float = 0.1
    train_fraction: float = 1.0  # train on this fraction of the training part (nested subsets): learning curves
    workers: int = 0
    buffer_shards: int = 4
    checkpoint_every: int = 100  # steps
    log_every: int = 10  # steps
    eval_rows: int = 256
    max_steps: int | None = None  # stop early (a budget); the schedule still spans all epochs
    autoencoder: bool = False  # fine-tune the encoder too (CNN layers): trains on the stored images
    device: str = "auto"  # 'auto': the first GPU when torch has one, else the CPU; or 'cpu', 'cuda', 'cuda:1'
    augment: str = "none"  # 'flip' or 'crop' (crops and flips): new images, features recomputed (train/augment.py)
    precision: str = "auto"  # 'bf16' (bfloat16 autocast; weights and Adam in float32), 'fp32', or 'auto': bf16
    # where the hardware computes it natively (train/precision.py)

    def fixed(self) -> dict:
        """The settings a resumed run must share with the original (its length and device may change)."""
        variable = ("epochs", "max_steps", "out", "device", "precision")  # precision: see :func:`run_precision`
        return {k: v for k, v in asdict(self).items() if k not in variable}


class Diverged(Exception):
    """The loss left its range: roll back."""


def training_device(name: str = "auto") -> torch.device:
    """The device a run trains on: ``auto`` is the first GPU when torch has one, else the CPU; under torchrun
    each rank takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: this torch sees no GPU; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return device


def init_distributed(device: torch.device | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (nccl on GPUs, gloo on CPUs), or run alone; returns
    (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device is not None and device.type == "cuda" else "gloo")
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def learning_rate(config: TrainConfig, step: int, total: int, scale: float) -> float:
    """Constant, then a cosine decay over the last ``1 - decay_from`` of the steps down to 1% of the rate."""
    start = config.decay_from * total
    if step < start or total <= start:
        return config.lr * scale
    t = min(1.0, (step - start) / (total - start))
    return config.lr * scale * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def feature_scale(store: FeatureStore, feature: str, mask: np.ndarray, rows: int = 512) -> float:
    """1 / std of the feature over up to ``rows`` training rows spread over the store (read 32 at a time)."""
    chosen = np.flatnonzero(mask)
    chosen = np.unique(chosen[np.linspace(0, len(chosen) - 1, min(rows, len(chosen))).astype(int)])
    total = total_sq = count = 0.0
    for i in range(0, len(chosen), 32):
        values = store.take(feature_path(feature), chosen[i : i + 32])
        total += float(values.sum(dtype=np.float64))
        total_sq += float(np.square(values, dtype=np.float64).sum())  # one row group at a time: bounded memory
        count += values.size
    std = math.sqrt(max(total_sq / count - (total / count) ** 2, 0.0)) if count else 0.0
    return 1.0 / std if std > 0 else 1.0


def build(config: TrainConfig, store: FeatureStore) -> Decoder | AutoEncoder:
    """The decoder for the run's feature, as stored (with its encoder in the autoencoder mode)."""
    kind = get_representation(config.feature).kind
    row_shape = tuple(store.array(feature_path(config.feature)).shape[1:])
    torch.manual_seed(config.seed)
    decoder = create_decoder(DecoderConfig(kind, row_shape, config.target_size, config.width))
    return AutoEncoder(config.feature, decoder) if config.autoencoder else decoder


def train(config: TrainConfig, resume: bool | str = False, show_progress: bool = True, announce=None) -> dict:
    """Train (or resume) the run in ``config.out``; returns the last evaluation's metrics. ``resume``: True to
    continue the run there (an error when it has no checkpoint), ``"auto"`` to continue it when there is one and
    start it otherwise (one batch script for the first start and every requeue). ``announce(line)`` hears what
    the run resolved (device, precision and why, steps). SIGTERM, SIGINT and SIGUSR1 (what SLURM sends before a
    time limit or at preemption) stop it at the next step with a checkpoint: :class:`Interrupted`."""
    device = training_device(config.device)
    check_precision(config.precision)  # before anything is written
    if not 0 <= config.decay_from <= 1:
        raise ValueError(f"decay_from is a fraction of the steps, in [0, 1]; got {config.decay_from}")
    if not 0 < config.train_fraction <= 1:
        raise ValueError(f"train_fraction is a fraction of the training part, in (0, 1]; got {config.train_fraction}")
    if config.max_steps is not None and config.max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1; got {config.max_steps}")
    rank, world = init_distributed(device)
    out = Path(config.out)
    store = FeatureStore.open(config.store)
    fingerprint = checkpoint.store_fingerprint(store, config.feature)
    stream = ShardStream(
        config.store,
        config.feature,
        "train",
        config.target_size,
        config.batch_size,
        config.buffer_shards,
        config.seed,
        config.held_out,
        inputs="images" if config.autoencoder else "features",
        augment=config.augment,
        train_fraction=config.train_fraction,
    )
    steps_per_epoch = [_steps(stream, e, config.workers) for e in range(config.epochs)]
    total = sum(steps_per_epoch)
    if config.max_steps is not None and config.max_steps > total:
        needed = math.ceil(config.max_steps / max(1, total / max(config.epochs, 1)))
        raise ValueError(
            f"--max-steps {config.max_steps} is more than the {total} steps that {config.epochs} epochs give "
            f"({total // max(config.epochs, 1)} a epoch); ask for --epochs {needed} or fewer --max-steps"
        )
    last = min(total, config.max_steps or total)
    model = build(config, store).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
    state = {"epoch": 0, "batch": 0, "step": 0, "lr_scale": 1.0}
    run_file = out / "run.json"
    resuming = (out / CHECKPOINT).exists()
    if world > 1:
        torch.distributed.barrier()  # every rank has looked before rank 0 writes the first checkpoint
    if resume is True and not resuming:
        raise FileNotFoundError(f"{out} holds no checkpoint to resume; leave out --resume, or use --resume auto")
    if resuming:
        if not resume:
            raise FileExistsError(f"{out} holds a run already; pass --resume to continue it, or choose another --out")
        saved = checkpoint.read_json(run_file)
        diff = settings_differing(saved["config"], config)
        if diff:
            raise ValueError(f"{out} was trained with other settings ({', '.join(diff)}); resume with the same ones")
        precision = run_precision(config.precision, device, saved.get("precision", saved["config"].get("precision")))
        header = checkpoint.load(out / CHECKPOINT, model, optimizer)
        check_fingerprint(header, fingerprint, config.store)
        state = header["state"]
    else:
        if run_file.exists():  # a folder some other run began: never written over
            diff = sorted(settings_differing(checkpoint.read_json(run_file).get("config", {}), config))
            if diff:
                raise FileExistsError(f"{out} holds the run.json of another run (other {', '.join(diff)}); choose "
                                      "another --out")  # fmt: skip
        precision = run_precision(config.precision, device)
        train_mask = split_rows(store, "train", config.held_out, config.train_fraction)
        if train_mask.sum() < config.batch_size:
            raise ValueError(f"{config.store}: {train_mask.sum()} training rows, fewer than one batch")
        model.input_scale.fill_(feature_scale(store, config.feature, train_mask))
        saved = {"config": config.fixed(), "decoder": model.config.as_dict(), "fingerprint": fingerprint,
                 "autoencoder": config.autoencoder, "sessions": []}  # fmt: skip
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
    if rank == 0:  # what this session runs: the precision it resolved to, and how long it goes
        session = {"from_step": state["step"], "precision": precision, "precision_asked": config.precision,
                   "device": str(device), "machine": machine(device), "epochs": config.epochs,
                   "max_steps": config.max_steps, "schedule_steps": total, "stops_at_step": last,
                   "world": world}  # fmt: skip
        saved.update(precision=precision, sessions=[*saved.get("sessions", []), session])
        run_file.write_text(json.dumps(saved, indent=2, sort_keys=True))
    config = replace(config, precision=precision)
    if announce and rank == 0:
        budget = f", stopping at step {last} (--max-steps)" if last < total else ""
        announce(f"training {config.feature} on {device} in {precision} ({hardware(device).reason}); "
                 f"{total} steps in {config.epochs} epochs{budget}; from step {state['step']}")  # fmt: skip
    if not resuming:
        save_checkpoint(config, model, optimizer, state, fingerprint, rank)  # step 0: what a rollback returns to
    network = model
    if world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    progress = Progress(last * config.batch_size * world, "samples") if show_progress and rank == 0 else None
    if progress:
        progress.resumed(state["step"] * config.batch_size * world)
    run = _Run(config, model, network, optimizer, stream, steps_per_epoch, total, last, progress, fingerprint,
               store, rank, world, device)  # fmt: skip
    with on_signals(graceful=True, signals=(*STOP_SIGNALS, signal.SIGUSR1)) as run.stop:
        evaluation = _loop_with_rollbacks(run, state, out / CHECKPOINT)
    if progress:
        progress.close()
    return evaluation


def settings_differing(saved: dict, config: TrainConfig) -> list[str]:
    """The settings a run.json holds otherwise than ``config`` (:meth:`TrainConfig.fixed`); settings added since
    the run was written take their defaults."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    fixed = config.fixed()
    saved = {**defaults, **saved}
    return [k for k in fixed if saved.get(k) != fixed[k]]


def _loop_with_rollbacks(run: _Run, state: dict, last_checkpoint: Path) -> dict:
    """The epochs from ``state``; when the loss leaves its range, again from the last checkpoint at half the rate."""
    rollbacks = 0
    while True:
        try:
            return run.loop(state)
        except Diverged as err:
            rollbacks += 1
            if rollbacks > MAX_ROLLBACKS:
                raise RuntimeError(f"training diverged {rollbacks} times; last: {err}; try a lower --lr") from None
            previous = checkpoint.load(last_checkpoint, run.model, run.optimizer)["state"]
            state = {**previous, "lr_scale": state["lr_scale"] * 0.5}
            run.log({"event": "rollback", "reason": str(err), **state})


def run_precision(asked: str, device: torch.device, previous: str | None = None) -> str:
    """The precision this session trains in (``fp32`` or ``bf16``). A new run resolves ``asked`` for ``device``
    (:func:`~.precision.resolve_precision`). A resumed run keeps the ``previous`` one it trained in (so its losses
    repeat an uninterrupted run's), unless ``auto`` finds bf16 emulated here: then it goes on in fp32 and says so;
    an explicit precision other than the run's is an error."""
    found = hardware(device)
    if previous is None:
        return resolve_precision(asked, found)
    if asked not in ("auto", previous):
        raise ValueError(f"the run was trained in {previous}, not {asked}; resume with --precision {previous} or auto")
    if asked == "auto" and previous == "bf16" and not found.native_bf16:
        warnings.warn(f"the run trained in bf16 so far, but {found.reason}: it goes on in fp32", PrecisionWarning,
                      stacklevel=2)  # fmt: skip
        return "fp32"
    return resolve_precision(previous, found)


def _steps(stream: ShardStream, epoch: int, workers: int) -> int:
    stream.set_epoch(epoch)
    return stream.full_batches(workers)


@dataclass
class _Run:
    """What the epoch loop works with, gathered once by :func:`train`."""

    config: TrainConfig
    model: Decoder
    network: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    stream: ShardStream
    steps_per_epoch: list[int]
    total: int  # steps the schedule spans
    last: int  # steps this run stops after
    progress: Progress | None
    fingerprint: dict
    store: FeatureStore
    rank: int
    world: int
    device: torch.device
    stop: StopRequest = field(default_factory=StopRequest)  # set by SIGTERM or SIGINT: stop at the next step

    def loop(self, state: dict) -> dict:
        """Epochs from ``state`` on (updated in place); raises :class:`Diverged` for a rollback."""
        config, optimizer = self.config, self.optimizer
        loss_window = Smoothed(50)
        evaluation: dict = {}
        start_time, samples = time.perf_counter(), 0
        seconds_before = state.get("seconds", 0.0)  # training time of earlier sessions (the model card's figure)
        for epoch in range(state["epoch"], config.epochs):
            self.stream.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                self.stream, batch_size=None, num_workers=config.workers, pin_memory=self.device.type == "cuda"
            )
            self.network.train()
            for index, (x, y) in enumerate(loader):
                if index >= self.steps_per_epoch[epoch] or state["step"] >= self.last:
                    break
                if index < state["batch"]:
                    continue  # replaying the epoch up to where the checkpoint stopped
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, state["step"], self.total, state["lr_scale"])
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                loss = step_loss(self.network, x, y, config.precision)
                value = float(loss.detach())
                window = loss_window.values
                reference = loss_window.median if len(window) >= 5 else window[0] if window else math.inf
                bad = float(not math.isfinite(value) or value > 10 * reference)
                flags = torch.tensor([bad, float(self.stop.signum or 0)], device=self.device)
                if self.world > 1:  # all ranks roll back, or stop, together
                    torch.distributed.all_reduce(flags, torch.distributed.ReduceOp.MAX)
                if flags[1].item():  # a signal: stop at this step boundary, with a checkpoint of it
                    self.save(state)
                    raise Interrupted(int(flags[1].item()), f"checkpoint at step {state['step']} written to "
                                      f"{config.out}; continue with --resume")  # fmt: skip
                if flags[0].item():
                    raise Diverged(f"loss {value:.4g} at step {state['step']} (recent median {reference:.4g})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_window.update(value)
                state.update(batch=index + 1, step=state["step"] + 1)
                samples += len(x)
                if self.progress:
                    self.progress.extra = f"loss {loss_window.median:.4f}"
                    self.progress.update(len(x) * self.world)
                if state["step"] % config.log_every == 0:
                    rate = samples / (time.perf_counter() - start_time)
                    median, lr = loss_window.median, optimizer.param_groups[0]["lr"]
                    self.log({"step": state["step"], "epoch": epoch, "loss": value, "loss_median": median, "lr": lr,
                              "samples_per_s": rate})  # fmt: skip
                state["seconds"] = seconds_before + time.perf_counter() - start_time
                if state["step"] % config.checkpoint_every == 0:
                    self.save(state)
            if state["step"] >= self.last and state["batch"] < self.steps_per_epoch[epoch]:
                self.save(state)
                break
            state.update(epoch=epoch + 1, batch=0)
            preview = Path(config.out) / f"preview-e{epoch + 1:03d}.png"
            evaluation = evaluate(
                self.model, self.store, config.feature, config.held_out, config.eval_rows, preview=preview
            )
            self.log({"event": "eval", "epoch": epoch + 1, "step": state["step"], "seconds": state.get("seconds", 0.0),
                      **evaluation})  # fmt: skip
            self.save(state)
            if state["step"] >= self.last:
                break
        return evaluation

    def save(self, state: dict) -> None:
        save_checkpoint(self.config, self.model, self.optimizer, state, self.fingerprint, self.rank)

    def log(self, record: dict) -> None:
        """One line of ``metrics.jsonl`` (rank 0 only)."""
        if self.rank == 0:
            with open(Path(self.config.out) / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")


def save_checkpoint(config: TrainConfig, model: Decoder, optimizer, state: dict, fingerprint: dict, rank: int) -> None:
    """The run's checkpoint at ``state`` (rank 0 only)."""
    if rank == 0:
        header = {"state": dict(state), "fingerprint": fingerprint, "decoder": model.config.as_dict()}
        if isinstance(model, AutoEncoder):
            header["autoencoder"] = model.spec
        checkpoint.save(Path(config.out) / CHECKPOINT, model, optimizer, header)


def check_fingerprint(header: dict, fingerprint: dict, where: str) -> None:
    """A decoder only applies to features computed exactly as those it was trained on."""
    trained = header["fingerprint"]
    if trained["sha256"] != fingerprint["sha256"]:
        from ..cache.store import differences

        problems = differences(
            {k: v for k, v in fingerprint.items() if k != "sha256"},
            {k: v for k, v in trained.items() if k != "sha256"},
            labels=("the store", "the decoder"),
        )
        raise ValueError(
            f"the decoder was trained on features computed differently from those in {where}:\n  "
            + "\n  ".join(problems)
        )


@torch.no_grad()
def evaluate(
    model: Decoder,
    store: FeatureStore,
    feature: str,
    held_out: float = 0.1,
    max_rows: int = 256,
    split: str = "heldout",
    preview: Path | None = None,
    train_fraction: float = 1.0,
) -> dict:
    """Quality (:func:`~.metrics.scores`) on the first ``max_rows`` rows of a split, each reconstruction
    up-sampled to the stored image size; optionally a preview PNG of 8. The training split is the run's own
    (``train_fraction`` of the training part); ``all`` is every row read."""
    was_training = model.training
    model.eval()
    rows = np.flatnonzero(split_rows(store, split, held_out, train_fraction))[:max_rows]
    if len(rows) < 2:
        return {}
    takes_images = getattr(model, "takes", "features") == "images"
    device = next(model.parameters()).device
    recon, targets = [], []
    for start, stop in store.partitions():
        picked = rows[(rows >= start) & (rows < stop)] - start
        if len(picked):
            stored = store.read_rows("images", start, stop)[picked]
            target = torch.from_numpy(stored).permute(0, 3, 1, 2).float() / 255
            if takes_images:
                inputs = target
            else:
                inputs = torch.from_numpy(store.read_rows(feature_path(feature), start, stop)[picked]).float()
            recon.append(model(inputs.to(device)).cpu())
            targets.append(target)
    recon_t, target_t = torch.cat(recon), torch.cat(targets)
    result = {f"{split}_rows": len(rows), **scores(recon_t, target_t)}
    if preview is not None:
        write_preview(preview, target_t[:8], recon_t[:8])
    model.train(was_training)
    return result


def write_preview(path: Path, targets: torch.Tensor, recon: torch.Tensor) -> None:
    """A grid: one row per image, target | reconstruction (up-sampled to the target's size)."""
    import cv2

    recon = upsample_to(recon, targets.shape[-1]).clamp(0, 1)
    pairs = torch.cat([targets, recon], dim=3)  # side by side
    grid = torch.cat(list(pairs), dim=1)  # stacked
    picture = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))


def load_decoder(run: str | os.PathLike, store: FeatureStore | None = None, feature: str | None = None) -> Decoder:
    """The trained decoder of a run folder, a checkpoint file or a shipped representation (``"hog"``,
    ``"alexnet:conv5"``: :mod:`.zoo`), in float32; with ``store``, refused unless that store's
    ``feature`` was computed exactly as the training features were. The header is checked (bounds, then every
    tensor's shape against the decoder it describes, built on the meta device) before anything is allocated."""
    path = zoo.resolve(run)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; a run folder holds {CHECKPOINT}, written by preimage train")
    header = checkpoint.read_header(path)
    checkpoint.check_decoder_header(path, header["decoder"])
    try:
        config = DecoderConfig.from_dict(header["decoder"])
        with torch.device("meta"):
            skeleton = create_decoder(config)
    except (KeyError, TypeError, ValueError) as err:
        problem = f"{path}: its header describes no decoder this preimage builds ({err})"
        raise checkpoint.CheckpointError(problem) from None
    checkpoint.check_shapes(path, skeleton, "model.decoder." if header.get("autoencoder") else "model.")
    model = create_decoder(config)
    if header.get("autoencoder"):
        model = AutoEncoder(header["autoencoder"], model, pretrained=False)  # the weights come from the checkpoint
    checkpoint.load(path, model)
    if store is not None:
        if not isinstance(header.get("fingerprint"), dict):
            raise checkpoint.CheckpointError(f"{path}: its header has no fingerprint of the features it was trained on")
        name = feature or header["fingerprint"]["feature"]["representation"]
        check_fingerprint(header, checkpoint.store_fingerprint(store, name), str(store.path))
    return model.eval()
