"""``preimage build`` end to end on a tiny recipe (issue 59): the plan, a line per stage and a table; Hugging Face
cards; a rerun that redoes nothing; the built zoo found by zoo, invert, analyze and the explorer; each quality gate
failing the build with nothing published; and ``kill -9`` in each stage, then the same command, ending with the
numbers of an uninterrupted build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from preimage.build import builder
from preimage.build.recipe import read_recipes
from preimage.build.stages import BuildError
from preimage.cli import main
from preimage.pipeline.images import sample_photos
from preimage.train.models import checkpoint, zoo
from tests.helpers import write_crops

ROOT = Path(__file__).resolve().parents[2]
TINY = {"hog": {"epochs": 6, "perceptual": [["resize", 1]], "batch_size": 16}}  # 30 pixel steps, 2 DeePSiM steps
SCORES = ("normalised_error", "psnr", "ssim", "lpips")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """96 distinct real photos, 72 px square."""
    return write_crops(tmp_path_factory.mktemp("build") / "photos", sample_photos(), 96, 72, step=(2, 1))


@pytest.fixture(scope="module")
def recipe(photos) -> Path:
    path = photos.parent / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def command(photos: Path, recipe: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "preimage",
        "build",
        "hog",
        "--images",
        str(photos),
        "--out",
        str(out),
        "--size",
        "64",
        "--recipe",
        str(recipe),
        *extra,
    ]


def run(args: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def cards(out: Path) -> dict[str, dict]:
    return {path.stem: checkpoint.read_header(path)["card"] for path in sorted(out.glob("*.safetensors"))}


def held(card: dict) -> tuple:
    return tuple(card["heldout"][k] for k in SCORES)


@pytest.fixture(scope="module")
def built(photos, recipe) -> tuple[Path, str]:
    """(the zoo folder, what the build printed): one uninterrupted build, scored on a second folder too."""
    out = photos.parent / "zoo"
    other = write_crops(photos.parent / "mine", sample_photos(), 12, 80, step=(5, 7))  # "the user's own domain"
    return out, run(command(photos, recipe, out, "--check-images", str(other))).stdout


def test_a_build_prints_its_plan_a_line_per_stage_and_a_table(built):
    out, printed = built
    plan, rest = printed.split("[1/7]", 1)
    assert "1. extract hog: to do (no store yet)" in plan and "2. pixel hog, 6 epochs: to do" in plan
    assert "4. deepsim resize hog, 1 epoch: to do" in plan and "7. publish: to do" in plan
    for i, label in enumerate(["pixel hog", "export hog", "deepsim resize hog", "export hog+deepsim"], 2):
        assert f"[{i}/7] {label}" in rest
    assert "every card holds on the 10 held-out photo files" in rest
    assert "probing pixel hog (15 steps)" in rest and "  estimate here: " in rest.split("[2/7]")[0]
    table = rest.split("decoder | held-out error")[1]
    built_cards = cards(out)
    assert f"hog | {built_cards['hog']['heldout']['normalised_error']:.4f} |" in table
    assert "2 decoders in" in table and "(7 stages run now, 0 done before)" in table


def test_the_cards_are_hugging_face_model_cards_with_the_spread_the_gap_and_the_hashes(built):
    from huggingface_hub import ModelCard

    out, _ = built
    for stem, card in cards(out).items():
        parsed = ModelCard.load(out / f"{stem}.md")
        assert parsed.data.library_name == "preimage" and parsed.data.license == "other"
        got = {r.metric_type: r.metric_value for r in parsed.data.eval_results}
        assert got == {k: card["heldout"][k] for k in SCORES}
        assert card["heldout"]["normalised_error"] < builder.BASELINE_GATE * card["heldout"]["mean_image_error"]
        spread = card["heldout"]["spread"]
        assert set(spread) == set(SCORES) and spread["normalised_error"]["p5"] <= spread["normalised_error"]["p95"]
        assert spread["normalised_error"]["mean"] == pytest.approx(card["heldout"]["normalised_error"], abs=2e-4)
        text = parsed.text
        for words in ("each photo scored alone", "the train/held-out gap", "## Build", card["build"]["run_sha256"]):
            assert words in text
        assert card["build"]["minutes"]["pixel hog"] > 0 and card["build"]["photos_sha256"] in text
        assert card["build"]["recipe"].startswith("the shipped recipe") and "no budget" in text
        other = card["other_photos"][0]  # --check-images: scored on the second folder, on the card
        assert other["rows"] == 12 and other["folder"].endswith("mine") and f"On 12 photos of {other['folder']}" in text
    folder = ModelCard.load(out / "README.md")
    assert len(folder.data.eval_results) == 2 * len(SCORES)  # each decoder's four scores


def test_a_rerun_redoes_nothing(built, photos, recipe):
    out, _ = built
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run(command(photos, recipe, out)).stdout
    assert "[1/7]" not in again and "(0 stages run now, 7 done before)" in again
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_built_zoo_is_found_by_zoo_invert_analyze_and_the_explorer(built, photos, tmp_path, monkeypatch):
    out, _ = built
    listed = CliRunner().invoke(main, ["zoo", "--zoo", str(out)])
    assert f"built: {out.resolve()}" in listed.output and "hog+deepsim" in listed.output.split("shipped with")[0]
    inverted = CliRunner().invoke(
        main, ["invert", str(photos / "02.png"), "--feature", "hog", "--zoo", str(out), "--out", str(tmp_path / "i")]
    )
    assert inverted.exit_code == 0 and f"decoder: {(out / 'hog.safetensors').resolve()}" in inverted.output
    store = out.with_name(out.name + ".build") / "features.zarr"
    scored = CliRunner().invoke(
        main, ["analyze", "error", "--store", str(store), "--decoder", "hog", "--zoo", str(out)]
    )
    assert scored.exit_code == 0, scored.output
    assert f"image space): {cards(out)['hog']['heldout']['normalised_error']:.4f}" in scored.output
    pytest.importorskip("starlette", reason="the explore extra")
    from preimage.explore.engine import Explorer

    monkeypatch.setenv(zoo.ZOO_ENV, str(out))
    panels = Explorer().panels
    assert f"hog (zoo {out.name})" in panels and f"hog+deepsim (zoo {out.name})" in panels


@pytest.mark.parametrize(
    ("gate", "value", "words"),
    [("BASELINE_GATE", 0.01, "is not clearly below the mean image's"), ("GAP_GATE", -1.0, "learned its photos")],
)
def test_each_gate_fails_the_build_and_publishes_nothing(built, photos, tmp_path, monkeypatch, gate, value, words):
    out, _ = built
    monkeypatch.setattr(builder, gate, value)
    target = tmp_path / "gated"
    with pytest.raises(BuildError, match=words):
        builder.build(
            ["hog"],
            photos,
            target,
            work=out.with_name(out.name + ".build"),
            size=64,
            recipes=read_recipes(json.dumps(TINY)),
        )
    assert not target.exists()


def wait_for(process: subprocess.Popen, marker: str, lines: list[str]) -> None:
    """Read the build's output until ``marker`` appears."""
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return
    raise AssertionError(f"{marker!r} never printed:\n{''.join(lines)}")


