"""The ``preimage`` command: the root group gathers the subcommands of :mod:`preimage.commands`.

It sits above every package, so it may import them all; each subcommand's module imports only click at load
time (torch, dask and the backbones load when a command runs), so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import warnings

import click

from .commands.analyze import analyze
from .commands.build import build
from .commands.demo import demo
from .commands.explore import explore
from .commands.extract import extract
from .commands.features import features
from .commands.invert import invert
from .commands.make_model import make_model
from .commands.sbatch import sbatch
from .commands.store import export, info, verify
from .commands.tour import tour
from .commands.train import hoggles, train
from .commands.zoo import zoo
from .runtime.memory import keep_freed_memory
from .runtime.signals import Interrupted


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings meant for the user (a slow precision, a fallback) as one line, not a source location."""
    return f"warning: {message}\n"


def expected_failure(err: BaseException) -> str | None:
    """The one-line message for a failure that bad input or a bad environment causes (a missing or foreign file,
    a damaged store or checkpoint, a wrong option value, a busy store), None for anything else (a bug: its
    traceback stays)."""
    from .cache.backend import StoreLocked
    from .pipeline.backbones.weights import WeightsUnavailable
    from .pipeline.batch_cluster import ClusterError
    from .pipeline.decode import ImageReadError
    from .runtime.extras import MissingExtra

    name = type(err).__name__
    if type(err).__module__.startswith(("botocore", "aiobotocore", "google.auth", "azure")):
        return (
            f"object storage: {err}; check the endpoint (AWS_ENDPOINT_URL_S3, or preimage --storage-option "
            "client_kwargs.endpoint_url=URL) and the credentials (AWS_ACCESS_KEY_ID, ~/.aws)"
        )
    if name == "KilledWorker":
        return (
            f"a dask worker died repeatedly running {err.args[0] if err.args else 'a task'} (out of memory?); "
            "what was complete is kept: run the same command again to resume"
        )
    expected = StoreLocked | ClusterError | ImageReadError | WeightsUnavailable | MissingExtra
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        return os_error(err)
    if isinstance(err, expected | ValueError | KeyError | OSError):
        text = str(err).strip("'\"") if isinstance(err, KeyError) else str(err)
        if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
            text = f"{err.filename}: {text}"
        return text or name
    return None


LONG_NAME = 80  # a file name longer than this is shortened in a message (a 300-character name once filled a screen)
HINTS = {  # what to do about the system's errors a user meets most
    errno.EADDRINUSE: "another program listens there; choose another --port (0: a free one)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the file system takes names of at most 255 bytes; choose a shorter name",
}


def os_error(err: OSError) -> str:
    """A system error as people read it: the file (shortened when long), what went wrong in words, and what to do;
    not Python's ``[Errno 98]``."""
    where = str(err.filename) if err.filename else ""
    if len(where) > LONG_NAME:
        where = f"{where[: LONG_NAME // 2]}...{where[-LONG_NAME // 4 :]} ({len(where)} characters)"
    hint = HINTS.get(err.errno)
    text = f"{where}: {err.strerror}" if where else err.strerror
    return f"{text}; {hint}" if hint else text


class PreimageGroup(click.Group):
    """The root group: every expected failure ends as one ``Error:`` line and exit code 1 (``-v`` shows the
    traceback instead); anything unexpected keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.UsageError as err:  # a wrong option or argument: one line too, naming the help
            raise click.ClickException(one_line_usage(err)) from None
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Interrupted as err:
            click.echo(str(err), err=True)
            ctx.exit(err.exit_code)
        except BrokenPipeError as err:
            if not _stdout_closed():
                raise click.ClickException(str(err)) from None
            ctx.exit(141)  # the reader left (preimage features | head): stop quietly, as a shell's tools do
        except Exception as err:
            message = expected_failure(err)
            if message is None or ctx.params.get("verbose"):
                raise
            raise click.ClickException(message) from None


def one_line_usage(err: click.exceptions.UsageError) -> str:
    """A usage error (an option's bad value, a missing argument) as the one line every other mistake is, with the
    command whose ``--help`` says more."""
    message = err.format_message().rstrip(".")
    command = err.ctx.command_path if err.ctx is not None else "preimage"
    return f"{message}; see {command} --help"


def _stdout_closed() -> bool:
    """Whether standard output's reader has gone; if so, later writes (the interpreter's last flush) go nowhere."""

    try:
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return True
    return False


@click.group(cls=PreimageGroup)
@click.version_option(package_name="preimage")
@click.option("-v", "--verbose", count=True, help="Log more (-v: info, -vv: debug).")
@click.option(
    "--storage-option",
    "storage",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of the filesystem of stores at URLs (s3://...), repeatable, e.g. "
    "client_kwargs.endpoint_url=http://minio:9000 or anon=true; credentials come from the usual places "
    "(AWS_* variables, ~/.aws). Workers and batch jobs started from here inherit it.",
)
def main(verbose: int, storage: tuple[str, ...]) -> None:
    """preimage: reconstruct images from their features (HOG, LBP, SIFT, CNN layers)."""
    if storage:
        _set_storage_options(storage)
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        warnings.formatwarning = _one_line_warning
    keep_freed_memory()  # training steps and batches allocate the same large tensors again and again


def _set_storage_options(pairs: tuple[str, ...]) -> None:
    """``--storage-option`` pairs into ``PREIMAGE_STORAGE_OPTIONS`` (JSON), where URL stores read them."""

    from .cache.backend import STORAGE_OPTIONS
    from .commands.options import parse_pairs

    options = json.loads(os.environ.get(STORAGE_OPTIONS) or "{}")
    os.environ[STORAGE_OPTIONS] = json.dumps({**options, **parse_pairs(pairs, "--storage-option")})


for _command in (
    features,
    extract,
    info,
    verify,
    export,
    train,
    hoggles,
    build,
    invert,
    zoo,
    make_model,
    analyze,
    explore,
    sbatch,
    demo,
    tour,
):
    main.add_command(_command)


if __name__ == "__main__":
    main()
