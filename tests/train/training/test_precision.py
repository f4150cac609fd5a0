"""--precision auto: bf16 where the hardware computes it natively, float32 elsewhere, decided from faked
capabilities; an explicit bf16 where it is emulated warns; a run records what it ran in."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from preimage.cli import main
from preimage.train.training import precision, trainer
from preimage.train.training.precision import Hardware, PrecisionWarning, cpu_bf16, hardware, resolve_precision

from ...helpers import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, dask_client, photos):
    return make_store(tmp_path_factory.mktemp("precision"), dask_client, photos, 32)


NATIVE = Hardware("cpu", True, "this CPU has AVX512-BF16 (torch reports it)")
EMULATED = Hardware("cpu", False, "this CPU has no bfloat16 instructions (torch's kernels: AVX2)")


def test_auto_picks_bf16_only_where_it_is_native(recwarn):
    assert resolve_precision("auto", NATIVE) == "bf16"
    assert resolve_precision("auto", EMULATED) == "fp32"
    assert resolve_precision("auto", Hardware("cuda", True, "H100 computes bfloat16 natively")) == "bf16"
    assert resolve_precision("auto", Hardware("cuda", False, "T4 does not")) == "fp32"
    assert resolve_precision("fp32", NATIVE) == "fp32"
    assert resolve_precision("bf16", NATIVE) == "bf16"
    assert not recwarn.list


def test_explicit_bf16_on_a_cpu_without_it_warns_with_the_reason():
    with pytest.warns(PrecisionWarning, match="no bfloat16 instructions .* emulated and much slower"):
        assert resolve_precision("bf16", EMULATED) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        resolve_precision("fp16", NATIVE)


@pytest.fixture
def fake_cpu(monkeypatch):
    """Set what torch reports of the CPU: ``fake_cpu(avx512_bf16=..., amx=...)``."""

    def fake(avx512_bf16: bool, amx: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        cpu_bf16.cache_clear()

    yield fake
    cpu_bf16.cache_clear()


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_the_cpu_decision_follows_what_torch_reports(fake_cpu, avx512_bf16, amx, native):
    fake_cpu(avx512_bf16, amx)
    found = hardware(torch.device("cpu"))
    assert found.native_bf16 is native
    assert ("AMX" if amx else "AVX512-BF16" if avx512_bf16 else "no bfloat16") in found.reason


def test_a_cuda_device_is_asked_whether_it_computes_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    found = hardware(torch.device("cuda", 0))
    assert not found.native_bf16 and "Tesla T4 does not compute bfloat16" in found.reason


def test_a_resumed_run_keeps_its_precision_unless_bf16_is_emulated_here(fake_cpu, recwarn):
    cpu = torch.device("cpu")
    fake_cpu(True, False)
    assert trainer.run_precision("auto", cpu, "fp32") == "fp32"  # resumes as it began: the same losses
    assert trainer.run_precision("auto", cpu, "bf16") == "bf16"
    fake_cpu(False, False)
    with pytest.warns(PrecisionWarning, match="goes on in fp32"):
        assert trainer.run_precision("auto", cpu, "bf16") == "fp32"
    with pytest.raises(ValueError, match="trained in fp32, not bf16"):
        trainer.run_precision("bf16", cpu, "fp32")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_the_train_command_says_and_records_what_auto_chose(store, tmp_path, fake_cpu, native, expected):
    fake_cpu(native, False)
    out = tmp_path / "run"
    args = [
        "train",
        "--store",
        str(store),
        "--feature",
        "hog",
        "--out",
        str(out),
        "--target-size",
        "16",
        "--width",
        "16",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--max-steps",
        "2",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"in {expected} (this CPU has {'AVX512-BF16' if native else 'no bfloat16'}" in result.output
    run = json.loads((out / "run.json").read_text())
    assert run["precision"] == expected
    assert run["sessions"][0] | {"precision_asked": "auto", "max_steps": 2, "stops_at_step": 2} == run["sessions"][0]


def test_no_kernel_is_built_for_one_cpu_only():
    """The C kernels must run on every x86-64 and ARM CPU the wheel lands on: no -march/-mcpu/-m<isa> flag."""
    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    modules = project["tool"]["setuptools"]["ext-modules"]
    flags = [flag for module in modules for flag in module.get("extra-compile-args", [])]
    assert modules and not [f for f in flags if f.startswith(("-march", "-mcpu", "-mtune=native", "-mavx", "-msse"))]


def test_autocast_needs_a_resolved_precision():
    with pytest.raises(ValueError, match="resolved precision"):
        precision.autocast(torch.device("cpu"), "auto")
