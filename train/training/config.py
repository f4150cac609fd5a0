"""What defines a training run (:class:`TrainConfig`, saved in ``run.json``): torch-free, so the ``train`` command
builds its options from it without loading torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MAX_EPOCHS = 1_000_000  # the most epochs a run may ask for (train --epochs)


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
    augment: str = "none"  # 'flip' or 'crop' (crops and flips): new images, features recomputed (augment.py)
    precision: str = "auto"  # 'bf16' (bfloat16 autocast; weights and Adam in float32), 'fp32', or 'auto': bf16
    # where the hardware computes it natively (train/training/precision.py)
    loss: str = "pixel"  # what a step minimises: a registered objective (train/training/objective.py)
    loss_options: dict = field(default_factory=dict)  # the objective's settings (deepsim: its terms' weights)
    upsample: str = "zero-fill"  # the decoder's up-convolutions: 'zero-fill' (the paper's), 'resize' or 'sub-pixel'
    init: str | None = None  # start the decoder from this trained one (a run folder, checkpoint or shipped name)

    def fixed(self) -> dict:
        """The settings a resumed run must share with the original (its length and device may change)."""
        variable = ("epochs", "max_steps", "out", "device", "precision")  # precision: see :func:`run_precision`
        return {k: v for k, v in asdict(self).items() if k not in variable}
