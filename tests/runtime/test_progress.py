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


def test_a_rollback_rewinds_the_count_and_keeps_the_rate(monkeypatch):
    """Work redone after a rollback is counted once in done/total (it overran the total, with 23:59:59 left)."""
    clock = iter([0.0, 4.0, 10.0, 10.0])
    monkeypatch.setattr("preimage.runtime.progress.time.perf_counter", lambda: next(clock))
    stream = io.StringIO()
    bar = Progress(100, "samples", stream, every=1e9)
    bar.update(64)  # a step that then rolls back to step 0
    bar.rewind(0)
    bar.update(100)  # every step again, in the 10 s since the start
    line = stream.getvalue().strip().splitlines()[-1]
    assert " 100/100 samples " in line and "left 00:00:00" in line, line
    assert re.search(r" 16\.4 samples/s ", line), line  # 164 samples computed in 10 s
