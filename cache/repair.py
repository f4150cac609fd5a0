"""Repair of a damaged store: undo exactly what is damaged, so that the extraction that follows recomputes it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .store import FeatureStore, progress_subject


def repair_store(store: FeatureStore, ids: Sequence[str], labels: Sequence[int]) -> list:
    """Verify ``store`` and undo what is damaged: a damaged shard of ``images`` or a feature, or a damaged
    ``status``/``failures`` chunk, marks its partition to be computed again; ``ids`` and ``labels`` are rewritten
    from the source's (all rows); a damaged completion marker is reset, and lost ones made again (every partition
    of what they stood for computed again). Returns the damage found."""
    damage = store.verify()
    for piece in damage:
        index = piece.rows[0] // store.shard_rows
        if piece.array.startswith("progress/") and piece.array not in store.group:  # lost: every partition again
            store.restore_progress(piece.array)
        elif piece.array in ("ids", "labels"):
            start, stop = store.partitions()[index]
            values = ids[start:stop] if piece.array == "ids" else labels[start:stop]
            store.array(piece.array)[start:stop] = np.asarray(values, dtype=str if piece.array == "ids" else np.int32)
        elif piece.array in ("status", "failures"):  # written with the images: redo those
            store.mark_done("images", index, False)
        elif progress_subject(piece.array):
            store.mark_done(progress_subject(piece.array), index, False)
        elif piece.array.startswith("progress/"):
            store.array(piece.array)[index] = 0  # written afresh: that partition is computed again
    return damage
