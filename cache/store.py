"""The feature store: one zarr v3 group per image collection, written once by ``preimage extract``, read by all.

Layout (row ``i`` of every array is source item ``i``; sample axis first)::

    zarr.json           attrs["preimage"]: schema version (2: every chunk carries a crc32c checksum; 1: none,
                        read as before), source, crop/resize recipe, shard rows
    ids                 str (N,): the item's path or key, so rows map back to files
    labels              int32 (N,): class index (-1: none); attrs["class_names"]
    status              uint8 (N,): 0 not yet read, 1 read, 2 unreadable
    failures            str (N,): why a row could not be read ("" when it was)
    images              uint8 (N, S, S, 3): the reconstruction targets (zeros for unreadable rows)
    features/<name>     float32 or float16 (N, ...): one array per representation (``alexnet:conv3`` lives at
                        ``features/alexnet/conv3``); attrs: representation, parameters, input, weights hash
    progress/<name>     uint8 (P,): partition p of that array is complete (one chunk per partition)

Every array is sharded along rows, ``shard_rows`` rows per shard and ``CHUNK_ROWS`` rows per chunk inside a
shard (random access for training, few files on disk), compressed with zstd level 1, each chunk followed by its
crc32c (zarr's ``crc32c`` codec), checked on every read. A partition of
``shard_rows`` rows is written by one task as whole shards, so no two tasks ever write the same file; zarr's
local store renames each file into place, so a killed run leaves whole shards, and only ``progress`` says
which are complete.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from .backend import LOCK_FILE, Backend, backend_for, is_url
from .backend import StoreLocked as StoreLocked  # re-exported: what a busy store raises
from .shards import ShardDamaged, ShardLayout, shard_layout

SCHEMA_VERSION = 2  # 2: chunk checksums
READABLE_SCHEMAS = (1, 2)  # format 1 stores (no chunk checksums) are read and extended as they are
CHUNK_ROWS = 4  # rows per chunk: one zarr codec call per 4 rows; per-row chunks cost 2x more to write and read
PENDING, READ, UNREADABLE = 0, 1, 2


class StoreError(ValueError):
    """A store that cannot be used as asked (other parameters, other source, not a preimage store)."""


def damaged_metadata(backend: Backend, where: str | os.PathLike, err: json.JSONDecodeError) -> StoreError:
    """The error for a store whose metadata is not JSON: the file that is damaged, and why ``--repair`` does not
    mend it."""
    bad = next(
        (key for key in backend.objects() if key.rsplit("/", 1)[-1] == "zarr.json" and not _parses(backend, key)), None
    )
    named = backend.locate(bad) if bad is not None else f"a zarr.json of {where}"
    why = f"{err.msg.removesuffix(' at')} at line {err.lineno} column {err.colno}"
    return StoreError(
        f"{named} is damaged ({why}): it is the store's metadata (array shapes, codecs, the settings its features "
        "were computed with), which extract --repair cannot rebuild (it recomputes damaged shards, rows and "
        "progress); restore the file from a copy, or extract into a new --store"
    )


def _parses(backend: Backend, key: str) -> bool:
    try:
        json.loads(backend.read(key) or b"{}")
    except ValueError:
        return False
    return True


def _names_damaged_metadata(method):
    """``method`` of a store, naming a damaged ``zarr.json`` zarr meets while reading (:func:`damaged_metadata`)."""

    @functools.wraps(method)
    def reading(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except json.JSONDecodeError as err:
            raise damaged_metadata(self.backend, self.path, err) from None

    return reading


@dataclass(frozen=True)
class Damage:
    """One damaged or missing piece of a store: the array, its file, the rows it holds, what is wrong."""

    array: str
    file: Path | str  # where the damaged object lies (a file on a local disk)
    rows: tuple[int, int]
    problem: str

    def __str__(self) -> str:
        return f"{self.array}: {self.file} (rows {self.rows[0]}-{self.rows[1] - 1}): {self.problem}"


def feature_path(name: str) -> str:
    """Array path of a representation: ``hog`` -> ``features/hog``, ``alexnet:conv3`` -> ``features/alexnet/conv3``."""
    return "features/" + _key(name)


def _key(name: str) -> str:
    """A representation's name as a store key: ':' separates folders; a '/' inside a name (a Hugging Face id,
    ``hf:facebook/dinov2-small:...``) is written %2F so that the name comes back whole (:func:`_name`)."""
    return name.replace("%", "%25").replace("/", "%2F").replace(":", "/")


def _name(key: str) -> str:
    return key.replace("/", ":").replace("%2F", "/").replace("%25", "%")


def progress_subject(path: str) -> str | None:
    """What the completion markers of row-sharded array ``path`` are named after: ``images``, or the
    representation (``features/alexnet/conv3`` -> ``alexnet:conv3``); None for any other array."""
    if path == "images":
        return "images"
    return _name(path.removeprefix("features/")) if path.startswith("features/") else None


def progress_path(what: str) -> str:
    """Path of the completion markers of ``images`` or of a representation."""
    return "progress/" + _key(what)


def _canonical(value) -> object:
    """JSON round trip, so that tuples and lists, ints and floats compare as stored attributes do."""
    return json.loads(json.dumps(value, sort_keys=True))


def compressors(checksum: bool = True) -> tuple:
    """The codecs of every array: zstd level 1, then the chunk's crc32c (format 2 stores).

    Measured on the shared photos (bench/bench_pipeline.py): smaller than blosc-zstd with byte shuffle on the
    sparse ReLU maps and SIFT grids, within 5% on HOG, and 2-4x faster to write. The checksum's cost:
    bench/bench_checksum.py.
    """
    return (ZstdCodec(level=1), Crc32cCodec()) if checksum else (ZstdCodec(level=1),)


def differences(stored: dict, asked: dict, prefix: str = "", labels: tuple[str, str] = ("store", "asked")) -> list[str]:
    """Human-readable list of the keys where two attribute dicts differ, each side named by ``labels``."""
    out = []
    for key in sorted(set(stored) | set(asked)):
        a, b = stored.get(key, "<absent>"), asked.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.", labels)
        elif a != b:
            out.append(f"{prefix}{key}: {labels[0]} has {a!r}, {labels[1]} {b!r}")
    return out


@dataclass(frozen=True)
class StoreHeader:
    """What fixes a store's rows: its source, the crop/resize recipe and the shard size."""

    source: dict
    recipe: dict
    shard_rows: int

    def attrs(self) -> dict:
        return _canonical(
            {
                "schema_version": SCHEMA_VERSION,
                "source": self.source,
                "recipe": self.recipe,
                "shard_rows": self.shard_rows,
            }
        )


