"""A build's time on this machine: each training stage's rate measured by a short probe (the real trainer, a few
steps on the store), and the epochs a budget (``--budget 45m``) allows.

Nothing here is tuned to one CPU: the rates are measured where the build runs, so a slower machine gets fewer epochs
for the same budget (or is told the least budget that trains anything)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

from ..cache.store import FeatureStore
from ..train.models.runfolder import RunFolder
from ..train.training.config import TrainConfig
from ..train.training.data import split_rows
from ..train.training.trainer import train
from .recipe import Stage

PROBE_STEPS = 15  # steps a probe trains; the rate is taken between its first and last logged step
PROBE_LOG = 5
SAFETY = 0.9  # the share of a budget planned: the rest absorbs what a probe does not see
EXPORT_SECONDS = 2.0  # per held-out row and decoder: the export's scores and the check on the photo files
UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str) -> float:
    """Seconds of ``45m``, ``3h``, ``1h30m``, ``90s`` (a bare number: minutes); a ValueError in one line else."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * 60
    parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"--budget: {text!r} is not a duration such as 45m, 3h or 1h30m")
    return sum(float(n) * UNITS[u] for n, u in parts)


def shown(seconds: float) -> str:
    """``1h05m``, ``12m``, ``40s``."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"


def probe_key(stage: Stage) -> tuple:
    """Stages that step at the same rate: one feature, loss, batch and augmentation."""
    s = stage.settings
    return stage.feature, stage.loss, s.get("batch_size", 64), s.get("augment", "none")


def probe(stage: Stage, store: Path, folder: Path) -> float:
    """Samples per second of ``stage``'s training step here: the real trainer for :data:`PROBE_STEPS` steps in a
    scratch run folder (removed after), the rate between its first and last logged step (start-up excluded)."""
    shutil.rmtree(folder, ignore_errors=True)
    settings = {k: v for k, v in stage.settings.items() if k not in ("epochs", "train_fraction")}
    config = TrainConfig(
        store=str(store),
        feature=stage.feature,
        out=str(folder),
        **settings,
        epochs=PROBE_STEPS,  # every epoch has a step at least: the probe's steps fit in any store
        max_steps=PROBE_STEPS,
        log_every=PROBE_LOG,
        checkpoint_every=10**9,
    )
    try:
        train(config, show_progress=False)
        lines = [json.loads(line) for line in RunFolder(folder).metrics.read_text().splitlines()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    logged = [line for line in lines if "samples_per_s" in line]
    batch = config.batch_size
    (a, ra), (b, rb) = (
        (logged[0]["step"], logged[0]["samples_per_s"]),
        (logged[-1]["step"], logged[-1]["samples_per_s"]),
    )
    if b == a:
        return rb
    return (b - a) * batch / (b * batch / rb - a * batch / ra)


def train_rows(store: Path) -> int:
    """Rows a decoder trains on (an epoch)."""
    return int(split_rows(FeatureStore.open(store), "train").sum())


def stage_seconds(stage: Stage, rates: dict[tuple, float], rows: int) -> float:
    """A train stage's seconds at the measured rate."""
    return rows * stage.fraction * stage.epochs / rates[probe_key(stage)]


def fixed_seconds(decoders: int, heldout: int) -> float:
    """What does not scale with epochs: each decoder's export and check on the held-out photos."""
    return decoders * heldout * EXPORT_SECONDS / 10


class TooSmall(ValueError):
    """A budget that cannot train every decoder even briefly: ``least`` seconds would."""

    def __init__(self, least: float) -> None:
        super().__init__(f"at least {shown(least)}")
        self.least = least


def least_budget(spent: float, least: float) -> str:
    """The least ``--budget`` to ask for, in whole minutes: what was spent already and what is left to do."""
    return shown(math.ceil((spent + least) / 60) * 60)


def choose_scale(at_scale, rates: dict, rows: int, seconds: float, fixed: float) -> float:
    """The largest factor on the recipe's epochs (at most 1) whose train stages (``at_scale(scale)``) fit ``seconds``
    with :data:`SAFETY`; :class:`TooSmall` when even the shortest stages do not fit."""
    planned = seconds * SAFETY - fixed

    def cost(scale: float) -> float:
        return sum(stage_seconds(s, rates, rows) for s in at_scale(scale))

    if cost(1.0) <= planned:
        return 1.0
    least = cost(0.0)
    if planned < least:
        raise TooSmall((least + fixed) / SAFETY)
    low, high = 0.0, 1.0
    for _ in range(40):  # the cost grows with the scale, in steps: the largest scale that fits
        middle = (low + high) / 2
        low, high = (middle, high) if cost(middle) <= planned else (low, middle)
    return low
