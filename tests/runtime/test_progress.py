"""The progress line: its count, and a rate that covers only the work done in this session."""

import io
import re

from preimage.runtime.progress import Progress


def test_resumed_work_counts_but_leaves_the_rate_alone(monkeypatch):
    clock = iter([0.0, 10.0, 10.0])
    monkeypatch.setattr("preimage.runtime.progress.time.perf_counter", lambda: next(clock))
    stream = io.StringIO()
    bar = Progress(1000, "steps", stream, every=0.0)
    bar.resumed(600)  # an earlier session's steps
    bar.update(20)  # 20 steps in this session's 10 s
    line = stream.getvalue().strip()
    assert line.startswith("[") and " 620/1000 steps " in line
    assert re.search(r" 2\.0 steps/s ", line), line  # 20 / 10 s, not 620 / 10 s
    assert "left 00:03:10" in line  # 380 steps at 2 per second
