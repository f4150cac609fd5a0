"""DeePSiM training: its three terms and the discriminator's step, exact resumption with both networks and both
optimisers, and a diverging discriminator caught and rolled back."""

from __future__ import annotations

import json

import pytest
import torch

from preimage.train.training.deepsim import PAPER_FEATURES, PAPER_PIXELS, DeepSim, DeepSimWeights
from preimage.train.training.objective import Diverged, create_objective, register_objective
from preimage.train.training.trainer import TrainConfig, train

CLOCK = {"samples_per_s", "seconds"}


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
        loss="deepsim",
        lr=2e-4,
    )
    return TrainConfig(str(path), "hog", str(out), **{**base, **kwargs})


def records(run) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in CLOCK} for line in lines]


def test_the_loss_is_the_papers_weighted_sum_and_the_discriminator_learns():
    torch.manual_seed(0)
    objective = create_objective("deepsim", feature_shape=(2, 2, 31))
    assert isinstance(objective, DeepSim) and objective.weights == DeepSimWeights()
    decoder = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(124, 3 * 16 * 16), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (3, 16, 16))
    )
    x, y = torch.rand(4, 2, 2, 31), torch.rand(4, 3, 16, 16)
    loss, terms = objective.step(decoder, x, y, "fp32")
    w = objective.weights
    expected = (
        w.pixel * terms["pixel_loss"] + w.feature * terms["feature_loss"] + w.adversarial * terms["adversarial_loss"]
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        recon = decoder(x)
    assert terms["pixel_loss"] == pytest.approx(float((255 * (recon - y)).square().mean()) * PAPER_PIXELS, rel=1e-5)
    (a,), (b,) = objective.compare(recon), objective.compare(y)  # the paper's comparator: CONV5 alone
    assert a.shape[1] == 256
    assert terms["feature_loss"] == pytest.approx(float((a - b).square().mean()) * PAPER_FEATURES, rel=1e-5)
    before = [p.clone() for p in objective.discriminator.parameters()]
    logged = objective.after_step()
    assert {"discriminator_real", "discriminator_fake", "discriminator_rests"} <= set(logged)
    moved = any(not torch.equal(a, b) for a, b in zip(before, objective.discriminator.parameters(), strict=True))
    assert moved != logged["discriminator_rests"]  # it stepped unless it rested


def test_a_stopped_deepsim_run_resumes_to_the_same_losses(store, tmp_path):
    train(settings(store, tmp_path / "whole"), show_progress=False)
    train(settings(store, tmp_path / "split", max_steps=5), show_progress=False)
    train(settings(store, tmp_path / "split"), resume=True, show_progress=False)
    whole = records(tmp_path / "whole")
    assert any("adversarial_loss" in r and "discriminator_fake" in r for r in whole)
    assert records(tmp_path / "split") == whole


@register_objective("test-deepsim-blows-up")
class BlowsUpOnce(DeepSim):
    """DeePSiM whose discriminator's loss turns NaN once, at the fourth step (a GAN diverging)."""

    calls = 0

    def after_step(self) -> dict:
        type(self).calls += 1
        if type(self).calls == 4:
            self._pending = None
            raise Diverged("the discriminator's losses are nan (real) and nan (generated)")
        return super().after_step()


def test_a_diverging_discriminator_is_caught_and_the_run_recovers(store, tmp_path):
    BlowsUpOnce.calls = 0
    result = train(settings(store, tmp_path / "run", loss="test-deepsim-blows-up", epochs=1), show_progress=False)
    events = records(tmp_path / "run")
    rollbacks = [e for e in events if e.get("event") == "rollback"]
    assert len(rollbacks) == 1 and "discriminator" in rollbacks[0]["reason"] and rollbacks[0]["lr_scale"] == 0.5
    assert result["normalised_error"] > 0  # it went on to the end of the epoch and was evaluated


def test_options_replace_the_papers_weights_and_a_comparator_may_span_layers():
    objective = create_objective("deepsim", feature_shape=(2, 2, 31), feature=0.1, comparator="alexnet:conv1-conv5")
    assert objective.weights == DeepSimWeights(feature=0.1, comparator="alexnet:conv1-conv5")
    assert objective.comparator_layers == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    maps = objective.compare(x)
    assert [m.shape[1] for m in maps] == [64, 192, 384, 256, 256]
    expected = sum(float((a - b).square().mean()) for a, b in zip(maps, objective.compare(y), strict=True))
    assert float(objective.feature_distance(x, y)) == pytest.approx(expected * PAPER_FEATURES, rel=1e-5)
    with pytest.raises(ValueError, match=r"no setting lambda.*settings: pixel, feature, adversarial"):
        create_objective("deepsim", feature_shape=(2, 2, 31), lambda_feat=1)
    with pytest.raises(ValueError, match="layers of one network"):
        create_objective("deepsim", feature_shape=(2, 2, 31), comparator="alexnet:conv5,hog")
    with pytest.raises(ValueError, match="pixel loss takes no options"):
        create_objective("pixel", feature_shape=(2, 2, 31), feature=0.1)


def test_train_takes_the_losss_options_and_a_decoder_to_start_from(store, tmp_path):
    from click.testing import CliRunner

    from preimage.cli import main

    common = [
        "train",
        "--store",
        str(store),
        "--feature",
        "hog",
        "--target-size",
        "16",
        "--width",
        "16",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--precision",
        "fp32",
    ]
    pixel = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "pixel")])
    assert pixel.exit_code == 0, pixel.output
    args = [
        *common,
        "--out",
        str(tmp_path / "tuned"),
        "--loss",
        "deepsim",
        "--loss-option",
        "feature=0.1",
        "--loss-option",
        "comparator=alexnet:conv1-conv5",
        "--init",
        str(tmp_path / "pixel"),
        "--max-steps",
        "2",
    ]
    tuned = CliRunner().invoke(main, args)
    assert tuned.exit_code == 0, tuned.output
    saved = json.loads((tmp_path / "tuned" / "run.json").read_text())["config"]
    assert saved["loss_options"] == {"feature": 0.1, "comparator": "alexnet:conv1-conv5"}
    resumed = CliRunner().invoke(main, [*args[:-2], "--resume"])  # the same options: it continues to the end
    assert resumed.exit_code == 0, resumed.output
    other = CliRunner().invoke(main, [*args[:-6], "--loss-option", "feature=1", "--resume"])
    assert other.exit_code == 1 and "other settings (loss_options" in other.output, other.output
    bad = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "bad"), "--loss-option", "feature"])
    assert bad.exit_code == 1 and "'feature' is not KEY=VALUE" in bad.output


