"""Command-line spellings every ``preimage`` command shares: one name per idea, old names kept as hidden aliases,
and one default output folder per command (``out/<command>``)."""

from __future__ import annotations

import functools
import math
import os
import re
from pathlib import Path

import click


def looks_like_a_url(text: str) -> bool:
    """``s3:/bucket``, ``gs:/x``: a URL's scheme with one slash, which would otherwise be a local folder ``s3:``."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/(?!/)", text) is not None


class StoreLocation(click.ParamType):
    """A store on the command line: a folder (which must exist unless the command creates it). A URL is passed on
    as it is, for the store's backend (:mod:`preimage.cache.backend`) to serve or refuse."""

    name = "store"

    def __init__(self, exists: bool = True) -> None:
        self.exists = exists

    def convert(self, value, param, ctx) -> Path | str:
        text = str(value)
        if "://" in text and not text.startswith("file://"):
            return text
        local = text.removeprefix("file://")
        if not local.strip():  # an unset shell variable: never the current folder
            self.fail("an empty path; name the store's folder", param, ctx)
        if looks_like_a_url(text):
            self.fail(f"{text[:80]!r} looks like a URL with one slash too few (s3://bucket/store.zarr)", param, ctx)
        path = Path(local)
        if self.exists and not path.exists():
            self.fail(f"Path {text!r} does not exist.", param, ctx)
        if path.exists() and not path.is_dir():
            self.fail(f"{text!r} is a file, not a store (a store is a folder).", param, ctx)
        return path


class WeightsArgument(click.ParamType):
    """``--weights``: a weights file, or ``random`` for a randomly initialised model (recorded in the store)."""

    name = "file|random"

    def convert(self, value, param, ctx) -> str:
        if value == "random" or Path(value).is_file():
            return str(value)
        self.fail(f"{value!r}: no such weights file (or write 'random' for random weights)", param, ctx)


