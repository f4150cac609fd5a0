"""Where a trained inverter lives: the one resolver of a decoder argument. A run folder (``train --out``), a
checkpoint or dictionary file, or a shipped decoder by its name (``hog``, ``alexnet:conv5+deepsim``, a layer range
``alexnet:conv3-conv5``, or a layer of a model from a source in a folder of its own, ``hf:FOLDER:LAYER``, found by
the hash of its weights). Commands, the Python API, studies and the explorer ask it and resolve nothing
themselves."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ...pipeline.features import get_representation
from ...pipeline.identity import Identity, from_fingerprint
from ...pipeline.lookup import model_hash
from ...pipeline.names import PIXEL, decoder_name, hash_feature, source_model, split_decoder_name
from . import zoo
from .checkpoint import CheckpointError, read_header
from .runfolder import CHECKPOINT, DICTIONARY, RunFolder
from .tensorfile import json_header


@dataclass(frozen=True)
class Located:
    """A trained inverter's file, its method (``decoder`` or ``hoggles``), the run folder holding it (None for a
    file given alone or a shipped decoder), and where its model from a source is here when the name it was found by
    said so (``hf:FOLDER:LAYER``: ``FOLDER``'s model; None otherwise)."""

    path: Path
    method: str
    folder: Path | None = None
    model: str | None = None

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


def locate(
    decoder: str | os.PathLike | Located, weights: str | None = None, zoos: Iterable[str | os.PathLike] = ()
) -> Located:
    """The inverter ``decoder`` names: an existing path as it is (a run folder, a checkpoint or dictionary file),
    else a shipped decoder's name (:func:`shipped_decoder`); an error naming both possibilities otherwise. A
    :class:`Located` is returned as it is (its header, once read, is not read again). ``weights``: the file a
    model from a source loads, to match it by hash; ``zoos``: folders of built decoders, looked up before what
    ships (``zoo.zoo_folders``)."""
    if isinstance(decoder, Located):
        return decoder
    path = Path(decoder)
    if not path.exists():
        try:
            return shipped_decoder(str(decoder), weights, zoos)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{decoder}: no such run folder or checkpoint, and {err}") from None
    if path.is_dir():
        run = RunFolder(path)
        if run.is_hoggles:
            return Located(run.dictionary, "hoggles", path)
        return Located(run.checkpoint, "decoder", path)
    return Located(path, "hoggles" if path.name == DICTIONARY or _is_dictionary(path) else "decoder")


def shipped_decoder(name: str, weights: str | None = None, zoos: Iterable[str | os.PathLike] = ()) -> Located:
    """The shipped decoder ``name`` names: as the zoo names it (``zoo.shipped``: a representation, ``+LOSS``, a
    layer range, a file stem), or a layer of a model from a source in a folder of its own (``hf:FOLDER:LAYER``,
    ``+LOSS``): the decoder shipped for the same weights (their hash; the model is loaded to hash it) and layers,
    with ``FOLDER`` as where its model is. An error saying what ships otherwise."""
    try:
        return Located(zoo.shipped(name, zoos).path, "decoder")
    except FileNotFoundError:
        feature, loss = split_decoder_name(name)
        if not source_model(feature):
            raise

    rep = get_representation(feature)
    sha = model_hash(rep.name, weights)
    found = zoo.shipped_for(hash_feature(rep.backbone, sha, rep.layers), loss, zoos) if sha else None
    if found is None:
        kind = "" if loss == PIXEL else f" {loss}"
        raise FileNotFoundError(
            f"no{kind} decoder ships for {rep.name} (its weights' sha256 {str(sha)[:16]}; preimage zoo lists what "
            "ships); train one with preimage train and pass --decoder RUN"
        )
    return Located(found.path, "decoder", model=rep.backbone)


def decoder_path(decoder: str | os.PathLike, zoos: Iterable[str | os.PathLike] = ()) -> Path:
    """A decoder argument as a path: an existing path as it is (a run folder, a folder of runs, a file), ``zoo``
    for every shipped decoder (``zoo.ZOO_DIR``), else the file a shipped decoder's name names (:func:`locate`)."""
    path = Path(decoder)
    if path.exists():
        return path
    if str(decoder) == zoo.ALL:
        return zoo.ZOO_DIR
    return locate(decoder, zoos=zoos).path


def feature_decoder(
    feature: str, loss: str = PIXEL, weights: str | None = None, zoos: Iterable[str | os.PathLike] = ()
) -> Located:
    """The zoo's decoder of a representation trained with ``loss`` (``invert --feature F --loss L``)."""
    return shipped_decoder(decoder_name(feature, loss), weights, zoos)


def _is_dictionary(path: Path) -> bool:
    """Whether a file's header is a HOGgles dictionary's (any other file is read as a decoder's checkpoint, whose
    reader names what is wrong with it)."""
    try:
        header = json_header(path)
    except Exception:
        return False
    return isinstance(header, dict) and "hoggles" in header