def wait_for_epoch(run: Path, epoch: int, timeout: float = 120) -> None:
    """Until the run's checkpoint is past ``epoch`` (a kill after it tests a resume from the middle)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if checkpoint.read_header(run / "checkpoint.safetensors")["state"]["epoch"] >= epoch:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{run} never reached epoch {epoch}")


STAGES = {"extract": 1, "pixel": 2, "export": 3, "deepsim": 4}  # each one's place in the tiny build's plan


@pytest.mark.slow
def test_kill_9_in_each_stage_then_the_same_command_ends_with_the_same_cards(built, photos, recipe, tmp_path):
    """One build killed in extraction, then (the same command again) in the pixel decoder's training past its
    first epoch, in the export, and in the perceptual decoder's training; the last rerun ends it."""
    out = tmp_path / "zoo"
    args = command(photos, recipe, out)
    for stage, place in STAGES.items():
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True
        )
        lines: list[str] = []
        try:
            wait_for(process, f"[{place}/7]", lines)  # this stage began: it was not done before
            if stage == "pixel":
                wait_for_epoch(out.with_name("zoo.build") / "runs" / "hog", 2)
            elif stage == "export":
                time.sleep(1.0)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the build and any worker it started
            process.wait()
        assert not (out / "README.md").exists(), "".join(lines)  # killed before the end
        if stage == "export":  # the pixel decoder, killed past its first epoch, went on from its checkpoint
            printed = "".join(lines)
            assert "[2/7] pixel hog (epoch " in printed and "from step 0" not in printed, printed
    again = run(args).stdout
    assert "[4/7]" in again and "[3/7]" not in again  # the perceptual decoder again, the export not
    expected = {k: held(v) for k, v in cards(built[0]).items()}
    assert {k: held(v) for k, v in cards(out).items()} == expected


def test_bad_arguments_are_one_line_and_write_nothing(photos, tmp_path):
    for args, words in (
        (["alexnet:conv9"], "conv9"),
        (["hog", "--budget", "soon"], "not a duration such as 45m"),
    ):
        result = CliRunner().invoke(main, ["build", *args, "--images", str(photos), "--out", str(tmp_path / "z")])
        assert result.exit_code == 1 and words in result.output and result.output.count("\n") == 1, result.output
        assert not list(tmp_path.iterdir())
