"""Where images come from: a folder (class sub-folders become labels), a text file of paths, an HDF5 dataset,
or the photographs that ship with scikit-image (the embedded default).

A source lists its rows once, in a fixed order (row ``i`` of every store array is item ``i``), and loads any
row as RGB uint8 or raises :class:`~preimage.pipeline.decode.ImageReadError` with the reason. Sources are small
picklable objects: the dask tasks carry them to the workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, ImageReadError, check_dimensions, read_image, to_rgb_uint8
from .images import sample_photos


def display_id(path: str) -> str:
    """A printable, UTF-8-safe id for a file name (bytes that are not UTF-8 appear as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass
class Source:
    """Rows of one image collection: ``ids`` (printable), ``labels`` (-1 for none), ``class_names``."""

    kind: str
    location: str
    ids: list[str]
    labels: list[int]
    class_names: list[str]
    keys: list = field(default_factory=list, repr=False)  # what load() needs per row (paths, indices, names)

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict:
        """What the store records about its source."""
        return {"kind": self.kind, "location": self.location, "rows": len(self), "classes": len(self.class_names)}

    def part(self, start: int, stop: int) -> Source:
        """The rows ``start:stop`` only: what one task needs to carry."""
        return Source(
            self.kind,
            self.location,
            ids=self.ids[start:stop],
            labels=self.labels[start:stop],
            class_names=self.class_names,
            keys=self.keys[start:stop],
        )

    def read(
        self,
        min_side: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        skip: dict[int, str] | None = None,
        before: Callable[[int], None] | None = None,
    ) -> Iterator[np.ndarray | ImageReadError]:
        """Each row in order as RGB uint8 (H, W, 3), or the :class:`ImageReadError` that says why it cannot be.

        Images over ``max_pixels`` are refused before decoding; rows in ``skip`` are not decoded at all but
        refused with the reason given there; ``before(row)`` is called just before a row is decoded."""
        skip = skip or {}
        for row, load in enumerate(self._loaders(min_side, max_pixels)):
            if row in skip:
                yield ImageReadError(skip[row])
                continue
            if before is not None:
                before(row)
            yield _attempt(load)

    def _loaders(self, min_side: int, max_pixels: int) -> Iterator[Callable[[], np.ndarray]]:
        """One function per row that decodes it (opened containers stay open while the rows are read)."""
        if self.kind in ("folder", "list"):
            for key in self.keys:
                yield partial(read_image, key, min_side, max_pixels)
        elif self.kind == "hdf5":
            import h5py

            file, dataset = self.location.rsplit(":", 1)
            with h5py.File(file, "r") as f:
                array = f[dataset]
                for key in self.keys:
                    yield partial(_read_row, array, key, max_pixels)
        elif self.kind == "sample-photos":
            photos = sample_photos()
            for key in self.keys:
                yield partial(_sample_photo, photos, key)
        else:
            raise ValueError(f"unknown source kind {self.kind!r}")


def _read_row(array, key: int, max_pixels: int) -> np.ndarray:
    """Row ``key`` of an HDF5 image stack, its size checked before it is read."""
    shape = array.shape[1:]
    channels_first = len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4)
    height, width = shape[1:3] if channels_first else shape[:2]
    check_dimensions(int(width), int(height), "HDF5 image", max_pixels)
    return to_rgb_uint8(array[key])


