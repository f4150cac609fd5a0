"""Command-line spellings every ``preimage`` command shares: one name per idea, old names kept as hidden aliases,
and one default output folder per command (``out/<command>``)."""

from __future__ import annotations

import functools
from pathlib import Path

import click

DASHBOARD_ADDRESS = "127.0.0.1:8787"  # the local cluster's dashboard: loopback, as the scheduler


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
