"""What every study starts from: the trained decoders under a folder, and held-out rows of a store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore
from ..pipeline.features import expand_specs
from ..pipeline.identity import Identity
from ..pipeline.images import to_float
from ..pipeline.lookup import stored_name
from ..pipeline.names import decoder_name, feature_layers, feature_order, fused_parts, portable_name
from ..pipeline.rows import take_rows
from ..train.models import zoo
from ..train.models.decoders import Decoder
from ..train.models.loading import load_decoder
from ..train.models.locate import locate
from ..train.models.runfolder import CHECKPOINT, RUN_FILE
from ..train.training.data import split_rows


@dataclass
class TrainedRun:
    """A run folder, the feature its decoder was trained on, its held-out fraction, and how it was chosen."""

    path: Path
    feature: str
    held_out: float
    autoencoder: bool = False  # the encoder was fine-tuned too: the model takes images
    train_fraction: float = 1.0
    others: tuple[Path, ...] = ()  # runs of the same feature it was chosen over (the newest pixel run wins)
    loss: str = zoo.PIXEL  # what it was trained to minimise (train --loss)
    identity: Identity | None = None  # what the features it takes are (its header's fingerprint)

    @property
    def label(self) -> str:
        name = decoder_name(self.feature, self.loss)
        return f"{name} (autoencoder)" if self.autoencoder else name

    def decoder(self, store: FeatureStore) -> Decoder:
        """The decoder, refused unless ``store`` computed the feature as the training store did."""
        return load_decoder(self.path, store)

    def describe(self) -> str:
        """Which run serves this feature, and what it was chosen over (for the commands to print)."""
        if not self.others:
            return f"{self.label}: {self.path}"
        return (
            f"{self.label}: {self.path} (chosen over {', '.join(str(p) for p in self.others)}: a pixel "
            "decoder first, then the newest; name one with --decoder RUN)"
        )


def read_run(folder: Path) -> TrainedRun | None:
    """The run in ``folder`` (or a checkpoint file that carries its settings: a shipped decoder), or None when it
    holds no finished decoder run (run.json and a checkpoint)."""
    if folder.is_file() and folder.suffix != zoo.SUFFIX:
        return None
    located = locate(folder)
    if located.method != "decoder":
        return None
    config = located.settings()
    if config is None:
        return None
    shipped = located.folder is None  # a decoder file carries the feature as its machine named it: the zoo's name
    return TrainedRun(
        folder,
        portable_name(config["feature"]) if shipped else config["feature"],
        config["held_out"],
        autoencoder=located.autoencoder,
        train_fraction=config.get("train_fraction", 1.0),
        loss=config.get("loss", zoo.PIXEL),
        identity=located.identity,
    )


def trained_runs(
    paths: Path | Sequence[Path], features: str | None = None, autoencoder: bool = False
) -> list[TrainedRun]:
    """The runs that ``paths`` name: each a run folder (used as given: decoders of one feature trained with other
    losses may be given together) or a folder of runs (one run per feature: a pixel decoder before any other loss,
    the paper's metric being theirs, then the newest; the others it was chosen over in ``others``). In the order of
    ``features`` when given (an error naming any feature without a decoder), else by name; pixel decoders first.
    A fused decoder (layers read together) comes after the deepest layer it reads, and ``features`` chooses it
    when it names each of its layers (``alexnet:conv3-conv5``: the three layers alone and together). The decoders
    of fixed features, or with ``autoencoder`` the runs that fine-tuned their encoder."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    chosen: dict[str, TrainedRun] = {}  # by label: a feature and the loss it was trained with
    scanned: dict[str, list[TrainedRun]] = {}
    for path in map(Path, paths):
        run = read_run(path)
        if run is not None:
            if run.autoencoder == autoencoder:
                if run.label in chosen:
                    raise ValueError(f"two runs of {run.label} given ({chosen[run.label].path}, {path}); give one")
                chosen[run.label] = run
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a run folder ({RUN_FILE} and {CHECKPOINT}) nor a folder of runs")
        for folder in sorted(p for p in path.iterdir() if p.is_dir() or p.suffix == zoo.SUFFIX):
            found = read_run(folder)
            if found is not None and found.autoencoder == autoencoder:
                scanned.setdefault(found.feature, []).append(found)
    for feature, candidates in scanned.items():
        if not any(run.feature == feature for run in chosen.values()):
            candidates.sort(key=lambda r: (r.loss == zoo.PIXEL, locate(r.path).path.stat().st_mtime), reverse=True)
            best = replace(candidates[0], others=tuple(r.path for r in candidates[1:]))
            chosen[best.label] = best
    runs = sorted(chosen.values(), key=lambda r: (*feature_order(r.feature), r.loss != zoo.PIXEL, r.loss))
    if features is None:
        return runs
    names = expand_specs(features)
    fused = [run for run in runs if fused_parts(run.feature) and set(feature_layers(run.feature)) <= set(names)]
    read = {layer for run in fused for layer in feature_layers(run.feature)}
    missing = [name for name in names if not any(run.feature == name for run in runs) and name not in read]
    if missing:
        kind = "autoencoder" if autoencoder else "decoder"
        where = ", ".join(str(p) for p in paths)
        raise FileNotFoundError(
            f"no {kind} trained on {', '.join(missing)} under {where}; train one with preimage train"
            + (" --autoencoder" if autoencoder else "")
        )
    alone = [run for name in names for run in runs if run.feature == name]

    def order(run: TrainedRun) -> tuple:  # by the deepest layer read, in the order of ``features``; fused after it
        layers = feature_layers(run.feature)
        return names.index(layers[-1]), len(layers), run.loss != zoo.PIXEL, run.loss

    return sorted(alone + fused, key=order)


def heldout_rows(store: FeatureStore, held_out: float, n: int) -> np.ndarray:
    """The first ``n`` held-out rows (the split no decoder saw); at least two."""
    rows = np.flatnonzero(split_rows(store, "heldout", held_out))[:n]
    if len(rows) < 2:
        raise ValueError(f"{store.path} has fewer than two held-out rows")
    return rows


def read_images(store: FeatureStore, rows: np.ndarray) -> torch.Tensor:
    """Stored images of ``rows`` as floats (N, 3, S, S) in [0, 1]."""
    return to_float(store.take("images", rows))


def read_features(store: FeatureStore, feature: str | Identity, rows: np.ndarray) -> torch.Tensor:
    """Stored features of ``rows`` as float32 (a model's features held under another folder's name too; a run's
    :attr:`TrainedRun.identity` finds them without loading the model)."""
    return torch.from_numpy(take_rows(store, stored_name(store, feature), rows)).float()


def reconstruct(store: FeatureStore, run: TrainedRun, model: Decoder, rows: np.ndarray) -> torch.Tensor:
    """Reconstructions of stored rows: from their features, or from their images for an autoencoder run."""
    inputs = read_images(store, rows) if model.takes == "images" else read_features(store, run.identity, rows)
    return decode(model, inputs)


@torch.no_grad()
def decode(model: Decoder, features: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Reconstructions in batches, clipped to [0, 1]."""
    return torch.cat([model(features[i : i + batch]).clamp(0, 1) for i in range(0, len(features), batch)])


def mean_image(store: FeatureStore, held_out: float) -> torch.Tensor:
    """The mean of the training split's images (3, S, S): the baseline every decoder must beat by far."""
    mask = split_rows(store, "train", held_out)
    total = np.zeros(store.array("images").shape[1:], np.float64)
    for start, stop in store.partitions():
        keep = mask[start:stop]
        if keep.any():
            total += store.read_rows("images", start, stop)[keep].sum(0, dtype=np.float64)
    return torch.from_numpy(total / max(int(mask.sum()), 1) / 255).permute(2, 0, 1).float()
