"""``preimage build``: from a model's layers and a folder of photos to a zoo folder of scored, carded decoders, in one
resumable call (:func:`build`). The stages are :mod:`.recipe`'s, each run or skipped by what :mod:`.stages` finds; a
budget sets the epochs from the rates :mod:`.budget` measures here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore
from ..pipeline.backbones.weights import sha256_file
from ..pipeline.batch_cluster import BatchJobs, batch_cluster
from ..pipeline.contract import DRAFT_MIN_SIDE
from ..pipeline.decode import read_images
from ..pipeline.extract import extract
from ..pipeline.features import get_representation
from ..pipeline.names import (
    PIXEL,
    decoder_name,
    fused_parts,
    portable_name,
)
from ..pipeline.sources import folder_source
from ..train.inversion.zoo_check import differences, heldout_photos, score_images
from ..train.models import checkpoint, zoo
from ..train.training.config import TrainConfig
from ..train.training.precision import machine
from ..train.training.trainer import train
from . import budget as timing
from .card import zoo_readme
from .chain import JOB_NAME, submit
from .export import export
from .recipe import LOSSES, Recipe, Stage, layers_of, plan, run_name
from .stages import (
    CHECK_RECORD,
    BuildError,
    Folders,
    Status,
    checked,
    exported,
    extracted,
    model_folder,
    publish,
    published,
    trained,
)

RECORD = "build.json"  # the build's settings, its budget's choice and each stage's minutes, in --work
BASELINE_GATE = 0.9  # a decoder's held-out error must be at most this fraction of the mean image's (docs/build.md)
GAP_GATE = 0.25  # and at most this much above its error on its training photos (docs/build.md)


@dataclass
class Build:
    """One build's settings and where it works."""

    specs: list[str]
    images: Path
    folders: Folders
    losses: tuple[str, ...] = LOSSES
    budget: float | None = None  # seconds
    check_images: Path | None = None
    license: str = "other"
    size: int = 128
    float16: bool = False
    weights: str | None = None
    recipes: dict[str, Recipe] = field(default_factory=dict)
    command: str = ""
    echo: Callable[[str], None] = print
    record: dict = field(default_factory=dict)
    until: str | None = None  # stop once this stage is done (a batch job of a chain)
    cluster: BatchJobs | None = None  # extract on batch workers, then submit the stages as a chain of jobs

    # -- the record ------------------------------------------------------------------------------------------------

    @property
    def record_path(self) -> Path:
        return self.folders.work / RECORD

    def open_record(self) -> None:
        """Read the record of an earlier session of this build (refusing another build's), or begin one."""
        settings = {
            "specs": self.specs,
            "losses": list(self.losses),
            "images": str(self.images.resolve()),
            "store": str(self.folders.store.resolve()),
            "size": self.size,
            "float16": self.float16,
        }
        if self.record_path.is_file():
            self.record = json.loads(self.record_path.read_text())
            recorded = self.record["settings"]
            other = [k for k, v in settings.items() if k in recorded and recorded[k] != v]  # absent: a newer setting
            if other:
                raise BuildError(
                    f"{self.folders.work} holds another build (other {', '.join(other)}); give another --work or "
                    "--out, or the same arguments to continue it"
                )
            if self.record.get("budget") != self.budget:
                self.record.pop("scale", None)  # a new budget: epochs chosen again (finished runs stay finished)
        else:
            self.record = {"settings": settings, "minutes": {}}
        self.record["budget"] = self.budget
        self.save_record()

    def save_record(self) -> None:
        self.folders.work.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_name(RECORD + ".part")
        tmp.write_text(json.dumps(self.record, indent=1, sort_keys=True))
        os.replace(tmp, self.record_path)

    @contextlib.contextmanager
    def timed(self, label: str) -> Iterator[None]:
        """Add the wall time of the block to ``label``'s minutes in the record (once the block ends)."""
        begin = time.perf_counter()
        yield
        minutes = self.record["minutes"]
        minutes[label] = round(minutes.get(label, 0.0) + (time.perf_counter() - begin) / 60, 2)
        self.save_record()

    # -- the plan --------------------------------------------------------------------------------------------------

    def stages(self, best: dict[str, str] | None = None) -> list[Stage]:
        best = self.best() if best is None else best
        return plan(self.specs, self.losses, best=best, scale=self.record.get("scale", 1.0), recipes=self.recipes)

    def best(self) -> dict[str, str]:
        """Each fused spec's best layer: the lowest held-out error of its layers' exported pixel decoders (once all
        are exported)."""
        chosen = {}
        for spec in self.specs:
            layers = fused_parts(spec)
            if not layers:
                continue
            errors = {}
            for layer in layers:
                status = exported(self.folders.export(layer), self.folders.run(run_name(layer)))
                if not status.done:
                    break
                errors[layer] = status.extra["card"]["heldout"]["normalised_error"]
            else:
                chosen[spec] = min(errors, key=errors.get)
        return chosen

    def exports(self, stages: list[Stage]) -> list[Path]:
        return [self.folders.export(s.feature, s.loss) for s in stages if s.kind == "export"]

    def status(self, stage: Stage, stages: list[Stage]) -> Status:
        """How far ``stage`` got (by its outputs)."""
        if stage.kind == "extract":
            return extracted(self.folders.store, layers_of(self.specs))
        if stage.kind == "train":
            return trained(self.folders.run(stage.run), stage)
        if stage.kind == "export":
            return exported(self.folders.export(stage.feature, stage.loss), self.folders.run(stage.run))
        if stage.kind == "check":
            return checked(self.folders, self.exports(stages))
        return published(self.folders, self.exports(stages))

    # -- running ---------------------------------------------------------------------------------------------------

    def run(self) -> list[dict]:
        """Every stage not done yet, in order (up to :attr:`until`); returns the published cards (none for a chain of
        batch jobs, which publishes them in its last job)."""
        self.open_record()
        stages = self.stages()
        self.show_plan(stages)
        if self.cluster is not None:
            return self.submit_chain(stages)
        done_before = {s.label for s in stages if self.status(s, stages).done}
        while True:
            stages = self.stages()
            if self.until is not None:
                target = next((s for s in stages if s.label == self.until), None)
                if target is None:
                    raise BuildError(f"--until {self.until!r}: no such stage in this build's plan")
                if self.status(target, stages).done:
                    self.echo(f"{self.until}: done")
                    return []
            pending = None
            for stage in stages:
                status = self.status(stage, stages)
                if stage.kind == "export" and status.done:
                    self.gate(stage, status.extra["card"])
                if not status.done:
                    pending = (stage, status)
                    break
            if pending is None:
                break
            stage, status = pending
            if stage.kind == "train" and "scale" not in self.record:
                self.choose_epochs()  # before the first training: the estimate, and a budget's epochs
                continue
            index = stages.index(stage) + 1
            self.echo(f"[{index}/{len(stages)}] {stage.label}" + (f" ({status.detail})" if status.detail else ""))
            with self.timed(stage.label):
                self.run_stage(stage, stages)
        cards = [checkpoint.read_header(self.folders.out / f.name)["card"] for f in self.exports(stages)]
        self.show_table(stages, cards, done_before)
        return cards

    def run_stage(self, stage: Stage, stages: list[Stage]) -> None:
        if stage.kind == "extract":
            self.extract()
        elif stage.kind == "train":
            self.train(stage)
        elif stage.kind == "export":
            self.export(stage, stages)
        elif stage.kind == "check":
            self.check(stages)
        else:
            publish(self.folders, self.exports(stages), self.readme(stages))
            self.echo(f"published {decoders(len(self.exports(stages)))} with their cards in {self.folders.out}")

    def extract(self, client_factory=None) -> None:
        summary = extract(
            self.folders.store,
            folder_source(self.images),
            ",".join(layers_of(self.specs)),
            image_size=self.size,
            weights=self.weights,
            dtype="float16" if self.float16 else "float32",
            client_factory=client_factory,
        )
        self.echo(f"extracted {summary.images_run} images ({summary.read} rows read) into {self.folders.store}")

    def train(self, stage: Stage) -> None:
        init = str(self.folders.run(stage.init)) if stage.init else None
        config = TrainConfig(
            store=str(self.folders.store),
            feature=stage.feature,
            out=str(self.folders.run(stage.run)),
            init=init,
            **stage.settings,
        )
        result = train(config, resume="auto", announce=self.echo)
        if result:
            self.echo(f"  held-out normalised error {result['normalised_error']:.4f} ({result['heldout_rows']} images)")

    def export(self, stage: Stage, stages: list[Stage]) -> None:
        run = self.folders.run(stage.run)
        store = FeatureStore.open(self.folders.store)
        header = checkpoint.read_header(run / "checkpoint.safetensors")
        about = {
            "source": str(self.images),
            "reproduce": self.command or "preimage build ...",
            "evaluate": f"preimage invert photo.jpg --zoo {self.folders.out} --feature "
            + decoder_name(portable_name(stage.feature), stage.loss).replace("+deepsim", " --loss deepsim"),
            "build": {
                "command": self.command,
                "recipe": self.recipe_text(),
                "minutes": self.minutes_of(stage, stages),
                "hardware": machine(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
                "photos": str(self.images),
                "photos_sha256": photos_hash(store),
                "fingerprint_sha256": header.get("fingerprint", {}).get("sha256", ""),
                "run_sha256": sha256_file(run / "checkpoint.safetensors"),
                "license": self.license,
            },
        }
        measure = self.other_photos(stage) if self.check_images else None
        self.folders.exports.mkdir(parents=True, exist_ok=True)
        target, entry = export(run, store, self.folders.exports, about=about, quiet=True, measure=measure)
        self.echo(
            f"  {entry['name']}: held-out {entry['heldout']['normalised_error']:.4f} "
            f"(mean image {entry['heldout']['mean_image_error']:.4f}, gap {entry['gap']:+.1%}) -> {target}"
        )
        self.gate(stage, entry)

    def other_photos(self, stage: Stage) -> Callable[[Path], dict]:
        """The ``--check-images`` scores of an exported file, for its card."""

        def measure(path: Path) -> dict:
            source = folder_source(self.check_images)
            images = [im for im in read_images(list(source.keys), DRAFT_MIN_SIDE) if isinstance(im, np.ndarray)]
            if len(images) < 2:
                raise BuildError(f"--check-images {self.check_images}: fewer than two readable images")
            got = score_images([zoo.read_entry(path)], images, model_folder(stage.feature))[0]
            return {
                "other_photos": [
                    {"folder": str(self.check_images), "rows": len(images), **{k: round(v, 4) for k, v in got.items()}}
                ]
            }

        return measure

    def check(self, stages: list[Stage]) -> None:
        """Every exported card against the held-out photo files, read as ``preimage invert`` reads a photo."""
        files = self.exports(stages)
        paths = heldout_photos(self.images)
        images = [im for im in read_images([str(p) for p in paths], DRAFT_MIN_SIDE) if isinstance(im, np.ndarray)]
        self.echo(
            f"  scoring {len(images)} held-out photo files with {decoders(len(files))}, as preimage invert reads them"
        )
        by_model: dict[str | None, list[Path]] = {}  # each model's features computed once for all its decoders
        for f in files:
            by_model.setdefault(model_folder(_feature_of(f)), []).append(f)
        record, wrong = {}, []
        for model, group in by_model.items():
            entries = [zoo.read_entry(f) for f in group]
            for f, entry, got in zip(group, entries, score_images(entries, images, model), strict=True):
                diff = differences(got, entry.card["heldout"])
                if diff:
                    wrong.append(f"{entry.name}: {'; '.join(diff)}")
                scores = {k: round(v, 4) for k, v in got.items()}
                record[f.name] = {"sha256": sha256_file(f), "rows": len(images), **scores}
        if wrong:
            raise BuildError(
                "the held-out photo files do not reproduce these cards (nothing published): " + " | ".join(wrong)
            )
        (self.folders.work / CHECK_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))
        self.echo(f"  every card holds on the {len(images)} held-out photo files")

    def gate(self, stage: Stage, card: dict) -> None:
        """Refuse a decoder no better than the mean image, or one that learned its training photos."""
        held = card["heldout"]
        if held["normalised_error"] > BASELINE_GATE * held["mean_image_error"]:
            raise BuildError(
                f"{card['name']}: held-out error {held['normalised_error']:.4f} is not clearly below the mean "
                f"image's {held['mean_image_error']:.4f} (at most {BASELINE_GATE:g}x it); nothing is published"
            )
        if card.get("gap", 0.0) > GAP_GATE:
            raise BuildError(
                f"{card['name']}: held-out error {held['normalised_error']:.4f} is {card['gap']:.0%} above its "
                f"training photos' {card['train']['normalised_error']:.4f} (at most {GAP_GATE:.0%}): it learned its "
                "photos rather than the representation; give more photos; nothing is published"
            )

    # -- on a cluster ----------------------------------------------------------------------------------------------

    def submit_chain(self, stages: list[Stage]) -> list[dict]:
        """Extract through batch workers here, then submit every later stage as a batch job after the one before."""
        if not self.status(stages[0], stages).done:
            self.echo(f"[1/{len(stages)}] {stages[0].label} on {self.cluster.kind} batch workers")
            spec = replace(self.cluster, log_directory=str(self.folders.work / "extract.jobs"))
            with self.timed(stages[0].label):
                self.extract(partial(batch_cluster, spec, (self.folders.store.parent, self.images)))
        if "scale" not in self.record:
            self.choose_epochs()
        stages = self.stages()
        pending = [s for s in stages if not self.status(s, stages).done]
        ids = submit(self.job_args(), stages, pending, jobs=self.cluster, folder=self.folders.work / "slurm")
        self.echo(
            f"submitted {len(ids)} batch jobs, each after the one before ({', '.join(ids)}); the last publishes the "
            f"zoo in {self.folders.out}. Follow them: squeue -n {JOB_NAME}; logs in {self.folders.work / 'slurm'}"
        )
        return []

    def job_args(self) -> list[str]:
        """This build's arguments for its batch jobs: every path absolute, the recipe in a file of the work folder."""
        recipe = []
        if self.recipes:
            path = self.folders.work / "recipe.json"
            path.write_text(json.dumps({k: asdict(v) for k, v in self.recipes.items()}))
            recipe = ["--recipe", str(path.resolve())]
        return [
            *self.specs,
            *("--images", str(self.images.resolve()), "--out", str(self.folders.out.resolve())),
            *("--work", str(self.folders.work.resolve()), "--store", str(self.folders.store.resolve())),
            *[a for loss in self.losses for a in ("--loss", loss)],
            *(["--budget", f"{self.budget:.0f}s"] if self.budget is not None else []),
            *(["--check-images", str(self.check_images.resolve())] if self.check_images else []),
            *("--license", self.license, "--size", str(self.size)),
            *(["--float16"] if self.float16 else []),
            *(["--weights", self.weights] if self.weights else []),
            *recipe,
        ]

    # -- budget ----------------------------------------------------------------------------------------------------

    def choose_epochs(self) -> None:
        """Before the first training: each kind of training stage probed (once; the rates are kept in the record),
        the time left estimated, and with a budget the factor on the epochs it allows (once per budget)."""
        first = {s: fused_parts(s)[0] for s in self.specs if fused_parts(s)}  # any layer: the rates are the same
        estimate = plan(self.specs, self.losses, best=first, scale=1.0, recipes=self.recipes)
        todo = {s.run for s in estimate if s.kind == "train" and not self.status(s, estimate).done}
        rates = dict(self.record.get("rates", {}))
        for stage in estimate:
            key = json.dumps(timing.probe_key(stage))
            if stage.kind == "train" and stage.run in todo and key not in rates:
                self.echo(f"  probing {stage.label} ({timing.PROBE_STEPS} steps)")
                with self.timed("probe"):  # saves the record, the rate with it
                    rates[key] = timing.probe(stage, self.folders.store, self.folders.work / "probe")
                    self.record["rates"] = rates
        by_key = {tuple(json.loads(k)): v for k, v in rates.items()}
        rows = timing.train_rows(self.folders.store)

        def at_scale(scale: float) -> list[Stage]:
            stages = plan(self.specs, self.losses, best=first, scale=scale, recipes=self.recipes)
            return [s for s in stages if s.kind == "train" and s.run in todo]

        decoders = sum(1 for s in estimate if s.kind == "export")
        fixed = timing.fixed_seconds(decoders, len(heldout_photos(self.images)))
        if self.budget is None:
            self.record["scale"] = 1.0
            self.save_record()
            seconds = [(s, timing.stage_seconds(s, by_key, rows)) for s in at_scale(1.0)]
            each = ", ".join(f"{s.label} {timing.shown(t)}" for s, t in seconds)
            total = timing.shown(sum(t for _, t in seconds) + fixed)
            self.echo(f"  estimate here: {total} ({each}; exports and checks {timing.shown(fixed)})")
            return
        left = self.budget - sum(self.record["minutes"].values()) * 60
        try:
            scale = timing.choose_scale(at_scale, by_key, rows, seconds=left, fixed=fixed)
        except timing.TooSmall as err:
            raise BuildError(
                f"--budget {timing.shown(self.budget)} is too small to train each decoder here: give at least --budget "
                f"{timing.least_budget(self.budget - left, err.least)}"
            ) from None
        self.record["scale"] = scale
        self.save_record()
        chosen = ", ".join(f"{s.label} {length_text(s)}" for s in at_scale(scale))
        self.echo(f"  budget {timing.shown(self.budget)} ({timing.shown(left)} left): epochs x{scale:.2f}: {chosen}")

    def recipe_text(self) -> str:
        if self.budget is None:
            return "the shipped recipe (preimage.build.recipe), no budget"
        return (
            f"budget {timing.shown(self.budget)}: the recipe's epochs x{self.record.get('scale', 1.0):.2f}, from rates "
            "measured on this machine (preimage.build.budget)"
        )

    def minutes_of(self, stage: Stage, stages: list[Stage]) -> dict[str, float]:
        """The minutes of the stages that made ``stage``'s decoder: the extraction's wall time and its chain of runs'
        training time (as their checkpoints count it, across every session, a killed one's included)."""
        runs = {s.run: s for s in stages if s.kind == "train"}
        chain, run = [], stage.run
        while run in runs:
            chain.append(runs[run])
            run = runs[run].init
        minutes = {s.label: self.record["minutes"].get(s.label, 0.0) for s in stages if s.kind == "extract"}
        for s in reversed(chain):
            state = checkpoint.read_header(self.folders.run(s.run) / "checkpoint.safetensors")["state"]
            minutes[s.label] = round(state.get("seconds", 0.0) / 60, 2)
        return minutes

    # -- what it prints --------------------------------------------------------------------------------------------

    def show_plan(self, stages: list[Stage]) -> None:
        self.echo(
            f"build {', '.join(self.specs)} from {self.images} into {self.folders.out} (work: {self.folders.work})"
        )
        for i, stage in enumerate(stages, 1):
            status = self.status(stage, stages)
            epochs = f", {length_text(stage)}" if stage.kind == "train" else ""
            state = "done" if status.done else "to do"
            self.echo(f"  {i:2d}. {stage.label}{epochs}: {state}" + (f" ({status.detail})" if status.detail else ""))
        if any(fused_parts(s) for s in self.specs) and not self.best():
            self.echo("  then each fused decoder, started from its best layer's (known once their decoders are scored)")
        self.echo(
            "  the time each training stage takes here is measured after extraction (a probe of each kind of step)"
            + (f"; the epochs that fit --budget {timing.shown(self.budget)} chosen from it" if self.budget else "")
        )

    def show_table(self, stages: list[Stage], cards: list[dict], done_before: set[str]) -> None:
        self.echo("decoder | held-out error | mean image | gap | PSNR | SSIM | LPIPS")
        for card in cards:
            h = card["heldout"]
            self.echo(
                f"{card['name']} | {h['normalised_error']:.4f} | {h['mean_image_error']:.4f} | {card['gap']:+.1%} | "
                f"{h['psnr']:.2f} | {h['ssim']:.4f} | {h.get('lpips', float('nan')):.4f}"
            )
        ran = [s.label for s in stages if s.label not in done_before]
        self.echo(
            f"{decoders(len(cards))} in {self.folders.out} ({len(ran)} stages run now, {len(stages) - len(ran)} done "
            f"before); list them: preimage zoo --zoo {self.folders.out}"
        )

    def readme(self, stages: list[Stage]) -> str:
        """The zoo folder's own card (:func:`.card.zoo_readme`)."""
        cards = [checkpoint.read_header(f)["card"] for f in self.exports(stages)]
        files = [f.with_suffix(".md").name for f in self.exports(stages)]
        return zoo_readme(
            cards,
            files,
            self.specs,
            images=str(self.images),
            out=str(self.folders.out),
            license=self.license,
            command=self.command,
        )


