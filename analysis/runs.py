"""What every study starts from: the trained decoders under a folder, and held-out rows of a store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore, feature_path
from ..pipeline.features import expand_specs
from ..pipeline.images import to_float
from ..train import zoo
from ..train.data import split_rows
from ..train.decoders import Decoder
from ..train.inverters import load_decoder
from ..train.locate import CHECKPOINT, locate


@dataclass
class TrainedRun:
    """A run folder, the feature its decoder was trained on, its held-out fraction, and how it was chosen."""

    path: Path
    feature: str
    held_out: float
    autoencoder: bool = False  # the encoder was fine-tuned too: the model takes images
    train_fraction: float = 1.0
    others: tuple[Path, ...] = ()  # runs of the same feature it was chosen over (the newest wins)

    @property
    def label(self) -> str:
        return f"{self.feature} (autoencoder)" if self.autoencoder else self.feature

    def decoder(self, store: FeatureStore) -> Decoder:
        """The decoder, refused unless ``store`` computed the feature as the training store did."""
        return load_decoder(self.path, store, self.feature)

    def describe(self) -> str:
        """Which run serves this feature, and what it was chosen over (for the commands to print)."""
        if not self.others:
            return f"{self.label}: {self.path}"
        return (f"{self.label}: {self.path} (the newest of {len(self.others) + 1} runs; also "
                f"{', '.join(str(p) for p in self.others)}; name one with --decoder RUN)")  # fmt: skip


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
    return TrainedRun(folder, config["feature"], config["held_out"], located.autoencoder,
                      config.get("train_fraction", 1.0))  # fmt: skip


def trained_runs(
    paths: Path | Sequence[Path], features: str | None = None, autoencoder: bool = False
) -> list[TrainedRun]:
    """The runs that ``paths`` name: each a run folder (used as given) or a folder of runs (the newest run of each
    feature, with the others it was chosen over in ``others``). In the order of ``features`` when given (an error
    naming any feature without a decoder), else by name; the decoders of fixed features, or with
    ``autoencoder`` the runs that fine-tuned their encoder."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    explicit: dict[str, TrainedRun] = {}
    scanned: dict[str, list[TrainedRun]] = {}
    for path in map(Path, paths):
        run = read_run(path)
        if run is not None:
            if run.autoencoder == autoencoder:
                if run.feature in explicit:
                    raise ValueError(f"two runs of {run.label} given ({explicit[run.feature].path}, {path}); give one")
                explicit[run.feature] = run
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a run folder (run.json and {CHECKPOINT}) nor a folder of runs")
        for folder in sorted(p for p in path.iterdir() if p.is_dir() or p.suffix == zoo.SUFFIX):
            found = read_run(folder)
            if found is not None and found.autoencoder == autoencoder:
                scanned.setdefault(found.feature, []).append(found)
    chosen = dict(explicit)
    for feature, candidates in scanned.items():
        if feature not in chosen:
            candidates.sort(key=lambda r: locate(r.path).path.stat().st_mtime, reverse=True)
            chosen[feature] = replace(candidates[0], others=tuple(r.path for r in candidates[1:]))
    if features is None:
        return [chosen[name] for name in sorted(chosen)]
    missing = [name for name in expand_specs(features) if name not in chosen]
    if missing:
        kind = "autoencoder" if autoencoder else "decoder"
        where = ", ".join(str(p) for p in paths)
        raise FileNotFoundError(
            f"no {kind} trained on {', '.join(missing)} under {where}; train one with preimage train"
            + (" --autoencoder" if autoencoder else "")
        )
    return [chosen[name] for name in expand_specs(features)]


def heldout_rows(store: FeatureStore, held_out: float, n: int) -> np.ndarray:
    """The first ``n`` held-out rows (the split no decoder saw); at least two."""
    rows = np.flatnonzero(split_rows(store, "heldout", held_out))[:n]
    if len(rows) < 2:
        raise ValueError(f"{store.path} has fewer than two held-out rows")
    return rows


def read_images(store: FeatureStore, rows: np.ndarray) -> torch.Tensor:
    """Stored images of ``rows`` as floats (N, 3, S, S) in [0, 1]."""
    return to_float(store.take("images", rows))


def read_features(store: FeatureStore, feature: str, rows: np.ndarray) -> torch.Tensor:
    """Stored features of ``rows`` as float32."""
    return torch.from_numpy(store.take(feature_path(feature), rows)).float()


def reconstruct(store: FeatureStore, run: TrainedRun, model: Decoder, rows: np.ndarray) -> torch.Tensor:
    """Reconstructions of stored rows: from their features, or from their images for an autoencoder run."""
    inputs = read_images(store, rows) if model.takes == "images" else read_features(store, run.feature, rows)
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
