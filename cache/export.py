"""HDF5 copies of a feature store, for tools that read HDF5 rather than zarr."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from .store import FeatureStore


def export_h5(store: FeatureStore, out: str | os.PathLike) -> list[str]:
    """Write every array of ``store`` to ``out`` under the same paths, a shard of rows at a time.

    Attributes travel as JSON strings (``attrs['json']``); strings as UTF-8. Returns the paths written. The
    file is written beside its final name and renamed into place, so an interrupted export leaves nothing.
    """
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    written = []
    with h5py.File(partial, "w") as f:
        f.attrs["json"] = json.dumps(dict(store.group.attrs))
        for path in store.array_paths():
            array = store.array(path)
            is_text = array.dtype.kind in "TUO" or str(array.dtype).startswith("StringDType")
            dtype = h5py.string_dtype("utf-8") if is_text else array.dtype
            chunks = (min(array.shape[0], store.shard_rows), *array.shape[1:]) if array.shape[0] else None
            dataset = f.create_dataset(path, shape=array.shape, dtype=dtype, chunks=chunks, compression="lzf")
            step = store.shard_rows
            for start in range(0, array.shape[0], step):
                block = array[start : start + step]
                dataset[start : start + len(block)] = block.astype(object) if is_text else np.asarray(block)
            dataset.attrs["json"] = json.dumps(dict(array.attrs))
            written.append(path)
    partial.replace(out)
    return written
