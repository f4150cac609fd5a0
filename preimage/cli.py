"""The ``preimage`` command: the root group gathers the subcommands that live with their packages.

It sits above every package, so it may import them all; each subcommand's module imports only click at load
time (torch, dask and the backbones load when a command runs), so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import logging
import warnings

import click

from .analysis.cli import analyze
from .cache.cli import export, info, verify
from .demo import demo
from .pipeline.extract_cli import extract
from .pipeline.features_cli import features
from .pipeline.memory import keep_freed_memory
from .pipeline.tour import tour
from .train.cli import train
from .train.invert_cli import invert


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings meant for the user (a slow precision, a fallback) as one line, not a source location."""
    return f"warning: {message}\n"


@click.group()
@click.version_option(package_name="preimage")
@click.option("-v", "--verbose", count=True, help="Log more (-v: info, -vv: debug).")
def main(verbose: int) -> None:
    """preimage: reconstruct images from their features (HOG, LBP, SIFT, CNN layers)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        warnings.formatwarning = _one_line_warning
    keep_freed_memory()  # training steps and batches allocate the same large tensors again and again


for _command in (features, extract, info, verify, export, train, invert, analyze, demo, tour):
    main.add_command(_command)


if __name__ == "__main__":
    main()
