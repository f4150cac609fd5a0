"""Where a store's objects live, behind one small interface: reading, writing whole objects atomically, listing,
deleting, and the store's write lock. :class:`LocalBackend` is a folder on a POSIX filesystem;
:class:`ObjectBackend` an object store at a URL (``s3://``, ``gs://``, ``az://``: whatever fsspec serves with the
library installed), its lock a conditional write.

Credentials and endpoints come from the standard places of each library (for S3: the environment, e.g.
``AWS_ENDPOINT_URL_S3`` for MinIO or Ceph, and ``~/.aws`` profiles); settings of the fsspec filesystem itself come
from ``PREIMAGE_STORAGE_OPTIONS`` (JSON, what ``--storage-option KEY=VALUE`` sets), which the workers of a local
cluster and of batch jobs inherit."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from ..runtime.extras import EXTRAS, MissingExtra, install_hint

LOCK_FILE = ".extract.lock"


class StoreLocked(RuntimeError):
    """Another process holds the store's write lock."""


class Backend(ABC):
    """The file operations a store needs; keys are '/'-separated paths relative to the store's root."""

    @abstractmethod
    def locate(self, key: str = "") -> Path | str:
        """How messages name the object at ``key`` (a path, a URL)."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The object's bytes, None when there is none."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Write a whole object atomically: a reader sees the old one or the new one, never a part."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (nothing when there is none)."""

    @abstractmethod
    def remove(self, prefix: str) -> None:
        """Remove every object under ``prefix`` (an interrupted creation's arrays)."""

    @abstractmethod
    def exists(self, key: str = "") -> bool:
        """Whether an object (or, for ``""``, the store's root) is there."""

    @abstractmethod
    def objects(self, prefix: str = "") -> Iterator[str]:
        """Every object key under ``prefix``."""

    @abstractmethod
    def size(self, prefix: str = "") -> int:
        """Bytes the objects under ``prefix`` take."""

    @abstractmethod
    def lock(self, wait: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the store's write lock; a second writer waits (``wait``) or gets :class:`StoreLocked`."""

    @abstractmethod
    def zarr_path(self, read_only: bool = True):
        """What ``zarr.open_group`` takes for this store: a path, or a zarr store object."""


class LocalBackend(Backend):
    """A store in a folder: objects are files, written to a temporary name and renamed into place; the lock is an
    ``flock`` on ``.extract.lock``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def locate(self, key: str = "") -> Path:
        return self.root / key if key else self.root

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")  # zarr's own name for a file being written
        try:
            partial.write_bytes(data)
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def remove(self, prefix: str) -> None:
        path = self.root / prefix
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def exists(self, key: str = "") -> bool:
        return (self.root / key).exists()

    def objects(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix
        if base.is_file():
            yield prefix
            return
        for path in sorted(base.rglob("*")) if base.is_dir() else ():
            if path.is_file():
                yield path.relative_to(self.root).as_posix()

    def size(self, prefix: str = "") -> int:
        return sum((self.root / key).stat().st_size for key in self.objects(prefix))

    def zarr_path(self, read_only: bool = True) -> str:
        return str(self.root)

    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """An ``flock`` on ``.extract.lock``; the file is removed on release (plain zarr listings would warn about
        it), so a waiter that wakes on a removed file tries again on the new one."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock_file = self.root / LOCK_FILE
        while True:
            handle = open(lock_file, "a+")  # noqa: SIM115 - closed below or on release
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise StoreLocked(
                    f"{self.root} is being written by {holder}; wait for it to finish, or pass --wait to queue behind "
                    "it"
                ) from None
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"`preimage extract` (pid {os.getpid()} on {socket.gethostname()})")
            handle.flush()
            yield
        finally:
            lock_file.unlink(missing_ok=True)
            handle.close()  # releases the flock


STORAGE_OPTIONS = "PREIMAGE_STORAGE_OPTIONS"  # JSON: settings of the fsspec filesystem of URL stores
LEASE_SECONDS = 60.0  # a URL store's lock is renewed this often; one not renewed for 3 leases is abandoned


def storage_options() -> dict:
    """The fsspec settings of URL stores (``PREIMAGE_STORAGE_OPTIONS``), nested keys joined by dots flattened back
    (``client_kwargs.endpoint_url``)."""
    text = os.environ.get(STORAGE_OPTIONS, "")
    if not text:
        return {}
    try:
        flat = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{STORAGE_OPTIONS} is not JSON ({err})") from None
    options: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = options
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return options


