"""``python -m preimage``: the ``preimage`` command (what torchrun starts: ``torchrun ... -m preimage train``)."""

from .cli import main

main(prog_name="preimage")
