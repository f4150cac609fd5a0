"""Decoder training and inference speed, measured in the same run.

    python bench/bench_training.py --store photos.zarr [--features hog,lbp,...] [--fused alexnet:conv3-conv5]
        [--steps 20] [--repeats 3]

1. Training samples/s streaming batches from the store (``ShardStream`` through a DataLoader, as ``preimage
   train`` does, in-process by default as the trainer) against the same model fed the same batches from tensors
   already in memory, the two timed alternately ``--repeats`` times and the best of each kept (a 2-core machine's
   noise is larger than the difference); and the fraction of the streaming step time spent waiting for data.
   Both run with the malloc settings the ``preimage`` command applies (``preimage/runtime/memory.py``) unless
   ``--default-malloc`` is given.
   Beside them, the in-memory samples/s under bfloat16 autocast (``preimage train --precision bf16``) over the
   same in float32, timed alternately with them (``bf16 x``). ``--fused`` specs are each one decoder reading its
   layers together (``preimage train --feature alexnet:conv3-conv5``), streamed from each layer's array.
2. Inference: milliseconds per image for a batch of 64 and for a single image, per decoder.
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import milliseconds_per_image, synchronize

from preimage.cache.store import FeatureStore
from preimage.pipeline.features import expand_specs
from preimage.pipeline.lookup import stored_name
from preimage.pipeline.names import portable_name
from preimage.runtime.device import pick_device
from preimage.runtime.memory import keep_freed_memory
from preimage.train.training.data import ShardStream
from preimage.train.training.objective import pixel_loss
from preimage.train.training.precision import hardware
from preimage.train.training.trainer import TrainConfig, build


def train_steps(
    model: torch.nn.Module, batches, steps: int, device: torch.device, precision: str = "fp32"
) -> tuple[float, float]:
    """Adam steps on ``batches`` (an iterable), each moved to ``device`` and run in ``precision`` as the trainer
    does; (seconds in all, seconds spent waiting for the next batch)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    synchronize(device)
    waiting, start = 0.0, time.perf_counter()
    iterator = iter(batches)
    for _ in range(steps):
        before = time.perf_counter()
        x, y = next(iterator)
        waiting += time.perf_counter() - before
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = pixel_loss(model, x, y, precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start, waiting


def epochs(stream: ShardStream, workers: int, pin: bool):
    """The stream's batches through a DataLoader as the trainer reads them, epoch after epoch, without end."""
    epoch = 0
    while True:
        stream.set_epoch(epoch)
        yield from torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--features", default="hog,lbp,sift,alexnet:conv1-conv5", help="Each layer alone.")
    parser.add_argument("--fused", default="", help="Comma-separated specs, each one decoder of its layers together.")
    parser.add_argument("--steps", type=int, default=20, help="Timed training steps per block.")
    parser.add_argument("--repeats", type=int, default=3, help="Blocks per feeding, alternated; the best counts.")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the streaming side.")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu or cuda")
    parser.add_argument(
        "--default-malloc", action="store_true", help="Keep glibc's default malloc (the preimage command does not)."
    )
    args = parser.parse_args()
    kept = not args.default_malloc and keep_freed_memory()
    malloc = "malloc keeps freed memory" if kept else "glibc default malloc"
    device = pick_device(args.device)
    store = FeatureStore.open(args.store)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    print(f"{args.store}: {store.array('ids').shape[0]} rows; {where}; torch threads {threads}; {malloc}")
    print(f"bf16: {hardware(device).reason} (what --precision auto decides on)")
    header = f"{'stream/s':>9} {'memory/s':>9} {'ratio':>6} {'waiting':>8} {'bf16 x':>7} {'ms/img@64':>10} {'ms@1':>7}"
    print(f"{'feature':16} {header}")
    fused = [stored_name(store, spec) for spec in filter(None, args.fused.split(","))]
    for feature in [*expand_specs(args.features), *fused]:
        config = TrainConfig(args.store, feature, "unused", width=args.width)
        stream = ShardStream(
            args.store, feature, split="train", target_size=config.target_size, batch_size=config.batch_size
        )
        warm = 3
        batches = []
        for i, (x, y) in enumerate(epochs(stream, args.workers, False)):  # what the in-memory side replays
            batches.append((x.to(device), y.to(device)))
            if i + 1 == args.steps + warm:
                break
        in_memory, streamed = build(config, store).to(device), build(config, store).to(device)
        bf16 = build(config, store).to(device)
        streaming = epochs(stream, args.workers, device.type == "cuda")
        train_steps(in_memory, batches[:warm], warm, device)
        train_steps(streamed, streaming, warm, device)
        train_steps(bf16, batches[:warm], steps=warm, device=device, precision="bf16")
        memory_seconds, stream_seconds, bf16_seconds, waiting = float("inf"), float("inf"), float("inf"), 0.0
        for _ in range(args.repeats):
            memory_seconds = min(memory_seconds, train_steps(in_memory, batches[warm:], args.steps, device)[0])
            bf16_seconds = min(
                bf16_seconds, train_steps(bf16, batches[warm:], steps=args.steps, device=device, precision="bf16")[0]
            )
            seconds, waited = train_steps(streamed, streaming, args.steps, device)
            if seconds < stream_seconds:
                stream_seconds, waiting = seconds, waited
        model = streamed
        samples = args.steps * config.batch_size
        model.eval()
        x = batches[0][0]
        batch_ms = milliseconds_per_image(model, x, 5, device)
        single_ms = milliseconds_per_image(model, x[:1], 20, device)
        print(
            f"{portable_name(feature):16} {samples / stream_seconds:9.1f} {samples / memory_seconds:9.1f} "
            f"{memory_seconds / stream_seconds:6.2f} {waiting / stream_seconds:8.1%} "
            f"{memory_seconds / bf16_seconds:7.2f} {batch_ms:10.2f} {single_ms:7.2f}"
        )


if __name__ == "__main__":
    main()
