"""Small helpers shared by the store and pipeline tests."""

from __future__ import annotations

import contextlib
import hashlib

import zarr


def run_extract(store, source, specs, client, **kwargs):
    """``extract`` on an existing in-process dask client, without a progress line."""
    from preimage.pipeline.extract import extract

    kwargs.setdefault("shard_rows", 4)
    return extract(
        store, source, specs, client_factory=lambda: contextlib.nullcontext(client), show_progress=False, **kwargs
    )


def checksums(path) -> dict[str, str]:
    """sha256 of the contents of every array of a zarr store, read with plain zarr."""
    out = {}

    def visit(group, prefix):
        for key, member in sorted(group.members()):
            if isinstance(member, zarr.Array):
                data = member[...]
                text = data.dtype.kind in "TUO" or "String" in str(data.dtype)
                raw = "\0".join(map(str, data.tolist())).encode("utf-8", "surrogatepass") if text else data.tobytes()
                out[prefix + key] = hashlib.sha256(raw).hexdigest()
            else:
                visit(member, f"{prefix}{key}/")

    visit(zarr.open_group(str(path), mode="r", storage_options={"use_listings_cache": False} if "://" in str(path)
                          else None), "")  # fmt: skip
    return out


def write_crops(folder, photos: dict, count: int, side: int, step: tuple[int, int] = (4, 3)):
    """``count`` PNG crops ``side`` pixels square of scikit-image's photos, each shifted by ``step`` from the last
    (cycling through the photos): a folder of distinct real images for small stores."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    sources = list(photos.values())
    for i in range(count):
        crop = sources[i % len(sources)][step[0] * i : step[0] * i + side, step[1] * i : step[1] * i + side]
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return folder
