"""Whole shards encoded here, byte for byte as zarr's ``sharding_indexed`` codec encodes them, and written as files.

zarr encodes a shard through its asynchronous codec pipeline, one coroutine and thread hand-off per chunk; for
the store's small chunks that costs about as much again as the compression itself (bench/bench_pipeline.py).
A partition's writer has the whole shard in hand, so it compresses the chunks in one loop and writes one file.
Only the layout ``cache.store`` creates is encoded here (rows sharded along the first axis, the inner codecs
``bytes`` + ``zstd`` + ``crc32c`` (stores of format 2; format 1 has no chunk checksum), the index ``bytes`` +
``crc32c`` at the end, fill value 0); :func:`shard_layout` says None for anything else, and the caller lets zarr
write it. Shards are read and written whole through the store's :mod:`.backend`. Reading checks every checksum
and names the file, the chunk and its rows when one fails (:class:`ShardDamaged`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from numcodecs import Zstd
from zarr.storage import LocalStore

from .backend import Backend, LocalBackend

NO_CHUNK = np.iinfo(np.uint64).max  # the index entry (offset, length) of a chunk that is not stored


class ShardDamaged(ValueError):
    """A shard file that is missing where it must exist, or whose bytes fail a checksum or do not decode: the
    message names the file and the rows it holds."""

    def __init__(self, path: Path, rows: tuple[int, int], problem: str) -> None:
        super().__init__(
            f"{path}: {problem} (rows {rows[0]}-{rows[1] - 1}); `preimage verify` lists every damaged "
            "shard and `preimage extract ... --repair` recomputes them"
        )
        self.path, self.rows, self.problem = path, rows, problem


def _crc(data) -> bytes:
    """The crc32c of ``data`` as zarr's codec appends it (4 bytes, little-endian); memoryviews without a copy."""
    if isinstance(data, memoryview):
        data = np.frombuffer(data, np.uint8)
    return google_crc32c.value(data).to_bytes(4, "little")


@dataclass(frozen=True)
class _Shard:
    """One shard file in memory: where it came from, its number, its bytes and its chunk index."""

    path: Path | str
    number: int
    data: memoryview
    index: np.ndarray


