"""The trainer: exact resumption, rollback on divergence, fingerprints, metrics, data-parallel ranks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from preimage.cache.store import FeatureStore
from preimage.train.models import checkpoint
from preimage.train.models.loading import load_decoder
from preimage.train.scoring.metrics import normalised_error, psnr
from preimage.train.training.trainer import TrainConfig, train

from ...helpers import make_store

CLI = [sys.executable, "-m", "preimage"]


def config(store, out, **kwargs) -> TrainConfig:
    base = dict(
        target_size=16,
        epochs=2,
        batch_size=8,
        width=16,
        log_every=1,
        checkpoint_every=3,
        eval_rows=16,
        precision="fp32",
    )  # the same arithmetic on every CPU (auto: tests/train/training/test_precision.py)
    return TrainConfig(str(store), "hog", str(out), **{**base, **kwargs})


def losses(run) -> dict[int, float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def test_a_resumed_run_repeats_the_uninterrupted_losses(store, tmp_path):
    whole = train(config(store, tmp_path / "whole"), show_progress=False)
    assert whole["normalised_error"] > 0 and (tmp_path / "whole" / "preview-e002.png").exists()
    train(config(store, tmp_path / "split", max_steps=5), show_progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(config(store, tmp_path / "split"), show_progress=False)
    train(config(store, tmp_path / "split"), resume=True, show_progress=False)
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    with pytest.raises(ValueError, match="other settings \\(lr\\)"):
        train(config(store, tmp_path / "split", lr=0.1), resume=True, show_progress=False)


def test_kill_9_then_resume_matches(store, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    args = [
        "train",
        "--store",
        str(store),
        "--feature",
        "hog",
        "--target-size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--width",
        "16",
        "--checkpoint-every",
        "3",
        "--out",
    ]
    # both in fresh processes: results depend on torch's thread count, which other tests may have changed here
    assert subprocess.run([*CLI, *args, str(reference)], capture_output=True).returncode == 0
    process = subprocess.Popen([*CLI, *args, str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, step = time.time() + 60, 0
    while time.time() < deadline and step < 3:  # a checkpoint past step 0: the resume starts mid-run
        try:
            step = checkpoint.read_header(killed / "checkpoint.safetensors")["state"]["step"]
        except Exception:  # not written yet
            time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    result = subprocess.run([*CLI, *args, str(killed), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sessions = json.loads((killed / "run.json").read_text())["sessions"]
    assert len(sessions) == 2 and 3 <= sessions[1]["from_step"] < sessions[1]["schedule_steps"]
    # the CLI logs every 10 steps; compare the steps both logged
    ours, theirs = losses(killed), losses(reference)
    assert ours and all(ours[s] == theirs[s] for s in ours)


def test_divergence_rolls_back_at_a_lower_rate(store, tmp_path, capsys):
    train(config(store, tmp_path / "hot", lr=0.5, epochs=1), show_progress=True)
    events = [json.loads(line) for line in (tmp_path / "hot" / "metrics.jsonl").read_text().splitlines()]
    rollbacks = [e for e in events if e.get("event") == "rollback"]
    assert rollbacks and rollbacks[-1]["lr_scale"] < 1.0
    assert all(np.isfinite(e["loss"]) for e in events if "loss" in e)
    counts = [tuple(map(int, m)) for m in re.findall(r"(\d+)/(\d+) samples", capsys.readouterr().err)]
    assert counts and counts[-1][0] == counts[-1][1]  # the steps redone are counted once: it ends at the total
    assert all(done <= total for done, total in counts)


def test_a_decoder_refuses_features_computed_differently(store, tmp_path, tmp_path_factory, dask_client, photos):
    train(config(store, tmp_path / "run", epochs=1, max_steps=2), show_progress=False)
    decoder = load_decoder(tmp_path / "run", FeatureStore.open(store))
    assert decoder(torch.zeros(1, 4, 4, 31)).shape == (1, 3, 16, 16)
    other = make_store(tmp_path_factory.mktemp("other"), dask_client, photos, 64)
    with pytest.raises(ValueError, match="image_size: the store has 64, the decoder 32"):
        load_decoder(tmp_path / "run", FeatureStore.open(other))


def test_metrics_on_hand_made_images():
    images = torch.zeros(3, 3, 4, 4)
    images[1] += 1.0
    images[2] += 0.5  # pairwise distances: sqrt(48) * (1, 0.5, 0.5): mean sqrt(48) * 2 / 3
    assert normalised_error(images, images) == 0
    recon = images.clone()
    recon[0] += 0.25  # one image off by sqrt(48) * 0.25
    assert normalised_error(recon, images) == pytest.approx((0.25 / 3) / (2 / 3))
    assert psnr(recon, images) == pytest.approx((10 * np.log10(1 / 0.0625) + 2 * 120) / 3)


def test_two_ranks_train_together(store, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = ["-m", "preimage", "train", "--store", str(store), "--feature", "hog", "--out"]
    args += [str(tmp_path / "ddp"), "--target-size", "16", "--epochs", "1", "--batch-size", "8", "--width", "16"]
    result = subprocess.run([*torchrun, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "checkpoint.safetensors").exists()
    evaluation = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()][-1]
    assert evaluation["event"] == "eval" and evaluation["step"] > 0


def test_the_device_is_chosen_or_refused_clearly(store, tmp_path, monkeypatch):
    from preimage.runtime.device import pick_device as training_device

    assert training_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="sees no GPU"):
        train(config(store, tmp_path / "gpu", device="cuda"), show_progress=False)
    assert not (tmp_path / "gpu").exists()  # refused before anything was written


def test_a_run_resumes_on_another_device_setting(store, tmp_path):
    train(config(store, tmp_path / "run", max_steps=4, device="auto"), show_progress=False)
    result = train(config(store, tmp_path / "run", device="cpu"), resume=True, show_progress=False)
    assert result["normalised_error"] > 0


def test_bf16_trains_in_bfloat16_and_stays_close_to_fp32(store, tmp_path):
    from preimage.train.models.decoders import DecoderConfig, create_decoder
    from preimage.train.training.precision import autocast

    decoder = create_decoder(DecoderConfig("hog", (4, 4, 31), 16, 16))
    with autocast(torch.device("cpu"), "bf16"):
        assert decoder(torch.rand(2, 4, 4, 31)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert decoder(torch.rand(2, 4, 4, 31)).dtype == torch.float32
    fp32 = losses_of(train(config(store, tmp_path / "fp32", epochs=1), show_progress=False), tmp_path / "fp32")
    bf16 = losses_of(
        train(config(store, tmp_path / "bf16", epochs=1, precision="bf16"), show_progress=False), tmp_path / "bf16"
    )
    assert fp32.keys() == bf16.keys()
    assert fp32 != bf16  # the forward pass really ran in bfloat16
    assert all(abs(bf16[k] - fp32[k]) < 0.05 * fp32[k] for k in fp32)  # but computes the same function
    with pytest.raises(ValueError, match="trained in bf16, not fp32; resume with --precision bf16 or auto"):
        train(config(store, tmp_path / "bf16", precision="fp32"), resume=True, show_progress=False)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        train(config(store, tmp_path / "fp16", precision="fp16"), show_progress=False)
    assert not (tmp_path / "fp16").exists()


def losses_of(result: dict, run) -> dict[int, float]:
    assert np.isfinite(result["normalised_error"])
    return losses(run)


def test_decay_from_sets_where_the_rate_starts_to_fall(store, tmp_path):
    from click.testing import CliRunner

    from preimage.cli import main
    from preimage.train.training.trainer import learning_rate

    for decay_from in (0.3, 0.7):
        rates = [learning_rate(config(store, tmp_path, decay_from=decay_from), s, 100, 1.0) for s in range(101)]
        start = round(decay_from * 100)
        assert set(rates[: start + 1]) == {1e-3}
        assert all(a > b for a, b in zip(rates[start + 1 :], rates[start + 2 :], strict=False))
        assert rates[-1] == pytest.approx(1e-5)
    args = ["--store", str(store), "--feature", "hog", "--target-size", "16", "--epochs", "1", "--width", "16"]
    result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "d03"), "--decay-from", "0.3"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d03" / "run.json").read_text())["config"]["decay_from"] == 0.3
    result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "bad"), "--decay-from", "1.5"])
    assert result.exit_code != 0 and "'--decay-from': 1.5 is not in the range 0<=x<=1" in result.output
    assert not (tmp_path / "bad").exists()


def test_train_fraction_trains_on_part_of_the_photos_and_is_part_of_the_run(store, tmp_path):
    from click.testing import CliRunner

    from preimage.cli import main
    from preimage.commands.analyze import analyze
    from preimage.train.training.data import split_rows

    args = ["--store", str(store), "--feature", "hog", "--target-size", "16", "--epochs", "1", "--width", "16"]
    args += ["--batch-size", "8", "--checkpoint-every", "1"]
    runs = {}
    for name, fraction in (("half", "0.5"), ("all", "1")):
        result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / name), "--train-fraction", fraction])
        assert result.exit_code == 0, result.output
        runs[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert json.loads((tmp_path / "half" / "run.json").read_text())["config"]["train_fraction"] == 0.5
    steps = {name: max(r["step"] for r in lines) for name, lines in runs.items()}
    assert 0 < steps["half"] < steps["all"]  # an epoch of half the photos is about half the batches
    evals = {name: [r for r in lines if r.get("event") == "eval"][-1] for name, lines in runs.items()}
    assert evals["half"]["heldout_rows"] == evals["all"]["heldout_rows"] > 0  # evaluated on the same photos
    trained = split_rows(FeatureStore.open(store), "train", 0.1, 0.5).sum()
    result = CliRunner().invoke(
        analyze, ["error", "--store", str(store), "--decoder", str(tmp_path / "half"), "--split", "train"]
    )
    assert result.exit_code == 0, result.output
    assert f"on {trained} train rows" in result.output  # the photos it trained on, not the whole training part
    result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "half"), "--resume"])
    assert result.exit_code != 0 and "other settings (train_fraction)" in result.output
    result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "none"), "--train-fraction", "0"])
    assert result.exit_code != 0 and "'--train-fraction': 0.0 is not in the range 0<x<=1" in result.output
    assert not (tmp_path / "none").exists()


def test_max_steps_beyond_the_epochs_is_an_error_before_anything_is_written(store, tmp_path):
    with pytest.raises(ValueError, match=r"--max-steps 200 is more than the \d+ steps that 2 epochs give .*--epochs"):
        train(config(store, tmp_path / "long", max_steps=200), show_progress=False)
    assert not (tmp_path / "long").exists()


def test_run_json_records_the_epochs_and_the_budget_of_each_session(store, tmp_path):
    train(config(store, tmp_path / "run", max_steps=4), show_progress=False)
    train(config(store, tmp_path / "run"), resume=True, show_progress=False)
    sessions = json.loads((tmp_path / "run" / "run.json").read_text())["sessions"]
    assert [(s["from_step"], s["max_steps"], s["epochs"], s["stops_at_step"]) for s in sessions] == [
        (0, 4, 2, 4),
        (4, None, 2, sessions[0]["schedule_steps"]),
    ]
    assert {s["precision"] for s in sessions} == {"fp32"}


def signal_run_args(store) -> list[str]:
    return [
        "train",
        "--store",
        str(store),
        "--feature",
        "hog",
        "--target-size",
        "16",
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--width",
        "16",
        "--precision",
        "fp32",
        "--out",
    ]


@pytest.fixture(scope="module")
def uninterrupted(store, tmp_path_factory) -> Path:
    """The run that the signal tests' stopped and resumed runs must repeat, trained once for both."""
    reference = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert subprocess.run([*CLI, *signal_run_args(store), str(reference)], capture_output=True).returncode == 0
    return reference


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_a_step_with_a_checkpoint_and_the_resumed_run_repeats_the_losses(
    store, uninterrupted, tmp_path, stop
):
    reference, stopped = uninterrupted, tmp_path / "stopped"
    args = signal_run_args(store)
    process = subprocess.Popen([*CLI, *args, str(stopped)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not losses_logged(stopped):
        time.sleep(0.01)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, stderr
    name = signal.Signals(stop).name
    line = next(line for line in stderr.splitlines() if line.startswith("stopped by"))
    step = int(line.split("checkpoint at step ")[1].split()[0])
    assert line == f"stopped by {name}: checkpoint at step {step} written to {stopped}; continue with --resume"
    from preimage.train.models.checkpoint import read_header

    assert read_header(stopped / "checkpoint.safetensors")["state"]["step"] == step
    resumed = subprocess.run([*CLI, *args, str(stopped), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ours, theirs = losses(stopped), losses(reference)
    assert max(ours) == max(theirs) and all(ours[s] == theirs[s] for s in ours)


def losses_logged(run) -> bool:
    metrics = run / "metrics.jsonl"
    return metrics.exists() and '"loss"' in metrics.read_text()


def test_resume_auto_starts_or_continues_and_plain_resume_needs_a_checkpoint(store, tmp_path):
    from click.testing import CliRunner

    from preimage.cli import main

    args = [
        "train",
        "--store",
        str(store),
        "--feature",
        "hog",
        "--target-size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--width",
        "16",
        "--precision",
        "fp32",
        "--out",
        str(tmp_path / "r"),
    ]
    missing = CliRunner().invoke(main, [*args, "--resume"])
    assert missing.exit_code == 1 and "holds no checkpoint to resume" in missing.output
    first = CliRunner().invoke(main, [*args, "--resume", "auto", "--max-steps", "4"])
    assert first.exit_code == 0 and "from step 0" in first.output, first.output
    again = CliRunner().invoke(main, [*args, "--resume", "auto"])
    assert again.exit_code == 0 and "from step 4" in again.output, again.output


def test_a_resumed_run_logs_every_record_as_an_uninterrupted_one(store, tmp_path):
    """Every field of metrics.jsonl but the wall-clock ones: the running median and spike detection resume with
    the checkpoint's window of recent losses."""
    clock = {"samples_per_s", "seconds"}

    def records(run) -> list[dict]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in clock} for line in lines]

    train(config(store, tmp_path / "whole"), show_progress=False)
    train(config(store, tmp_path / "split", max_steps=7), show_progress=False)
    train(config(store, tmp_path / "split"), resume=True, show_progress=False)
    whole, split = records(tmp_path / "whole"), records(tmp_path / "split")
    assert len(whole) > 10 and any("loss_median" in r for r in whole)
    assert split == whole


def test_init_starts_a_run_from_a_trained_decoder_of_the_same_shape(store, tmp_path):
    train(config(store, tmp_path / "pixel", epochs=1), show_progress=False)
    trained = load_decoder(tmp_path / "pixel")
    tuned = config(store, tmp_path / "tuned", epochs=1, max_steps=1, init=str(tmp_path / "pixel"))
    train(tuned, show_progress=False)
    first = json.loads((tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()[0])
    fresh = json.loads((tmp_path / "pixel" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] < 0.7 * fresh["loss"]  # the first step already decodes as the trained decoder does
    saved = json.loads((tmp_path / "tuned" / "run.json").read_text())["config"]
    assert saved["init"] == str(tmp_path / "pixel")
    assert trained.input_scale == load_decoder(tmp_path / "tuned").input_scale
    with pytest.raises(ValueError, match=r"--init .*give the same --width"):
        train(config(store, tmp_path / "wide", width=32, init=str(tmp_path / "pixel")), show_progress=False)
    assert not (tmp_path / "wide" / "checkpoint.safetensors").exists()


def test_init_starts_a_resize_decoder_from_a_zero_fill_one(store, tmp_path):
    """--upsample resize --init PIXEL_RUN: the up-convolutions' kernels over 4 (the same mean response to smooth
    input), everything else copied; the run and its checkpoint record resize; the reverse is refused."""
    from preimage.train.models.decoders import UpConvolution

    train(config(store, tmp_path / "pixel", epochs=1), show_progress=False)
    paper = load_decoder(tmp_path / "pixel")
    train(
        config(
            store, tmp_path / "resize", epochs=1, max_steps=1, lr=0.0, upsample="resize", init=str(tmp_path / "pixel")
        ),
        show_progress=False,
    )
    resized = load_decoder(tmp_path / "resize")
    assert resized.config.upsample == "resize" and paper.config.upsample == "zero-fill"
    up = {n for n, m in paper.named_modules() if isinstance(m, UpConvolution)}
    assert up
    for key, value in paper.state_dict().items():
        expected = value / 4 if key.rsplit(".", 2)[0] in up and key.endswith("conv.weight") else value
        torch.testing.assert_close(resized.state_dict()[key], expected.to(resized.state_dict()[key].dtype))
    name = sorted(up)[0]
    flat = torch.ones(1, paper.get_submodule(name).conv.in_channels, 16, 16)
    with torch.no_grad():  # each layer alone: a constant map gives the phases' mean away from the borders
        filled, repeated = paper.get_submodule(name)(flat), resized.get_submodule(name)(flat)
    torch.testing.assert_close(
        repeated[..., 8:-8, 8:-8],
        filled[..., 8:-8, 8:-8].mean(dim=(2, 3), keepdim=True).expand_as(repeated[..., 8:-8, 8:-8]),
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="a resize decoder cannot start a zero-fill one"):
        train(config(store, tmp_path / "back", init=str(tmp_path / "resize")), show_progress=False)
    # a sub-pixel decoder started from the zero-fill one (through resize) draws what the resize one draws
    train(
        config(
            store, tmp_path / "sub", epochs=1, max_steps=1, lr=0.0, upsample="sub-pixel", init=str(tmp_path / "pixel")
        ),
        show_progress=False,
    )
    sub = load_decoder(tmp_path / "sub")
    assert sub.config.upsample == "sub-pixel"
    features = torch.randn(3, *paper.config.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(sub(features), resized(features), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="a sub-pixel decoder cannot start a resize one"):
        train(config(store, tmp_path / "back2", upsample="resize", init=str(tmp_path / "sub")), show_progress=False)
