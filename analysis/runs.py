"""What every study starts from: the trained decoders under a folder, and held-out rows of a store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore, feature_path
from ..pipeline.features import expand_specs
from ..train.data import split_rows
from ..train.decoders import Decoder
from ..train.trainer import CHECKPOINT, load_decoder


@dataclass
class TrainedRun:
    """A run folder, the feature its decoder was trained on, and its held-out fraction."""

    path: Path
    feature: str
    held_out: float
    autoencoder: bool = False  # the encoder was fine-tuned too: the model takes images

    @property
    def label(self) -> str:
        return f"{self.feature} (autoencoder)" if self.autoencoder else self.feature

    def decoder(self, store: FeatureStore) -> Decoder:
        """The decoder, refused unless ``store`` computed the feature as the training store did."""
        return load_decoder(self.path, store, self.feature)


def trained_runs(runs: Path, features: str | None = None, autoencoder: bool = False) -> list[TrainedRun]:
    """The runs under ``runs`` (or ``runs`` itself), one per feature (the newest checkpoint when several), in
    the order of ``features`` when given (an error naming any feature without a decoder), else by name; the
    decoders of fixed features, or with ``autoencoder`` the runs that fine-tuned their encoder."""
    found: dict[str, TrainedRun] = {}
    folders = [runs, *sorted(p for p in runs.iterdir() if p.is_dir())] if runs.is_dir() else []
    for folder in folders:
        info, weights = folder / "run.json", folder / CHECKPOINT
        if not (info.exists() and weights.exists()):
            continue
        config = json.loads(info.read_text())["config"]
        run = TrainedRun(folder, config["feature"], config["held_out"], bool(config.get("autoencoder")))
        if run.autoencoder != autoencoder:
            continue
        known = found.get(run.feature)
        if known is None or weights.stat().st_mtime > (known.path / CHECKPOINT).stat().st_mtime:
            found[run.feature] = run
    if features is None:
        return [found[name] for name in sorted(found)]
    missing = [name for name in expand_specs(features) if name not in found]
    if missing:
        kind = "autoencoder" if autoencoder else "decoder"
        raise FileNotFoundError(
            f"no {kind} trained on {', '.join(missing)} under {runs}; train one with preimage train"
            + (" --autoencoder" if autoencoder else "")
        )
    return [found[name] for name in expand_specs(features)]


def heldout_rows(store: FeatureStore, held_out: float, n: int) -> np.ndarray:
    """The first ``n`` held-out rows (the split no decoder saw); at least two."""
    rows = np.flatnonzero(split_rows(store, "heldout", held_out))[:n]
    if len(rows) < 2:
        raise ValueError(f"{store.path} has fewer than two held-out rows")
    return rows


def read_images(store: FeatureStore, rows: np.ndarray) -> torch.Tensor:
    """Stored images of ``rows`` as floats (N, 3, S, S) in [0, 1]."""
    return torch.from_numpy(store.take("images", rows)).permute(0, 3, 1, 2).float() / 255


def read_features(store: FeatureStore, feature: str, rows: np.ndarray) -> torch.Tensor:
    """Stored features of ``rows`` as float32."""
    return torch.from_numpy(store.take(feature_path(feature), rows)).float()


def reconstruct(store: FeatureStore, run: TrainedRun, model: Decoder, rows: np.ndarray) -> torch.Tensor:
    """Reconstructions of stored rows: from their features, or from their images for an autoencoder run."""
    inputs = read_images(store, rows) if run.autoencoder else read_features(store, run.feature, rows)
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
