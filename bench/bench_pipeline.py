"""The extraction pipeline against its peers, measured in the same run.

    python bench/bench_pipeline.py [--images DIR] [--limit N] [--features SPECS] [--workers W]

1. Throughput: ``extract`` (local dask cluster, decode + crop + extract + compress + write) against the sum of
   the bare extractor calls on the same images, decoded and cropped beforehand, in batches of 64 on all cores.
   The bare calls run in a fresh process with the malloc settings the workers get (``MALLOC_SETTINGS``), so the
   ratio is the pipeline's own cost; a second bare run with glibc's defaults shows what those settings are worth.
2. Size: bytes on disk per image per feature against raw float32, and what float16 storage would save and cost.
3. Reading: a random batch of 64 rows of each feature, and one whole shard of 64 rows, through zarr and through
   the store's own shard reader (``FeatureStore.take`` / ``read_rows``), against the same rows of a
   memory-resident numpy array (the ratio is preimage's reader to numpy).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from preimage.cache.store import READ, FeatureStore, compressors, feature_path
from preimage.pipeline.cluster import local_cluster
from preimage.pipeline.contract import DRAFT_MIN_SIDE, compute_features, plan_jobs
from preimage.pipeline.extract import extract
from preimage.pipeline.images import center_square
from preimage.pipeline.sources import Source, open_source
from preimage.runtime.memory import MALLOC_SETTINGS
from preimage.runtime.progress import StepTimer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def subset(source: Source, limit: int | None) -> Source:
    """Every ``len/limit``-th row, so a subset spans all classes."""
    if not limit or limit >= len(source):
        return source
    rows = np.linspace(0, len(source) - 1, limit).round().astype(int)
    return Source(
        source.kind,
        source.location,
        ids=[source.ids[i] for i in rows],
        labels=[source.labels[i] for i in rows],
        class_names=source.class_names,
        keys=[source.keys[i] for i in rows],
    )


def bare_seconds(source: Source, specs: str, size: int) -> tuple[dict[str, float], int]:
    """Seconds of each bare extractor on the readable images of ``source`` (decoded and cropped first)."""
    jobs = plan_jobs(specs, size)
    sizes = {size} | {job.input_size for job in jobs}
    crops: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
    for image in source.read(DRAFT_MIN_SIDE):
        if isinstance(image, np.ndarray):
            for s in sizes:
                crops[s].append(center_square(image, s))
    batches = {s: np.stack(c) for s, c in crops.items()}
    n = len(batches[size])
    compute_features(jobs, {s: b[:1] for s, b in batches.items()})  # loads the backbones outside the timing
    timer = StepTimer()  # the very function the pipeline's tasks call, per extractor
    for i in range(0, n, 64):
        compute_features(jobs, {s: b[i : i + 64] for s, b in batches.items()}, timer)
    return timer.seconds, n


def time_pipeline(store_path: Path, source: Source, args: argparse.Namespace) -> tuple[float, float, object]:
    """One ``extract`` into a new store: (seconds after the cluster was up, seconds in all, its summary)."""
    up: list[float] = []

    @contextlib.contextmanager
    def cluster():
        with local_cluster(args.workers) as client:
            up.append(time.perf_counter())
            yield client

    begin = time.perf_counter()
    summary = extract(
        store_path,
        source,
        specs=args.features,
        image_size=args.size,
        shard_rows=64,
        client_factory=cluster,
        show_progress=False,
    )
    total = time.perf_counter() - begin
    return (time.perf_counter() - up[0] if up else total), total, summary


def _total(run: tuple) -> float:
    """The figure a run is ranked by: the pipeline's seconds after start-up, or the bare extractors' sum."""
    return run[0] if isinstance(run[0], float) else sum(run[0].values())


def throughput(store_path: Path, source: Source, args: argparse.Namespace) -> None:
    """Part 1: ``extract`` against the bare extractors, alternated ``args.repeats`` times, best of each."""
    runs = {"pipeline": [], "bare, workers' malloc": [], "bare, default malloc": []}
    for repeat in range(args.repeats):  # alternated: this VM's speed drifts by 10-30% between minutes
        shutil.rmtree(store_path, ignore_errors=True)
        runs["pipeline"].append(time_pipeline(store_path, source, args))
        for label, environ in (("bare, workers' malloc", MALLOC_SETTINGS), ("bare, default malloc", {})):
            runs[label].append(bare_in_child(args, environ))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {_total(v[-1]):.1f} s" for k, v in runs.items()))
    best = {label: min(values, key=_total) for label, values in runs.items()}  # best of the repeats, each
    work, total, summary = best["pipeline"]
    print(f"pipeline (best of {args.repeats}): {summary.read} images read, {summary.unreadable} unreadable")
    print(f"  wall {total:.1f} s in all, {work:.1f} s after the cluster was up ({summary.read / work:.1f} images/s)")
    print("  summed over workers: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(summary.step_seconds.items())))
    print(
        f"bare extractors on the same decoded images, batches of 64, {torch.get_num_threads()} threads, best of "
        f"{args.repeats}:"
    )
    for label in ("bare, workers' malloc", "bare, default malloc"):
        bare, n = best[label]
        bare_total = sum(bare.values())
        print(
            f"  {label} ({n} images): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in bare.items())
            + f"; sum {bare_total:.1f} s"
        )
        print(
            f"    pipeline / bare = {work / bare_total:.3f} (overhead {(work / bare_total - 1) * 100:+.1f}%); "
            f"with cluster start-up {total / bare_total:.3f}"
        )


def bare_in_child(args: argparse.Namespace, environ: dict[str, str]) -> tuple[dict[str, float], int]:
    """:func:`bare_seconds` in a fresh process of this script with ``environ`` added (glibc reads its malloc
    settings at start-up)."""
    command = [
        sys.executable,
        __file__,
        "--bare-only",
        "--images",
        args.images,
        "--limit",
        str(args.limit),
        "--features",
        args.features,
        "--size",
        str(args.size),
    ]
    done = subprocess.run(command, env={**os.environ, **environ}, capture_output=True, text=True, check=True)
    seconds, n = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(SHARED) if SHARED.is_dir() else None)
    parser.add_argument("--limit", type=int, default=1024, help="rows of the source to use (0: all)")
    parser.add_argument("--features", default="hog,lbp,sift,alexnet:conv1-conv5")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="write the store here and keep it")
    parser.add_argument("--existing", type=Path, default=None, help="measure size and reading on this store only")
    parser.add_argument("--repeats", type=int, default=1, help="alternate pipeline and bare runs; best of each")
    parser.add_argument("--bare-only", action="store_true", help=argparse.SUPPRESS)  # the child of bare_in_child
    args = parser.parse_args()

    source = subset(open_source(args.images), args.limit)
    if args.bare_only:
        print(json.dumps(bare_seconds(source, args.features, args.size)))
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    store_path = args.keep or folder / "store.zarr"
    print(f"source: {source.location}, {len(source)} rows; features {args.features}; torch {torch.__version__}")

    if args.existing:
        store_path = args.existing  # parts 2 and 3 only
    else:
        throughput(store_path, source, args)
    store = FeatureStore.open(store_path)
    read = store.status() == READ
    rows = store.rows
    header = f"{'feature':18} {'raw f32/img':>12} {'disk/img':>10} {'ratio':>6} {'f16 disk/img':>13} {'f16 err':>12}"
    print("\n" + header)
    scratch = zarr.open_group(str(folder / "f16.zarr"), mode="w")
    sample = min(rows, 1024)  # rows read into memory for the float16 and reading figures
    for name in store.feature_names():
        array = store.features(name)
        values = array[:sample]
        raw = values[0].nbytes
        disk = store.bytes_on_disk(f"features/{name.replace(':', '/')}") / rows
        half = values.astype(np.float16)
        copy = scratch.create_array(
            name.replace(":", "_"),
            shape=half.shape,
            chunks=array.chunks,
            shards=array.shards,
            dtype="float16",
            compressors=compressors(store.checksums),
        )
        copy[:] = half
        disk16 = sum(f.stat().st_size for f in (folder / "f16.zarr" / name.replace(":", "_")).rglob("*")) / sample
        err = np.abs(half[read[:sample]].astype(np.float32) - values[read[:sample]]).max()
        scale = np.abs(values[read[:sample]]).max()
        print(
            f"{name:18} {raw / 1024:10.1f}KB {disk / 1024:8.1f}KB {raw / disk:6.1f} {disk16 / 1024:11.1f}KB "
            f"{err:12.2e} (of max {scale:.3g})"
        )

    print(f"\nbatches of 64 of the first {sample} rows, ms (best of 20 and of 10): random rows, and one whole shard")
    print(
        f"{'':18} {'random rows: zarr':>17} {'preimage':>9} {'numpy':>7} {'ratio':>6} {'shard: zarr':>12} "
        f"{'preimage':>9} {'numpy':>7} {'ratio':>6}"
    )
    rng = np.random.default_rng(0)
    for name in store.feature_names():
        path = feature_path(name)
        array = store.array(path)
        memory = array[:sample]
        batches = [np.sort(rng.choice(sample, size=min(64, sample), replace=False)) for _ in range(20)]
        t_zarr = min(_timed(lambda b=b, a=array: a.oindex[b]) for b in batches)
        t_own = min(_timed(lambda b=b, p=path: store.take(p, b)) for b in batches)
        t_numpy = min(_timed(lambda b=b, m=memory: m[b]) for b in batches)
        starts = [int(i) * store.shard_rows for i in rng.integers(0, max(1, sample // store.shard_rows), 10)]
        s_zarr = min(_timed(lambda s=s, a=array: a[s : s + store.shard_rows]) for s in starts)
        s_own = min(_timed(lambda s=s, p=path: store.read_rows(p, s, s + store.shard_rows)) for s in starts)
        s_numpy = min(_timed(lambda s=s, m=memory: m[s : s + store.shard_rows].copy()) for s in starts)
        print(
            f"{name:18} {t_zarr * 1e3:17.1f} {t_own * 1e3:9.1f} {t_numpy * 1e3:7.2f} {t_own / t_numpy:6.0f} "
            f"{s_zarr * 1e3:12.1f} {s_own * 1e3:9.1f} {s_numpy * 1e3:7.2f} {s_own / s_numpy:6.0f}"
        )
    shutil.rmtree(folder)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
