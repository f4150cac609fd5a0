"""Training from a store in object storage against the same store on the local disk, measured in the same run.

    python bench/bench_remote_store.py --store photos.zarr --feature hog [--steps 40] [--repeats 3]

The store is copied into a bucket of moto's S3 server on loopback (started here; the copy is not timed). Then:
1. Reading: one epoch of the training stream's batches (``ShardStream``: whole shards, verified, read ahead on
   several threads) from the bucket and from the disk, and plain zarr reading the same arrays from the bucket
   (``zarr.open_group`` over fsspec, shard by shard) as the peer.
2. Training: samples/s of the decoder streaming from the bucket and from the disk, alternated ``--repeats``
   times, the best of each kept; the ratio is what ``train --store s3://...`` keeps of a local run's speed.
Loopback has no network latency or bandwidth limit: the costs measured are the S3 protocol's, the server's and
the client's. A real bucket adds a round trip per request, which the read-ahead overlaps.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time

import numpy as np
import torch
from bench_training import epochs, train_steps

from preimage.cache.store import FeatureStore, feature_path
from preimage.train.training.data import ShardStream
from preimage.train.training.trainer import TrainConfig, build


def serve() -> tuple[object, str]:
    """moto's S3 server on a free loopback port, with the environment pointing at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=url,
    )
    return server, url


def stream_epoch(store: str, feature: str, batch: int, target: int) -> tuple[float, int]:
    """Seconds to read one epoch of training batches, and the rows read."""
    stream = ShardStream(
        store, feature, split="train", target_size=target, batch_size=batch, buffer_shards=4, seed=0, held_out=0.1
    )
    start, rows = time.perf_counter(), 0
    for x, _ in stream:
        rows += len(x)
    return time.perf_counter() - start, rows


def plain_zarr(url: str, feature: str) -> float:
    """Seconds for plain zarr to read the images and the feature from the bucket, one shard's rows at a time."""
    import zarr

    group = zarr.open_group(url, mode="r", storage_options={"use_listings_cache": False})
    start = time.perf_counter()
    for name in ("images", feature_path(feature)):
        array = group[name]
        step = array.shards[0] if array.shards else array.chunks[0]
        for i in range(0, array.shape[0], step):
            np.asarray(array[i : i + step])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="a local preimage store")
    parser.add_argument("--feature", default="hog")
    parser.add_argument("--steps", type=int, default=40, help="Timed training steps per block.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--target-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    server, endpoint = serve()
    import fsspec

    fs = fsspec.filesystem("s3", use_listings_cache=False)
    fs.mkdir("bench")
    start = time.perf_counter()
    fs.put(str(args.store).rstrip("/") + "/", "bench/store.zarr", recursive=True)
    remote = "s3://bench/store.zarr"
    size = sum(info["size"] for info in fs.find("bench/store.zarr", detail=True).values())
    print(f"copied {args.store} ({size / 1e6:.0f} MB) to {remote} at {endpoint} in {time.perf_counter() - start:.1f} s")
    rows = FeatureStore.open(remote).rows
    print(f"{rows} rows; feature {args.feature}; batch {args.batch_size}, decoder width {args.width}")

    local_read, n = stream_epoch(args.store, args.feature, args.batch_size, args.target_size)
    remote_read, _ = stream_epoch(remote, args.feature, args.batch_size, args.target_size)
    peer = plain_zarr(remote, args.feature)
    print(
        f"1. one epoch of batches ({n} rows): disk {local_read:.2f} s, bucket {remote_read:.2f} s "
        f"(bucket / disk time {remote_read / local_read:.2f}x); plain zarr reading the same arrays from the bucket "
        f"{peer:.2f} s (preimage / zarr time {remote_read / peer:.2f}x)"
    )

    store = FeatureStore.open(args.store)
    config = TrainConfig(args.store, args.feature, "unused", target_size=args.target_size, width=args.width)
    best = {"disk": 0.0, "bucket": 0.0}
    feeds = {
        where: epochs(
            ShardStream(
                path,
                args.feature,
                split="train",
                target_size=args.target_size,
                batch_size=args.batch_size,
                buffer_shards=4,
                seed=0,
                held_out=0.1,
            ),
            0,
            False,
        )
        for where, path in (("disk", args.store), ("bucket", remote))
    }
    device = torch.device("cpu")
    for repeat in range(args.repeats):
        for where, feed in feeds.items():
            model = build(config, store)
            train_steps(model, feed, 2, device)  # warm-up: the first buffer and the allocator
            seconds, waiting = train_steps(model, feed, args.steps, device)
            rate = args.steps * args.batch_size / seconds
            best[where] = max(best[where], rate)
            print(f"   repeat {repeat + 1}, {where}: {rate:.0f} samples/s ({waiting / seconds:.0%} waiting for data)")
    print(
        f"2. training: disk {best['disk']:.0f} samples/s, bucket {best['bucket']:.0f} samples/s: the bucket keeps "
        f"{best['bucket'] / best['disk']:.2f}x of the disk's speed"
    )
    server.stop()


if __name__ == "__main__":
    main()