class OutFolder(click.Path):
    """A folder a command writes into (made when missing). Never empty (an unset shell variable would write into the
    current folder: ``.`` says so) and never a URL (outputs other than stores are local files)."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value, param, ctx) -> Path:
        text = str(value)
        if not text.strip():
            self.fail("an empty path; name the folder ('.' for the current one)", param, ctx)
        if looks_like_a_url(text) or "://" in text:
            self.fail(f"{text[:80]!r} looks like a URL; this output is written to a local folder", param, ctx)
        return super().convert(value, param, ctx)


OUT_FOLDER = OutFolder()
MAX_SIDE = 4096  # the largest image side a command computes features at: far above any real run, far below what
# would exhaust memory (a 100000 px side asked cv2 for 30 GB)
SIDE = click.IntRange(16, MAX_SIDE)  # --size: the shorter side of any image preimage reads is at least 16 (decode)

MAX_COUNT = 10**9  # the most of anything a count option takes (rows, steps, epochs): a typo, not a plan, above it
SEED = click.IntRange(0, 2**32 - 1)  # what numpy and torch generators both take


def count(low: int = 1, high: int = MAX_COUNT) -> click.IntRange:
    """A whole number of things in ``[low, high]``."""
    return click.IntRange(low, high)


class Real(click.FloatRange):
    """A finite number in a range (click's FloatRange lets ``nan`` through: every comparison with it is false)."""

    def convert(self, value, param, ctx) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def real(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Real:
    """A finite number in ``[low, high]``, either end left out as asked."""
    return Real(low, high, min_open=low_open, max_open=high_open)


FRACTION = real(0, 1)
WEIGHTS = WeightsArgument()
WEIGHTS_HELP = "Model weights: a file (safetensors or a state_dict), or 'random' (a randomly initialised model)."
STORE = StoreLocation()  # a store a command reads or adds to
NEW_STORE = StoreLocation(exists=False)  # a store ``extract`` creates or adds to


def default_out(command: str) -> Path:
    """Where a command writes when ``--out`` is not given: ``out/<command>`` (``out/analyze`` for every study)."""
    return Path("out") / command


def hidden_alias(old: str, param: str, **option):
    """Accept the old spelling ``old`` of the option stored in ``param`` without showing it in ``--help``; a value
    given under the old name is used as if given under the new one (appended, for a repeatable option)."""
    legacy = f"legacy_{param}"

    def decorate(function):
        @functools.wraps(function)
        def command(*args, **kwargs):
            value = kwargs.pop(legacy)
            if value not in (None, ()):
                current = kwargs.get(param)
                kwargs[param] = (*(current or ()), *value) if option.get("multiple") else value
            return function(*args, **kwargs)

        return click.option(old, legacy, hidden=True, default=None, **option)(command)

    return decorate


def batch_job_options(command):
    """``--cluster slurm|pbs|sge|lsf`` and the batch jobs' resources, for commands whose dask work scales with the
    store; the command receives them as one ``batch`` argument (a ``BatchJobs``, or None without ``--cluster``)."""

    @functools.wraps(command)
    def with_batch(*args, **kwargs):
        names = (
            "cluster",
            "jobs",
            "cores",
            "memory",
            "walltime",
            "queue",
            "account",
            "job_extra",
            "interface",
            "worker_timeout",
        )
        values = {name: kwargs.pop(name) for name in names}
        batch = None
        if values["cluster"]:
            from ..pipeline.batch_cluster import BatchJobs

            kind = values.pop("cluster")
            batch = BatchJobs(kind, **{**values, "job_extra": tuple(values["job_extra"])})
        return command(*args, batch=batch, **kwargs)

    options = [
        click.option(
            "--cluster",
            type=click.Choice(["slurm", "pbs", "sge", "lsf"]),
            default=None,
            help="Run the dask workers as batch jobs of this scheduler (dask-jobqueue); the store must be "
            "on a filesystem every job sees.",
        ),
        click.option("--jobs", type=count(1, 10_000), default=2, show_default=True, help="With --cluster: jobs."),
        click.option(
            "--cores",
            type=count(1, 1024),
            default=1,
            show_default=True,
            help="With --cluster: cores per job (torch threads of its worker).",
        ),
        click.option("--memory", default="4GB", show_default=True, help="With --cluster: memory per job."),
        click.option("--walltime", default="01:00:00", show_default=True, help="With --cluster: time limit per job."),
        click.option("--queue", default=None, help="With --cluster: the queue or partition."),
        click.option("--account", default=None, help="With --cluster: the account charged."),
        click.option(
            "--job-extra", multiple=True, help="With --cluster: another scheduler directive, e.g. --gres=gpu:1."
        ),
        click.option(
            "--interface",
            default=None,
            help="With --cluster: the network interface the workers reach "
            "the scheduler on (e.g. ib0; lo on a single node).",
        ),
        click.option(
            "--worker-timeout",
            type=real(0, 7 * 86400, low_open=True),
            default=600.0,
            show_default=True,
            help="With --cluster: seconds to wait for the first worker before giving up.",
        ),
    ]
    for option in reversed(options):
        with_batch = option(with_batch)
    return with_batch


MODEL_HELP = (
    "A folder of a model from a source (FOLDER or hf:FOLDER), repeatable: a decoder trained on that model's "
    "features finds it here by its weights' hash, wherever it was trained (the folder moved, a shipped "
    "decoder)."
)


def model_option(command):
    """``--model FOLDER`` (repeatable), as ``models``: where the models of the decoders used are now."""
    return click.option("--model", "models", multiple=True, help=MODEL_HELP)(command)


ZOO_ENV = "PREIMAGE_ZOO"  # as train/models/zoo.py reads it (the commands import the library only when they run)


def _use_zoos(ctx: click.Context, param: click.Parameter, folders: tuple[str, ...]) -> None:
    """``--zoo`` folders looked up first, as PREIMAGE_ZOO's are, for this command only (restored when it ends)."""
    if not folders:
        return
    before = os.environ.get(ZOO_ENV)
    os.environ[ZOO_ENV] = os.pathsep.join([*folders, *filter(None, (before or "").split(os.pathsep))])
    ctx.call_on_close(lambda: os.environ.pop(ZOO_ENV) if before is None else os.environ.update({ZOO_ENV: before}))


def zoo_option(command):
    """``--zoo DIR`` (repeatable): a folder of built decoders (``preimage zoo`` lists them; PREIMAGE_ZOO names
    several), looked up before those that ship."""
    return click.option(
        "--zoo",
        multiple=True,
        type=click.Path(exists=True, file_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_use_zoos,
        help="A folder of built decoders, looked up before those that ship (repeatable; the environment variable "
        "PREIMAGE_ZOO names several, separated as PATH is).",
    )(command)


def optimize_options(command):
    """The optimisation settings shared by ``invert --method optimize`` and ``analyze compare``."""
    options = [
        click.option(
            "--steps", type=count(1, 100_000), default=None, help="Gradient steps [default: 400 CNN, 800 HOG]."
        ),
        click.option(
            "--lr",
            type=real(0, 10, low_open=True),
            default=None,
            help="Initial rate of the step decay [default: 0.004].",
        ),
        click.option(
            "--lambda-tv", type=real(0, 1e12), default=None, help="TV weight [default: by depth, the paper's]."
        ),
        click.option("--restarts", type=count(1, 1000), default=1, show_default=True, help="Pre-images per image."),
        click.option("--seed", type=SEED, default=0, show_default=True),
        click.option(
            "--window", type=count(1, MAX_SIDE), default=None, help="Keep only the central WxW cells of the feature."
        ),
        click.option("--channels", default=None, help="Keep only channels START:STOP of the feature."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def parse_channels(channels: str | None) -> tuple[int, int] | None:
    """``--channels START:STOP`` as a pair (None when not given)."""
    if not channels:
        return None
    try:
        start, stop = (int(v) for v in channels.split(":"))
    except ValueError:
        raise click.BadParameter(f"write START:STOP, e.g. 0:32; got {channels!r}", param_hint="--channels") from None
    return start, stop


def optimize_config(steps, lr, lambda_tv, restarts, seed, window, channels):
    """An :class:`OptimizeConfig` from the command-line options (errors as click errors)."""
    from ..train.inversion.optimize import OptimizeConfig, with_defaults

    parsed = parse_channels(channels)
    if restarts < 1:
        raise click.BadParameter("needs at least 1", param_hint="--restarts")
    return with_defaults(
        OptimizeConfig(),
        steps=steps,
        lr=lr,
        lambda_tv=lambda_tv,
        restarts=restarts,
        seed=seed,
        window=window,
        channels=parsed,
    )


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict:
    """``KEY=VALUE`` pairs of a repeatable option as a dict: integers, numbers and true/false as such."""
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        options[key] = _value(value)
    return options


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