def test_two_ranks_train_one_discriminator_together(store, tmp_path):
    """torchrun: the decoder is averaged by DDP, the discriminator's gradients and its rest decision over the ranks
    (a rank that rested while the other stepped would wait in the other's all-reduce for ever)."""
    import subprocess
    import sys

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [
        "-m",
        "preimage",
        "train",
        "--store",
        str(store),
        "--feature",
        "hog",
        "--out",
        str(tmp_path / "ddp"),
        "--target-size",
        "16",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--width",
        "16",
        "--loss",
        "deepsim",
        "--lr",
        "0.0002",
        "--precision",
        "fp32",
    ]
    result = subprocess.run([*torchrun, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert any("discriminator_real" in r for r in logged) and logged[-1]["event"] == "eval"


def _rank_steps(rank: int, world: int, port: int, out: str) -> None:
    """One rank: a DeePSiM objective stepping its discriminator on this rank's own batches; saves its weights."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same discriminator on both ranks, as the trainer seeds it
    objective = create_objective("deepsim", feature_shape=(2, 2, 31))
    decoder = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(124, 3 * 16 * 16), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (3, 16, 16))
    )
    torch.manual_seed(100 + rank)  # different data on each rank
    for _ in range(3):
        x, y = torch.rand(4, 2, 2, 31), torch.rand(4, 3, 16, 16)
        objective.step(decoder, x, y, "fp32")
        objective.after_step()
    torch.save({k: v.clone() for k, v in objective.discriminator.state_dict().items()}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ranks_keep_one_discriminator_on_different_batches(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank_steps, args=(2, port, str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    torch.manual_seed(0)
    start = create_objective("deepsim", feature_shape=(2, 2, 31)).discriminator.state_dict()
    assert max(float((first[k] - start[k]).abs().max()) for k in first) > 1e-4  # it stepped (lr 2e-4 a step)
    # averaged gradients: the same steps everywhere, to float rounding (not bit for bit: a rank's intra-op threads
    # can round Adam's update of a chunk in the last place; unaveraged, the ranks would differ by about the lr)
    for k in first:
        torch.testing.assert_close(first[k], second[k], rtol=0, atol=1e-6, msg=k)