class FeatureStore:
    """A preimage store on disk (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike, group: zarr.Group, backend: Backend | None = None) -> None:
        self.path: Path | str = str(path) if is_url(path) else Path(path)  # a folder, or a URL as given
        self.backend = backend or backend_for(path)
        self.group = group
        meta = dict(group.attrs).get("preimage")
        if not isinstance(meta, dict):
            raise StoreError(f"{self.path} is a zarr group but not a preimage store (no 'preimage' attributes)")
        if meta.get("schema_version") not in READABLE_SCHEMAS:
            raise StoreError(
                f"{self.path} has store schema {meta.get('schema_version')}; this preimage reads "
                f"{', '.join(map(str, READABLE_SCHEMAS))}"
            )
        self.meta = meta
        self._arrays: dict[str, zarr.Array] = {}  # opened once: each open reads metadata from disk
        self._layouts: dict[str, ShardLayout | None] = {}  # arrays whose whole shards cache.shards writes
        self._rows: int | None = None

    # -- opening and creating -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> FeatureStore:
        """Open an existing store (``mode='r'`` to read, ``'r+'`` to add to it)."""
        backend = backend_for(path)
        if not backend.exists():
            raise FileNotFoundError(f"no store at {path}")
        try:
            group = zarr.open_group(backend.zarr_path(read_only=mode == "r"), mode=mode)
        except json.JSONDecodeError as err:
            raise damaged_metadata(backend, path, err) from None
        except Exception as err:
            raise StoreError(f"{path} is not a readable zarr v3 store: {err}") from None
        return cls(path, group, backend)

    @classmethod
    def create_or_open(
        cls,
        path: str | os.PathLike,
        header: StoreHeader,
        ids: list[str],
        labels: list[int],
        class_names: list[str],
        image_size: int,
    ) -> FeatureStore:
        """Open the store at ``path`` for extraction, creating it when new; refuse one made differently.

        The root attributes are written last, so a run killed while creating leaves a store without them,
        which the next run simply creates again.
        """
        backend = backend_for(path)
        if _state(backend) == "store":
            store = cls.open(path, "r+")
            ignored = ("created", "schema_version")  # an older format is extended in its own format
            problems = differences(
                {k: v for k, v in store.meta.items() if k not in ignored},
                {k: v for k, v in header.attrs().items() if k not in ignored},
                "store.",
            )
            if problems:
                raise StoreError(
                    f"{path} was made with other settings; use another --store or the same settings:\n  "
                    + "\n  ".join(problems)
                )
            stored_ids = [str(v) for v in store.group["ids"][:].tolist()]
            if stored_ids != list(ids):
                changed = sum(a != b for a, b in zip(stored_ids, ids, strict=False))
                raise StoreError(
                    f"{path} lists {len(stored_ids)} items but the source now lists {len(ids)} "
                    f"({changed} of the common rows differ): the source changed; write a new store"
                )
            return store
        if _state(backend) == "foreign":
            raise StoreError(f"{path} exists and is not a preimage store; refusing to write into it")
        for top in {key.split("/", 1)[0] for key in backend.objects()} - {LOCK_FILE}:  # an interrupted creation
            backend.remove(top)
        group = zarr.open_group(backend.zarr_path(read_only=False), mode="a")
        group.attrs["preimage_incomplete"] = True
        n, rows = len(ids), header.shard_rows
        checksum = SCHEMA_VERSION >= 2
        codecs = compressors(checksum)
        group.create_array("ids", shape=(n,), chunks=(rows,), dtype=str, compressors=codecs)[:] = np.asarray(
            ids, dtype=str
        )
        labels_array = group.create_array("labels", shape=(n,), chunks=(rows,), dtype="int32", compressors=codecs)
        labels_array[:] = np.asarray(labels, dtype=np.int32)
        labels_array.attrs["class_names"] = class_names
        group.create_array("status", shape=(n,), chunks=(rows,), dtype="uint8", fill_value=PENDING, compressors=codecs)
        group.create_array("failures", shape=(n,), chunks=(rows,), dtype=str, compressors=codecs)
        images = _create_rows(
            group, "images", n=n, row_shape=(image_size, image_size, 3), dtype=np.uint8, rows=rows, checksum=checksum
        )
        images.attrs.update({"layout": "N, H, W, RGB", "size": image_size})
        _create_progress(group, progress_path("images"), _count(n, rows), checksum)
        group.attrs.put({"preimage": {**header.attrs(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
        return cls(path, group, backend)

    # -- rows and partitions --------------------------------------------------------------------------------

    @property
    @_names_damaged_metadata
    def rows(self) -> int:
        """Rows of every array (read once: it never changes)."""
        if self._rows is None:
            self._rows = int(self.group["ids"].shape[0])
        return self._rows

    @property
    def shard_rows(self) -> int:
        return int(self.meta["shard_rows"])

    def partitions(self) -> list[tuple[int, int]]:
        """Row ranges written by one task each: exactly the shards of every array."""
        step = self.shard_rows
        return [(start, min(start + step, self.rows)) for start in range(0, self.rows, step)]

    def feature_names(self) -> list[str]:
        """Representations the store has arrays for (complete or not)."""
        return [progress_subject(p) for p in self.array_paths() if p.startswith("features/")]

    @_names_damaged_metadata
    def ensure_feature(self, name: str, row_shape: tuple[int, ...], dtype: str, attrs: dict) -> zarr.Array:
        """The array of representation ``name``, created if new; an error naming any parameter that differs."""
        path = feature_path(name)
        asked = _canonical({**attrs, "dtype": str(np.dtype(dtype)), "row_shape": list(row_shape)})
        if path in self.group:
            array = self.group[path]
            stored = _canonical(dict(array.attrs))
            problems = differences(stored, asked, f"{name}: ")
            if problems:
                raise StoreError(
                    f"{self.path} already holds {name} computed differently; use another --store, or the stored "
                    "settings:\n  " + "\n  ".join(problems)
                )
            return array
        array = _create_rows(
            self.group,
            path,
            n=self.rows,
            row_shape=row_shape,
            dtype=np.dtype(dtype),
            rows=self.shard_rows,
            checksum=self.checksums,
        )
        array.attrs.update(asked)
        _create_progress(self.group, progress_path(name), len(self.partitions()), self.checksums)
        return array

    @_names_damaged_metadata
    def done(self, what: str) -> np.ndarray:
        """Boolean per partition: is ``images`` (or representation ``what``) complete there."""
        path = progress_path(what)
        if path not in self.group:
            return np.zeros(len(self.partitions()), bool)
        return self.group[path][:] == 1

    def restore_progress(self, marker: str) -> None:
        """The completion markers at ``marker`` (a ``progress/`` path), lost, made again with no partition complete:
        what they stood for is computed again."""
        _create_progress(self.group, marker, len(self.partitions()), self.checksums)

    def mark_done(self, what: str, partition: int, done: bool = True) -> None:
        """Mark partition ``partition`` of ``images`` (or a representation) complete, or (``done=False``) to be
        computed again."""
        self.array(progress_path(what))[partition] = int(done)

    @property
    def checksums(self) -> bool:
        """Whether every chunk carries a crc32c (format 2); format 1 stores have none."""
        return int(self.meta["schema_version"]) >= 2

    def write_rows(self, path: str, start: int, values: np.ndarray) -> None:
        """Write rows ``start:start+len(values)`` of array ``path``.

        A partition's rows are one whole shard of each row-sharded array: that shard is encoded and written as
        one file by :mod:`cache.shards` (the same bytes zarr writes, at about half the cost); anything else
        goes through zarr.
        """
        layout = self._layout(path)
        if layout and start % layout.shard_rows == 0 and len(values) == min(layout.shard_rows, layout.rows - start):
            layout.write(start, values)
        else:
            self.array(path)[start : start + len(values)] = values

    def read_rows(self, path: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of array ``path``; one whole shard (a partition) is decoded by :mod:`cache.shards`
        (2-8x faster than through zarr), anything else is read through zarr."""
        layout = self._layout(path)
        if layout and start % layout.shard_rows == 0 and stop == min(start + layout.shard_rows, layout.rows):
            return layout.read(start)
        return self.array(path)[start:stop]

    def take(self, path: str, rows: np.ndarray) -> np.ndarray:
        """Rows of array ``path`` at any positions, in the order given (each shard read once, only the chunks
        holding the rows decompressed)."""
        layout = self._layout(path)
        return layout.take(rows) if layout else self.array(path).oindex[np.asarray(rows)]

    def _layout(self, path: str) -> ShardLayout | None:
        if path not in self._layouts:
            layout = shard_layout(self.array(path), self.backend)
            if layout is not None:
                layout = replace(layout, missing=partial(self._missing_shard, path, layout))
            self._layouts[path] = layout
        return self._layouts[path]

    def _missing_shard(self, path: str, layout: ShardLayout, shard: int) -> None:
        """A shard file that is absent: an error when its partition is marked complete (never zeros)."""
        what = progress_subject(path)
        if what is None:
            return
        try:
            complete = bool(self.done(what)[shard])
        except Exception:  # a damaged marker: verify reports it; take the partition as complete here
            complete = True
        if complete:
            raise ShardDamaged(
                layout.shard_path(shard),
                layout.shard_rows_of(shard),
                "the shard file is missing, though its partition is marked complete",
            )

    # -- reading ---------------------------------------------------------------------------------------------

    @_names_damaged_metadata
    def array(self, path: str) -> zarr.Array:
        """Array ``path``, opened once; all-zero chunks (unreadable rows) are written rather than tested first."""
        if path not in self._arrays:
            self._arrays[path] = self.group[path].with_config({"write_empty_chunks": True})
        return self._arrays[path]

    def features(self, name: str) -> zarr.Array:
        return self.array(feature_path(name))

    @_names_damaged_metadata
    def status(self) -> np.ndarray:
        return self.group["status"][:]

    @_names_damaged_metadata
    def failures(self) -> list[tuple[int, str, str]]:
        """(row, id, reason) of every unreadable row."""
        status = self.status()
        rows = np.flatnonzero(status == UNREADABLE)
        if len(rows) == 0:
            return []
        ids, reasons = self.group["ids"][:], self.group["failures"][:]
        return [(int(r), str(ids[r]), str(reasons[r])) for r in rows]

    @_names_damaged_metadata
    def array_paths(self) -> list[str]:
        """Every array of the store, as paths."""
        paths = []

        def visit(group: zarr.Group, prefix: str) -> None:
            for key, member in sorted(group.members()):
                if isinstance(member, zarr.Array):
                    paths.append(prefix + key)
                else:
                    visit(member, f"{prefix}{key}/")

        with warnings.catch_warnings():  # the lock and decoding logs are files of ours, not zarr members
            warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
            visit(self.group, "")
        return paths

    def bytes_on_disk(self, path: str) -> int:
        """Bytes the objects of array ``path`` take in the store."""
        return self.backend.size(path)

    # -- integrity ---------------------------------------------------------------------------------------------

    def missing_shards(self) -> list[Damage]:
        """The shard objects of partitions marked complete that are not there: one listing per array, nothing
        read (what ``extract`` checks on every run; :meth:`verify` also reads every chunk)."""
        missing = []
        for path in self.array_paths():
            layout, subject = self._layout(path), progress_subject(path)
            if layout is None or subject is None:
                continue
            present = set(self.backend.objects(path))
            for shard in np.flatnonzero(self.done(subject)):
                if layout.shard_key(int(shard)) not in present:
                    try:
                        self._missing_shard(path, layout, int(shard))  # its error, as a read would raise it
                    except ShardDamaged as err:
                        missing.append(Damage(path, err.path, err.rows, err.problem))
        return missing

    def verify(self, progress=None) -> list[Damage]:
        """Read every chunk of every array, checking its checksum (format 2) or that it decodes (format 1), and
        that every shard of a partition marked complete is there; the damage found, by file and rows.
        ``progress(n)`` hears of each shard or chunk checked."""
        damage: list[Damage] = []
        partitions = self.partitions()
        for what in ("images", *self.feature_names()):  # a lost record of completion is damage too: repair rebuilds it
            marker = progress_path(what)
            if marker not in self.group:
                problem = f"missing: which partitions of {what} are complete is not recorded"
                damage.append(Damage(marker, self.backend.locate(marker), (0, self.rows), problem))
        try:
            images_done = self.done("images")
        except Exception:  # a damaged marker: its own chunk is reported below; every status chunk must then exist
            images_done = np.ones(len(partitions), bool)
        for path in self.array_paths():
            layout = self._layout(path)
            if layout is not None:
                for shard in range(len(partitions)):
                    try:
                        layout.verify(shard)
                    except ShardDamaged as err:
                        damage.append(Damage(path, err.path, err.rows, err.problem))
                    if progress:
                        progress(1)
                continue
            array = self.array(path)
            step = int(array.chunks[0])
            for chunk, start in enumerate(range(0, int(array.shape[0]), step)):
                key = f"{path}/c/{chunk}"
                file = self.backend.locate(key)
                # the store rows this chunk stands for (a progress marker: its partition's rows)
                rows = partitions[chunk] if path.startswith("progress/") else (start, min(start + step, self.rows))
                try:
                    array[start : start + step]
                except Exception as err:  # zarr's checksum error, or a chunk that does not decode
                    damage.append(Damage(path, file, rows, f"chunk fails its checksum or does not decode ({err})"))
                    continue
                if path == "status" and not self.backend.exists(key) and images_done[chunk]:
                    damage.append(Damage(path, file, rows, "missing, though its partition is marked complete"))
        return damage

    # -- writing safely ----------------------------------------------------------------------------------------

    @staticmethod
    def lock(path: str | os.PathLike | Backend, wait: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the store's write lock (:meth:`.backend.Backend.lock`); a second writer waits or is refused."""
        return backend_for(path).lock(wait)


def _state(backend: Backend) -> str:
    """'store' (a preimage store), 'new' (absent, empty, or our own interrupted creation) or 'foreign'."""
    root = backend.locate()
    if isinstance(root, Path) and root.exists() and not root.is_dir():
        return "foreign"
    try:
        meta = backend.read("zarr.json")
    except OSError:
        return "foreign"
    if meta is not None:
        try:
            attrs = json.loads(meta).get("attributes", {})
        except ValueError:
            return "foreign"
        return "store" if "preimage" in attrs else "new" if "preimage_incomplete" in attrs else "foreign"
    return "new" if all(key == LOCK_FILE for key in backend.objects()) else "foreign"


def _count(n: int, step: int) -> int:
    return max(1, -(-n // step))


def _create_progress(group: zarr.Group, marker: str, partitions: int, checksum: bool) -> zarr.Array:
    """The completion markers (at ``marker``, :func:`progress_path`) of ``images`` or a representation: one chunk per
    partition."""
    codecs = compressors(checksum)
    return group.create_array(marker, shape=(partitions,), chunks=(1,), dtype="uint8", compressors=codecs)


def _create_rows(
    group: zarr.Group, path: str, n: int, row_shape: tuple[int, ...], dtype, rows: int, checksum: bool = True
) -> zarr.Array:
    """A row-major array sharded by ``rows`` rows, ``CHUNK_ROWS`` rows per chunk (each with its crc32c)."""
    row_shape = tuple(int(v) for v in row_shape)
    return group.create_array(
        path,
        shape=(n, *row_shape),
        chunks=(min(CHUNK_ROWS, rows), *row_shape),
        shards=(rows, *row_shape),
        dtype=dtype,
        compressors=compressors(checksum),
        fill_value=0,
    )
