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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore, feature_path
from ..pipeline.features import get_representation
from ..pipeline.progress import Progress
from . import checkpoint
from .data import ShardStream, split_rows
from .decoders import Decoder, DecoderConfig, create_decoder
from .metrics import Smoothed, normalised_error, psnr, ssim, upsample_to

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
    workers: int = 0
    buffer_shards: int = 4
    checkpoint_every: int = 100  # steps
    log_every: int = 10  # steps
    eval_rows: int = 256
    max_steps: int | None = None  # stop early (a budget); the schedule still spans all epochs

    def fixed(self) -> dict:
        """The settings a resumed run must share with the original (the length of the run may change)."""
        return {k: v for k, v in asdict(self).items() if k not in ("epochs", "max_steps", "out")}


class Diverged(Exception):
    """The loss left its range: roll back."""


def init_distributed() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (gloo: CPU), or run alone; returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
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
    array = store.features(feature)
    total = total_sq = count = 0.0
    for i in range(0, len(chosen), 32):
        values = array.oindex[chosen[i : i + 32]]
        total += float(values.sum(dtype=np.float64))
        total_sq += float(np.square(values, dtype=np.float64).sum())  # one row group at a time: bounded memory
        count += values.size
    std = math.sqrt(max(total_sq / count - (total / count) ** 2, 0.0)) if count else 0.0
    return 1.0 / std if std > 0 else 1.0


def build(config: TrainConfig, store: FeatureStore) -> Decoder:
    """The decoder for the run's feature, as stored."""
    kind = get_representation(config.feature).kind
    row_shape = tuple(store.array(feature_path(config.feature)).shape[1:])
    torch.manual_seed(config.seed)
    return create_decoder(DecoderConfig(kind, row_shape, config.target_size, config.width))


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True) -> dict:
    """Train (or resume) the run in ``config.out``; returns the last evaluation's metrics."""
    rank, world = init_distributed()
    out = Path(config.out)
    store = FeatureStore.open(config.store)
    fingerprint = checkpoint.store_fingerprint(store, config.feature)
    model = build(config, store)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
    state = {"epoch": 0, "batch": 0, "step": 0, "lr_scale": 1.0}
    run_file = out / "run.json"
    resuming = (out / CHECKPOINT).exists()
    if world > 1:
        torch.distributed.barrier()  # every rank has looked before rank 0 writes the first checkpoint
    if resuming:
        if not resume:
            raise FileExistsError(f"{out} holds a run already; pass --resume to continue it, or choose another --out")
        saved = json.loads(run_file.read_text())
        if saved["config"] != config.fixed():
            diff = [k for k in saved["config"] if saved["config"][k] != config.fixed().get(k)]
            raise ValueError(f"{out} was trained with other settings ({', '.join(diff)}); resume with the same ones")
        header = checkpoint.load(out / CHECKPOINT, model, optimizer)
        check_fingerprint(header, fingerprint, config.store)
        state = header["state"]
    else:
        train_mask = split_rows(store, "train", config.held_out)
        if train_mask.sum() < config.batch_size:
            raise ValueError(f"{config.store}: {train_mask.sum()} training rows, fewer than one batch")
        model.input_scale.fill_(feature_scale(store, config.feature, train_mask))
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            run = {"config": config.fixed(), "decoder": model.config.as_dict(), "fingerprint": fingerprint}
            run_file.write_text(json.dumps(run, indent=2, sort_keys=True))
        _save(config, model, optimizer, state, fingerprint, rank)  # step 0: what a rollback returns to at worst
    network = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    stream = ShardStream(
        config.store,
        config.feature,
        "train",
        config.target_size,
        config.batch_size,
        config.buffer_shards,
        config.seed,
        config.held_out,
    )
    steps_per_epoch = [_steps(stream, e, config.workers) for e in range(config.epochs)]
    total = sum(steps_per_epoch)
    last = min(total, config.max_steps or total)
    progress = Progress(last * config.batch_size * world, "samples") if show_progress and rank == 0 else None
    if progress:
        progress.update(state["step"] * config.batch_size * world)
    metrics_file = out / "metrics.jsonl"
    evaluation: dict = {}
    rollbacks = 0
    while True:
        try:
            evaluation = _loop(
                config,
                network,
                model,
                optimizer,
                stream,
                steps_per_epoch,
                total,
                last,
                state,
                progress,
                metrics_file,
                fingerprint,
                store,
                rank,
            )
            break
        except Diverged as err:
            rollbacks += 1
            if rollbacks > MAX_ROLLBACKS:
                raise RuntimeError(f"training diverged {rollbacks} times; last: {err}; try a lower --lr") from None
            previous = checkpoint.load(out / CHECKPOINT, model, optimizer)["state"]
            state = {**previous, "lr_scale": state["lr_scale"] * 0.5}
            _log(metrics_file, rank, {"event": "rollback", "reason": str(err), **state})
    if progress:
        progress.close()
    return evaluation


def _steps(stream: ShardStream, epoch: int, workers: int) -> int:
    stream.set_epoch(epoch)
    return stream.full_batches(workers)


