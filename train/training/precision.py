"""Which arithmetic a training step runs in: bfloat16 autocast where the hardware has it, float32 elsewhere.

bfloat16 is a gain only where it is native: 1.45-2.00x the samples/s on a CPU with AVX512-BF16 (docs/performance.md)
but 14-15x slower on one without, where oneDNN emulates it. So ``auto`` (the default) asks the hardware, and an
explicit ``bf16`` on a CPU without it warns once with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import warnings
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16")


class PrecisionWarning(UserWarning):
    """bf16 asked for where the hardware emulates it."""


@dataclass(frozen=True)
class Hardware:
    """What decides the precision: the device type and whether it computes bfloat16 natively (and why)."""

    device_type: str
    native_bf16: bool
    reason: str


@functools.cache
def cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), as torch's build reports them, with the
    reason; /proc/cpuinfo is the fallback where torch does not say."""
    probes = {"AVX512-BF16": "_is_avx512_bf16_supported", "AMX": "_is_amx_tile_supported"}
    known = False
    for label, probe in probes.items():
        check = getattr(torch.cpu, probe, None)
        if check is None:
            continue
        known = True
        with contextlib.suppress(Exception):
            if check():
                return True, f"this CPU has {label} (torch reports it)"
    if not known and any(flag in _cpuinfo_flags() for flag in ("avx512_bf16", "amx_bf16")):
        return True, "this CPU has AVX512-BF16 or AMX (/proc/cpuinfo)"
    capability = torch.backends.cpu.get_cpu_capability()
    return False, f"this CPU has no bfloat16 instructions (torch's kernels: {capability}; no AVX512-BF16, no AMX)"


def _cpuinfo_flags() -> set[str]:
    """The CPU flags Linux lists (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def machine(device: torch.device) -> str:
    """What a run trained on, in words, for its record: the GPU's name, or the CPU's model and torch's threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{model}, {threads} thread{'s' if threads > 1 else ''}"


def hardware(device: torch.device) -> Hardware:
    """The :class:`Hardware` of ``device``."""
    if device.type == "cuda":
        native = bool(torch.cuda.is_bf16_supported())
        name = torch.cuda.get_device_name(device)
        return Hardware("cuda", native, f"{name} {'computes' if native else 'does not compute'} bfloat16 natively")
    if device.type == "cpu":
        native, reason = cpu_bf16()
        return Hardware("cpu", native, reason)
    return Hardware(device.type, False, f"bfloat16 autocast is not supported on {device.type} here")


def resolve_precision(asked: str, found: Hardware) -> str:
    """The precision a run uses: ``auto`` gives ``bf16`` where ``found`` computes it natively, else ``fp32``; an
    explicit ``bf16`` where it is emulated is kept, with a :class:`PrecisionWarning` naming the reason."""
    check_precision(asked)
    if asked == "auto":
        return "bf16" if found.native_bf16 else "fp32"
    if asked == "bf16" and not found.native_bf16:
        warnings.warn(
            f"--precision bf16: {found.reason}, so bfloat16 is emulated and much slower than float32 (14-15x "
            "measured on an AVX2 CPU); use --precision auto or fp32",
            PrecisionWarning,
            stacklevel=2,
        )
    return asked


def check_precision(precision: str) -> None:
    """Raise a clear error unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The context a training step's forward pass runs in: bfloat16 autocast for ``bf16``, else none.
    ``precision`` is a resolved one (``fp32`` or ``bf16``)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"autocast needs a resolved precision (fp32 or bf16), got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
