"""HOGgles (Vondrick, Khosla, Malisiewicz & Torralba, ICCV 2013): HOG inverted with a paired dictionary.

Learning follows ihog's ``learnpairdict``: windows of 5x5 HOG cells of the training photos, each paired with the
gray patch under it and a one-cell margin (7x7 cells, 56x56 pixels at 8-pixel cells); each half centred and
scaled to unit norm, the two concatenated, and one dictionary of 1024 atoms learned for non-negative sparse codes
(lasso, lambda 0.02) by online dictionary learning (Mairal et al. 2009, ihog's ``mexTrainDL``), then split into
its HOG half and its gray half. Inversion follows ihog's ``invertHOG``: the grid is padded with 5 cells of zero
HOG, every 5x5 window is centred, scaled to unit norm and sparse-coded on the HOG half (FISTA), its gray half is
weighted by a Gaussian (sigma 9 pixels) and added at its place, overlaps are averaged and each image is stretched
to [0, 1]. HOGgles reconstructs gray images; they are scored against colour ones replicated to three channels.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...cache.store import FeatureStore, feature_path
from ...pipeline.identity import FeatureIdentity
from ...pipeline.images import rgb_to_gray, to_float
from ...pipeline.lookup import check_store
from ..models import tensorfile
from ..models.locate import Located, locate
from ..models.runfolder import RunFolder
from ..training.data import split_rows

EPS = 1e-8


@dataclass(frozen=True)
class HogglesConfig:
    """The paired dictionary's settings; defaults are ihog's (``learnpairdict(stream, n, k=1024, ny=5, nx=5,
    lambda=0.02, iters=1000)`` with SPAMS' batches of 400)."""

    atoms: int = 1024
    window: int = 5  # HOG cells per side of a window
    sparsity: float = 0.02  # lambda of the lasso, in learning and in inversion
    steps: int = 1000  # dictionary updates in learning
    batch: int = 400  # windows per update
    lasso_steps: int = 100  # FISTA iterations per sparse code
    dictionary_steps: int = 5  # projected-gradient passes over the dictionary per update
    sigma: float = 9.0  # pixels: the Gaussian that weights each patch where windows overlap
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> HogglesConfig:
        return cls(**{k: values[k] for k in asdict(cls()) if k in values})


def normalise_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row centred and scaled to unit norm (ihog's normalisation of both halves of a pair)."""
    x = x - x.mean(1, keepdim=True)
    return x / torch.sqrt((x * x).sum(1, keepdim=True) + EPS)


def sparse_code(x: torch.Tensor, dictionary: torch.Tensor, sparsity: float, steps: int) -> torch.Tensor:
    """Non-negative lasso codes (B, k) of rows x (B, d) on atoms ``dictionary`` (d, k): min over a >= 0 of
    1/2 ||x - D a||^2 + sparsity ||a||_1, by FISTA (SPAMS' ``mexLasso`` with ``pos``, mode 2)."""
    gram = dictionary.T @ dictionary
    lipschitz = float(torch.linalg.eigvalsh(gram.double())[-1]) + EPS
    correlation = x @ dictionary
    codes = momentum = torch.zeros_like(correlation)
    t = 1.0
    for _ in range(steps):
        step = momentum - (momentum @ gram - correlation) / lipschitz
        new = torch.relu(step - sparsity / lipschitz)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        momentum = new + ((t - 1) / t_next) * (new - codes)
        codes, t = new, t_next
    return codes


def hog_windows(grids: torch.Tensor, window: int) -> torch.Tensor:
    """Every window x window block of HOG grids (N, H, W, C) as rows (N, H-w+1, W-w+1, w*w*C), cell-major."""
    blocks = grids.unfold(1, window, 1).unfold(2, window, 1)  # (N, Hy, Wx, C, w, w)
    return blocks.permute(0, 1, 2, 4, 5, 3).flatten(3)


def gaussian(size: int, sigma: float) -> torch.Tensor:
    """A size x size Gaussian summing to one (MATLAB's ``fspecial('gaussian', size, sigma)``)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma * sigma))
    return (g / g.sum()).float()


class PairedDictionary(nn.Module):
    """HOG grids (N, H, W, C) in, gray images (N, 1, H*cell, W*cell) in [0, 1] out (:func:`invert_hog`)."""

    takes = "features"

    def __init__(self, config: HogglesConfig, cell_size: int, channels: int) -> None:
        super().__init__()
        self.config, self.cell_size, self.channels = config, cell_size, channels
        side = (config.window + 2) * cell_size
        self.register_buffer("gray", torch.zeros(side * side, config.atoms))
        self.register_buffer("hog", torch.zeros(config.window**2 * channels, config.atoms))

    @property
    def patch_side(self) -> int:
        return (self.config.window + 2) * self.cell_size

    def forward(self, grids: torch.Tensor, batch: int = 16) -> torch.Tensor:
        return torch.cat([self.invert(grids[i : i + batch]) for i in range(0, len(grids), batch)])

    @torch.no_grad()
    def invert(self, grids: torch.Tensor) -> torch.Tensor:
        """ihog's ``invertHOG`` on a batch of grids."""
        config, cell, side = self.config, self.cell_size, self.patch_side
        n, h, w, c = grids.shape
        if c != self.channels:
            raise ValueError(f"the dictionary holds HOG of {self.channels} channels, got grids of {c}")
        pad = config.window
        padded = F.pad(grids.float(), (0, 0, pad, pad, pad, pad))  # zero HOG around the grid
        windows = hog_windows(padded, config.window)
        ny, nx = windows.shape[1:3]
        rows = windows.reshape(-1, windows.shape[-1])
        codes = rows.new_zeros(len(rows), config.atoms)  # an all-zero window (padding, a flat region) codes to zero
        some = rows.abs().amax(1) > 0
        codes[some] = sparse_code(normalise_rows(rows[some]), self.hog, config.sparsity, config.lasso_steps)
        patches = (codes @ self.gray.T) * gaussian(side, config.sigma).flatten()  # (n*ny*nx, side*side)
        patches = patches.view(n, ny * nx, side * side).transpose(1, 2)
        canvas = ((h + 2 * pad + 2) * cell, (w + 2 * pad + 2) * cell)  # one cell of margin around the windows
        summed = F.fold(patches, canvas, side, stride=cell)
        counts = F.fold(torch.ones_like(patches[:1]), canvas, side, stride=cell)
        top = (pad + 1) * cell  # the grid's first cell on the canvas
        image = (summed / counts)[:, :, top : top + h * cell, top : top + w * cell]
        low = image.flatten(1).min(1).values.view(n, 1, 1, 1)
        high = image.flatten(1).max(1).values.view(n, 1, 1, 1)
        return (image - low) / (high - low).clamp_min(EPS)


def sample_pairs(
    gray: torch.Tensor, grids: torch.Tensor, count: int, window: int, cell: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` random training pairs (count, side*side + window*window*C): a window of HOG cells whose gray patch
    with a one-cell margin lies inside its image (ihog's ``getdata``), each half normalised."""
    n, h, w, _ = grids.shape
    side = (window + 2) * cell
    image = torch.randint(n, (count,), generator=generator)
    top = torch.randint(1, h - window, (count,), generator=generator)  # cells; the margin above is cell top - 1
    left = torch.randint(1, w - window, (count,), generator=generator)
    cells = torch.arange(window)
    hog = grids[image[:, None, None], (top[:, None] + cells)[:, :, None], (left[:, None] + cells)[:, None, :]]
    pixels = torch.arange(side)
    rows = ((top - 1) * cell)[:, None] + pixels
    cols = ((left - 1) * cell)[:, None] + pixels
    patch = gray[image[:, None, None], rows[:, :, None], cols[:, None, :]]
    return torch.cat([normalise_rows(patch.flatten(1)), normalise_rows(hog.flatten(1).float())], dim=1)


def learn_dictionary(
    gray: torch.Tensor,
    grids: torch.Tensor,
    config: HogglesConfig,
    cell_size: int,
    state_file: str | os.PathLike | None = None,
    progress=None,
) -> PairedDictionary:
    """A :class:`PairedDictionary` learned from gray images (N, S, S) in [0, 1] and their HOG grids (N, H, W, C).

    Online dictionary learning (Mairal, Bach, Ponce & Sapiro 2009): for each batch of pairs, their codes on the
    current dictionary, the running statistics A = sum a a^T and B = sum x a^T (older batches down-weighted as in
    their section 3.4), then the dictionary that minimises the surrogate 1/2 tr(D^T D A) - tr(D^T B) under
    ||d_j|| <= 1, by projected gradient steps. With ``state_file`` the learning resumes from it and saves to it
    every 50 steps: batch ``t`` is drawn from seed (config.seed, t), so a resumed run learns what an uninterrupted
    one would. ``progress``: a :class:`Progress` over the steps (an earlier session's counted as resumed)."""
    if grids.shape[1] < config.window + 2 or grids.shape[2] < config.window + 2:
        raise ValueError(
            f"HOG grids of {tuple(grids.shape[1:3])} cells hold no {config.window}x{config.window} "
            "window with a one-cell margin; use larger images or a smaller window"
        )
    model = PairedDictionary(config, cell_size, grids.shape[-1])

    def sample(count: int, step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        return sample_pairs(gray, grids, count=count, window=config.window, cell=cell_size, generator=generator)

    state = _load_state(state_file, config)
    if state is None:
        atoms = sample(config.atoms, -1).T  # SPAMS starts from random training pairs
        atoms = atoms / atoms.norm(dim=0, keepdim=True).clamp_min(1.0)
        state = {
            "atoms": atoms,
            "a": torch.zeros(config.atoms, config.atoms),
            "b": torch.zeros(atoms.shape[0], config.atoms),
            "step": torch.tensor(0),
        }
    atoms, a_stat, b_stat = state["atoms"], state["a"], state["b"]
    earlier, start = float(state.get("seconds", 0.0)), time.perf_counter()  # learning seconds of earlier sessions
    if progress is not None:
        progress.resumed(int(state["step"]))
    for step in range(int(state["step"]), config.steps):
        pairs = sample(config.batch, step)
        codes = sparse_code(pairs, atoms, config.sparsity, config.lasso_steps)
        seen = (step + 1) * config.batch
        theta = seen if step + 1 < config.batch else config.batch**2 + seen - config.batch
        forget = (theta + 1 - config.batch) / (theta + 1)
        a_stat = forget * a_stat + codes.T @ codes / config.batch
        b_stat = forget * b_stat + pairs.T @ codes / config.batch
        lipschitz = float(torch.linalg.eigvalsh(a_stat.double())[-1]) + EPS
        for _ in range(config.dictionary_steps):
            atoms = atoms - (atoms @ a_stat - b_stat) / lipschitz
            atoms = atoms / atoms.norm(dim=0, keepdim=True).clamp_min(1.0)
        if state_file is not None and ((step + 1) % STATE_EVERY == 0 or step + 1 == config.steps):
            _save_state(
                state_file,
                config,
                atoms=atoms,
                a_stat=a_stat,
                b_stat=b_stat,
                step=step + 1,
                seconds=earlier + time.perf_counter() - start,
            )
        if progress is not None:
            progress.update(1)
    split = model.gray.shape[0]
    model.gray.copy_(atoms[:split])
    model.hog.copy_(atoms[split:])
    model.seconds = earlier + time.perf_counter() - start  # over every session
    return model


STATE_EVERY = 50  # learning steps between saved states


def _save_state(path, config: HogglesConfig, atoms, a_stat, b_stat, step: int, seconds: float) -> None:
    tensors = {"atoms": atoms, "a": a_stat, "b": b_stat, "step": torch.tensor(step), "seconds": torch.tensor(seconds)}
    tensorfile.write(path, tensors, metadata={"config": json.dumps(asdict(config), sort_keys=True)})


def _load_state(path, config: HogglesConfig) -> dict | None:
    """The saved learning state, None when there is none; an error when it was learned with other settings."""
    if path is None or not Path(path).exists():
        return None
    tensors, metadata = tensorfile.read(path)
    saved = json.loads(metadata.get("config", "{}"))
    if saved != asdict(config):
        differing = sorted(k for k in asdict(config) if saved.get(k) != asdict(config)[k])
        raise ValueError(
            f"{path} was learned with other settings ({', '.join(differing)}); use the same ones, or another --out"
        )
    return tensors


def train_hoggles(
    store_path: str | os.PathLike,
    out: str | os.PathLike,
    config: HogglesConfig = HogglesConfig(),
    held_out: float = 0.1,
    progress=None,
) -> Path:
    """Learn a paired dictionary from the training rows of a store's images and HOG (the rows the decoders train
    on); saved as ``out/hoggles.safetensors`` with the HOG's fingerprint, like a decoder. Resumes a killed run."""

    store = FeatureStore.open(store_path)
    hog = FeatureIdentity.of_store(store, "hog")
    rows = np.flatnonzero(split_rows(store, "train", held_out))
    if len(rows) == 0:
        raise ValueError(f"{store_path} has no training rows to learn a dictionary from")
    gray = torch.cat(
        [rgb_to_gray(to_float(store.take("images", part))) for part in np.array_split(rows, max(1, len(rows) // 256))]
    )
    grids = torch.from_numpy(store.take(feature_path("hog"), rows))
    cell = int(hog.params["cell_size"])
    folder = RunFolder(out)
    folder.path.mkdir(parents=True, exist_ok=True)
    model = learn_dictionary(
        gray, grids, config=config, cell_size=cell, state_file=folder.learning_state, progress=progress
    )
    header = {
        "hoggles": asdict(config),
        "fingerprint": hog.fingerprint(),
        "cell_size": cell,
        "channels": model.channels,
        "held_out": held_out,
        "train_rows": len(rows),
        "seconds": model.seconds,
    }
    return tensorfile.write(folder.dictionary, {"gray": model.gray, "hog": model.hog}, header=header)


def read_dictionary(located: Located) -> PairedDictionary:
    """The paired dictionary of a located dictionary file (:func:`~.locate.locate`), its shapes checked against its
    header."""
    header = located.header
    model = PairedDictionary(
        HogglesConfig.from_dict(header["hoggles"]), int(header["cell_size"]), int(header["channels"])
    )
    tensors, _ = tensorfile.read(located.path)
    for name in ("gray", "hog"):
        tensor = tensors.get(name)
        if tensor is None or tensor.shape != getattr(model, name).shape:
            shape, expected = "none" if tensor is None else tuple(tensor.shape), tuple(getattr(model, name).shape)
            raise ValueError(f"{located.path}: its {name} atoms have shape {shape}, its header says {expected}")
        getattr(model, name).copy_(tensor)
    return model.eval()


def load_hoggles(path: str | os.PathLike | Located, store=None) -> PairedDictionary:
    """The paired dictionary of a run folder (or its file); with ``store``, refused unless that store's HOG was
    computed exactly as the dictionary's was."""

    located = locate(path)
    if located.method != "hoggles":
        raise ValueError(f"{located.path}: not a HOGgles dictionary written by preimage train --method hoggles")
    model = read_dictionary(located)
    if store is not None:
        check_store(store, located.identity, "hog")
    return model