@dataclass(frozen=True)
class ShardLayout:
    """What encoding one shard of a row-sharded array needs: where its objects live (a backend and the array's
    key), rows per chunk and shard, the codec."""

    backend: Backend
    key: str  # the array's path in the store ('features/hog')
    rows: int  # rows of the whole array
    chunk_rows: int
    shard_rows: int
    row_shape: tuple[int, ...]
    dtype: np.dtype
    zstd_level: int
    checksum: bool = True  # each chunk's zstd frame followed by its crc32c (zarr's crc32c codec)
    missing: Callable[[int], None] | None = field(default=None, compare=False, repr=False)  # called for an
    # absent shard file with its shard number: the store raises when that partition is marked complete

    def shard_key(self, shard: int) -> str:
        """The object key of shard ``shard`` (zarr's default chunk key encoding, '/' separated)."""
        return f"{self.key}/c/" + "/".join([str(shard)] + ["0"] * len(self.row_shape))

    def shard_path(self, shard: int) -> Path | str:
        """Where shard ``shard`` lies (a file's path on a local disk), as messages name it."""
        return self.backend.locate(self.shard_key(shard))

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
            frame = codec.encode(chunk)
            frames.append(frame + _crc(frame) if self.checksum else frame)
        lengths = np.array([len(f) for f in frames], np.uint64)
        index = np.full((chunks_per_shard, 2), NO_CHUNK, np.dtype("<u8"))
        index[: len(frames), 0] = np.cumsum(lengths) - lengths
        index[: len(frames), 1] = lengths
        index_bytes = index.tobytes()
        return b"".join([*frames, index_bytes, _crc(index_bytes)])

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

    def shard_rows_of(self, shard: int) -> tuple[int, int]:
        """The rows ``(start, stop)`` that shard ``shard`` holds."""
        start = shard * self.shard_rows
        return start, min(start + self.shard_rows, self.rows)

    def _load(self, shard: int) -> _Shard | None:
        """A shard file's bytes and its index (chunks x (offset, length)), the index checksum verified; None for
        a shard never written (after :attr:`missing` has had its say)."""
        path = self.shard_path(shard)
        data = self.backend.read(self.shard_key(shard))
        if data is None:
            if self.missing is not None:
                self.missing(shard)
            return None
        size = 16 * (self.shard_rows // self.chunk_rows)
        index_bytes = data[-size - 4 : -4]
        if len(data) < size + 4 or _crc(index_bytes) != data[-4:]:
            raise ShardDamaged(path, self.shard_rows_of(shard), "the shard index fails its checksum")
        return _Shard(path, shard, memoryview(data), np.frombuffer(index_bytes, np.dtype("<u8")).reshape(-1, 2))

    def _decode(self, shard: _Shard, chunk: int, out: np.ndarray) -> bool:
        """Decompress chunk ``chunk`` of a loaded shard into ``out``, its checksum verified; False (``out``
        untouched) when absent."""
        offset, length = (int(v) for v in shard.index[chunk])
        if offset == NO_CHUNK:
            return False
        if offset + length > len(shard.data) - 16 * len(shard.index) - 4:
            raise self._damaged(shard, chunk, "lies outside the file")
        frame = shard.data[offset : offset + length]
        if self.checksum:
            frame, stored = frame[:-4], bytes(frame[-4:])
            if _crc(frame) != stored:
                raise self._damaged(shard, chunk, "fails its checksum")
        try:
            Zstd().decode(frame, out=out)
        except Exception as err:  # a format 1 store has no checksum: damage shows as a frame that does not decode
            raise self._damaged(shard, chunk, f"does not decode ({err})") from None
        return True

    def _damaged(self, shard: _Shard, chunk: int, problem: str) -> ShardDamaged:
        """The error for one chunk of a loaded shard, naming the chunk and its rows (built only on failure)."""
        first = shard.number * self.shard_rows + chunk * self.chunk_rows
        name = f"chunk {chunk} (rows {first}-{min(first + self.chunk_rows, self.rows) - 1})"
        return ShardDamaged(shard.path, self.shard_rows_of(shard.number), f"{name} {problem}")

    def verify(self, shard: int) -> None:
        """Read and check every chunk of one shard (a missing file goes to :attr:`missing`)."""
        loaded = self._load(shard)
        if loaded is not None:
            buffer = np.empty((self.chunk_rows, *self.row_shape), self.dtype.newbyteorder("<"))
            for chunk in range(len(loaded.index)):
                self._decode(loaded, chunk, buffer)

    def write(self, start: int, values: np.ndarray) -> None:
        """Write the shard beginning at row ``start`` (whole, or the array's short last one) atomically."""
        if start % self.shard_rows or len(values) != min(self.shard_rows, self.rows - start):
            raise ValueError(f"rows {start}:{start + len(values)} are not one whole shard of {self.shard_rows} rows")
        if values.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {values.shape[1:]} written into rows of shape {self.row_shape}")
        self.backend.write(self.shard_key(start // self.shard_rows), self.encode(values))


def shard_layout(array: zarr.Array, backend: Backend | None = None) -> ShardLayout | None:
    """The layout of ``array`` when this module encodes it exactly as zarr would, else None. ``backend``: where
    the store's objects live (default: the folder of a local zarr store)."""
    if backend is None and isinstance(array.store, LocalStore):
        backend = LocalBackend(array.store.root)
    meta = array.metadata.to_dict()
    codecs = meta.get("codecs", [])
    if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed" or backend is None:
        return None
    config = codecs[0]["configuration"]
    inner = [c["name"] for c in config["codecs"]]
    index = [c["name"] for c in config["index_codecs"]]
    zstd = config["codecs"][1].get("configuration", {}) if len(config["codecs"]) > 1 else {}
    shard_shape, chunk_shape = tuple(array.shards), tuple(config["chunk_shape"])
    row_shape = tuple(array.shape[1:])
    plain = (
        inner in (["bytes", "zstd"], ["bytes", "zstd", "crc32c"])
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
        backend,
        array.path,
        rows=int(array.shape[0]),
        chunk_rows=int(chunk_shape[0]),
        shard_rows=int(shard_shape[0]),
        row_shape=row_shape,
        dtype=np.dtype(array.dtype),
        zstd_level=int(zstd.get("level", 0)),
        checksum=inner[-1] == "crc32c",
    )
