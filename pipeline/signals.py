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
from collections.abc import Iterator
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    """Within the block, the first of ``signals`` raises :class:`Interrupted` at once, or with ``graceful`` only
    sets the yielded :class:`StopRequest` (the caller stops at its next safe point); a second one raises. Outside
    the main thread, where Python cannot install handlers, nothing changes."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum, frame) -> None:
        if graceful and request.signum is None:
            request.signum = signum
            return
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
