"""The decoders that ship inside preimage: one per representation, trained on the shared photos.

Each is a safetensors file in ``train/zoo/`` named after its representation and the loss it was trained with
(``alexnet-conv5.safetensors`` for ``alexnet:conv5`` by the pixel loss, ``alexnet-conv5-deepsim.safetensors`` for
``alexnet:conv5+deepsim``), weights in float16, with the same header as a run's checkpoint (decoder, fingerprint of
the features it takes, training settings) plus its model card; ``<name>.md`` beside it is the card as text. A
decoder is named either by a path (a run folder, a checkpoint file) or by a shipped name, so ``preimage invert
photo.jpg --feature alexnet:conv5`` and ``load_decoder("hog")`` need no training step. A bare representation names
its pixel decoder, the one the paper's metric is about; ``FEATURE+LOSS`` names another kind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ...pipeline.identity import Identity, from_fingerprint
from ...pipeline.names import (
    PIXEL,
    decoder_name,
    feature_order,
    may_be_several,
    portable_name,
    source_model,
    split_decoder_name,
)
from ...runtime.suggest import did_you_mean
from . import tensorfile

ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"  # train/zoo/: the files ship as package data of preimage.train
SUFFIX = ".safetensors"
ALL = "zoo"  # what --decoder takes for every shipped decoder
ZOO_ENV = "PREIMAGE_ZOO"  # folders of a user's built decoders, separated as PATH is: looked up before what ships


@dataclass(frozen=True)
class Shipped:
    """A decoder that ships with preimage: its representation, the loss it was trained with, its file and its model
    card (a dict)."""

    feature: str  # as the zoo names it: a model in a folder by the folder's name (``identity.portable_name``)
    loss: str
    path: Path
    card: dict
    identity: Identity  # what the features it takes are (its fingerprint)

    @property
    def name(self) -> str:
        """What names it: the representation for a pixel decoder, ``FEATURE+LOSS`` for another."""
        return decoder_name(self.feature, self.loss)

    @property
    def features(self) -> dict:
        """The recorded attributes of the features it takes."""
        return dict(self.identity.attrs)

    @property
    def builtin(self) -> bool:
        """Whether it ships with preimage (else it is in a zoo folder of the user's)."""
        return self.path.parent == ZOO_DIR

    @property
    def card_text(self) -> Path:
        return self.path.with_suffix(".md")


def zoo_folders(zoos: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """The folders a decoder's name is looked up in, in order: ``zoos`` (``--zoo``), those :data:`ZOO_ENV` names
    (several, separated as PATH is), then the decoders that ship with preimage. An error naming a folder that is
    not one."""
    named = [*zoos, *filter(None, os.environ.get(ZOO_ENV, "").split(os.pathsep))]
    folders = []
    for folder in map(Path, named):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such zoo folder (--zoo or {ZOO_ENV})")
        folders.append(folder.resolve())
    return list(dict.fromkeys([*folders, ZOO_DIR]))


def read_entry(path: Path) -> Shipped:
    """One decoder file of a zoo folder; a ``ValueError`` naming a file that is not one."""
    try:
        header = json.loads(tensorfile.metadata(path)[tensorfile.HEADER])
        config = header["config"]
        return Shipped(
            feature=portable_name(config["feature"]),
            loss=config.get("loss", PIXEL),
            path=path,
            card=header.get("card", {}),
            identity=from_fingerprint(header["fingerprint"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: not a decoder of a zoo ({type(err).__name__}: {err}); a zoo folder holds the files "
            "preimage build (or references/zoo_export.py --out) writes"
        ) from None


def _folder_entries(folder: Path) -> list[Shipped]:
    """The decoders of one zoo folder, in the order of the representations (hand-crafted, then layers by depth),
    pixel decoders first."""
    entries = [read_entry(path) for path in sorted(folder.glob(f"*{SUFFIX}"))]
    return sorted(entries, key=lambda s: (":" in s.feature, *feature_order(s.feature), s.loss != PIXEL, s.loss))


def list_shipped() -> list[Shipped]:
    """Every decoder that ships with preimage, in the order of the representations."""
    return _folder_entries(ZOO_DIR)


def list_zoo(zoos: Iterable[str | os.PathLike] = ()) -> list[Shipped]:
    """Every decoder of the zoo folders (:func:`zoo_folders`): a user's folders' first, each in the order of the
    representations, then those that ship."""
    return [entry for folder in zoo_folders(zoos) for entry in _folder_entries(folder)]


def shipped(name: str, zoos: Iterable[str | os.PathLike] = ()) -> Shipped:
    """The decoder ``name`` names (``hog``, ``alexnet:conv5+deepsim``, a layer range such as
    ``alexnet:conv3-conv5``, or a file stem) in the zoo folders (:func:`zoo_folders`: a user's first, then what
    ships); an error listing them for any other name."""
    entries = list_zoo(zoos)
    found = next((entry for entry in entries if name in (entry.name, entry.path.stem)), None)
    if found is None:  # a range or a model's other name, as the zoo names it (only now: it may load torch)
        feature, loss = split_decoder_name(name)
        canonical = decoder_name(_canonical(feature), loss)
        found = next((entry for entry in entries if entry.name == canonical), None)
    if found is not None:
        return found

    names = list(dict.fromkeys(s.name for s in entries))
    close = did_you_mean(name, names)
    listed = f"{close} preimage zoo lists them all" if close else f"shipped: {', '.join(names)}"
    raise FileNotFoundError(
        f"no decoder {name!r} ships with preimage ({listed}); train one with preimage train and pass its run folder"
    )


def shipped_for(hash_name: str, loss: str = PIXEL, zoos: Iterable[str | os.PathLike] = ()) -> Shipped | None:
    """The decoder of a model from a source by what it is (``FeatureIdentity.hash_name``: its weights' hash and
    layer) in the zoo folders, wherever the user's copy of the model lives; None when there is none."""
    for entry in list_zoo(zoos):
        if entry.loss == loss and entry.identity.hash_name == hash_name:
            return entry
    return None


def _canonical(feature: str) -> str:
    """The representation's own name for ``feature`` (``alexnet:conv3-conv5`` -> ``alexnet:conv3+conv4+conv5``);
    ``feature`` itself when it names none or could read several layers only by loading a model from a source."""
    if not may_be_several(feature) or source_model(feature):
        return feature
    from ...pipeline.features import get_representation  # torch: only for a name that may be a layer range

    try:
        return get_representation(feature).name
    except Exception:  # not a representation: the caller's error names what ships
        return feature