def is_url(location: str | os.PathLike) -> bool:
    """Whether a store location is a URL served by an object store (``file://`` is a folder)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


class ObjectBackend(Backend):
    """A store in an object store at a URL, through fsspec (s3fs for ``s3://``): every object is written whole in
    one request, which the store makes visible only once complete. The lock is an object created only where none
    exists (``If-None-Match: *``, which AWS S3, MinIO and recent Ceph honour), held by renewing it: one not renewed
    for three leases (a killed writer on another machine) is taken over, as is one whose writer on this machine is
    gone. An endpoint that ignores the condition still gets a lock, checked by reading it back, which two writers
    starting within the same second could both pass."""

    def __init__(self, url: str, options: dict | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.protocol = self.url.split("://", 1)[0]
        self.options = options  # given here, they travel with it to dask workers; None: each place's environment
        try:
            self.settings = {"use_listings_cache": False, **(storage_options() if options is None else options)}
            self.fs = fsspec.filesystem(self.protocol, **self.settings)
        except ImportError as err:
            package = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(self.protocol)
            extra = next((name for name, modules in EXTRAS.items() if package in modules), None)
            how = install_hint(extra) if extra else f"pip install {package or err.name}"
            raise MissingExtra(f"{url}: stores at {self.protocol}:// URLs need {package or err.name}: {how}") from None
        except ValueError as err:
            raise ValueError(f"{url}: {err}") from None
        self.root = self.fs._strip_protocol(self.url)

    def __repr__(self) -> str:
        return f"ObjectBackend({self.url!r})"

    def __reduce__(self):  # dask tasks carry it: the filesystem is made again where it runs, with the same options
        return type(self), (self.url, self.options)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def locate(self, key: str = "") -> str:
        return f"{self.url}/{key}" if key else self.url

    def read(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(self._path(key), data)
        except FileNotFoundError as err:
            raise self._no_bucket(err) from None

    def _no_bucket(self, err: FileNotFoundError) -> FileNotFoundError:
        """A write refused for want of a bucket, said with the bucket's name and how to make it."""
        if "bucket" not in str(err).lower():
            return err
        bucket = self.root.split("/", 1)[0]
        return FileNotFoundError(
            f"{self.url}: the bucket {bucket!r} does not exist at this endpoint; create it first "
            f"(aws s3 mb {self.protocol}://{bucket}, or your storage's console or mc mb for "
            "MinIO), or give a store in a bucket that exists"
        )

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def remove(self, prefix: str) -> None:
        keys = list(self.objects(prefix))
        if keys:
            self.fs.rm([self._path(key) for key in keys])

    def exists(self, key: str = "") -> bool:
        if key:
            return self.fs.exists(self._path(key))
        try:  # a prefix exists while it holds an object: one listing of its top level, not of every object
            return bool(self.fs.ls(self._path(""), detail=False))
        except FileNotFoundError:
            return False

    def _found(self, prefix: str) -> dict[str, dict]:
        self.fs.invalidate_cache(self._path(prefix))
        try:
            found = self.fs.find(self._path(prefix), detail=True)
        except FileNotFoundError:
            return {}
        start = len(self.root) + 1
        return {path[start:]: info for path, info in sorted(found.items()) if info.get("type") != "directory"}

    def objects(self, prefix: str = "") -> Iterator[str]:
        yield from self._found(prefix)

    def size(self, prefix: str = "") -> int:
        return sum(int(info.get("size", 0)) for info in self._found(prefix).values())

    def zarr_path(self, read_only: bool = True):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.url, storage_options=self.settings, read_only=read_only)

    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        token = f"{uuid.uuid4().hex} `preimage extract` (pid {os.getpid()} on {socket.gethostname()})"
        while not self._acquire(token):
            if not wait:
                holder = (self.read(LOCK_FILE) or b"").decode(errors="replace").split(" ", 1)[-1] or "another process"
                raise StoreLocked(
                    f"{self.url} is being written by {holder}; wait for it to finish, or pass --wait to queue behind it"
                )
            time.sleep(min(5.0, LEASE_SECONDS / 4))
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(token, stop), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            if self.read(LOCK_FILE) == token.encode():
                self.delete(LOCK_FILE)

    def _acquire(self, token: str) -> bool:
        """Create the lock object if there is none (or take over an abandoned one); True if it is ours."""
        try:
            self.fs.pipe_file(self._path(LOCK_FILE), token.encode(), mode="create")
        except FileNotFoundError as err:
            raise self._no_bucket(err) from None
        except FileExistsError:
            if not self._abandoned():
                return False
            self.write(LOCK_FILE, token.encode())
            time.sleep(0.5)  # a second taker writes within this; the last write wins, and both read it back
        return self.read(LOCK_FILE) == token.encode()

    def _abandoned(self) -> bool:
        """Whether the lock object's writer is gone: not renewed for three leases, or a process of this machine
        that no longer runs."""
        held = (self.read(LOCK_FILE) or b"").decode(errors="replace")
        if not held:
            return True
        pid, _, host = held.partition("(pid ")[2].rstrip(")").partition(" on ")
        if host == socket.gethostname() and pid.isdigit() and not _running(int(pid)):
            return True
        try:
            modified = self.fs.info(self._path(LOCK_FILE)).get("LastModified")
        except FileNotFoundError:
            return True
        age = time.time() - modified.timestamp() if hasattr(modified, "timestamp") else 0.0
        return age > 3 * LEASE_SECONDS

    def _renew(self, token: str, stop: threading.Event) -> None:
        while not stop.wait(LEASE_SECONDS):
            if self.read(LOCK_FILE) == token.encode():
                self.write(LOCK_FILE, token.encode())


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def backend_for(location: str | os.PathLike | Backend) -> Backend:
    """The backend of a store location: a folder path, a URL (``s3://bucket/store.zarr``), or a backend as it is."""
    if isinstance(location, Backend):
        return location
    text = str(location)
    if is_url(text):
        return ObjectBackend(text)
    return LocalBackend(text.removeprefix("file://"))
