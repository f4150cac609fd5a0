"""preimage's optional dependencies, each with the extra that installs it (pyproject.toml's
``[project.optional-dependencies]``): the one place where a missing one becomes one line naming what to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# extra -> the modules it provides, as imported (a test checks these against pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "explore": ("starlette", "uvicorn", "pydantic"),
    "models": ("transformers",),
    "timm": ("timm",),
    "cluster": ("dask_jobqueue",),
    "s3": ("s3fs",),
    "convert": ("onnx", "onnxruntime"),  # preimage make-model
}


class MissingExtra(ImportError):
    """An optional dependency that is not installed; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    return f"pip install 'preimage[{extra}]'"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be found here (nothing is imported)."""
    return [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]


def require(extra: str, needed_for: str) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` is installed; ``needed_for`` says what
    needs them (``preimage explore``)."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(f"{needed_for} needs {', '.join(absent)}: {install_hint(extra)}")


def import_extra(module: str, extra: str, needed_for: str) -> ModuleType:
    """``module`` imported, or :class:`MissingExtra` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there and one of its own imports failed: that error says more
        raise MissingExtra(f"{needed_for} needs {module}: {install_hint(extra)}") from None
