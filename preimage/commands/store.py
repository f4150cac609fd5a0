"""``preimage info`` and ``preimage export``: what a store holds, and an HDF5 copy of it."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from .options import STORE


def _open(store: Path):
    from ..cache.store import FeatureStore

    return FeatureStore.open(store)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@click.command()
@click.argument("store", type=STORE)
@click.option("--failures", "all_failures", is_flag=True, help="List every unreadable file, not the first 10.")
def info(store: Path, all_failures: bool) -> None:
    """Print what a feature store holds: rows, arrays, sizes on disk, extractor parameters, failures."""
    from ..cache.store import PENDING, READ, UNREADABLE, progress_subject

    s = _open(store)
    meta = s.meta
    status = s.status()
    checks = "every chunk with a crc32c" if s.checksums else "no chunk checksums (an older store)"
    click.echo(
        f"{store}: preimage store, schema {meta['schema_version']} ({checks}), created {meta.get('created', '?')}"
    )
    source = meta["source"]
    click.echo(f"source: {source['kind']} {source['location']} ({source['rows']} rows, {source['classes']} classes)")
    recipe = meta["recipe"]
    click.echo(f"images: {recipe['crop']}, {recipe['image_size']}x{recipe['image_size']} ({recipe['resize']})")
    click.echo(
        f"rows: {len(status)}: {(status == READ).sum()} read, {(status == UNREADABLE).sum()} unreadable, "
        f"{(status == PENDING).sum()} not yet read; {len(s.partitions())} partitions of {s.shard_rows} rows"
    )
    click.echo(f"\n{'array':26} {'shape':22} {'dtype':8} {'chunk':>6} {'shard':>6} {'on disk':>10} {'raw':>10} done")
    total = 0
    for path in s.array_paths():
        if path.startswith("progress/"):
            continue
        a = s.array(path)
        disk = s.bytes_on_disk(path)
        total += disk
        itemsize = a.dtype.itemsize if hasattr(a.dtype, "itemsize") and a.dtype.kind not in "TUO" else 0
        raw = _size(int(np.prod(a.shape)) * itemsize) if itemsize else "-"
        shards = a.shards[0] if a.shards else "-"
        what = progress_subject(path)
        done = f"{s.done(what).sum()}/{len(s.partitions())}" if what else ""
        shape = "x".join(map(str, a.shape))
        dtype = "str" if "String" in str(a.dtype) else str(a.dtype)
        click.echo(f"{path:26} {shape:22} {dtype:8} {a.chunks[0]:>6} {shards!s:>6} {_size(disk):>10} {raw:>10} {done}")
    click.echo(f"{'total':26} {'':22} {'':8} {'':>6} {'':>6} {_size(total):>10}")
    click.echo("")
    for name in s.feature_names():
        attrs = dict(s.features(name).attrs)
        params = json.dumps(attrs.get("params", {}), sort_keys=True)
        weights = attrs.get("weights_sha256")
        click.echo(
            f"{name}: input {attrs['input']['color']} {attrs['input']['size']}x{attrs['input']['size']}, "
            f"extractor v{attrs['extractor_version']}, params {params}"
            + (f", weights sha256 {weights[:16]}" if weights else "")
        )
    failures = s.failures()
    if failures:
        click.echo(f"\nunreadable ({len(failures)}):")
        for _, ident, reason in failures if all_failures else failures[:10]:
            click.echo(f"  {ident}: {reason}")
        if len(failures) > 10 and not all_failures:
            click.echo(f"  ... {len(failures) - 10} more (--failures lists them all)")


@click.command()
@click.argument("store", type=STORE)
def verify(store: Path) -> None:
    """Read every chunk of a store and check it: list each damaged or missing shard with the rows it holds
    (exit 1 when any), and say how to recompute them."""
    from ..runtime.progress import Progress

    s = _open(store)
    paths = s.array_paths()
    total = sum(
        len(s.partitions()) if s.array(p).shards else -(-s.array(p).shape[0] // s.array(p).chunks[0]) for p in paths
    )
    bar = Progress(total, "pieces")
    damage = s.verify(bar.update)
    bar.close()
    if not s.checksums:
        click.echo(f"{store} has no chunk checksums (an older store): only damage that breaks decoding is found")
    if not damage:
        click.echo(f"{store}: {len(paths)} arrays, {total} shards and chunks read: no damage")
        return
    click.echo(f"{store}: {len(damage)} damaged or missing:")
    for piece in damage:
        click.echo(f"  {piece}")
    raise click.ClickException(
        "recompute them with the extract command that made the store, plus --repair: "
        f"preimage extract --store {store} --images ... --repair"
    )


@click.command()
@click.argument("store", type=STORE)
@click.option("--h5", "h5_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="HDF5 file.")
@click.option("--overwrite", is_flag=True, help="Replace the HDF5 file if it exists.")
def export(store: Path, h5_path: Path, overwrite: bool) -> None:
    """Copy every array of a store to an HDF5 file (same paths; attributes as JSON)."""
    from ..cache.export import export_h5

    if h5_path.exists() and not overwrite:
        raise click.ClickException(f"{h5_path} exists already; pass --overwrite to replace it, or choose another file")

    written = export_h5(_open(store), h5_path)
    click.echo(f"wrote {h5_path}: {len(written)} arrays ({_size(h5_path.stat().st_size)})")
