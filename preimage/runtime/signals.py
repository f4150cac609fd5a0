"""Ending long commands cleanly when the user or a scheduler stops them (SIGTERM, SIGINT).

Python's default for SIGTERM ends the process on the spot: no cleanup runs, the store's lock file stays and the
user hears nothing. Inside :func:`on_signals` a signal becomes an :class:`Interrupted` exception instead, so every
context unwinds (the dask cluster closes, the lock is released), or, for training, a request that the loop honours
at the next step boundary after writing a checkpoint. A second signal always stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DUPLICATE_SECONDS = 3.0  # a repeat of the same signal this soon is one request reaching the process twice


class Interrupted(Exception):
    """A command stopped by a signal; ``exit_code`` is the shell's convention, 128 + the signal number."""

    def __init__(self, signum: int, detail: str = "") -> None:
        self.signum, self.detail = signum, detail
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}" + (f": {detail}" if detail else ""))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class StopRequest:
    """Set by a signal when stopping waits for a safe point (``graceful``): the signal number, or None."""

    signum: int | None = None


@contextlib.contextmanager
def on_signals(graceful: bool = False, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """Within the block, the first of ``signals`` raises :class:`Interrupted` at once, or with ``graceful``
    only sets the yielded :class:`StopRequest` (the caller stops at its next safe point); a second one raises,
    unless it is the same signal again within :data:`DUPLICATE_SECONDS` (a launcher such as torchrun passes on
    what the scheduler sent every process already). Outside the main thread, where Python cannot install
    handlers, nothing changes."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    first: dict[int, float] = {}

    def handle(signum, frame) -> None:
        now = time.monotonic()
        if graceful and request.signum is None:
            request.signum, first[signum] = signum, now
            return
        if graceful and now - first.get(signum, -DUPLICATE_SECONDS) < DUPLICATE_SECONDS:
            return  # the same signal again at once: delivered twice (by SLURM and by torchrun), not a second request
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
