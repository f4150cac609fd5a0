"""Where a trained inverter lives, resolved in one place: a run folder (``train --out``), a checkpoint or
dictionary file, or a shipped decoder named by its representation (``hog``, ``alexnet:conv5``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ...pipeline.identity import Identity, from_fingerprint
from . import zoo
from .checkpoint import CheckpointError, json_header, read_header
from .runfolder import CHECKPOINT, DICTIONARY, RunFolder


@dataclass(frozen=True)
class Located:
    """A trained inverter's file, its method (``decoder`` or ``hoggles``) and the run folder holding it (None for a
    file given alone or a shipped decoder)."""

    path: Path
    method: str
    folder: Path | None = None

    @cached_property
    def header(self) -> dict:
        """The file's JSON header, read without loading a tensor; a clear error for a file that is not ours."""
        if self.method == "decoder":
            if not self.path.exists():
                raise FileNotFoundError(
                    f"no checkpoint at {self.path}; a run folder holds {CHECKPOINT}, written by preimage train"
                )
            return read_header(self.path)
        try:
            header = json_header(self.path)
        except Exception as err:
            raise ValueError(
                f"{self.path}: not a HOGgles dictionary written by preimage train --method hoggles "
                f"({type(err).__name__})"
            ) from None
        if not isinstance(header, dict) or "hoggles" not in header:
            raise ValueError(f"{self.path}: not a HOGgles dictionary written by preimage train --method hoggles")
        return header

    @property
    def fingerprint(self) -> dict:
        """What the features it takes were computed as (the training store's fingerprint)."""
        fingerprint = self.header.get("fingerprint")
        if not isinstance(fingerprint, dict):
            raise CheckpointError(f"{self.path}: its header has no fingerprint of the features it was trained on")
        return fingerprint

    @property
    def identity(self) -> Identity:
        """What the features it takes are (:mod:`~preimage.pipeline.identity`): what a store must hold for it."""
        return from_fingerprint(self.fingerprint)

    @property
    def autoencoder(self) -> bool:
        """Whether the encoder was fine-tuned too (the model takes images, not features): the one place it is told."""
        return bool(self.header.get("autoencoder"))

    def settings(self) -> dict | None:
        """Its training settings: run.json's of a run folder, or those a shipped file carries; None for a folder
        without a finished run (no run.json or no checkpoint)."""
        if self.folder is not None:
            return RunFolder(self.folder).settings()
        config = self.header.get("config")
        if not isinstance(config, dict) or "feature" not in config:
            raise CheckpointError(f"{self.path}: a checkpoint without its training settings; give its run folder")
        return config


def locate(decoder: str | os.PathLike | Located) -> Located:
    """The inverter ``decoder`` names: an existing path as it is (a run folder, a checkpoint or dictionary file),
    else the shipped decoder of that representation; an error naming both possibilities otherwise. A
    :class:`Located` is returned as it is (its header, once read, is not read again)."""
    if isinstance(decoder, Located):
        return decoder
    path = zoo.resolve(decoder)
    if path.is_dir():
        run = RunFolder(path)
        if run.is_hoggles:
            return Located(run.dictionary, "hoggles", path)
        return Located(run.checkpoint, "decoder", path)
    return Located(path, "hoggles" if path.name == DICTIONARY or _is_dictionary(path) else "decoder")


def _is_dictionary(path: Path) -> bool:
    """Whether a file's header is a HOGgles dictionary's (any other file is read as a decoder's checkpoint, whose
    reader names what is wrong with it)."""
    try:
        header = json_header(path)
    except Exception:
        return False
    return isinstance(header, dict) and "hoggles" in header
