"""Streaming (features, target image) batches from a feature store, with bounded memory.

Whole shards are read at once (zarr reads a shard of 64 rows in a few milliseconds, while 64 scattered rows
cost 10-20x more; docs/performance.md), a buffer of a few shards is shuffled, and batches are cut from it. Shards
are dealt out to DataLoader workers and distributed ranks, so each reads its own part of the store. The next
buffer's shards are read in a background thread while the current buffer trains (zarr decompresses outside the
GIL), so even in-process reading overlaps the step. Memory holds at most 2 x ``buffer_shards`` shards whatever
the store's size.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ...cache.store import READ, FeatureStore, feature_path
from ...pipeline.contract import FeatureJob
from ...pipeline.names import feature_layers
from ...pipeline.rows import read_rows
from ...runtime.device import rank_and_world
from .augment import augment_images, augmentable, check_augment, recompute

SPLITS = ("train", "heldout")


def _unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` (SHA-256), the same on every machine and run."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(ident: str, held_out: float = 0.1, train_fraction: float = 1.0) -> str:
    """'heldout' for a fixed fraction of ids, chosen by hashing the id (the file path); of the others 'train' for
    ``train_fraction`` of them, chosen by a second hash, and 'unused' for the rest. The subsets nest (the ids
    of fraction 0.25 are among those of 0.5), so a learning curve adds photos and never swaps them."""
    if _unit_hash(ident) < held_out:
        return "heldout"
    return "train" if _unit_hash("subset:" + ident) < train_fraction else "unused"


def split_rows(store: FeatureStore, split: str, held_out: float = 0.1, train_fraction: float = 1.0) -> np.ndarray:
    """Boolean mask of the rows of ``split`` that were read (unreadable rows belong to no split); ``all``: every
    row that was read (a store no decoder was trained on)."""
    if split == "all":
        return store.status() == READ
    if split not in SPLITS:
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
    ids = [str(v) for v in store.array("ids")[:].tolist()]
    in_split = np.array([split_of(i, held_out, train_fraction) == split for i in ids], dtype=bool)
    return in_split & (store.status() == READ)


def check_target_size(side: int, size: int) -> None:
    """Refuse a target side the stored images (``side`` pixels) cannot be averaged down to in whole blocks."""
    if side % size:
        raise ValueError(f"stored images of {side} pixels cannot be averaged down to {size} (--target-size)")


def downsample(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 RGB (N, S, S, 3) as float targets (N, 3, size, size) in [0, 1], by averaging S/size blocks.

    The blocks are summed in integers on the uint8 layout and converted once, at the target size: 3x faster than
    pooling the full-size float images, which was the largest part of reading a shard."""
    side = images.shape[1]
    check_target_size(side, size)
    factor = side // size
    x = torch.from_numpy(np.ascontiguousarray(images))
    if factor > 1:
        wide = x.to(torch.int16 if factor * factor * 255 < 2**15 else torch.int32)
        x = sum(wide[:, i::factor, j::factor] for i in range(factor) for j in range(factor))
    return x.permute(0, 3, 1, 2).float().div_(255.0 * factor * factor)


