"""ctypes bindings to VLFeat's C library (Debian's ``libvlfeat1``): the reference HOG and LBP.

Used as the oracle in tests and the peer in benchmarks; preimage's own extractors never call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

import numpy as np

_VL_HOG_UOCTTI = 1
_VL_LBP_UNIFORM = 0
_size = ctypes.c_uint64
_ptr = ctypes.c_void_p
_floats = ctypes.POINTER(ctypes.c_float)


class VlfeatUnavailable(RuntimeError):
    """libvl.so.1 is not installed (on Debian/Ubuntu: apt-get install libvlfeat-dev)."""


@cache
def library() -> ctypes.CDLL:
    """Load libvl.so.1 and declare the HOG and LBP entry points."""
    name = ctypes.util.find_library("vl") or "libvl.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as err:
        raise VlfeatUnavailable(f"VLFeat's C library is missing ({err}); apt-get install libvlfeat-dev") from err
    lib.vl_hog_new.restype = _ptr
    lib.vl_hog_new.argtypes = [ctypes.c_int, _size, ctypes.c_int]
    lib.vl_hog_put_image.argtypes = [_ptr, _floats, _size, _size, _size, _size]
    lib.vl_hog_extract.argtypes = [_ptr, _floats]
    for fn in (lib.vl_hog_get_width, lib.vl_hog_get_height, lib.vl_hog_get_dimension):
        fn.restype = _size
        fn.argtypes = [_ptr]
    lib.vl_hog_delete.argtypes = [_ptr]
    lib.vl_lbp_new.restype = _ptr
    lib.vl_lbp_new.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.vl_lbp_get_dimension.restype = _size
    lib.vl_lbp_get_dimension.argtypes = [_ptr]
    lib.vl_lbp_process.argtypes = [_ptr, _floats, _floats, _size, _size, _size]
    lib.vl_lbp_delete.argtypes = [_ptr]
    return lib


def _as_c_image(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected one grayscale image (H, W), got shape {image.shape}")
    return image


def vl_hog(image: np.ndarray, cell_size: int = 8, num_orientations: int = 9) -> np.ndarray:
    """VLFeat UoCTTI HOG of one row-major grayscale image: returns (Hc, Wc, 3*O+4) float32."""
    lib = library()
    image = _as_c_image(image)
    h, w = image.shape
    handle = lib.vl_hog_new(_VL_HOG_UOCTTI, num_orientations, 0)
    try:
        lib.vl_hog_put_image(handle, image.ctypes.data_as(_floats), w, h, 1, cell_size)
        hc, wc, dim = (
            lib.vl_hog_get_height(handle),
            lib.vl_hog_get_width(handle),
            lib.vl_hog_get_dimension(handle),
        )
        out = np.zeros((dim, hc, wc), dtype=np.float32)
        lib.vl_hog_extract(handle, out.ctypes.data_as(_floats))
    finally:
        lib.vl_hog_delete(handle)
    return out.transpose(1, 2, 0)


def vl_lbp(image: np.ndarray, cell_size: int = 16) -> np.ndarray:
    """VLFeat uniform LBP of one row-major grayscale image: returns (H // cell, W // cell, 58) float32."""
    lib = library()
    image = _as_c_image(image)
    h, w = image.shape
    handle = lib.vl_lbp_new(_VL_LBP_UNIFORM, 0)
    try:
        dim = lib.vl_lbp_get_dimension(handle)
        out = np.zeros((dim, h // cell_size, w // cell_size), dtype=np.float32)
        lib.vl_lbp_process(handle, out.ctypes.data_as(_floats), image.ctypes.data_as(_floats), w, h, cell_size)
    finally:
        lib.vl_lbp_delete(handle)
    return out.transpose(1, 2, 0)
