"""HOG features, VLFeat's UoCTTI variant (``vl_hog``), batched and differentiable in torch.

Per cell: 2*O directed orientation histograms, O undirected ones, and 4 texture energies (31 channels for
O = 9), computed as ``vl_hog_put_image`` + ``vl_hog_extract`` do: central-difference gradients on interior
pixels, hard orientation assignment, bilinear spatial voting, four 2x2 block normalisations with epsilon 1e-4,
clipping at 0.2. Input: grayscale images in [0, 1] (MATLAB's ``im2single``), shape (N, H, W).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..checks import check_gray_batch
from . import native
from .cells import cell_histogram, chunks

CLIP = 0.2
BLOCK_EPSILON = 1e-4
TEXTURE_SCALE = 1.0 / math.sqrt(18.0)  # VLFeat's constant, whatever the number of orientations


@dataclass(frozen=True)
class HogParams:
    """Parameters of the UoCTTI HOG (VLFeat defaults as used by the paper)."""

    cell_size: int = 8
    num_orientations: int = 9

    @property
    def channels(self) -> int:
        return 3 * self.num_orientations + 4

    @property
    def min_size(self) -> int:
        """Smallest side VLFeat accepts: more than 3 pixels and at least one cell after rounding."""
        return max(4, self.cell_size - self.cell_size // 2)

    def cells(self, size: int) -> int:
        """Cells along a side of ``size`` pixels: the last cell is at least half inside the image."""
        return (size + self.cell_size // 2) // self.cell_size

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (self.cells(height), self.cells(width), self.channels)

    def as_dict(self) -> dict:
        return asdict(self)


def _exact_orientation_bins(gx: torch.Tensor, gy: torch.Tensor, grad: torch.Tensor, num_orientations: int):
    """Directed orientation bin (0 .. 2*O-1) of each gradient, chosen exactly as ``vl_hog_put_image`` does.

    VLFeat normalises the gradient, scores it against the O unit vectors at k*pi/O and keeps the best
    absolute score (the first one on ties), adding O when that score is negative. Single-precision arithmetic
    is kept step by step so that near-ties fall the same way as in the C code.
    """
    angles = np.arange(num_orientations) * math.pi / num_orientations
    ox = torch.tensor(np.cos(angles), dtype=gx.dtype, device=gx.device)
    oy = torch.tensor(np.sin(angles), dtype=gx.dtype, device=gx.device)
    denom = torch.clamp(grad, min=1e-10)
    ux = (gx / denom).unsqueeze(-1)
    uy = (gy / denom).unsqueeze(-1)
    scores = ux * ox + uy * oy  # (..., O), each product and the sum rounded as in C
    best = torch.argmax(scores.abs(), dim=-1)
    negative = torch.gather(scores, -1, best.unsqueeze(-1)).squeeze(-1) < 0
    return best + negative.long() * num_orientations


def orientation_bins(gx: torch.Tensor, gy: torch.Tensor, grad: torch.Tensor, num_orientations: int):
    """Directed orientation bin of each gradient, equal to :func:`_exact_orientation_bins` but faster.

    The nearest of the 2*O directed orientations follows from the gradient angle; only gradients within
    1e-3 of a bin boundary (where rounding decides, e.g. exactly vertical ones for O = 9) are scored
    exactly as VLFeat does.
    """
    period = 2 * num_orientations
    position = torch.atan2(gy, gx) * (num_orientations / math.pi)  # in [-O, O]
    bins = torch.remainder(torch.round(position), period).long()
    frac = position - torch.floor(position)
    near = (frac - 0.5).abs() < 1e-3
    if bool(near.any()):
        bins[near] = _exact_orientation_bins(gx[near], gy[near], grad[near], num_orientations)
    return bins


def hog(images: torch.Tensor | np.ndarray, params: HogParams = HogParams()) -> torch.Tensor:
    """UoCTTI HOG of a batch of grayscale images (N, H, W) in [0, 1]: returns (N, Hc, Wc, 3*O+4).

    Matches VLFeat's ``vl_hog(im2single(gray))`` to float precision and is differentiable with respect to the
    pixels (autograd; gradients flow through magnitudes, the orientation assignment is piecewise constant).
    Float32 CPU batches that need no gradient run the compiled kernel; the rest runs :func:`hog_torch`.
    """
    x = check_gray_batch(images, "hog", params.min_size, params.min_size)
    needs_graph = x.requires_grad and torch.is_grad_enabled()
    if x.device.type == "cpu" and x.dtype == torch.float32 and not needs_graph and native.library() is not None:
        array = np.ascontiguousarray(x.detach().numpy())  # the compiled kernel: same numbers, no graph
        return torch.from_numpy(native.hog_uoctti(array, params.cell_size, params.num_orientations))
    return hog_torch(x, params)


def hog_torch(x: torch.Tensor, params: HogParams = HogParams()) -> torch.Tensor:
    """:func:`hog` in torch ops on a checked batch: any device and dtype, differentiable."""
    return torch.cat([_hog(x[part], params) for part in chunks(*x.shape)])


def _hog(x: torch.Tensor, params: HogParams) -> torch.Tensor:
    """HOG of a checked batch small enough for its intermediates to stay in cache."""
    _, h, w = x.shape
    o = params.num_orientations
    ch, cw = params.cells(h), params.cells(w)

    gx = x[:, 1:-1, 2:] - x[:, 1:-1, :-2]
    gy = x[:, 2:, 1:-1] - x[:, :-2, 1:-1]
    grad2 = gx * gx + gy * gy
    nonzero = grad2 > 0
    # sqrt with a finite derivative where the gradient vanishes (VLFeat gives those pixels no vote)
    grad = torch.where(nonzero, torch.sqrt(torch.where(nonzero, grad2, torch.ones_like(grad2))), 0.0)
    with torch.no_grad():
        bins = orientation_bins(gx, gy, grad, o)

    # vote interior pixels; the border rows and columns carry no gradient
    magnitude = nn.functional.pad(grad, (1, 1, 1, 1))
    bins = nn.functional.pad(bins, (1, 1, 1, 1))
    hist = cell_histogram(
        magnitude, bins, num_bins=2 * o, cell=params.cell_size, cells_h=ch, cells_w=cw
    )  # (N, ch, cw, 2*O)

    undirected = hist[..., :o] + hist[..., o:]
    energy = (undirected * undirected).sum(-1)  # squared norm of each cell's undirected histogram
    padded = nn.functional.pad(energy.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    blocks = padded[:, :-1, :-1] + padded[:, :-1, 1:] + padded[:, 1:, :-1] + padded[:, 1:, 1:]
    factors = torch.rsqrt(blocks + BLOCK_EPSILON)  # (N, ch+1, cw+1): one factor per 2x2 block
    # the four blocks around each cell: upper-left, upper-right, lower-left, lower-right
    f = torch.stack(
        [factors[:, :-1, :-1], factors[:, :-1, 1:], factors[:, 1:, :-1], factors[:, 1:, 1:]], dim=-1
    ).unsqueeze(-2)  # (N, ch, cw, 1, 4)

    directed = torch.clamp(hist.unsqueeze(-1) * f, max=CLIP).sum(-1) * 0.5
    clipped_undirected = torch.clamp(undirected.unsqueeze(-1) * f, max=CLIP)  # (N, ch, cw, O, 4)
    undirected_out = clipped_undirected.sum(-1) * 0.5
    texture = clipped_undirected.sum(-2) * TEXTURE_SCALE
    return torch.cat([directed, undirected_out, texture], dim=-1)


class HOG(nn.Module):
    """Module form of :func:`hog` holding its parameters."""

    def __init__(self, params: HogParams = HogParams()) -> None:
        super().__init__()
        self.params = params

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return hog(images, self.params)

    def extra_repr(self) -> str:
        return f"cell_size={self.params.cell_size}, num_orientations={self.params.num_orientations}"


def render_glyphs(features: torch.Tensor | np.ndarray, glyph_size: int = 21) -> np.ndarray:
    """Picture of one HOG array (Hc, Wc, 3*O+4) as oriented bars, as ``vl_hog('render', ...)`` draws it.

    Each cell shows a bar perpendicular to each gradient orientation (i.e. along the edge), weighted by the
    sum of its directed and undirected channels; returns a float image (Hc*g, Wc*g) scaled to [0, 1].
    """
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float32)
    o = (f.shape[-1] - 4) // 3
    weights = f[..., :o] + f[..., o : 2 * o] + f[..., 2 * o : 3 * o]  # (Hc, Wc, O)
    glyphs = np.zeros((o, glyph_size, glyph_size), np.float32)
    centre = (glyph_size - 1) / 2
    t = np.linspace(-centre, centre, 4 * glyph_size)
    for k in range(o):
        angle = k * math.pi / o + math.pi / 2
        xs = np.round(centre + t * math.cos(angle)).astype(int)
        ys = np.round(centre + t * math.sin(angle)).astype(int)
        glyphs[k, ys, xs] = 1.0
    cells = np.einsum("hwk,kyx->hwyx", weights, glyphs)
    cells = np.clip(cells, weights.min(-1)[..., None, None], weights.max(-1)[..., None, None])
    image = cells.transpose(0, 2, 1, 3).reshape(f.shape[0] * glyph_size, f.shape[1] * glyph_size)
    return image / max(float(image.max()), 1e-12)
