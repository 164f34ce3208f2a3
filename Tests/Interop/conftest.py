"""Shared pytest fixtures and helpers for the interop tests.

The tests run the release binary named by the environment variable COMPRESS_BIN (default
.build/release/compress of this checkout; a relative path is made absolute, as tests change
directory); `make interop` sets it. Helpers here are plain functions
(importable as `from conftest import run_compress`) and also fixtures of the same purpose.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

COMPRESS_BIN = os.path.abspath(os.environ.get(
    "COMPRESS_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".build", "release", "compress")))
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Fixtures"
# Real third-party models shared beside the repository (absent on most machines).
SHARED_MODELS = Path(os.environ.get("COMPRESS_SHARED_MODELS", str(REPO.parent / "shared" / "models")))

# Markers of a crash rather than a handled error: Swift runtime traps and backtraces.
CRASH_MARKERS = ("Fatal error", "Stack dump", "Current stack trace", "Backtrace", "💣", "Illegal instruction",
                 "Segmentation fault", "SIGSEGV", "SIGILL", "SIGTRAP", "Assertion failed", "Precondition failed")


def _ort_int8_kernels_exact() -> bool:
    """Whether ONNX Runtime's uint8 × int8 CPU kernels compute exact dot products here, found by
    running them: on x86 without VNNI, MLAS multiplies with vpmaddubsw, which adds pairs of products
    in int16 and saturates (ORT's docs advise reduce_range, 7-bit weights); with VNNI, or off x86,
    they are exact. Measured on an AVX2-only EPYC: 64 × 255 × 127 came out as 32 × 32767, and the
    symmetric int8 QDQ models run with ORT's optimizations diverged too (its x86 QDQ rewrites feed
    the same kernels). Tests compare compress's arithmetic with ORT's integer kernels only where
    they are exact, and always with the QDQ arithmetic as written (graph optimizations off)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    k = 64
    a, b = np.full((1, k), 255, np.uint8), np.full((k, 1), 127, np.int8)
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], [numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
    return int(y[0, 0]) == k * 255 * 127


ORT_INT8_EXACT = _ort_int8_kernels_exact()


def onnx_test_data() -> Path:
    """The `onnx` package's bundled backend test data (node, light, pytorch-converted, …)."""
    import onnx
    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def run_compress(*args, timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Runs the compress binary with `args` (converted to str); returns the completed process
    with text stdout/stderr. Never raises on a non-zero exit status."""
    if not os.path.exists(COMPRESS_BIN):
        pytest.fail(f"compress binary not found at {COMPRESS_BIN}: build it (swift build -c release) or set COMPRESS_BIN")
    return subprocess.run([COMPRESS_BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, **kwargs)


def crash_description(result: subprocess.CompletedProcess) -> str | None:
    """Why `result` looks like a crash (signal, trap exit status, backtrace), or None."""
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    if result.returncode >= 128:
        return f"exit status {result.returncode} (a trap or signal)"
    for marker in CRASH_MARKERS:
        if marker in result.stderr:
            return f"stderr contains '{marker}'"
    return None


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str, status: int = 1) -> str:
    """Asserts a handled failure: exit `status`, nothing on stdout, exactly one line on stderr
    starting with 'error: ' and containing every fragment (case-insensitive). Returns the line."""
    crash = crash_description(result)
    assert crash is None, f"crashed ({crash}): {result.stderr[-2000:]}"
    assert result.returncode == status, f"exit status {result.returncode}, want {status}; stderr: {result.stderr!r}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"want one stderr line, got {len(lines)}: {result.stderr!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    for f in fragments:
        assert f.lower() in line.lower(), f"{line!r} does not mention {f!r}"
    return line


@pytest.fixture(scope="session")
def compress_bin() -> str:
    """Path of the compress binary (fails the test when it is missing)."""
    if not os.path.exists(COMPRESS_BIN):
        pytest.fail(f"compress binary not found at {COMPRESS_BIN}: build it (swift build -c release) or set COMPRESS_BIN")
    return COMPRESS_BIN


@pytest.fixture
def compress(compress_bin):
    """`compress(*args)` runs the binary and returns the CompletedProcess."""
    return run_compress


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def pytest_report_header(config):
    return (f"ONNX Runtime's u8s8 integer kernels exact on this CPU: {ORT_INT8_EXACT}"
            + ("" if ORT_INT8_EXACT else " (quantize tests compare with its QDQ arithmetic as written; see conftest)"))
