"""The training loop: a decoder learns the expected pre-image from stored features (Adam on an objective of
:mod:`.objective`, the pixel MSE by default). Evaluation is :mod:`.evaluation`, loading a trained decoder
:mod:`.inverters`: neither needs this loop.

A run lives in one folder: ``run.json`` (settings, decoder config, the store's fingerprint),
``checkpoint.safetensors`` (the last good state), ``metrics.jsonl`` (one line per log step and per evaluation),
``preview-eNNN.png`` (held-out images | reconstructions). Training is resumable at any step: the data order is
a function of (seed, epoch), so a resumed run replays exactly the batches an uninterrupted one would have seen.
A loss that turns NaN or jumps far above its recent median rolls back to the last checkpoint at half the rate.
"""

from __future__ import annotations

import math
import signal
import time
import warnings
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from ...cache.store import FeatureStore, feature_path
from ...pipeline import identity, lookup
from ...pipeline.features import get_representation
from ...pipeline.identity import Identity
from ...pipeline.names import feature_layers, fused_parts
from ...runtime.device import init_distributed, pick_device
from ...runtime.progress import Progress
from ...runtime.signals import STOP_SIGNALS, Interrupted, StopRequest, on_signals
from ..models import checkpoint
from ..models.autoencoder import AutoEncoder
from ..models.conversion import UPSAMPLING_STARTS
from ..models.decoders import Decoder, DecoderConfig, create_decoder
from ..models.loading import load_decoder
from ..models.locate import locate
from ..models.runfolder import RunFolder
from ..scoring.metrics import Smoothed
from .config import MAX_EPOCHS, TrainConfig
from .data import ShardStream, check_target_size, split_rows
from .evaluation import evaluate
from .objective import Diverged, Objective, create_objective
from .precision import PrecisionWarning, check_precision, hardware, machine, resolve_precision

MAX_ROLLBACKS = 8
LOSS_WINDOW = 50  # steps the running median (progress, spike detection) spans; resumed with the checkpoint


def learning_rate(config: TrainConfig, step: int, total: int, scale: float) -> float:
    """Constant, then a cosine decay over the last ``1 - decay_from`` of the steps down to 1% of the rate."""
    start = config.decay_from * total
    if step < start or total <= start:
        return config.lr * scale
    t = min(1.0, (step - start) / (total - start))
    return config.lr * scale * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def input_scale(store: FeatureStore, feature: str, mask: np.ndarray) -> list[float]:
    """What a decoder multiplies its input by: :func:`feature_scale` of the feature, or of each layer of a fused one."""
    return [feature_scale(store, layer, mask) for layer in feature_layers(feature)]


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
    decoder_kind = get_representation(config.feature).decoder
    fused = fused_parts(config.feature) or []
    if config.autoencoder and fused:
        raise ValueError(f"--autoencoder fine-tunes the encoder of one layer; {config.feature} reads several")
    parts = tuple(tuple(store.array(feature_path(layer)).shape[1:]) for layer in fused)
    row_shape = (
        (sum(math.prod(part) for part in parts),) if parts else store.array(feature_path(config.feature)).shape[1:]
    )
    torch.manual_seed(config.seed)
    decoder = create_decoder(
        DecoderConfig(
            decoder_kind,
            tuple(row_shape),
            target_size=config.target_size,
            width=config.width,
            upsample=config.upsample,
            parts=parts,
        )
    )
    return AutoEncoder(config.feature, decoder) if config.autoencoder else decoder


