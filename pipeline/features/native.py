"""The compiled HOG and LBP kernels (``*_kernel.c``, built at install) loaded with ctypes, and a batch splitter.

They are plain C (no Python API): ctypes releases the GIL during each call, so Python threads spread a batch
over ``torch.get_num_threads()`` cores. An install without a C compiler has no kernels and runs the torch ops.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import torch

_FLOATS = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_BYTES = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_LONG = ctypes.c_long


@cache
def library() -> ctypes.CDLL | None:
    """The built kernel library next to this file, or None when the package was installed without a compiler."""
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_native{suffix}"
        if path.exists():
            lib = ctypes.CDLL(str(path))
            lib.preimage_lbp_uniform.argtypes = [_FLOATS, _LONG, _LONG, _LONG, _LONG, _BYTES, _FLOATS]
            lib.preimage_hog_uoctti.argtypes = [_FLOATS, _LONG, _LONG, _LONG, _LONG, _LONG, _FLOATS]
            for function in (lib.preimage_lbp_uniform, lib.preimage_hog_uoctti):
                function.restype = ctypes.c_int
            return lib
    return None


def _over_batch(kernel: Callable[..., int], images: np.ndarray, out: np.ndarray, *args) -> np.ndarray:
    """Run ``kernel(images, n, h, w, *args, out)`` on parts of the batch in threads; returns ``out``."""
    n, h, w = images.shape
    threads = max(1, min(torch.get_num_threads(), n))
    step = -(-n // threads)
    parts = [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def run(part: slice) -> int:
        return kernel(images[part], part.stop - part.start, h, w, *args, out[part])

    if len(parts) == 1:
        codes = [run(parts[0])]
    else:
        with ThreadPoolExecutor(len(parts)) as pool:
            codes = list(pool.map(run, parts))
    if any(codes):
        raise MemoryError("a feature kernel could not allocate its tables")
    return out


def lbp_uniform(images: np.ndarray, cell: int, mapping: np.ndarray) -> np.ndarray:
    """Uniform LBP (N, H // cell, W // cell, 58) of C-contiguous float32 images (N, H, W)."""
    n, h, w = images.shape
    out = np.empty((n, h // cell, w // cell, len(set(mapping.tolist()))), np.float32)
    return _over_batch(library().preimage_lbp_uniform, images, out, cell, mapping)


def hog_uoctti(images: np.ndarray, cell: int, orientations: int) -> np.ndarray:
    """UoCTTI HOG (N, Hc, Wc, 3 * orientations + 4) of C-contiguous float32 images (N, H, W)."""
    n, h, w = images.shape
    cells_h, cells_w = (h + cell // 2) // cell, (w + cell // 2) // cell
    out = np.empty((n, cells_h, cells_w, 3 * orientations + 4), np.float32)
    return _over_batch(library().preimage_hog_uoctti, images, out, cell, orientations)
