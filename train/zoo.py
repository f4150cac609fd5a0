"""The decoders that ship inside preimage: one per representation, trained on the shared photos.

Each is a safetensors file in ``train/zoo/`` named after its representation (``alexnet-conv5.safetensors`` for
``alexnet:conv5``), weights in float16, with the same header as a run's checkpoint (decoder, fingerprint of the
features it takes, training settings) plus its model card; ``<name>.md`` beside it is the card as text. A
decoder is named either by a path (a run folder, a checkpoint file) or by a shipped representation's name, so
``preimage invert photo.jpg --feature alexnet:conv5`` and ``load_decoder("hog")`` need no training step.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
SUFFIX = ".safetensors"
ALL = "zoo"  # what --decoder takes for every shipped decoder
MAX_HEADER = 1 << 20  # a shipped file's JSON header is a few kB; anything far larger is not one of ours


@dataclass(frozen=True)
class Shipped:
    """A decoder that ships with preimage: its representation, its file and its model card (a dict)."""

    feature: str
    path: Path
    card: dict

    @property
    def card_text(self) -> Path:
        return self.path.with_suffix(".md")


def file_stem(feature: str) -> str:
    """The file name of a representation's shipped decoder, without suffix (``alexnet:conv5`` -> ``alexnet-conv5``)."""
    return feature.replace(":", "-")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, read from its header alone (no torch, no tensor)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > MAX_HEADER:
            raise ValueError(f"{path}: a header of {length} bytes is not a shipped decoder's")
        header = json.loads(f.read(length))
    return header.get("__metadata__") or {}


def list_shipped() -> list[Shipped]:
    """Every decoder that ships, in the order of the representations (hand-crafted, then CNN layers by depth)."""
    found = []
    for path in sorted(ZOO_DIR.glob(f"*{SUFFIX}")):
        header = json.loads(read_metadata(path)["header"])
        found.append(Shipped(header["config"]["feature"], path, header.get("card", {})))
    return sorted(found, key=lambda s: (":" in s.feature, s.feature))


def shipped(feature: str) -> Shipped:
    """The shipped decoder of ``feature``; an error listing what ships for any other name."""
    for entry in list_shipped():
        if entry.feature == feature or entry.path.stem == feature:
            return entry
    names = ", ".join(s.feature for s in list_shipped()) or "none"
    raise FileNotFoundError(f"no decoder for {feature!r} ships with preimage (shipped: {names}); train one with "
                            "preimage train and pass its run folder")  # fmt: skip


def resolve(decoder: str | os.PathLike) -> Path:
    """The checkpoint a decoder argument names: an existing path as it is (a run folder or a checkpoint file),
    else the shipped decoder of that representation (``hog``, ``alexnet:conv5``)."""
    path = Path(decoder)
    if path.exists():
        return path
    try:
        return shipped(str(decoder)).path
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{decoder}: no such run folder or checkpoint, and {err}") from None
