"""Bilinear spatial voting of per-pixel values into square cells, as VLFeat's HOG and LBP do it.

A pixel at coordinate ``x`` (interior pixels only, 1 .. n-2) votes into the cells whose centres surround it,
with weights ``1 - frac`` and ``frac`` of ``h = (x + 0.5) / cell - 0.5``. Votes outside the cell grid are
dropped, exactly as in ``vl_hog_put_image`` and ``vl_lbp_process``.
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=64)
def voting_matrix(n: int, cell: int, cells: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Dense (n, cells) matrix of the bilinear weights with which each pixel coordinate votes into cells."""
    x = torch.arange(1, n - 1, dtype=torch.float64)
    h = (x + 0.5) / cell - 0.5
    left = torch.floor(h).long()
    frac = h - left
    # column 0 stands for cell -1, so cell c lives in column c + 1; columns past the grid are dropped below
    weights = torch.zeros(n, max(cells, int(left.max()) + 1 if len(left) else 0) + 2, dtype=torch.float64)
    weights[x.long(), left + 1] = 1.0 - frac
    weights[x.long(), left + 2] = frac
    return weights[:, 1 : cells + 1].to(dtype=dtype, device=device)


@lru_cache(maxsize=64)
def _column_votes(w: int, cell: int, cells_w: int, dtype: torch.dtype, device: torch.device):
    """Left and right cell of each column and the weights of its two votes (zero where a vote is dropped)."""
    wx = voting_matrix(w, cell, cells=cells_w, dtype=dtype, device=device)  # (W, cw)
    left = torch.argmax((wx > 0).to(torch.int8), dim=1)  # first cell with a non-zero weight
    w_left = wx.gather(1, left[:, None]).squeeze(1)
    right = torch.clamp(left + 1, max=cells_w - 1)
    w_right = torch.where(right > left, wx.gather(1, right[:, None]).squeeze(1), torch.zeros_like(w_left))
    return left, right, w_left, w_right


def chunks(n: int, height: int, width: int, pixels: int = 1 << 18) -> list[slice]:
    """Slices of a batch of ``n`` images holding about ``pixels`` pixels each, so intermediates stay in cache."""
    step = max(1, pixels // (height * width))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def cell_histogram(
    values: torch.Tensor | None,
    bins: torch.Tensor,
    num_bins: int,
    cell: int,
    cells_h: int,
    cells_w: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Vote ``values`` (N, H, W) into bin ``bins`` (N, H, W) of their cells: returns (N, cells_h, cells_w, num_bins).

    ``values=None`` gives every pixel one vote (as LBP does), in ``dtype``; border pixels vote nothing either way.

    Horizontal votes go through one ``index_add`` (no one-hot tensor of all bins is ever built); vertical
    votes are one batched matrix product. Differentiable with respect to ``values``.
    """
    n, h, w = bins.shape
    device = bins.device
    dtype = values.dtype if values is not None else dtype
    left, right, w_left, w_right = _column_votes(w, cell, cells_w=cells_w, dtype=dtype, device=device)
    wy_t = voting_matrix(h, cell, cells=cells_h, dtype=dtype, device=device).t()  # (ch, H)
    index_dtype = torch.int32 if n * h * cells_w * num_bins < 2**31 else torch.int64
    rows = torch.arange(n * h, device=device, dtype=index_dtype)[:, None] * cells_w  # (N*H, 1)
    left, right = left.to(index_dtype), right.to(index_dtype)
    b = bins.reshape(n * h, w).to(index_dtype)
    index = torch.cat([(rows + left) * num_bins + b, (rows + right) * num_bins + b], dim=1)
    if values is None:
        source = torch.cat([w_left, w_right]).expand(n * h, 2 * w)
    else:
        v = values.reshape(n * h, w)
        source = torch.cat([v * w_left, v * w_right], dim=1)
    row_hist = torch.zeros(n * h * cells_w * num_bins, dtype=dtype, device=device)
    row_hist = row_hist.index_add(0, index.reshape(-1), source.reshape(-1))
    row_hist = row_hist.view(n, h, cells_w * num_bins)
    out = torch.matmul(wy_t, row_hist)  # (N, ch, cw * bins)
    return out.view(n, cells_h, cells_w, num_bins)
