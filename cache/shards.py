"""Whole shards encoded here, byte for byte as zarr's ``sharding_indexed`` codec encodes them, and written as files.

zarr encodes a shard through its asynchronous codec pipeline, one coroutine and thread hand-off per chunk; for
the store's small chunks that costs about as much again as the compression itself (bench/bench_pipeline.py).
A partition's writer has the whole shard in hand, so it compresses the chunks in one loop and writes one file.
Only the layout ``cache.store`` creates is encoded here (rows sharded along the first axis, the inner codecs
``bytes`` + ``zstd``, the index ``bytes`` + ``crc32c`` at the end, fill value 0, a local file store);
:func:`shard_layout` says None for anything else, and the caller lets zarr write it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from numcodecs import Zstd
from zarr.storage import LocalStore

NO_CHUNK = np.iinfo(np.uint64).max  # the index entry (offset, length) of a chunk that is not stored


@dataclass(frozen=True)
class ShardLayout:
    """What encoding one shard of a row-sharded array needs: its folder, rows per chunk and shard, the codec."""

    folder: Path
    rows: int  # rows of the whole array
    chunk_rows: int
    shard_rows: int
    row_shape: tuple[int, ...]
    dtype: np.dtype
    zstd_level: int

    def shard_path(self, shard: int) -> Path:
        """The file of shard ``shard`` (zarr's default chunk key encoding, '/' separated)."""
        return self.folder / "c" / "/".join([str(shard)] + ["0"] * len(self.row_shape))

    def encode(self, values: np.ndarray) -> bytes:
        """One shard's bytes: the zstd frames of its chunks in row order, then the index and its crc32c.

        ``values`` holds the shard's rows; a last shard may be short: its last chunk is padded with zeros (the
        fill value) and the chunks past the array's end are marked absent, as zarr does.
        """
        codec = Zstd(level=self.zstd_level, checksum=False)
        values = np.ascontiguousarray(values, dtype=self.dtype.newbyteorder("<"))
        chunks_per_shard = self.shard_rows // self.chunk_rows
        frames = []
        for start in range(0, len(values), self.chunk_rows):
            chunk = values[start : start + self.chunk_rows]
            if len(chunk) < self.chunk_rows:
                chunk = np.concatenate([chunk, np.zeros((self.chunk_rows - len(chunk), *self.row_shape), chunk.dtype)])
            frames.append(codec.encode(chunk))
        lengths = np.array([len(f) for f in frames], np.uint64)
        index = np.full((chunks_per_shard, 2), NO_CHUNK, np.dtype("<u8"))
        index[: len(frames), 0] = np.cumsum(lengths) - lengths
        index[: len(frames), 1] = lengths
        index_bytes = index.tobytes()
        return b"".join([*frames, index_bytes, google_crc32c.value(index_bytes).to_bytes(4, "little")])

    def read(self, start: int) -> np.ndarray:
        """The rows of the shard beginning at row ``start`` (a short last shard gives its rows only), decoded
        straight into the result. A shard never written reads as zeros (the fill value), as through zarr."""
        if start % self.shard_rows or not 0 <= start < self.rows:
            raise ValueError(f"row {start} does not begin a shard of {self.shard_rows} rows")
        rows = min(self.shard_rows, self.rows - start)
        chunks = -(-rows // self.chunk_rows)
        out = np.zeros((chunks * self.chunk_rows, *self.row_shape), self.dtype.newbyteorder("<"))
        shard = self._load(start // self.shard_rows)
        if shard is not None:
            for chunk in range(chunks):
                self._decode(shard, chunk, out[chunk * self.chunk_rows : (chunk + 1) * self.chunk_rows])
        return out[:rows]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows at any positions, in the order given: each shard file involved is read once and only the chunks
        holding asked rows are decompressed (zarr's own path indexes them element by element)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"rows outside 0..{self.rows - 1}")
        out = np.zeros((len(rows), *self.row_shape), self.dtype.newbyteorder("<"))
        chunk_of = rows // self.chunk_rows
        buffer = np.empty((self.chunk_rows, *self.row_shape), out.dtype)
        per_shard = self.shard_rows // self.chunk_rows
        for shard_index in np.unique(rows // self.shard_rows):
            shard = self._load(int(shard_index))
            if shard is None:
                continue
            for chunk in np.unique(chunk_of[rows // self.shard_rows == shard_index]):
                if self._decode(shard, int(chunk) % per_shard, buffer):
                    picked = np.flatnonzero(chunk_of == chunk)
                    out[picked] = buffer[rows[picked] - int(chunk) * self.chunk_rows]
        return out

    def _load(self, shard: int) -> tuple[memoryview, np.ndarray] | None:
        """A shard file's bytes and its index (chunks x (offset, length)), the index checksum verified; None for
        a shard never written."""
        path = self.shard_path(shard)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        size = 16 * (self.shard_rows // self.chunk_rows)
        index_bytes = data[-size - 4 : -4]
        if len(data) < size + 4 or google_crc32c.value(index_bytes).to_bytes(4, "little") != data[-4:]:
            raise ValueError(f"{path}: the shard index fails its checksum (a damaged file)")
        return memoryview(data), np.frombuffer(index_bytes, np.dtype("<u8")).reshape(-1, 2)

    @staticmethod
    def _decode(shard: tuple[memoryview, np.ndarray], chunk: int, out: np.ndarray) -> bool:
        """Decompress chunk ``chunk`` of a loaded shard into ``out``; False (``out`` untouched) when absent."""
        data, index = shard
        offset, length = (int(v) for v in index[chunk])
        if offset == NO_CHUNK:
            return False
        Zstd().decode(data[offset : offset + length], out=out)
        return True

    def write(self, start: int, values: np.ndarray) -> None:
        """Write the shard beginning at row ``start`` (whole, or the array's short last one) atomically."""
        if start % self.shard_rows or len(values) != min(self.shard_rows, self.rows - start):
            raise ValueError(f"rows {start}:{start + len(values)} are not one whole shard of {self.shard_rows} rows")
        if values.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {values.shape[1:]} written into rows of shape {self.row_shape}")
        path = self.shard_path(start // self.shard_rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")  # zarr's own name for a file being written
        try:
            partial.write_bytes(self.encode(values))
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def shard_layout(array: zarr.Array) -> ShardLayout | None:
    """The layout of ``array`` when this module encodes it exactly as zarr would, else None."""
    meta = array.metadata.to_dict()
    codecs = meta.get("codecs", [])
    if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed" or not isinstance(array.store, LocalStore):
        return None
    config = codecs[0]["configuration"]
    inner = [c["name"] for c in config["codecs"]]
    index = [c["name"] for c in config["index_codecs"]]
    zstd = config["codecs"][-1].get("configuration", {})
    shard_shape, chunk_shape = tuple(array.shards), tuple(config["chunk_shape"])
    row_shape = tuple(array.shape[1:])
    plain = (
        inner == ["bytes", "zstd"]
        and not zstd.get("checksum", False)
        and index == ["bytes", "crc32c"]
        and config["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
        and config["index_codecs"][0].get("configuration", {}).get("endian", "little") == "little"
        and config.get("index_location", "end") == "end"
        and shard_shape[1:] == row_shape
        and chunk_shape[1:] == row_shape
        and shard_shape[0] % chunk_shape[0] == 0
        and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
        and array.metadata.fill_value == 0
        and np.dtype(array.dtype).kind in "uif"
    )
    if not plain:
        return None
    return ShardLayout(
        Path(array.store.root) / array.path,
        int(array.shape[0]),
        int(chunk_shape[0]),
        int(shard_shape[0]),
        row_shape,
        np.dtype(array.dtype),
        int(zstd.get("level", 0)),
    )
