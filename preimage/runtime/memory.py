"""glibc malloc settings for processes that allocate the same large batches over and over.

By default glibc serves every allocation above a (dynamic) threshold of at most 32 MB with a fresh ``mmap`` and
gives freed memory back to the system at once, so each training step or extraction batch faults its tensors in
afresh and the kernel zeroes them: a quarter of an extraction worker's CPU time, and 15-35% of a SIFT training
step (35 MB input batches; docs/performance.md). With these settings freed memory up to 1 GB is kept and reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# environment form, read by glibc when a process starts (what spawned dask workers get)
MALLOC_SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(64 << 20),
}
_MALLOPT_PARAMETER = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}


def keep_freed_memory() -> bool:
    """Apply :data:`MALLOC_SETTINGS` to this running process with ``mallopt``; False where the C library is not
    glibc (nothing changes there). Processes forked afterwards (DataLoader workers) inherit them."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(_MALLOPT_PARAMETER[key], int(value)) == 1 for key, value in MALLOC_SETTINGS.items())
