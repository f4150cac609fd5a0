"""The malloc settings: freed batches are reused instead of being faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import resource, sys
import numpy as np
from preimage.runtime.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a training step's worth of 100 MB tensors, allocated, written and freed again
    batch = np.empty(100 << 20, np.uint8)
    batch[:] = 1
    del batch
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_batches_are_reused_not_faulted_in_again():
    default, kept = _page_faults("default"), _page_faults("keep")
    assert kept * 5 < default, (kept, default)
