"""`dtype: auto` picks bf16 only where the hardware computes it natively, and says why."""

import pytest
import torch

from degaml.models import loading
from degaml.models.loading import choose_precision

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


@pytest.fixture
def cpu_as(monkeypatch):
    def patch(flags: set[str], capability: str, machine: str = "x86_64") -> None:
        monkeypatch.setattr(loading, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(loading.platform, "machine", lambda: machine)

    return patch


@pytest.mark.parametrize(("flags", "capability", "machine", "expected"), [
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512", "x86_64", "bfloat16"),  # Cooper Lake, Zen 4
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "AVX512", "x86_64", "bfloat16"),  # Sapphire Rapids
    ({"avx2", "avx512f", "avx512bw"}, "AVX512", "x86_64", "float32"),  # AVX-512 without its bf16 extension
    ({"avx2", "fma"}, "AVX2", "x86_64", "float32"),  # the AMD EPYC of the issue: bf16 emulated, 7-23x slower
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX2", "x86_64", "float32"),  # ATEN_CPU_CAPABILITY=avx2 lowers dispatch
    ({"asimd", "bf16", "sve"}, "SVE256", "aarch64", "bfloat16"),  # Graviton 3
    ({"asimd"}, "DEFAULT", "aarch64", "float32"),
    (set(), "DEFAULT", "arm64", "float32"),  # macOS: no /proc/cpuinfo
])
def test_auto_on_cpu_takes_bf16_only_where_it_is_native(cpu_as, flags, capability, machine, expected):
    cpu_as(flags, capability, machine)
    precision = choose_precision("auto", CPU)
    assert precision.dtype == expected
    assert precision.reason.startswith("auto: ")
    assert ("the CPU computes bf16 natively" in precision.reason) == (expected == "bfloat16")
    assert precision.torch_dtype == getattr(torch, expected)


@pytest.mark.parametrize(("bf16", "stored", "expected"), [
    (True, "bfloat16", "bfloat16"),
    (True, None, "bfloat16"),
    (False, "float16", "float16"),  # a checkpoint stored in fp16 fits fp16's range
    (False, "bfloat16", "float32"),  # Qwen2.5 on a V100 or T4: fp16 could overflow
    (False, None, "float32"),
])
def test_auto_on_cuda_prefers_bf16_then_a_safe_fp16_then_fp32(monkeypatch, bf16, stored, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Test GPU")
    precision = choose_precision("auto", CUDA, stored)
    assert precision.dtype == expected
    assert "CUDA" in precision.reason


def test_an_explicit_dtype_is_taken_as_given_whatever_the_hardware(cpu_as):
    cpu_as({"avx2"}, "AVX2")
    assert choose_precision("bfloat16", CPU) == loading.Precision("bfloat16", "requested")
    with pytest.raises(ValueError, match="dtype must be auto or one of"):
        choose_precision("fp8", CPU)


def test_the_choice_and_its_reason_are_recorded_with_results(tiny_lm, cpu_as):
    from degaml.io import run_metadata

    cpu_as({"avx2"}, "AVX2")
    tiny_lm.precision = choose_precision("auto", CPU)
    compute = run_metadata(0, tiny_lm.compute())["compute"]
    assert compute["dtype"] == "float32"
    assert "does not compute bf16 natively" in compute["reason"]
    assert compute["device"] == "cpu" and "AVX2" in compute["cpu"]
