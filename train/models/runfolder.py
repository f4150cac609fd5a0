"""A run folder's layout, in one place: what ``preimage train --out RUN`` writes and every reader of a run reads.

``run.json`` (settings, decoder config, the store's fingerprint, one entry per session), ``checkpoint.safetensors``
(the last good state), ``metrics.jsonl`` (one line per log step and per evaluation), ``preview-eNNN.png`` (held-out
images | reconstructions); a HOGgles run holds ``hoggles.safetensors`` instead of a checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CheckpointError, read_json

CHECKPOINT = "checkpoint.safetensors"  # a decoder run's weights (and optimiser state)
DICTIONARY = "hoggles.safetensors"  # a HOGgles run's paired dictionary
LEARNING_STATE = "learning.safetensors"  # the state a killed HOGgles learning resumes from
RUN_FILE = "run.json"  # a decoder run's settings
METRICS = "metrics.jsonl"
PREVIEW = "preview-e{epoch:03d}.png"  # epoch from 1


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder, named once."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str or any os.PathLike given

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def dictionary(self) -> Path:
        return self.path / DICTIONARY

    @property
    def learning_state(self) -> Path:
        return self.path / LEARNING_STATE

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    def preview(self, epoch: int) -> Path:
        """The preview written at the end of ``epoch`` (counted from 1)."""
        return self.path / PREVIEW.format(epoch=epoch)

    @property
    def is_hoggles(self) -> bool:
        """Whether it holds a HOGgles dictionary rather than a decoder."""
        return self.dictionary.is_file()

    @property
    def started(self) -> bool:
        """Whether a decoder run has written its first checkpoint here (it can be resumed)."""
        return self.checkpoint.exists()

    def read(self) -> dict:
        """``run.json`` as written, or a :class:`CheckpointError` naming it."""
        return read_json(self.run_file)

    def write(self, saved: dict) -> None:
        """Replace ``run.json`` with ``saved``."""
        self.run_file.write_text(json.dumps(saved, indent=2, sort_keys=True))

    def settings(self) -> dict | None:
        """The training settings of a finished run (``run.json``'s ``config``); None for a folder without one (no
        run.json or no checkpoint)."""
        if not (self.run_file.is_file() and self.checkpoint.is_file()):
            return None
        config = self.read().get("config")
        if not isinstance(config, dict) or "feature" not in config:
            raise CheckpointError(f"{self.run_file}: not a run.json of preimage train (no settings)")
        return config

    def log(self, record: dict) -> None:
        """Append one line to ``metrics.jsonl``."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