class ShardStream(IterableDataset):
    """Batches ``(features (B, *row), targets (B, 3, T, T))`` of one split, shuffled within a buffer of shards
    (with ``inputs="images"``: the stored images (B, 3, S, S) in [0, 1] in place of the features). With
    ``augment="flip"`` or ``"crop"`` the stored images are first mirrored or re-cropped and the features computed
    afresh from them (:mod:`train.augment`). ``train_fraction`` < 1 keeps that fraction of the training part
    (:func:`split_of`).

    Use with ``DataLoader(stream, batch_size=None, num_workers=k)``; call :meth:`set_epoch` before each epoch
    for a new order (the same for a given seed and epoch, whatever the number of workers).
    """

    def __init__(
        self,
        store: str,
        feature: str,
        split: str = "train",
        target_size: int = 64,
        batch_size: int = 64,
        buffer_shards: int = 4,
        seed: int = 0,
        held_out: float = 0.1,
        drop_last: bool = True,
        inputs: str = "features",
        augment: str = "none",
        train_fraction: float = 1.0,
    ) -> None:
        super().__init__()
        if inputs not in ("features", "images"):
            raise ValueError(f"inputs must be 'features' or 'images' (the autoencoder's), got {inputs!r}")
        check_augment(augment)
        self.inputs, self.augment = inputs, augment
        self.store_path, self.feature, self.split = str(store), feature, split
        self.target_size, self.batch_size, self.buffer_shards = target_size, batch_size, buffer_shards
        self.seed, self.epoch, self.held_out, self.drop_last = seed, 0, held_out, drop_last
        opened = FeatureStore.open(self.store_path)
        for name in feature_layers(feature) if inputs == "features" else ():
            if feature_path(name) not in opened.group:
                held = ", ".join(opened.feature_names()) or "no features"
                raise KeyError(f"{store} has no {name}; it holds {held}")
        self.partitions = opened.partitions()
        self.job, self.dtype = None, None  # the extractor that recomputes augmented rows' features, its dtype
        if augment != "none" and inputs == "features":
            first = feature_layers(feature)[0]  # a fused feature's layers: a model's, never augmentable
            self.job = FeatureJob.from_attrs(dict(opened.features(first).attrs))
            self.dtype = opened.features(first).dtype
            augmentable(self.job, int(opened.array("images").shape[1]))
        mask = split_rows(opened, split, held_out, train_fraction)
        self.rows = int(mask.sum())
        self._mask = mask

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch over all workers and ranks (an upper bound when shards are split unevenly)."""
        return self.rows // self.batch_size if self.drop_last else -(-self.rows // self.batch_size)

    def my_shards(self) -> list[int]:
        """This worker's shards, in this epoch's order: the epoch's permutation dealt over ranks, then workers."""
        rank, world = rank_and_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return self._shards(rank, world, worker, workers)

    def _shards(self, rank: int, world: int, worker: int, workers: int) -> list[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.partitions))
        return [int(i) for i in order[rank::world][worker::workers]]

    def full_batches(self, workers: int) -> int:
        """Full batches every rank yields this epoch (the least over ranks): the steps distributed ranks can
        all take, so that none waits for a gradient that never comes."""
        _, world = rank_and_world()
        counts = []
        for rank in range(world):
            total = 0
            for worker in range(max(1, workers)):
                rows = sum(
                    int(self._mask[slice(*self.partitions[i])].sum())
                    for i in self._shards(rank, world, worker, max(1, workers))
                )
                total += rows // self.batch_size
            counts.append(total)
        return min(counts)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        store = FeatureStore.open(self.store_path)
        rng = np.random.default_rng([self.seed, self.epoch, *rank_and_world(), _worker_id()])
        buffer_x: list[np.ndarray] = []
        buffer_y: list[torch.Tensor] = []
        shards = self.my_shards()

        def read(index: int) -> tuple[np.ndarray, torch.Tensor] | None:
            start, stop = self.partitions[index]
            keep = self._mask[start:stop]
            if not keep.any():
                return None

            def kept(values: np.ndarray) -> np.ndarray:  # no copy when every row is kept: SIFT's 64 rows are 35 MB
                return values if keep.all() else values[keep]

            stored = kept(store.read_rows("images", start, stop))
            if self.augment != "none":  # a function of (seed, epoch, shard): a resumed run sees the same images
                choices = np.random.default_rng([self.seed, self.epoch, index, 1])
                stored = augment_images(stored, self.augment, choices)
                x = stored if self.job is None else recompute(self.job, stored).astype(self.dtype, copy=False)
            else:
                x = stored if self.inputs == "images" else kept(read_rows(store, self.feature, start, stop))
            return x, downsample(stored, self.target_size)

        # the next buffer's shards are read while this one trains, several at once: a store at a URL answers each
        # request after a round trip, which parallel requests overlap
        with ThreadPoolExecutor(max_workers=max(1, self.buffer_shards), thread_name_prefix="shard-prefetch") as reader:
            pending = deque(reader.submit(read, index) for index in shards[: self.buffer_shards])
            for n in range(len(shards)):
                shard = pending.popleft().result()
                if n + self.buffer_shards < len(shards):  # the next buffer is read while this one trains
                    pending.append(reader.submit(read, shards[n + self.buffer_shards]))
                if shard is not None:
                    buffer_x.append(shard[0])
                    buffer_y.append(shard[1])
                if len(buffer_x) >= self.buffer_shards or n == len(shards) - 1:
                    if not buffer_x:
                        continue
                    x, y = _Rows(buffer_x), torch.cat(buffer_y)
                    buffer_x, buffer_y = [], []
                    order = rng.permutation(len(x))
                    last = (
                        len(x) if (n == len(shards) - 1 and not self.drop_last) else len(x) - len(x) % self.batch_size
                    )
                    for i in range(0, last, self.batch_size):
                        pick = order[i : i + self.batch_size]
                        yield self._input(x.take(pick)), y[pick]
                    if last < len(x):  # the remainder waits for the next buffer
                        buffer_x.append(x.take(order[last:]))
                        buffer_y.append(y[order[last:]])

    def _input(self, rows: np.ndarray) -> torch.Tensor:
        if self.inputs == "images":
            return torch.from_numpy(rows).permute(0, 3, 1, 2).float().div_(255.0)
        return torch.from_numpy(rows).float()


class _Rows:
    """The rows of several shards as one sequence, gathered without first concatenating them (one copy, not two)."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [len(part) for part in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def take(self, rows: np.ndarray) -> np.ndarray:
        part_of = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), *self.parts[0].shape[1:]), self.parts[0].dtype)
        for j in np.unique(part_of):
            picked = part_of == j
            out[picked] = self.parts[j][rows[picked] - self.starts[j]]
        return out


def _worker_id() -> int:
    info = get_worker_info()
    return info.id if info else 0
