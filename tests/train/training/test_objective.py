"""Pluggable objectives: a second model and optimiser of the objective's own train, checkpoint and resume with the
decoder's (the place a GAN's discriminator goes)."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open
from torch import nn

from preimage.train.models import checkpoint
from preimage.train.training.objective import (
    Objective,
    create_objective,
    list_objectives,
    pixel_loss,
    register_objective,
)
from preimage.train.training.trainer import TrainConfig, train


@register_objective("test-weighted")
class WeightedPixels(Objective):
    """Pixel MSE times a learned weight that its own optimiser pulls towards 2: a model and an optimiser that are
    not the decoder's."""

    name = "test-weighted"

    def __init__(self, **_) -> None:
        super().__init__()
        self.weight = nn.Linear(1, 1, bias=False)
        nn.init.constant_(self.weight.weight, 1.0)
        self.optim = torch.optim.SGD(self.weight.parameters(), lr=0.1, momentum=0.9)
        self._pending: torch.Tensor | None = None

    def step(self, network, x, y, precision):
        loss = pixel_loss(network, x, y, precision)
        w = self.weight.weight.detach().squeeze()
        self._pending = (self.weight.weight.squeeze() - 2.0) ** 2
        return loss * w, {"weight": float(w)}

    def after_step(self) -> None:
        self.optim.zero_grad()
        self._pending.backward()
        self.optim.step()

    def models(self):
        return {"weighting": self.weight}

    def optimizers(self):
        return {"weighting_optimizer": self.optim}


def settings(path, out, **kwargs) -> TrainConfig:
    base = dict(
        target_size=16,
        epochs=2,
        batch_size=8,
        width=16,
        log_every=1,
        checkpoint_every=3,
        eval_rows=16,
        precision="fp32",
        loss="test-weighted",
    )
    return TrainConfig(str(path), "hog", str(out), **{**base, **kwargs})


def test_an_objective_model_and_optimiser_are_checkpointed_and_resumed(store, tmp_path):
    assert {"pixel", "test-weighted"} <= set(list_objectives())
    train(settings(store, tmp_path / "whole"), show_progress=False)
    train(settings(store, tmp_path / "split", max_steps=4), show_progress=False)
    with safe_open(str(tmp_path / "split" / "checkpoint.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert "weighting.weight" in keys and any(k.startswith("weighting_optimizer.0.") for k in keys)
        assert json.loads(f.metadata()["weighting_optimizer_groups"])[0]["momentum"] == 0.9
    train(settings(store, tmp_path / "split"), resume=True, show_progress=False)

    def logged(run):
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["weight"]) for r in lines if "loss" in r]

    whole, split = logged(tmp_path / "whole"), logged(tmp_path / "split")
    assert whole == split and whole[-1][2] != whole[0][2]  # the weight learned, and resumed exactly
    final = {}
    for run in ("whole", "split"):
        objective = create_objective("test-weighted")
        checkpoint.load(tmp_path / run / "checkpoint.safetensors", objective.models())
        final[run] = objective.weight.weight.item()
    assert final["whole"] == final["split"] != 1.0