def _loop(
    config,
    network,
    model,
    optimizer,
    stream,
    steps_per_epoch,
    total,
    last,
    state,
    progress,
    metrics_file,
    fingerprint,
    store,
    rank,
) -> dict:
    """Epochs from ``state`` on; raises :class:`Diverged` for a rollback."""
    loss_window = Smoothed(50)
    evaluation: dict = {}
    start_time, samples = time.perf_counter(), 0
    for epoch in range(state["epoch"], config.epochs):
        stream.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=config.workers)
        network.train()
        for index, (x, y) in enumerate(loader):
            if index >= steps_per_epoch[epoch] or state["step"] >= last:
                break
            if index < state["batch"]:
                continue  # replaying the epoch up to where the checkpoint stopped
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, state["step"], total, state["lr_scale"])
            loss = torch.nn.functional.mse_loss(network(x), y)
            value = float(loss.detach())
            window = loss_window.values
            reference = loss_window.median if len(window) >= 5 else window[0] if window else math.inf
            bad = torch.tensor(float(not math.isfinite(value) or value > 10 * reference))
            if torch.distributed.is_initialized():
                torch.distributed.all_reduce(bad, torch.distributed.ReduceOp.MAX)  # all ranks roll back together
            if bad.item():
                raise Diverged(f"loss {value:.4g} at step {state['step']} (recent median {reference:.4g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_window.update(value)
            state.update(batch=index + 1, step=state["step"] + 1)
            samples += len(x)
            if progress:
                progress.extra = f"loss {loss_window.median:.4f}"
                progress.update(
                    len(x) * (torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1)
                )
            if state["step"] % config.log_every == 0:
                rate = samples / (time.perf_counter() - start_time)
                _log(
                    metrics_file,
                    rank,
                    {
                        "step": state["step"],
                        "epoch": epoch,
                        "loss": value,
                        "loss_median": loss_window.median,
                        "lr": optimizer.param_groups[0]["lr"],
                        "samples_per_s": rate,
                    },
                )
            if state["step"] % config.checkpoint_every == 0:
                _save(config, model, optimizer, state, fingerprint, rank)
        if state["step"] >= last and state["batch"] < steps_per_epoch[epoch]:
            _save(config, model, optimizer, state, fingerprint, rank)
            break
        state.update(epoch=epoch + 1, batch=0)
        preview = Path(config.out) / f"preview-e{epoch + 1:03d}.png"
        evaluation = evaluate(model, store, config.feature, config.held_out, config.eval_rows, preview=preview)
        _log(metrics_file, rank, {"event": "eval", "epoch": epoch + 1, "step": state["step"], **evaluation})
        _save(config, model, optimizer, state, fingerprint, rank)
        if state["step"] >= last:
            break
    return evaluation


def _save(config, model, optimizer, state, fingerprint, rank) -> None:
    if rank == 0:
        header = {"state": dict(state), "fingerprint": fingerprint, "decoder": model.config.as_dict()}
        checkpoint.save(Path(config.out) / CHECKPOINT, model, optimizer, header)


def _log(path: Path, rank: int, record: dict) -> None:
    if rank == 0:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def check_fingerprint(header: dict, fingerprint: dict, where: str) -> None:
    """A decoder only applies to features computed exactly as those it was trained on."""
    trained = header["fingerprint"]
    if trained["sha256"] != fingerprint["sha256"]:
        from ..cache.store import differences

        problems = differences(
            {k: v for k, v in trained.items() if k != "sha256"}, {k: v for k, v in fingerprint.items() if k != "sha256"}
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
) -> dict:
    """Quality on up to ``max_rows`` rows of a split: the paper's normalised error, PSNR, SSIM (on up to 64
    images), each reconstruction up-sampled to the stored image size; optionally a preview PNG of 8."""
    was_training = model.training
    model.eval()
    rows = np.flatnonzero(split_rows(store, split, held_out))[:max_rows]
    if len(rows) < 2:
        return {}
    features, images = store.features(feature), store.array("images")
    recon, targets = [], []
    for start, stop in store.partitions():
        picked = rows[(rows >= start) & (rows < stop)] - start
        if len(picked):
            recon.append(model(torch.from_numpy(features[start:stop][picked]).float()))
            targets.append(torch.from_numpy(images[start:stop][picked]).permute(0, 3, 1, 2).float() / 255)
    recon_t, target_t = torch.cat(recon), torch.cat(targets)
    result = {
        f"{split}_rows": len(rows),
        "normalised_error": normalised_error(recon_t, target_t),
        "psnr": psnr(recon_t, target_t),
        "ssim": ssim(recon_t[:64], target_t[:64]),
    }
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
    """The trained decoder of a run folder (or checkpoint file); with ``store``, refused unless that store's
    ``feature`` was computed exactly as the training features were."""
    path = Path(run)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    header = checkpoint.read_header(path)
    model = create_decoder(DecoderConfig.from_dict(header["decoder"]))
    checkpoint.load(path, model)
    if store is not None:
        name = feature or header["fingerprint"]["feature"]["representation"]
        check_fingerprint(header, checkpoint.store_fingerprint(store, name), str(store.path))
    return model.eval()
