"""Every command's numeric and path options fuzzed (Hypothesis): a value out of what an option declares (zero,
negative, huge, NaN, empty, a file where a folder is wanted, ...) ends in one ``Error:`` line naming the option,
exit 1, no traceback, and nothing written. Numeric options each declare a finite range, so that no huge value gets
past the command line (the first test holds that)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preimage.cli import main
from preimage.commands.options import Real


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += commands(command, (*prefix, name))
        else:
            found.append(((*prefix, name), command))
    return found


NUMERIC = [
    (path, option)
    for path, command in commands()
    for option in command.params
    if isinstance(option, click.Option) and isinstance(option.type, (click.types._NumberParamTypeBase))
]


def test_every_numeric_option_declares_a_finite_range():
    """A plain int or float option would let 10**30 or nan through to the code behind it."""
    assert len(NUMERIC) > 60
    loose = [
        f"{' '.join(path)} {option.opts[0]}"
        for path, option in NUMERIC
        if not isinstance(option.type, click.types._NumberRangeBase)
        or option.type.min is None
        or option.type.max is None
        or (isinstance(option.type, click.FloatRange) and not isinstance(option.type, Real))
    ]
    assert loose == []


def outside(kind: click.types._NumberRangeBase) -> st.SearchStrategy[str]:
    """Values an option of this range refuses, as typed on a command line."""
    below = kind.min - 1 if isinstance(kind, click.IntRange) else kind.min - abs(kind.min) * 0.5 - 1
    above = kind.max + 1 if isinstance(kind, click.IntRange) else kind.max * 2 + 1
    numbers = st.one_of(
        st.integers(max_value=math.floor(below)),
        st.integers(min_value=math.ceil(above)),
        st.sampled_from([str(below), str(above), "1e400", "-1e400", "10" * 40]),
    )
    if kind.min_open:
        numbers = numbers | st.just(str(kind.min))
    if kind.max_open:
        numbers = numbers | st.just(str(kind.max))
    words = st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "one", "0x10", "1,5", "--"])
    if isinstance(kind, click.IntRange):
        words = words | st.sampled_from(["1.5", "2e3"])
    return st.one_of(numbers.map(str), words)


@pytest.mark.parametrize(("path", "option"), NUMERIC, ids=[f"{' '.join(p)} {o.opts[0]}" for p, o in NUMERIC])
def test_a_numeric_option_out_of_its_range_is_one_error_line_and_writes_nothing(path, option, tmp_path):
    name = option.opts[0]

    @settings(max_examples=max(5, settings().max_examples // 6), suppress_health_check=list(HealthCheck))
    @given(outside(option.type))
    def refused(value: str):
        result = CliRunner().invoke(main, [*path, f"{name}={value}"])
        assert result.exit_code == 1, (value, result.output)
        assert ("Traceback" not in result.output and result.exception is None) or isinstance(
            result.exception, SystemExit
        ), (value, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and name in lines[0], (value, result.output)

    before = os.listdir(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        refused()
    finally:
        os.chdir(cwd)
    assert os.listdir(tmp_path) == before


# -- path options ------------------------------------------------------------------------------------------------


def hostile_path(root: Path, kind: str, name: str) -> str:
    """A path of a kind a user gets wrong: made under ``root``, where the kind needs something to exist."""
    root.mkdir(parents=True, exist_ok=True)
    a_file, a_folder = root / "a-file.txt", root / "a-folder"
    a_file.write_text("not what was asked for")
    a_folder.mkdir(exist_ok=True)
    return {
        "empty": "",
        "missing": str(root / "missing" / name),
        "file": str(a_file),
        "folder": str(a_folder),
        "under a file": str(a_file / name),
        "too long": str(root / ("x" * 300)),
        "url": "s3:/" + name,
    }[kind]


TINY_TRAINING = ["--target-size", "16", "--width", "16", "--batch-size", "8", "--epochs", "1", "--max-steps", "1"]
PATH_KINDS = st.sampled_from(["empty", "missing", "file", "folder", "under a file", "too long", "url"])


def path_cases(store: Path, run: Path, image: Path, scheduler: str = "") -> dict[str, list[str]]:
    """Each command line with one path option as ``{}``; every other argument valid (the ``run`` fixture; extract
    on the tests' in-process dask cluster, not one started per case)."""
    out = ["--out", "{out}"]
    extract = ["extract", "--scheduler", scheduler, "--feature", "hog", "--size", "32"]
    return {
        "extract --images": [*extract, "--images", "{}", "--store", "{out}.zarr"],
        "extract --store": [*extract, "--images", str(image.parent), "--store", "{}"],
        "train --store": ["train", "--store", "{}", "--feature", "hog", *out],
        "train --out": ["train", "--store", str(store), "--feature", "hog", "--out", "{}", *TINY_TRAINING],
        "invert IMAGE": ["invert", "{}", "--feature", "hog", *out],
        "invert --decoder": ["invert", str(image), "--decoder", "{}", *out],
        "invert --model": ["invert", str(image), "--feature", "hog", "--model", "{}", *out],
        "invert --weights": ["invert", str(image), "--feature", "alexnet:conv1", "--weights", "{}", *out],
        "analyze error --store": ["analyze", "error", "--store", "{}", "--decoder", str(run)],
        "analyze error --decoder": ["analyze", "error", "--store", str(store), "--decoder", "{}"],
        "analyze layers --out": ["analyze", "layers", "--store", str(store), "--decoder", str(run), "--out", "{}"],
        "info": ["info", "{}"],
        "verify": ["verify", "{}"],
        "export --h5": ["export", str(store), "--h5", "{}"],
        "explore --decoder": ["explore", "--decoder", "{}", "--port", "1"],
        "explore --store": ["explore", "--store", "{}", "--port", "1"],
    }


@pytest.fixture(scope="module")
def cases(run, dask_client):
    store, run_dir, images = run
    return path_cases(store, run_dir, sorted(images.iterdir())[0], dask_client.scheduler.address)


@pytest.mark.parametrize("case", list(path_cases(Path("s"), Path("r"), Path("i/1.png"))))
def test_a_path_option_of_the_wrong_kind_is_one_error_line_and_writes_nothing(cases, case, tmp_path_factory):
    template = cases[case]

    @settings(max_examples=max(7, settings().max_examples // 8), suppress_health_check=list(HealthCheck))
    @given(PATH_KINDS, st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=12))
    def tried(kind: str, name: str):
        root = tmp_path_factory.mktemp("fuzz")
        out = root / "out"
        value = hostile_path(root / "given", kind, name)
        args = [arg.replace("{}", value).replace("{out}", str(out)) for arg in template]
        before = sorted(p for p in root.rglob("*"))
        here = root / "cwd"  # the command runs here: nothing may land in the folder it was started from
        here.mkdir()
        cwd = os.getcwd()
        os.chdir(here)
        try:
            result = CliRunner().invoke(main, args)
        finally:
            os.chdir(cwd)
        assert os.listdir(here) == [], (kind, value, os.listdir(here))
        here.rmdir()
        if result.exit_code == 0:  # a path of this kind that the option takes: the command did its job
            return
        assert result.exit_code == 1 and "Traceback" not in result.output, (kind, value, result.output)
        assert isinstance(result.exception, SystemExit), (kind, value, repr(result.exception))
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1, (kind, value, result.output)
        assert sorted(p for p in root.rglob("*")) == before, (kind, value, "left behind")

    tried()