def check_settings(config: TrainConfig) -> None:
    """Refuse settings out of range before anything is opened or written."""
    check_precision(config.precision)
    for option, value in (("--epochs", config.epochs), ("--batch-size", config.batch_size), ("--width", config.width)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1; got {value}")
    if not 0 < config.held_out < 1:
        raise ValueError(f"--held-out is the fraction of photos kept out of training, in (0, 1); got {config.held_out}")
    if not (math.isfinite(config.lr) and config.lr >= 0):  # 0: steps that change nothing (a conversion's check)
        raise ValueError(f"--lr must be a finite number, at least 0; got {config.lr}")
    if not 0 <= config.decay_from <= 1:
        raise ValueError(f"decay_from is a fraction of the steps, in [0, 1]; got {config.decay_from}")
    if not 0 < config.train_fraction <= 1:
        raise ValueError(f"train_fraction is a fraction of the training part, in (0, 1]; got {config.train_fraction}")
    if config.max_steps is not None and config.max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1; got {config.max_steps}")


def schedule_steps(config: TrainConfig, stream: ShardStream) -> tuple[list[int], int, int]:
    """Steps of each epoch, the steps the schedule spans and the step this run stops after (``max_steps``)."""
    steps_per_epoch = [_steps(stream, e, config.workers) for e in range(config.epochs)]
    total = sum(steps_per_epoch)
    if config.max_steps is not None and config.max_steps > total:
        per_epoch = max(1, total // max(config.epochs, 1))
        needed = math.ceil(config.max_steps / per_epoch)
        ask = f"--epochs {needed} or fewer --max-steps" if needed <= MAX_EPOCHS else "fewer --max-steps"
        raise ValueError(
            f"--max-steps {config.max_steps} is more than the {total} steps that {config.epochs} epochs give "
            f"({per_epoch} per epoch); ask for {ask}"
        )
    return steps_per_epoch, total, min(total, config.max_steps or total)


MAX_PREVIEWS = 12  # preview PNGs a run writes, however many epochs it has


def previewed(epoch: int, epochs: int) -> bool:
    """Whether the end of ``epoch`` (from 0) writes a preview: evenly spread, at most :data:`MAX_PREVIEWS`, the
    last epoch always."""
    every = -(-epochs // MAX_PREVIEWS)
    return (epoch + 1) % every == 0 or epoch + 1 == epochs


def train(config: TrainConfig, resume: bool | str = False, show_progress: bool = True, announce=None) -> dict:
    """Train (or resume) the run in ``config.out``; returns the last evaluation's metrics. ``resume``: True to
    continue the run there (an error when it has no checkpoint), ``"auto"`` to continue it when there is one and
    start it otherwise (one batch script for the first start and every requeue). ``announce(line)`` hears what
    the run resolved (device, precision and why, steps). SIGTERM, SIGINT and SIGUSR1 (what SLURM sends before a
    time limit or at preemption) stop it at the next step with a checkpoint: :class:`Interrupted`."""
    device = pick_device(config.device)
    check_settings(config)
    rank, world = init_distributed(device)
    store = FeatureStore.open(config.store)
    config = replace(config, feature=lookup.stored_name(store, config.feature))  # as the store names it
    fingerprint = identity.of_store(store, config.feature).fingerprint()
    stream = ShardStream(
        config.store,
        config.feature,
        split="train",
        target_size=config.target_size,
        batch_size=config.batch_size,
        buffer_shards=config.buffer_shards,
        seed=config.seed,
        held_out=config.held_out,
        inputs="images" if config.autoencoder else "features",
        augment=config.augment,
        train_fraction=config.train_fraction,
    )
    steps_per_epoch, total, last = schedule_steps(config, stream)
    model = build(config, store).to(device)
    torch.manual_seed(config.seed + 1)  # the objective's own networks (a discriminator) start alike in every session
    objective = create_objective(config.loss, feature_shape=model.config.input_shape, **config.loss_options)
    objective.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
    run = _Run(
        config=config,
        model=model,
        network=model,
        optimizer=optimizer,
        objective=objective,
        stream=stream,
        steps_per_epoch=steps_per_epoch,
        total=total,
        last=last,
        progress=None,
        fingerprint=fingerprint,
        store=store,
        rank=rank,
        world=world,
        device=device,
    )
    state, saved, resuming = _open_run(run, resume)
    if rank == 0:  # what this session runs: the precision it resolved to, and how long it goes
        session = {
            "from_step": state["step"],
            "precision": run.config.precision,
            "precision_asked": config.precision,
            "device": str(device),
            "machine": machine(device),
            "epochs": config.epochs,
            "max_steps": config.max_steps,
            "schedule_steps": total,
            "stops_at_step": last,
            "world": world,
        }
        saved.update(precision=run.config.precision, sessions=[*saved.get("sessions", []), session])
        run.folder.write(saved)
    if announce and rank == 0:
        budget = f", stopping at step {last} (--max-steps)" if last < total else ""
        epochs = f"{config.epochs} epoch{'s' if config.epochs > 1 else ''}"
        announce(
            f"training {config.feature} on {device} in {run.config.precision} ({hardware(device).reason}); "
            f"{total} steps in {epochs}{budget}; from step {state['step']}"
        )
    if not resuming:
        run.save(state)  # step 0: what a rollback returns to
    if world > 1:
        run.network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if show_progress and rank == 0:
        run.progress = Progress(last * config.batch_size * world, "samples")
        run.progress.resumed(state["step"] * config.batch_size * world)
    with on_signals(graceful=True, signals=(*STOP_SIGNALS, signal.SIGUSR1)) as run.stop:
        evaluation = _loop_with_rollbacks(run, state, run.folder.checkpoint)
    if run.progress:
        run.progress.close()
    return evaluation


def _open_run(run: _Run, resume: bool | str) -> tuple[dict, dict, bool]:
    """Continue the run in its folder (its checkpoint loaded, its settings and store checked) or begin it; returns
    the training state, the run.json to record this session in, and whether it resumed. Sets the run's
    precision."""
    config, folder = run.config, run.folder
    out, resuming = folder.path, folder.started
    if run.world > 1:
        torch.distributed.barrier()  # every rank has looked before rank 0 writes the first checkpoint
    if resume is True and not resuming:
        raise FileNotFoundError(f"{out} holds no checkpoint to resume; leave out --resume, or use --resume auto")
    state = {"epoch": 0, "batch": 0, "step": 0, "lr_scale": 1.0}
    if resuming:
        if not resume:
            raise FileExistsError(f"{out} holds a run already; pass --resume to continue it, or choose another --out")
        saved = folder.read()
        diff = settings_differing(saved["config"], config)
        if diff:
            raise ValueError(f"{out} was trained with other settings ({', '.join(diff)}); resume with the same ones")
        previous = saved.get("precision", saved["config"].get("precision"))
        run.config = replace(config, precision=run_precision(config.precision, run.device, previous))
        header = run.load(folder.checkpoint)
        identity.check_agree(run.identity, identity.from_fingerprint(header["fingerprint"]), config.store)
        return header["state"], saved, True
    if folder.run_file.exists():  # a folder some other run began: never written over
        diff = sorted(settings_differing(folder.read().get("config", {}), config))
        if diff:
            raise FileExistsError(
                f"{out} holds the run.json of another run (other {', '.join(diff)}); choose another --out"
            )
    elif out.is_dir() and any(out.iterdir()):  # someone's folder (a home, /run): a run never adds files to it
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:3])
        raise FileExistsError(f"{out} holds other files ({shown}, ...) and no run; choose a new or empty --out")
    run.config = replace(config, precision=run_precision(config.precision, run.device))
    train_mask = split_rows(run.store, "train", config.held_out, config.train_fraction)
    if train_mask.sum() < config.batch_size:
        raise ValueError(
            f"{config.store}: {train_mask.sum()} training rows, fewer than one batch of "
            f"{config.batch_size}; give --batch-size {max(1, int(train_mask.sum()))} or less, or extract "
            "more images"
        )
    check_target_size(run.store.array("images").shape[1], config.target_size)  # before the run folder is made
    scale = input_scale(run.store, config.feature, train_mask)  # one value, or one per fused layer
    run.model.input_scale.copy_(torch.tensor(scale).reshape(run.model.input_scale.shape))
    if config.init:
        start_from(run.model, config.init, run.store, config.feature)
    saved = {
        "config": config.fixed(),
        "decoder": run.model.config.as_dict(),
        "fingerprint": run.fingerprint,
        "autoencoder": config.autoencoder,
        "sessions": [],
    }
    if run.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    return state, saved, False


def start_from(model: Decoder | AutoEncoder, init: str, store: FeatureStore, feature: str) -> None:
    """Copy the weights of the trained decoder ``init`` names into ``model`` (a fine-tuning run's start): refused
    unless it decodes this store's ``feature`` as computed here, with the same architecture."""

    if isinstance(model, AutoEncoder):
        raise ValueError("--init starts a decoder of stored features, not an autoencoder")
    located = locate(init)
    start = load_decoder(located, store, feature)
    if model.config.parts and not start.config.parts:  # one of the fused layers' own decoder
        layer = lookup.stored_name(store, located.identity)
        start_fused_from_single(model, start, init=init, layer=layer, feature=feature)
        return
    if replace(start.config, upsample=model.config.upsample) != model.config:
        raise ValueError(
            f"--init {init}: its decoder is {start.config.as_dict()}, this run's "
            f"{model.config.as_dict()}; give the same --width and --target-size"
        )
    weights = start.state_dict()
    kinds = (start.config.upsample, model.config.upsample)
    if kinds not in UPSAMPLING_STARTS:
        raise ValueError(f"--init {init}: a {kinds[0]} decoder cannot start a {kinds[1]} one")
    for convert in UPSAMPLING_STARTS[kinds]:
        weights = convert(start, weights)
    model.load_state_dict(weights)


def start_fused_from_single(model: Decoder, single: Decoder, *, init: str, layer: str, feature: str) -> None:
    """A fused decoder started as the own decoder of its ``layer`` (as the store names it; ``FusedDecoder.start_as``),
    with that decoder's input scale: at the first step it reconstructs exactly as the single layer's decoder does."""
    layers = fused_parts(feature)
    if layer not in layers:
        raise ValueError(f"--init {init}: its layer {layer} is not one of {feature}'s")
    if (single.config.upsample, single.config.target_size) != (model.config.upsample, model.config.target_size):
        raise ValueError(
            f"--init {init}: a {single.config.upsample} decoder to {single.config.target_size} px; train the fused "
            f"one with the same --upsample and --target-size"
        )
    index = layers.index(layer)
    try:
        model.body.start_as(index, single.body)
    except ValueError as err:
        raise ValueError(f"--init {init}: {err}") from None
    with torch.no_grad():
        model.input_scale[index] = single.input_scale


def settings_differing(saved: dict, config: TrainConfig) -> list[str]:
    """The settings a run.json holds otherwise than ``config`` (:meth:`TrainConfig.fixed`); settings added since
    the run was written take their defaults."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    defaults |= {f.name: f.default_factory() for f in fields(TrainConfig) if f.default_factory is not MISSING}
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
            previous = run.load(last_checkpoint)["state"]
            # a new course at a lower rate: the recent losses start again (the checkpoint's may hold the spike's
            # own cause), unlike a resume, which replays the window to repeat the uninterrupted run
            previous.pop("loss_window", None)
            state = {**previous, "lr_scale": state["lr_scale"] * 0.5}
            run.log({"event": "rollback", "reason": str(err), **state})
            if run.progress:
                run.progress.rewind(state["step"] * run.config.batch_size * run.world)


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
        warnings.warn(
            f"the run trained in bf16 so far, but {found.reason}: it goes on in fp32", PrecisionWarning, stacklevel=2
        )
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
    objective: Objective
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
    losses: Smoothed = field(default_factory=lambda: Smoothed(LOSS_WINDOW))  # the recent losses: spikes, progress

    @property
    def folder(self) -> RunFolder:
        """Where the run's files are."""
        return RunFolder(self.config.out)

    @property
    def identity(self) -> Identity:
        """What the features it trains on are (the store's, recorded as the run's fingerprint)."""
        return identity.from_fingerprint(self.fingerprint)

    def loop(self, state: dict) -> dict:
        """Epochs from ``state`` on (updated in place); raises :class:`Diverged` for a rollback."""
        config = self.config
        self.losses = Smoothed(LOSS_WINDOW)
        for value in state.get("loss_window", []):  # as the checkpoint left it, so a resumed run logs the same
            self.losses.update(value)
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
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                value, terms = self.step(state, x, y)
                state.update(batch=index + 1, step=state["step"] + 1)
                samples += len(x)
                if self.progress:
                    parts = [f"{k.removesuffix('_loss')} {v:.3g}" for k, v in terms.items() if k.endswith("_loss")]
                    self.progress.extra = f"loss {self.losses.median:.4f}" + (f" ({', '.join(parts)})" if parts else "")
                    self.progress.update(len(x) * self.world)
                if state["step"] % config.log_every == 0:
                    rate = samples / (time.perf_counter() - start_time)
                    self.log(
                        {
                            "step": state["step"],
                            "epoch": epoch,
                            "loss": value,
                            **terms,
                            "loss_median": self.losses.median,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "samples_per_s": rate,
                        }
                    )
                state["seconds"] = seconds_before + time.perf_counter() - start_time
                if state["step"] % config.checkpoint_every == 0:
                    self.save(state)
            if state["step"] >= self.last and state["batch"] < self.steps_per_epoch[epoch]:
                self.save(state)
                break
            state.update(epoch=epoch + 1, batch=0)
            preview = self.folder.preview(epoch + 1) if previewed(epoch, config.epochs) else None
            evaluation = evaluate(
                self.model,
                self.store,
                feature=config.feature,
                held_out=config.held_out,
                max_rows=config.eval_rows,
                preview=preview,
            )
            self.log(
                {
                    "event": "eval",
                    "epoch": epoch + 1,
                    "step": state["step"],
                    "seconds": state.get("seconds", 0.0),
                    **evaluation,
                }
            )
            self.save(state)
            if state["step"] >= self.last:
                break
        return evaluation

    def step(self, state: dict, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict]:
        """One optimisation step at ``state``'s step: the loss and its terms; :class:`Diverged` when the loss left
        its range, :class:`Interrupted` (after a checkpoint) when a signal asked to stop."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, state["step"], self.total, state["lr_scale"])
        loss, terms = self.objective.step(self.network, x, y, self.config.precision)
        value = float(loss.detach())
        window = self.losses.values
        reference = self.losses.median if len(window) >= 5 else window[0] if window else math.inf
        bad = float(not math.isfinite(value) or value > 10 * reference)
        flags = torch.tensor([bad, float(self.stop.signum or 0)], device=self.device)
        if self.world > 1:  # all ranks roll back, or stop, together
            torch.distributed.all_reduce(flags, torch.distributed.ReduceOp.MAX)
        if flags[1].item():  # a signal: stop at this step boundary, with a checkpoint of it
            self.save(state)
            raise Interrupted(
                int(flags[1].item()),
                f"checkpoint at step {state['step']} written to {self.config.out}; continue with --resume",
            )
        if flags[0].item():
            raise Diverged(f"loss {value:.4g} at step {state['step']} (recent median {reference:.4g})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        terms = {**terms, **(self.objective.after_step() or {})}
        self.losses.update(value)
        return value, terms

    def models(self) -> dict[str, torch.nn.Module]:
        """Everything the checkpoint holds weights of: the decoder as ``model``, and the objective's own."""
        return {"model": self.model, **self.objective.models()}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer, **self.objective.optimizers()}

    def save(self, state: dict) -> None:
        """The run's checkpoint at ``state``, with the loss window (rank 0 only)."""
        if self.rank == 0:
            state = {**state, "loss_window": list(self.losses.values)}
            header = {"state": state, "fingerprint": self.fingerprint, "decoder": self.model.config.as_dict()}
            if isinstance(self.model, AutoEncoder):
                header["autoencoder"] = self.model.spec
            checkpoint.save(self.folder.checkpoint, self.models(), self.optimizers(), header)

    def load(self, path: Path) -> dict:
        """Load every model and optimiser from a checkpoint; returns its header."""
        return checkpoint.load(path, self.models(), self.optimizers())

    def log(self, record: dict) -> None:
        """One line of ``metrics.jsonl`` (rank 0 only)."""
        if self.rank == 0:
            self.folder.log(record)
