"""What the chunk checksums cost: writing and reading whole shards with and without zarr's crc32c codec.

    python bench/bench_checksum.py --store photos.zarr [--shards 16] [--repeats 5]

For each feature of an existing store, the rows of its first ``--shards`` shards are encoded and written
(``ShardLayout.write``, as ``extract`` writes) and read back (``ShardLayout.read``, as ``train`` reads) once with
each chunk's crc32c and once without, alternately ``--repeats`` times into a scratch folder; the best of each
is kept. The peer is the same layout without the checksum, measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from preimage.cache.store import FeatureStore, feature_path


def best_seconds(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    store = FeatureStore.open(args.store)
    print(
        f"{args.store}: {store.rows} rows; MB/s over {args.shards} shards of {store.shard_rows} rows, best of "
        f"{args.repeats}"
    )
    print(f"{'array':26} {'write crc':>10} {'write':>10} {'ratio':>6} {'read crc':>10} {'read':>10} {'ratio':>6}")
    paths = ["images", *(feature_path(name) for name in store.feature_names())]
    with tempfile.TemporaryDirectory() as scratch:
        for path in paths:
            stored = store._layout(path)
            shards = min(args.shards, len(store.partitions()))
            rows = [store.read_rows(path, *store.partitions()[i]) for i in range(shards)]
            megabytes = sum(r.nbytes for r in rows) / 2**20
            results = {}
            for checksum in (True, False):
                layout = dataclasses.replace(stored, folder=Path(scratch) / path / str(checksum), checksum=checksum)

                def write(layout=layout, rows=rows):
                    for i, values in enumerate(rows):
                        layout.write(store.partitions()[i][0], values)

                def read(layout=layout, shards=shards):
                    for i in range(shards):
                        layout.read(store.partitions()[i][0])

                write()
                results[checksum] = (best_seconds(write, args.repeats), best_seconds(read, args.repeats))
            (write_crc, read_crc), (write_plain, read_plain) = results[True], results[False]
            writes = f"{megabytes / write_crc:10.0f} {megabytes / write_plain:10.0f} {write_plain / write_crc:6.2f}"
            reads = f"{megabytes / read_crc:10.0f} {megabytes / read_plain:10.0f} {read_plain / read_crc:6.2f}"
            print(f"{path:26} {writes} {reads}")


if __name__ == "__main__":
    main()
