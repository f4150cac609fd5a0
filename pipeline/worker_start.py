"""What each worker process of the local cluster runs as it starts (its ``preload``): the extraction code imported
now rather than by the first task, and the worker's own logs quieted unless ``preimage -v`` asked for them (a
task's failure reaches the user through the client as one line; a worker whose scheduler is shutting down, at a
signal or at the end, logs a heartbeat traceback that means nothing)."""

from __future__ import annotations

import logging
import os

from . import extract  # noqa: F401  (torch and the extractors, imported while the cluster starts)

LEVEL = os.environ.get("PREIMAGE_WORKER_LOGS")
if LEVEL:
    logging.getLogger("distributed").setLevel(LEVEL)
