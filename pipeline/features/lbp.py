"""Uniform local binary patterns, VLFeat's ``vl_lbp``: 58 quantised patterns per cell, batched in torch.

Each interior pixel compares its 8 neighbours with itself (bit set when the neighbour is strictly
brighter, scanned E, SE, S, SW, W, NW, N, NE), the 8-bit string is quantised to 58 patterns (56 with two
transitions, one for the two constant strings, one for the rest), patterns vote bilinearly into cells of
16 pixels, and each cell histogram becomes ``sqrt(h) / (sqrt(sum h) + 1e-10)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..checks import check_gray_batch
from . import native
from .cells import cell_histogram, chunks

NUM_PATTERNS = 58


def uniform_mapping() -> np.ndarray:
    """The 256 -> 58 table of ``_vl_lbp_init_uniform`` (untransposed, row-major images)."""
    mapping = np.full(256, 57, dtype=np.int64)  # strings with more than two transitions
    mapping[0x00] = mapping[0xFF] = 56
    for i in range(8):  # position of the first one
        for j in range(1, 8):  # length of the run of ones
            string = ((1 << j) - 1) << i
            string = (string | (string >> 8)) & 0xFF
            mapping[string] = i * 7 + (j - 1)
    return mapping


_MAPPING = torch.from_numpy(uniform_mapping()).int()
_MAPPING_BYTES = uniform_mapping().astype(np.uint8)
# (dy, dx) of the neighbour behind each bit, bit 0 first
_NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


@dataclass(frozen=True)
class LbpParams:
    """Parameters of VLFeat's uniform LBP."""

    cell_size: int = 16

    @property
    def channels(self) -> int:
        return NUM_PATTERNS

    @property
    def min_size(self) -> int:
        return self.cell_size

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (height // self.cell_size, width // self.cell_size, NUM_PATTERNS)

    def as_dict(self) -> dict:
        return asdict(self)


def lbp_codes(images: torch.Tensor) -> torch.Tensor:
    """Quantised pattern (0..57) of every interior pixel of (N, H, W): returns (N, H-2, W-2) int32."""
    h, w = images.shape[-2:]
    centre = images[:, 1:-1, 1:-1]
    string = torch.zeros(centre.shape, dtype=torch.uint8, device=images.device)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        brighter = images[:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] > centre
        string |= brighter.view(torch.uint8) << bit  # bytes all along: 8x less traffic than int64
    return _MAPPING.to(images.device)[string.int()]


def lbp(images: torch.Tensor | np.ndarray, params: LbpParams = LbpParams()) -> torch.Tensor:
    """Uniform LBP of grayscale images (N, H, W): returns (N, H // cell, W // cell, 58), as ``vl_lbp``.

    CPU batches run the compiled kernel (bit-identical to VLFeat, threads over the batch); other devices, or an
    install built without a compiler, run :func:`lbp_torch`.
    """
    x = check_gray_batch(images, "lbp", params.min_size, params.min_size)
    if x.dtype != torch.float32:
        x = x.float()  # comparisons in single precision, as the C code
    if x.device.type == "cpu" and native.library() is not None:
        array = np.ascontiguousarray(x.detach().numpy())
        return torch.from_numpy(native.lbp_uniform(array, params.cell_size, _MAPPING_BYTES))
    return lbp_torch(x, params)


def lbp_torch(x: torch.Tensor, params: LbpParams = LbpParams()) -> torch.Tensor:
    """:func:`lbp` in torch ops on a checked float32 batch, for any device."""
    return torch.cat([_lbp(x[part], params) for part in chunks(*x.shape)])


def _lbp(x: torch.Tensor, params: LbpParams) -> torch.Tensor:
    """LBP of a checked float32 batch small enough for its intermediates to stay in cache."""
    codes = nn.functional.pad(lbp_codes(x), (1, 1, 1, 1))  # border pixels have no pattern and vote nothing
    ch, cw = x.shape[1] // params.cell_size, x.shape[2] // params.cell_size
    hist = cell_histogram(None, codes, num_bins=NUM_PATTERNS, cell=params.cell_size, cells_h=ch, cells_w=cw)
    return torch.sqrt(hist) / (torch.sqrt(hist.sum(-1, keepdim=True)) + 1e-10)


class LBP(nn.Module):
    """Module form of :func:`lbp` holding its parameters."""

    def __init__(self, params: LbpParams = LbpParams()) -> None:
        super().__init__()
        self.params = params

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return lbp(images, self.params)

    def extra_repr(self) -> str:
        return f"cell_size={self.params.cell_size}"