def decoders(n: int) -> str:
    return f"{n} decoder{'s' * (n != 1)}"


def length_text(stage: Stage) -> str:
    """``8 epochs``, or ``1 epoch of 40% of the photos``."""
    if stage.fraction < 1:
        return f"1 epoch of {stage.fraction:.0%} of the photos"
    return f"{stage.epochs} epoch{'s' * (stage.epochs != 1)}"


def _feature_of(path: Path) -> str:
    return checkpoint.read_header(path)["config"]["feature"]


def photos_hash(store: FeatureStore) -> str:
    """The sha256 of the sorted list of a store's ids: which photos, wherever they are."""
    ids = sorted(str(v) for v in store.array("ids")[:].tolist())
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def canonical(spec: str) -> str:
    """A spec as the zoo names its decoder: a layer range as the fused name it reads."""
    return zoo._canonical(spec)


def build(
    specs: Sequence[str],
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    store: str | os.PathLike | None = None,
    work: str | os.PathLike | None = None,
    losses: Sequence[str] = LOSSES,
    budget: float | str | None = None,
    check_images: str | os.PathLike | None = None,
    license: str = "other",
    size: int = 128,
    float16: bool = False,
    weights: str | None = None,
    recipes: dict[str, Recipe] | None = None,
    echo: Callable[[str], None] = print,
    command: str | None = None,
    until: str | None = None,
    cluster: BatchJobs | None = None,
) -> list[dict]:
    """Build a zoo folder ``out`` of decoders of ``specs`` (representations: ``hog``, ``vgg16:conv5_3``,
    ``hf:FOLDER:encoder.layer.5``, a fused ``alexnet:conv3+conv4+conv5``) trained on the photos of ``images``:
    extract, a pixel and a perceptual decoder each by the shipped recipe (or the epochs ``budget`` allows: seconds or
    ``45m``), export with cards, check each card on the held-out photo files, publish. Resumes where an earlier call
    stopped. ``work``: runs and exports (default ``OUT.build`` beside ``out``); ``store``: the features (default in
    ``work``; an existing store is reused). ``until``: stop once that stage is done; ``cluster``: extract on its batch
    workers, then submit the other stages as a chain of SLURM jobs (:mod:`.chain`). Returns the published cards."""
    out = Path(out)
    work = Path(work) if work is not None else out.with_name(out.name + ".build")
    losses = tuple(losses)
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown or PIXEL not in losses:
        raise BuildError(f"losses: pixel, optionally with deepsim; got {', '.join(losses)}")
    seconds = timing.parse_budget(budget) if isinstance(budget, str) else budget
    images = Path(images)
    if not images.is_dir():
        raise BuildError(f"--images {images}: not a folder of photos")
    specs = list(dict.fromkeys(canonical(s) for s in specs))
    for layer in layers_of(specs):  # a wrong model or layer name fails before anything is written
        get_representation(layer)
    command = command or shlex.join(
        [
            "preimage",
            "build",
            *specs,
            "--images",
            str(images),
            "--out",
            str(out),
            *([] if losses == LOSSES else [a for loss in losses for a in ("--loss", loss)]),
            *(["--budget", timing.shown(seconds)] if seconds is not None else []),
            *(["--check-images", str(check_images)] if check_images else []),
            *(["--size", str(size)] if size != 128 else []),
            *(["--float16"] if float16 else []),
            *(["--recipe", "RECIPE.json"] if recipes else []),
        ]
    )
    job = Build(
        specs=specs,
        images=images,
        folders=Folders(out=out, work=work, store=Path(store) if store else work / "features.zarr"),
        losses=losses,
        budget=seconds,
        check_images=Path(check_images) if check_images else None,
        license=license,
        size=size,
        float16=float16,
        weights=weights,
        recipes=recipes or {},
        command=command,
        echo=echo,
        until=until,
        cluster=cluster,
    )
    return job.run()
