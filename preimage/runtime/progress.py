"""A progress line for long jobs: done/total, rate and time left, redrawn in place on a terminal, logged otherwise."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO


class Progress:
    """``update(n)`` as work completes; on a terminal the line is redrawn, elsewhere printed every ``every`` s."""

    def __init__(self, total: int, unit: str = "images", stream: TextIO | None = None, every: float = 10.0) -> None:
        self.total, self.unit = total, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.before = 0  # done by an earlier, resumed session: shown in the count, left out of the rate
        self.extra = ""  # appended to the line, e.g. the current loss
        self.start = self.last = time.perf_counter()
        self.every = every
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def resumed(self, n: int) -> None:
        """Count ``n`` units done before this session (a resumed run) without crediting them to its rate."""
        self.done += n
        self.before += n

    def rewind(self, n: int) -> None:
        """Back to ``n`` units done: a rollback redoes the work after its checkpoint. The rate still counts the
        work undone, which took its time."""
        self.before -= self.done - n
        self.done = n

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return (self.done - self.before) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        left = max(0, self.total - self.done) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left == left else "--:--:--"
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.unit}  "
            f"{rate:.1f} {self.unit}/s  left {eta}" + (f"  {self.extra}" if self.extra else "")
        )

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif now - self.last >= self.every or self.done >= self.total:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class StepProgress:
    """A callback ``(step, total, value)`` for iterative work (an optimisation) that draws a :class:`Progress`
    over its steps, showing the current value."""

    def __init__(self, label: str = "objective", stream: TextIO | None = None) -> None:
        self.label, self.stream = label, stream
        self.bar: Progress | None = None

    def __call__(self, step: int, total: int, value: float) -> None:
        if self.bar is None:
            self.bar = Progress(total, "steps", self.stream)
        self.bar.extra = f"{self.label} {value:.4g}"
        self.bar.update(step - self.bar.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StepTimer:
    """Seconds spent per named step, summed: ``with timer("decode"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