def _sample_photo(photos: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in photos:
        raise ImageReadError(f"scikit-image has no photo {key!r} here")
    return photos[key]


def _attempt(read: Callable[[], np.ndarray]) -> np.ndarray | ImageReadError:
    try:
        return read()
    except ImageReadError as err:
        return err


def open_source(images: str | os.PathLike | None, exclude: str | os.PathLike | None = None) -> Source:
    """The source named on the command line: a folder, a ``.txt`` list, ``FILE.h5[:DATASET]``, or None.

    ``exclude`` (the store being written) is skipped when it lies inside the folder.
    """
    if images is None:
        return sample_photos_source()
    text = os.fspath(images)
    path = Path(text)
    if path.is_dir():
        return folder_source(path, exclude)
    named = re.fullmatch(r"(.*\.(?:h5|hdf5|he5)):(.+)", text, flags=re.IGNORECASE)
    h5_file, dataset = (named.group(1), named.group(2)) if named and not path.exists() else (text, None)
    if Path(h5_file).suffix.lower() in (".h5", ".hdf5", ".he5") and Path(h5_file).is_file():
        return hdf5_source(Path(h5_file), dataset)
    if path.is_file():
        return list_source(path)
    raise FileNotFoundError(f"--images {text}: no such folder, list file or HDF5 file")


def sample_photos_source() -> Source:
    """The colour photographs inside scikit-image's data module."""

    names = sorted(sample_photos())
    return Source("sample-photos", "skimage.data", ids=names, labels=[-1] * len(names), class_names=[], keys=names)


def folder_source(root: Path, exclude: str | os.PathLike | None = None) -> Source:
    """Every file under ``root`` (hidden ones aside), sorted; the folder holding a file names its class.

    Symbolic links are followed, but a directory reached twice (a link loop) is walked once; files that
    cannot be read (a link pointing at itself, a dangling link) are still listed so they land in ``failures``.
    """
    root = Path(root)
    seen: set[tuple[int, int]] = set()
    if exclude is not None and Path(exclude).exists():
        stat = os.stat(exclude)
        seen.add((stat.st_dev, stat.st_ino))  # walked "already": never listed
    rows: list[tuple[str, str]] = []  # (path relative to root, parent folder relative to root)
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            stat = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative_folder = os.path.relpath(folder, root)
        for name in files:
            if not name.startswith("."):
                rows.append((os.path.join(relative_folder, name) if relative_folder != "." else name, relative_folder))
    rows.sort(key=lambda r: os.fsencode(r[0]))
    class_names = sorted({parent for _, parent in rows}, key=os.fsencode)
    if class_names == ["."]:
        class_names = []  # a flat folder has no classes
    index = {name: i for i, name in enumerate(class_names)}
    return Source(
        "folder",
        str(root.resolve()),
        ids=[display_id(rel) for rel, _ in rows],
        labels=[index.get(parent, -1) for _, parent in rows],
        class_names=[display_id(name) for name in class_names],
        keys=[str(root / rel) for rel, _ in rows],
    )


def list_source(list_file: Path) -> Source:
    """One path per line (relative ones to the list's folder); blank lines and ``#`` comments are skipped."""
    base = list_file.resolve().parent
    paths = []
    for line in list_file.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            paths.append(line)
    if not paths:
        raise ValueError(f"--images {list_file}: the list holds no paths")
    return Source(
        "list",
        str(list_file.resolve()),
        ids=[display_id(p) for p in paths],
        labels=[-1] * len(paths),
        class_names=[],
        keys=[str(base / p) for p in paths],
    )


def hdf5_source(file: Path, dataset: str | None) -> Source:
    """Images stacked along the first axis of an HDF5 dataset (the only image-like one when not named)."""
    import h5py

    try:
        handle = h5py.File(file, "r")
    except OSError as err:
        raise ValueError(f"{file}: not a readable HDF5 file ({err})") from None
    with handle as f:
        if dataset is None:
            candidates: list[str] = []
            f.visititems(lambda name, obj: candidates.append(name) if _image_stack(obj) else None)
            if len(candidates) != 1:
                found = ", ".join(candidates) or "none"
                raise ValueError(f"{file}: name the dataset of images as {file}:DATASET (image stacks found: {found})")
            dataset = candidates[0]
        if dataset not in f or not _image_stack(f[dataset]):
            raise ValueError(f"{file}:{dataset} is not a stack of images (N, H, W[, C])")
        count = f[dataset].shape[0]
        labels = [-1] * count
        class_names: list[str] = []
        if "labels" in f and f["labels"].shape == (count,):
            labels = [int(v) for v in f["labels"][()]]
    return Source(
        "hdf5",
        f"{file.resolve()}:{dataset}",
        ids=[f"{dataset}[{i}]" for i in range(count)],
        labels=labels,
        class_names=class_names,
        keys=list(range(count)),
    )


def _image_stack(obj) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4) and obj.shape[0] > 0
