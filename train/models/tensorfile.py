"""The one writer and reader of preimage's files: safetensors (no code runs on load) with a JSON header under the
metadata key ``header``. Decoder checkpoints, shipped decoders and HOGgles dictionaries are all such files. A file is
written beside its final name and renamed into place, so a kill never leaves half of one; headers are read without
loading a tensor, and without torch (the zoo's listing reads them)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from safetensors import safe_open

HEADER = "header"  # the metadata key of the JSON header
MAX_HEADER = 1 << 20  # a header of ours is a few kB; a file announcing far more is not one of ours


def write(path: str | os.PathLike, tensors: dict, header: dict | None = None, metadata: dict | None = None) -> Path:
    """Write ``tensors`` (name -> torch tensor) with ``header`` as JSON and any other string ``metadata``, atomically:
    to ``NAME.partial`` beside ``path``, then renamed over it."""
    from safetensors.torch import save_file  # torch: only a writer needs it

    path = Path(path)
    strings = dict(metadata or {})
    if header is not None:
        strings[HEADER] = json.dumps(header, sort_keys=True)
    partial = path.with_name(path.name + ".partial")
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(partial), metadata=strings)
    partial.replace(path)
    return path


def metadata(path: str | os.PathLike) -> dict[str, str]:
    """A file's string metadata, read from its first bytes alone (bounded: no tensor, no torch, no large read)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > MAX_HEADER:
            raise ValueError(f"{path}: a header of {length} bytes is not one of preimage's")
        header = json.loads(f.read(length))
    return header.get("__metadata__") or {}


def json_header(path: str | os.PathLike) -> object:
    """The JSON under a file's ``header`` metadata key, read without loading any tensor (a ``KeyError`` where there is
    none; safetensors' own error for a file it cannot parse)."""
    with safe_open(str(path), framework="numpy") as f:
        return json.loads((f.metadata() or {})[HEADER])


def shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a file, from its header alone."""
    with safe_open(str(path), framework="numpy") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118


def read(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """Every tensor of a file (torch tensors) and its string metadata."""
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
