"""What each stage of a build does, and how a rerun tells that it is done: by its outputs (the store's completion
markers, a run's checkpoint at its last epoch, an exported file that records the checkpoint it was made from, the
check's record of every file's hash, the zoo's files equal to the exports), never by a name alone."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..cache.store import FeatureStore
from ..pipeline.backbones.weights import sha256_file
from ..pipeline.lookup import stored_name
from ..pipeline.names import PIXEL, feature_layers, file_stem, model_of, source_model, source_ref
from ..train.models import checkpoint, zoo
from ..train.models.runfolder import RunFolder
from .recipe import Stage

CHECK_RECORD = "check.json"  # the check stage's record: each exported file's hash and its scores on the photo files


class BuildError(ValueError):
    """A build that cannot go on: one line saying why (a gate, a run of other settings, a card that does not hold)."""


@dataclass(frozen=True)
class Folders:
    """Where a build keeps its work and where it publishes."""

    out: Path  # the zoo folder: what is published
    work: Path  # runs, exports, records
    store: Path

    @property
    def runs(self) -> Path:
        return self.work / "runs"

    @property
    def exports(self) -> Path:
        return self.work / "export"

    def run(self, name: str) -> Path:
        return self.runs / name

    def export(self, feature: str, loss: str = PIXEL) -> Path:
        """The exported file of the decoder of ``feature`` trained with ``loss``."""
        return self.exports / f"{file_stem(feature, loss)}{zoo.SUFFIX}"


@dataclass
class Status:
    """How far a stage got: done, or what is left (``epoch`` of a train stage's ``epochs``)."""

    done: bool
    detail: str = ""
    extra: dict = field(default_factory=dict)


def extracted(store_path: Path, layers: list[str]) -> Status:
    """Whether the store holds every layer of every partition."""
    try:
        store = FeatureStore.open(store_path)
    except (OSError, ValueError, KeyError):
        return Status(False, "no store yet")
    missing = []
    for layer in layers:
        try:
            name = stored_name(store, layer)
        except (KeyError, ValueError, FileNotFoundError):
            missing.append(layer)
            continue
        done = store.done(name)
        if not done.all():
            missing.append(f"{layer} ({int(done.sum())} of {len(done)} partitions)")
    return Status(not missing, "missing " + ", ".join(missing) if missing else f"{store.rows} rows")


def trained(run: Path, stage: Stage) -> Status:
    """Whether a run finished its stage's epochs, with the stage's settings."""
    folder = RunFolder(run)
    if not folder.checkpoint.is_file():
        return Status(False, "not started")
    try:
        state = checkpoint.read_header(folder.checkpoint)["state"]
        config = folder.read()["config"]
    except Exception as err:  # a damaged file: the trainer's own resume says what is wrong
        return Status(False, f"unreadable ({type(err).__name__})")
    differing = [k for k, v in stage.settings.items() if k != "epochs" and k in config and config[k] != v]
    if differing:
        raise BuildError(
            f"{run} was trained with other settings ({', '.join(differing)}) than this build's; remove it or give "
            "another --work"
        )
    finished = state["epoch"] >= stage.epochs and state.get("batch", 0) == 0
    return Status(finished, f"epoch {state['epoch']} of {stage.epochs}", {"epoch": state["epoch"]})


def exported(path: Path, run: Path) -> Status:
    """Whether ``path`` is the export of ``run``'s checkpoint as it is now."""
    if not path.is_file() or not RunFolder(run).checkpoint.is_file():
        return Status(False, "not exported")
    try:
        card = checkpoint.read_header(path).get("card", {})
    except Exception:
        return Status(False, "unreadable export")
    if card.get("build", {}).get("run_sha256") != sha256_file(RunFolder(run).checkpoint):
        return Status(False, "exported from another checkpoint")
    return Status(True, f"held-out error {card['heldout']['normalised_error']:.4f}", {"card": card})


def checked(folders: Folders, files: list[Path]) -> Status:
    """Whether the check's record covers every exported file as it is now."""
    record = folders.work / CHECK_RECORD
    if not record.is_file():
        return Status(False, "not checked")
    seen = json.loads(record.read_text())
    wrong = [f.name for f in files if not f.is_file() or seen.get(f.name, {}).get("sha256") != sha256_file(f)]
    return Status(not wrong, f"not checked: {', '.join(wrong)}" if wrong else f"{len(files)} cards hold", seen)


def published(folders: Folders, files: list[Path]) -> Status:
    """Whether the zoo folder holds every exported file as it is, with its card, and the folder's README."""
    missing = [
        f.name
        for f in files
        if not (folders.out / f.name).is_file()
        or sha256_file(folders.out / f.name) != sha256_file(f)
        or not (folders.out / f.with_suffix(".md").name).is_file()
    ]
    if not (folders.out / "README.md").is_file():
        missing.append("README.md")
    return Status(not missing, f"to publish: {', '.join(missing)}" if missing else f"{len(files)} decoders")


def publish(folders: Folders, files: list[Path], readme: str) -> None:
    """Copy each export and its card into the zoo folder (each file complete before it takes its name), then the
    folder's README (the last: a zoo without it is not finished)."""
    folders.out.mkdir(parents=True, exist_ok=True)
    for f in files:
        for source in (f, f.with_suffix(".md")):
            target = folders.out / source.name
            tmp = target.with_name(target.name + ".part")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
    tmp = folders.out / "README.md.part"
    tmp.write_text(readme)
    os.replace(tmp, folders.out / "README.md")


def model_folder(feature: str) -> str | None:
    """The folder or hub id of a source model's feature (what the held-out check computes it with)."""
    model = model_of(feature_layers(feature)[0])
    return source_ref(model) if model and source_model(model) else None
