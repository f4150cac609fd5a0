"""Random feature vectors with the statistics of real ones (the paper's Figure 11), computed with dask straight
from the store, never loading it whole.

- Histograms: for every dimension, the fraction of exact zeros and a histogram of its non-zero values over N
  stored vectors; a sample draws each dimension independently (zero with that fraction, else a bin by its count
  and a value uniformly inside it), so the sparsity of every dimension matches the real vectors'; then it is
  scaled by alpha (the paper's 2).
- Gaussian: one shifted truncated Gaussian for all dimensions: the standard deviation of the non-zero values, the
  mean shifted so that rectifying at zero leaves as many zeros as the real vectors have. Signed vectors (class
  scores, no ReLU) get the Gaussian of their non-zero values as it is, with their fraction of zeros set to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import dask.array as da
import numpy as np
import torch

BINS = 64
ROWS_PER_BLOCK = 256  # rows per dask block: few per-block (D, BINS) count arrays to sum


@dataclass
class Histograms:
    """Per dimension: fraction of zeros (D,), bin edges (D, BINS + 1) and counts of non-zero values (D, BINS)."""

    zero_fraction: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    rows: int
    nonzero_mean: float
    nonzero_std: float

    @property
    def sparsity(self) -> float:
        return float(self.zero_fraction.mean())

    @property
    def signed(self) -> bool:
        """Whether the vectors take negative values (not the output of a ReLU)."""
        return bool((self.edges[:, 0][self.counts.sum(axis=1) > 0] < 0).any())


def _bin_counts(block: np.ndarray, low: np.ndarray, width: np.ndarray, bins: int) -> np.ndarray:
    """Counts (1, D, bins) of one block of rows (n, D): non-zero values only, binned per dimension."""
    x = block.reshape(len(block), -1).astype(np.float64)
    index = np.clip(((x - low) / width).astype(np.int64), 0, bins - 1)
    flat = (np.arange(x.shape[1]) * bins + index)[x != 0]
    return np.bincount(flat, minlength=x.shape[1] * bins).reshape(1, x.shape[1], bins)


def histograms(vectors: da.Array, bins: int = BINS) -> Histograms:
    """Per-dimension statistics of ``vectors`` (N, ...) (a dask array, e.g. ``da.from_zarr`` of a store array)
    in two passes over the chunks."""
    flat = vectors.rechunk({0: ROWS_PER_BLOCK}).reshape(vectors.shape[0], -1).astype(np.float64)
    nonzero = flat != 0
    low, high, zeros, total, total_sq, count = da.compute(
        da.where(nonzero, flat, np.inf).min(axis=0),
        da.where(nonzero, flat, -np.inf).max(axis=0),
        (~nonzero).mean(axis=0),
        flat.sum(),
        (flat**2).sum(),
        nonzero.sum(),
    )
    empty = ~np.isfinite(low)  # a dimension that is always zero
    low, high = np.where(empty, 0.0, low), np.where(empty, 1.0, high)
    width = np.maximum(high - low, 1e-12) / bins
    counts = (
        flat.map_blocks(_bin_counts, low, width, bins, dtype=np.int64, chunks=(1, flat.shape[1], bins), new_axis=2)
        .sum(axis=0)
        .compute()
    )
    mean = total / max(count, 1)
    std = math.sqrt(max(total_sq / max(count, 1) - mean**2, 0.0))
    edges = low[:, None] + width[:, None] * np.arange(bins + 1)
    return Histograms(
        zeros, edges, counts=counts, rows=int(flat.shape[0]), nonzero_mean=float(mean), nonzero_std=float(std)
    )


def sample_histograms(h: Histograms, n: int, alpha: float = 2.0, seed: int = 0) -> torch.Tensor:
    """``n`` vectors (n, D) with each dimension drawn independently from its histogram, times ``alpha``."""
    rng = np.random.default_rng(seed)
    d, bins = h.counts.shape
    cumulative = np.cumsum(h.counts, axis=1, dtype=np.float64)
    totals = cumulative[:, -1:]
    cumulative = cumulative / np.maximum(totals, 1)
    u = rng.random((n, d))
    chosen = (u[:, :, None] > cumulative[None]).sum(-1).clip(0, bins - 1)  # inverse CDF over bins
    left = h.edges[np.arange(d)[None, :], chosen]
    width = h.edges[:, 1] - h.edges[:, 0]
    values = left + rng.random((n, d)) * width
    zero = (rng.random((n, d)) < h.zero_fraction) | (totals[:, 0] == 0)
    return torch.from_numpy(np.where(zero, 0.0, values) * alpha).float()


def sample_gaussian(h: Histograms, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` vectors (n, D) from one Gaussian for every dimension, rectified at zero, its mean shifted so the
    fraction of zeros equals the real vectors' sparsity (not rectified when the real vectors take negative values)."""

    rng = np.random.default_rng(seed)
    d = h.counts.shape[0]
    sparsity = h.sparsity
    if sparsity <= 0 or h.signed:
        values = rng.normal(h.nonzero_mean, h.nonzero_std, (n, d))
        return torch.from_numpy(np.where(rng.random((n, d)) < sparsity, 0.0, values)).float()
    shift = -NormalDist().inv_cdf(min(sparsity, 1 - 1e-9)) * h.nonzero_std  # P(z < 0) = sparsity
    return torch.from_numpy(np.maximum(rng.normal(shift, h.nonzero_std, (n, d)), 0.0)).float()
