"""The machine record (harness/machine.py). The ISA class is tested on given flag sets: this
machine's own ISA must not decide a test."""

from __future__ import annotations

import pytest

from bigbigan.harness import machine
from bigbigan.harness.machine import ISA_CLASSES, isa_class, machine_info


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"sse4_2", "avx", "avx2", "fma"}, "avx2"),
        ({"avx2", "avx512f", "avx512bw"}, "avx512"),
        ({"avx2", "avx512f", "avx512_vnni"}, "avx512_vnni"),
        ({"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"}, "amx"),
        ({"avx2", "avx_vnni"}, "avx2"),  # VEX VNNI (Alder Lake, Zen 5 client) is still AVX2
        ({"fp", "asimd"}, "baseline"),  # ARM
        (set(), "baseline"),
    ],
)
def test_isa_class_from_flags(flags, expected):
    assert isa_class(flags) == expected and expected in ISA_CLASSES


def test_cpu_flags_and_model_from_a_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
    )
    monkeypatch.setattr(machine, "CPUINFO", cpuinfo)
    assert machine.cpu_model() == "Test CPU 9000"
    assert machine.cpu_flags() == ["avx2", "avx512_vnni", "avx512f"]
    assert "fpu" in machine.cpu_flags(None) and isa_class() == "avx512_vnni"
    info = machine_info("cpu")
    assert info["isa"] == "avx512_vnni" and info["cpu"] == "Test CPU 9000"
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "missing")
    assert machine.cpu_flags() == [] and isa_class() == "baseline"


def test_machine_info_keys():
    info = machine_info("cpu")
    assert {"cpu", "cores", "usable_cores", "isa", "cpu_flags", "gpu", "os", "python"} <= set(info)
    assert 1 <= info["usable_cores"] <= info["cores"] and machine.peak_rss_mb() > 0
    with_libs = machine_info("cpu", libraries=True)
    assert {"torch", "torch_threads", "cpu_capability", "onnxruntime"} <= set(with_libs)
