"""Where a store's objects live, behind one small interface: reading, writing whole objects atomically, listing,
deleting, and the store's write lock. :class:`LocalBackend` (a folder on a POSIX filesystem) is the first; an
object store implements the same methods (its lock by a conditional write)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

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
    def zarr_path(self) -> str:
        """What ``zarr.open_group`` takes for this store."""


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

    def zarr_path(self) -> str:
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


def backend_for(location: str | os.PathLike | Backend) -> Backend:
    """The backend of a store location: a folder path (the only kind so far), or a backend as it is."""
    if isinstance(location, Backend):
        return location
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise ValueError(f"{text}: stores at {scheme}:// URLs are not supported yet; give a folder")
    return LocalBackend(text.removeprefix("file://"))
