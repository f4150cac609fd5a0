"""mkdocs hook: a copy of the package's Python files laid out as it installs (preimage/train, preimage/pipeline, ...)
in .docs-layout/, where mkdocstrings reads the API's docstrings; the folders in place are mapped by setuptools
(pyproject's package-dir), which it cannot follow."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"": "preimage", "pipeline": "pipeline", "train": "train", "analysis": "analysis", "cache": "cache"}


def lay_out() -> None:
    layout = ROOT / ".docs-layout"
    shutil.rmtree(layout, ignore_errors=True)
    for sub, folder in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                copy = layout / "preimage" / sub / path.relative_to(ROOT / folder)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)


# on import, as mkdocs reads its configuration: before mkdocstrings resolves its paths (a path that is not there
# then is left out, and the checkout's own preimage/, without train/, is found instead)
lay_out()
