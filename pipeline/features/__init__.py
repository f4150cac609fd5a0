"""Every representation preimage can invert, behind one resolver (:mod:`.representation`).

A representation is named by a spec: ``hog``, ``lbp``, ``sift`` or ``MODEL:LAYER`` (``alexnet:conv3``).
:func:`get_representation` returns a :class:`Representation` that knows what it is (grid, map, tokens, vector),
its input (gray or RGB), whether it is differentiable, its parameters, its output shape for an image size, and
the module that computes it.
"""

from __future__ import annotations

from .hog import HOG, HogParams, hog
from .lbp import LBP, LbpParams, lbp
from .representation import (
    HANDCRAFTED,
    Representation,
    expand_specs,
    fuse_rows,
    get_representation,
    list_representations,
    split_spec,
)
from .sift import SiftParams, SparseSIFT, sift

__all__ = [
    "HANDCRAFTED",
    "HOG",
    "LBP",
    "HogParams",
    "LbpParams",
    "Representation",
    "SiftParams",
    "SparseSIFT",
    "expand_specs",
    "fuse_rows",
    "get_representation",
    "hog",
    "lbp",
    "list_representations",
    "sift",
    "split_spec",
]
