"""Shards encoded by cache.shards are the very bytes zarr's sharding codec writes, and zarr reads them back."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from preimage.cache.shards import shard_layout
from preimage.cache.store import _create_rows


def _pair(tmp_path, rows: int, row_shape: tuple[int, ...], dtype: str, shard_rows: int = 8):
    """The same row-sharded array twice, as the store creates it: one for zarr to write, one for cache.shards."""
    arrays = []
    for name in ("zarr", "ours"):
        group = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="w")
        arrays.append(
            _create_rows(group, "features/x", n=rows, row_shape=row_shape, dtype=np.dtype(dtype), rows=shard_rows)
        )
    return arrays


def _values(rng, n: int, row_shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Real-looking rows: sparse non-negative floats (ReLU maps, SIFT grids) or pixels."""
    if dtype == "uint8":
        return rng.integers(0, 256, (n, *row_shape), dtype=np.uint8)
    values = rng.standard_normal((n, *row_shape)).astype(dtype)
    return np.maximum(values, 0)


@pytest.mark.parametrize(
    ("rows", "row_shape", "dtype"),
    [
        (24, (5, 6, 7), "float32"),  # whole shards only
        (21, (3, 4), "float16"),  # a short last shard whose last chunk is short too (21 = 2 * 8 + 4 + 1)
        (19, (6, 6, 3), "uint8"),  # images; a last shard of 3 rows: its last chunk is padded, the rest absent
    ],
)
def test_each_shard_file_equals_zarrs_own(tmp_path, rows, row_shape, dtype):
    theirs, ours = _pair(tmp_path, rows, row_shape, dtype)
    layout = shard_layout(ours)
    assert layout is not None and layout.chunk_rows == 4 and layout.shard_rows == 8
    values = _values(np.random.default_rng(rows), rows, row_shape, dtype)
    for start in range(0, rows, 8):
        theirs[start : start + 8] = values[start : start + 8]
        layout.write(start, values[start : start + 8])
    ours_files = sorted(p.relative_to(tmp_path / "ours.zarr") for p in (tmp_path / "ours.zarr").rglob("c/*/*"))
    theirs_files = sorted(p.relative_to(tmp_path / "zarr.zarr") for p in (tmp_path / "zarr.zarr").rglob("c/*/*"))
    assert ours_files == theirs_files and len(ours_files) == -(-rows // 8)
    for relative in ours_files:
        if (tmp_path / "ours.zarr" / relative).is_file():
            assert (tmp_path / "ours.zarr" / relative).read_bytes() == (tmp_path / "zarr.zarr" / relative).read_bytes()
    reread = zarr.open_array(str(tmp_path / "ours.zarr"), path="features/x", mode="r")[:]
    np.testing.assert_array_equal(reread, values)
    assert not list((tmp_path / "ours.zarr").rglob("*.partial"))  # written into place, nothing left behind


def test_only_whole_shards_are_written(tmp_path):
    _, ours = _pair(tmp_path, 20, (2, 2), "float32")
    layout = shard_layout(ours)
    with pytest.raises(ValueError, match="not one whole shard"):
        layout.write(4, np.zeros((8, 2, 2), np.float32))
    with pytest.raises(ValueError, match="not one whole shard"):
        layout.write(16, np.zeros((8, 2, 2), np.float32))  # the last shard has 4 rows
    with pytest.raises(ValueError, match="rows of shape"):
        layout.write(0, np.zeros((8, 2, 3), np.float32))


def test_a_layout_it_does_not_encode_is_left_to_zarr(tmp_path):
    group = zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    blosc = group.create_array(
        "b", shape=(16, 3), chunks=(4, 3), shards=(8, 3), dtype="float32", compressors=(BloscCodec(cname="lz4"),)
    )
    unsharded = group.create_array("u", shape=(16, 3), chunks=(4, 3), dtype="float32")
    nonzero_fill = group.create_array("f", shape=(16, 3), chunks=(4, 3), shards=(8, 3), dtype="float32", fill_value=1)
    assert shard_layout(blosc) is None and shard_layout(unsharded) is None and shard_layout(nonzero_fill) is None


def test_shards_read_back_as_zarr_reads_them(tmp_path):
    theirs, ours = _pair(tmp_path, 21, (3, 5), "float32")
    layout = shard_layout(ours)
    values = _values(np.random.default_rng(7), 21, (3, 5), "float32")
    for start in (0, 16):  # the shard of rows 8-15 is never written: zeros, zarr's fill value
        theirs[start : start + 8] = values[start : start + 8]
        layout.write(start, values[start : start + 8])
    for start in (0, 8, 16):
        np.testing.assert_array_equal(layout.read(start), theirs[start : start + 8])
    rows = np.array([20, 3, 3, 9, 0, 17, 12])  # any order, repeats, rows of the unwritten shard
    np.testing.assert_array_equal(
        layout.take(rows), theirs.oindex[np.sort(np.unique(rows))][np.searchsorted(np.sort(np.unique(rows)), rows)]
    )
    with pytest.raises(IndexError):
        layout.take(np.array([21]))
    with pytest.raises(ValueError, match="does not begin a shard"):
        layout.read(4)


def test_a_damaged_shard_index_is_an_error_not_wrong_values(tmp_path):
    _, ours = _pair(tmp_path, 8, (2,), "float32")
    layout = shard_layout(ours)
    layout.write(0, np.ones((8, 2), np.float32))
    path = layout.shard_path(0)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # a bit of the index flipped
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        layout.read(0)
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(str(tmp_path / "ours.zarr"), path="features/x", mode="r")[:]  # zarr agrees it is damaged
