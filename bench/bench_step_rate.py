"""A decoder training step's arithmetic rate against the machine's own matrix rate, measured in the same run.

    python bench/bench_step_rate.py [--steps 6] [--threads 1,2] [--precision fp32,bf16] [--deepsim]

For each decoder kind the zoo uses (grid: HOG, LBP, SIFT; map: a CNN layer and a ViT block; vector; fused), one
Adam step of the pixel loss (and with ``--deepsim`` one DeePSiM step: the decoder, its comparator and its
discriminator) on random rows of the zoo's shapes: its FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``
(forward and backward), its time the best of ``--steps`` after a warm-up, and the rate as a fraction of the rate of a
1536 x 1536 matrix product timed just before it (best of 3), in the same precision and thread count. bf16 runs only
where the CPU or GPU computes it natively (``precision.hardware``): emulated, it measures the emulation.
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import synchronize
from torch.utils.flop_counter import FlopCounterMode

from preimage.runtime.device import pick_device
from preimage.train.models.decoders import DecoderConfig, create_decoder
from preimage.train.training.objective import create_objective
from preimage.train.training.precision import hardware

# (label, kind, one stored row's shape, a fused decoder's parts): the zoo's representations at --size 128
KINDS = [
    ("hog (grid)", "grid", (16, 16, 31), ()),
    ("lbp (grid)", "grid", (8, 8, 58), ()),
    ("sift (grid)", "grid", (32, 32, 133), ()),
    ("alexnet:conv3 (map)", "map", (384, 13, 13), ()),
    ("dinov2 block (map)", "map", (384, 16, 16), ()),
    ("alexnet:fc6 (vector)", "vector", (4096,), ()),
    (
        "alexnet:conv3+conv4+conv5 (fused)",
        "fused",
        (384 * 169 + 256 * 169 + 256 * 36,),
        ((384, 13, 13), (256, 13, 13), (256, 6, 6)),
    ),
]
MATRIX = 1536


def matrix_rate(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a MATRIX x MATRIX product here (best of 3 of 5 products)."""
    a = torch.randn(MATRIX, MATRIX, device=device, dtype=dtype)
    b = torch.randn(MATRIX, MATRIX, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * MATRIX**3 / best


def step_rate(kind: tuple, loss: str, precision: str, steps: int, device: torch.device) -> tuple[float, float]:
    """(FLOPs of one training step, seconds of the best step)."""
    _, name, shape, parts = kind
    batch = 32 if loss == "deepsim" else 64
    model = create_decoder(DecoderConfig(name, shape, target_size=64, width=128, parts=parts)).to(device)
    objective = create_objective(loss, feature_shape=shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, *shape, device=device)
    y = torch.rand(batch, 3, 64, 64, device=device)

    def step() -> None:
        value, _ = objective.step(model, x, y, precision)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        objective.after_step()

    step()  # warm-up: allocations, kernels chosen
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    best = float("inf")
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return counter.get_total_flops(), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--deepsim", action="store_true", help="also the DeePSiM step")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    native = hardware(device).native_bf16
    losses = ["pixel", *(["deepsim"] if args.deepsim else [])]
    print(f"device {device}; bf16 {'native' if native else 'emulated: not measured'}")
    print("step | loss | precision | threads | GFLOP/step | GFLOP/s | matrix GFLOP/s | fraction | samples/s")
    for precision in args.precision.split(","):
        if precision == "bf16" and not native:
            continue
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for threads in map(int, args.threads.split(",")):
            if device.type == "cpu":
                torch.set_num_threads(threads)
            for loss in losses:
                for kind in KINDS:
                    limit = matrix_rate(device, dtype)
                    flops, seconds = step_rate(kind, loss, precision, steps=args.steps, device=device)
                    batch = 32 if loss == "deepsim" else 64
                    rate = flops / seconds
                    print(
                        f"{kind[0]} | {loss} | {precision} | {threads} | {flops / 1e9:.1f} | {rate / 1e9:.1f} "
                        f"| {limit / 1e9:.1f} | {rate / limit:.2f} | {batch / seconds:.1f}"
                    )


if __name__ == "__main__":
    main()
