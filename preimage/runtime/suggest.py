"""Did-you-mean for a mistyped name: the one wording every error that names the nearest choices uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``did you mean a, b?`` for the (at most three) choices close to ``name``; empty when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"did you mean {', '.join(close)}?" if close else ""
