"""Hardening across every subcommand (issue 14): a bad-input corpus, byte-identical repeated
runs, and writes that survive SIGKILL.

The corpus is built by this file (nothing binary is committed): the bad models of
test_bad_input.py (truncated, random bytes, non-ONNX protobuf, negative and overflowing dims,
raw_data and typed-data count mismatches, traversal/symlink/missing/past-the-end external data)
plus graph-structure cases (cycle, dangling input, duplicate names, missing initializer, deep
nesting, hard-linked external data), bad .npy files, corrupt images and empty folders. Each one
goes through EVERY subcommand that reads that kind of file (info, convert, profile, run, prune,
quantize, distill as teacher and as student, fuse), which must exit with status exactly 1 and
one stderr line naming the file and the cause, never a signal, and must leave its output
folder and its inputs unchanged. The expected causes are fragments written here from the ONNX
and NumPy format rules, not taken from compress's output.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import COMPRESS_BIN, FIXTURES, assert_clean_failure, crash_description, run_compress
from test_bad_input import _setup_case, _snapshot, bad_models

MODEL = FIXTURES / "digits_cnn.onnx"
DIGITS = FIXTURES / "digits"
OPSET = [helper.make_opsetid("", 13)]


# ---------------------------------------------------------------------------------------------
# The corpus

def _model(nodes, inputs, outputs, inits=(), opset=OPSET) -> bytes:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=opset).SerializeToString()


def _vi(name, shape=(1, 1, 8, 8)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _w():
    return numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")


def _nested_if(depth: int) -> bytes:
    """`depth` If nodes, each the then-branch of the one outside it."""
    def body(level):
        if level == 0:
            return helper.make_graph([helper.make_node("Identity", ["x"], ["o0"], name="leaf")], "leaf", [], [_vi("o0")])
        inner = helper.make_node("If", ["c"], [f"o{level}"], name=f"if{level}",
                                 then_branch=body(level - 1), else_branch=body(0))
        return helper.make_graph([inner], f"b{level}", [], [_vi(f"o{level}")])
    top = helper.make_node("If", ["c"], ["y"], name="top", then_branch=body(depth), else_branch=body(0))
    return _model([top], [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _vi("x")], [_vi("y")])


def graph_models() -> dict[str, tuple[bytes, list[str]]]:
    """Models that decode but break ONNX's graph rules (onnx.proto: SSA form, nodes in
    topological order, every input defined) -> fragments the message must contain."""
    conv = lambda x="x", y="y", w="w", name="conv": helper.make_node("Conv", [x, w], [y], name=name, pads=[1, 1, 1, 1])
    relu = lambda x="y", y="z", name="relu": helper.make_node("Relu", [x], [y], name=name)
    return {
        # The cases: Conv reads x, Relu writes x, no graph input; a Conv reading a
        # value nothing produces.
        "cycle.onnx": (_model([conv(), relu(y="x")], [], [_vi("y")], [_w()]), ["node 'conv'", "cycle"]),
        "dangling.onnx": (_model([conv(x="nowhere")], [_vi("x")], [_vi("y")], [_w()]),
                          ["node 'conv'", "'nowhere'", "no node produces"]),
        "missing_initializer.onnx": (_model([conv()], [_vi("x")], [_vi("y")]), ["node 'conv'", "'w'", "no node produces"]),
        "self_loop.onnx": (_model([relu(x="z", y="z")], [_vi("x")], [_vi("z")]), ["node 'relu'", "its own output 'z'", "cycle"]),
        "unsorted.onnx": (_model([relu(), conv()], [_vi("x")], [_vi("z")], [_w()]), ["node 'relu'", "'y'", "topological order"]),
        "duplicate_output.onnx": (_model([conv(), relu(x="x", y="y")], [_vi("x")], [_vi("y")], [_w()]),
                                  ["node 'relu'", "'y'", "node 'conv'", "also writes"]),
        "writes_input.onnx": (_model([relu(x="x", y="x")], [_vi("x")], [_vi("x")]), ["node 'relu'", "'x'", "also a graph input"]),
        "writes_initializer.onnx": (_model([conv(), relu(x="y", y="w")], [_vi("x")], [_vi("y")], [_w()]),
                                    ["node 'relu'", "'w'", "also an initializer"]),
        "duplicate_initializer.onnx": (_model([conv()], [_vi("x")], [_vi("y")], [_w(), _w()]), ["initializer 'w'", "twice"]),
        "duplicate_input.onnx": (_model([conv()], [_vi("x"), _vi("x")], [_vi("y")], [_w()]), ["graph input 'x'", "twice"]),
        "duplicate_graph_output.onnx": (_model([conv()], [_vi("x")], [_vi("y"), _vi("y")], [_w()]), ["graph output 'y'", "twice"]),
        "output_not_produced.onnx": (_model([conv()], [_vi("x")], [_vi("q")], [_w()]), ["graph output 'q'", "not produced"]),
        "body_dangling.onnx": (_model([helper.make_node(
            "If", ["c"], ["y"], name="branch",
            then_branch=helper.make_graph([relu(x="ghost", y="t")], "then", [], [_vi("t")]),
            else_branch=helper.make_graph([relu(x="x", y="e")], "else", [], [_vi("e")]))],
            [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _vi("x")], [_vi("y")]),
            ["node 'branch'", "'ghost'", "no node produces"]),
        "nesting_too_deep.onnx": (_nested_if(25), ["nesting too deep"]),
    }


def _npy(header: str, payload: bytes, version: int = 1) -> bytes:
    h = header.encode("latin-1")
    h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + len(h).to_bytes(2, "little") + h + payload


def bad_data_files() -> dict[str, tuple[bytes, list[str]]]:
    """Sample files a data folder may hold -> fragments of the message (NumPy's format rules:
    numpy.lib.format; PNG signature and JPEG SOI marker)."""
    good = (DIGITS / "sample_0000.npy").read_bytes()
    ok_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 8), }"
    png = _png_bytes()
    jpg = _jpeg_bytes()
    return {
        "bad_magic.npy": (b"\x93NUMPX" + good[6:], ["not a .npy file"]),
        "bad_version.npy": (good[:6] + b"\x09\x00" + good[8:], ["version 9.0"]),
        "bad_header.npy": (_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 8", bytes(256)), ["bad .npy header"]),
        "header_past_end.npy": (good[:8] + (60000).to_bytes(2, "little") + good[10:80], ["truncated .npy header"]),
        "bad_dtype.npy": (_npy(ok_header.replace("<f4", "<c8"), bytes(512)), ["unsupported dtype '<c8'"]),
        "object_dtype.npy": (_npy(ok_header.replace("<f4", "|O"), bytes(512)), ["unsupported dtype '|O'"]),
        "fortran.npy": (_npy(ok_header.replace("False", "True"), bytes(256)), ["Fortran order"]),
        "negative_shape.npy": (_npy(ok_header.replace("(1, 1, 8, 8)", "(1, -1, 8, 8)"), bytes(256)), ["bad .npy header"]),
        "overflow_shape.npy": (_npy(ok_header.replace("(1, 1, 8, 8)", "(4294967296, 4294967296, 4294967296)"), bytes(16)),
                               ["overflows"]),
        "truncated_data.npy": (good[:-7], ["truncated", "needs 256 data bytes"]),
        "trailing_data.npy": (good + b"\0" * 4, ["trailing bytes"]),
        "empty.npy": (b"", ["empty file"]),
        "corrupt.png": (png[:8] + bytes(len(png) - 8), ["not a decodable PNG"]),
        "truncated.png": (png[: len(png) // 2], ["not a decodable PNG"]),
        "random.png": (np.random.default_rng(7).bytes(300), ["not a decodable PNG"]),
        "corrupt.jpg": (jpg[:2] + np.random.default_rng(8).bytes(len(jpg) - 2), ["not a decodable JPEG"]),
        "truncated.jpg": (jpg[: len(jpg) // 2], ["not a decodable JPEG"]),
        "empty.jpg": (b"", ["empty file"]),
    }


def _png_bytes() -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _good_data(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in sorted(DIGITS.glob("*.npy"))[:n]:
        shutil.copy(f, folder / f.name)
    return folder


# ---------------------------------------------------------------------------------------------
# Every subcommand that reads a model, and every one that reads a data folder

def model_commands(model: Path, out: Path, data: Path) -> dict[str, list]:
    return {
        "info": ["info", model],
        "convert": ["convert", model, "-o", out / "out.onnx"],
        "profile": ["profile", model, "--device", "nvidia-h100-sxm", "--plot", out / "roofline.svg"],
        "run": ["run", model, "--data", data, "--out", out / "npy"],
        "prune": ["prune", model, "--method", "l1", "--ratio", "0.25", "-o", out / "out.onnx"],
        "quantize": ["quantize", model, "--calib", data, "-o", out / "out.onnx"],
        "distill-teacher": ["distill", "--teacher", model, "--student", MODEL, "--data", data, "--plot", out / "d.svg"],
        "distill-student": ["distill", "--teacher", MODEL, "--student", model, "--data", data, "--plot", out / "d.svg"],
        "fuse": ["fuse", model, "-o", out / "out.onnx"],
    }


def data_commands(data: Path, out: Path) -> dict[str, list]:
    return {
        "run": ["run", MODEL, "--data", data, "--out", out / "npy"],
        "quantize": ["quantize", MODEL, "--calib", data, "-o", out / "out.onnx"],
        "prune-calib": ["prune", MODEL, "--method", "l1", "--ratio", "0.25", "--calib", data, "-o", out / "out.onnx"],
        "prune-sensitivity": ["prune", MODEL, "--method", "l1", "--sensitivity", "--data", data, "--ratios", "0.5",
                              "--emit-ratios", out / "ratios.txt", "--plot", out / "s.svg"],
        "distill": ["distill", "--teacher", MODEL, "--student", MODEL, "--data", data, "--plot", out / "d.svg"],
        "fuse": ["fuse", MODEL, "--data", data, "-o", out / "out.onnx"],
    }


def _check(r: subprocess.CompletedProcess, names: list[str], fragments: list[str], out: Path, inputs: Path,
           before: dict) -> str | None:
    try:
        line = assert_clean_failure(r, *names, *fragments)
        assert len(line) < 500, f"message too long ({len(line)} characters)"
        left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        assert not left, f"output folder not unchanged: {left}"
        assert _snapshot(inputs) == before, "the input folder changed"
    except AssertionError as e:
        return str(e).splitlines()[0]
    return None


def test_bad_models_every_command(tmp_path, compress_bin):
    """Every bad model through every subcommand that reads a model (about 45 × 9 runs, in
    parallel)."""
    cases = {**bad_models(), **graph_models()}
    data = _good_data(tmp_path / "data")
    jobs = []
    for i, (name, (blob, fragments)) in enumerate(sorted(cases.items())):
        folder = tmp_path / f"case{i:02d}"
        path = _setup_case(folder, name, blob)
        before = _snapshot(folder)
        for cmd in model_commands(path, tmp_path, data):
            out = tmp_path / f"out{i:02d}-{cmd}"
            out.mkdir()
            argv = model_commands(path, out, data)[cmd]
            jobs.append((name, cmd, argv, fragments, out, folder, before, path))

    def one(job):
        name, cmd, argv, fragments, out, folder, before, path = job
        r = run_compress(*argv, timeout=120)
        why = _check(r, [str(path)], fragments, out, folder, before)
        return f"{name} / {cmd}: {why}" if why else None

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(one, jobs) if f]
    assert len(jobs) >= 40 * 9
    assert not failures, f"{len(failures)} of {len(jobs)} failed:\n" + "\n".join(failures[:40])


def test_hard_linked_external_data_is_refused(tmp_path, compress_bin):
    """A hard link may be another name of a file anywhere on the filesystem (CVE-2024-27318):
    external data with more than one link is refused by every command that reads models."""
    folder = tmp_path / "m"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(2, dtype=np.float32).tobytes())
    os.link(secret, folder / "data.bin")
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2], data_location=TensorProto.EXTERNAL)
    e = t.external_data.add()
    e.key, e.value = "location", "data.bin"
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"], name="id")], "g", [], [_vi("y", [2])], [t])
    model = folder / "m.onnx"
    model.write_bytes(helper.make_model(g, opset_imports=OPSET).SerializeToString())
    data = _good_data(tmp_path / "data")
    before = _snapshot(folder)
    failures = []
    for cmd, argv in model_commands(model, tmp_path / "o", data).items():
        out = tmp_path / "o"
        out.mkdir(exist_ok=True)
        why = _check(run_compress(*argv), [str(model)], ["'w'", "'data.bin'", "hard link"], out, folder, before)
        if why:
            failures.append(f"{cmd}: {why}")
    assert not failures, "\n".join(failures)


def test_bad_data_every_command(tmp_path, compress_bin):
    """Every bad sample file (after a good one, so a command that already wrote outputs for the
    first sample must take them back) through every subcommand that reads a data folder."""
    jobs = []
    for i, (name, (blob, fragments)) in enumerate(sorted(bad_data_files().items())):
        data = _good_data(tmp_path / f"data{i:02d}", n=1)
        bad = data / f"z_{name}"
        bad.write_bytes(blob)
        before = _snapshot(data)
        for cmd in data_commands(data, tmp_path):
            out = tmp_path / f"out{i:02d}-{cmd}"
            out.mkdir()
            argv = data_commands(data, out)[cmd]
            jobs.append((name, cmd, argv, fragments, out, data, before, bad))

    def one(job):
        name, cmd, argv, fragments, out, data, before, bad = job
        r = run_compress(*argv, timeout=120)
        why = _check(r, [str(bad)], fragments, out, data, before)
        return f"{name} / {cmd}: {why}" if why else None

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(one, jobs) if f]
    assert not failures, f"{len(failures)} of {len(jobs)} failed:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("layout", ["empty", "empty_subfolders", "only_other_files"])
def test_empty_data_folders_every_command(layout, tmp_path, compress_bin):
    data = tmp_path / "data"
    data.mkdir()
    if layout == "empty_subfolders":
        (data / "cat").mkdir()
        (data / "dog").mkdir()
    elif layout == "only_other_files":
        (data / "notes.txt").write_text("no samples here\n")
    # A folder without samples is "no samples"; a file that is not a sample is named.
    expected = [str(data / "notes.txt"), "not a data file"] if layout == "only_other_files" else [str(data), "no samples"]
    before = _snapshot(data)
    failures = []
    for cmd, argv in data_commands(data, tmp_path / "o").items():
        out = tmp_path / "o"
        out.mkdir(exist_ok=True)
        why = _check(run_compress(*argv), expected[:1], expected[1:], out, data, before)
        if why:
            failures.append(f"{cmd}: {why}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# Determinism: the same inputs and flags give byte-identical files and reports

# Report fields that are measurements of time, not results.
TIMING_KEYS = {"ms", "timing_ms", "measured_ms_before", "measured_ms_after"}


def _without_timing(x):
    if isinstance(x, dict):
        return {k: _without_timing(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [_without_timing(v) for v in x]
    return x


def determinism_commands(tmp: Path, data: Path) -> dict[str, list]:
    o = tmp / "out"
    return {
        "info": ["info", MODEL, "--format", "json"],
        "convert": ["convert", MODEL, "-o", o / "c.onnx", "--external-data", "--external-threshold", "64"],
        "profile": ["profile", MODEL, "--device", "nvidia-h100-sxm", "--plot", o / "roofline.svg", "--format", "json"],
        "run": ["run", MODEL, "--data", data, "--out", o / "npy", "--format", "json"],
        "prune": ["prune", MODEL, "--method", "l1", "--ratio", "0.5", "--calib", data, "-o", o / "p.onnx", "--format", "json"],
        "prune-sensitivity": ["prune", MODEL, "--method", "l1", "--sensitivity", "--data", data, "--ratios", "0.25,0.5",
                              "--emit-ratios", o / "ratios.txt", "--plot", o / "s.svg", "--format", "json"],
        "quantize": ["quantize", MODEL, "--calib", data, "-o", o / "q.onnx", "--method", "entropy",
                     "--trt-cache", o / "q.cache", "--ncnn-table", o / "q.table", "--format", "json"],
        "distill": ["distill", "--teacher", MODEL, "--student", FIXTURES / "digits_cnn_bn.onnx", "--data", data,
                    "--plot", o / "d.svg", "--format", "json"],
        "fuse": ["fuse", FIXTURES / "digits_cnn_bn.onnx", "-o", o / "f.onnx", "--format", "json"],
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", list(determinism_commands(Path("/"), Path("/"))))
def test_two_runs_give_identical_outputs(command, tmp_path, compress_bin):
    data = _good_data(tmp_path / "data", n=6)
    argv = determinism_commands(tmp_path, data)[command]
    results = []
    for attempt in range(2):
        out = tmp_path / "out"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir()
        r = run_compress(*argv)
        assert r.returncode == 0, r.stderr
        report = _without_timing(json.loads(r.stdout)) if r.stdout.strip() else r.stdout  # convert prints no report
        results.append((report, _files(out)))
    (report_a, files_a), (report_b, files_b) = results
    assert report_a == report_b
    assert files_a.keys() == files_b.keys()
    for name in files_a:
        assert files_a[name] == files_b[name], f"{name} differs between two runs"
    if command != "info":
        assert files_a, "the command wrote no file"
    for name, blob in files_a.items():
        if name.endswith(".onnx"):
            m = onnx.load(str(tmp_path / "out" / name))
            onnx.checker.check_model(m, full_check=True)


@pytest.mark.parametrize("method", ["mean-minmax", "entropy"])
def test_quantize_does_not_depend_on_how_many_samples_run_at_once(method, tmp_path, compress_bin):
    """Calibration and the report run samples concurrently and merge their results in sample
    order: one worker and three give the same model, statistics and report, byte for byte."""
    data = _good_data(tmp_path / "data", n=9)
    results = []
    for workers in ("1", "3"):
        o = tmp_path / workers
        o.mkdir()
        r = run_compress("quantize", MODEL, "--calib", data, "-o", o / "q.onnx", "--method", method, "--save-stats", o / "s.json",
                         "--format", "json", env=dict(os.environ, COMPRESS_SAMPLE_WORKERS=workers))
        assert r.returncode == 0, r.stderr
        report = _without_timing(json.loads(r.stdout))
        report.pop("output", None)
        results.append((report, _files(o)))
    assert results[0][1].keys() == {"q.onnx", "s.json"}
    assert results[0] == results[1]


# ---------------------------------------------------------------------------------------------
# SIGKILL while writing: no output, or the previous one intact — and no temporary file

def _kill_at_rename(argv: list, out_dir: Path, env: dict) -> None:
    """Starts compress with the test-only pause before each rename, kills it with SIGKILL as
    soon as it reaches the first one."""
    env = dict(env, COMPRESS_TEST_PAUSE_BEFORE_RENAME="30")
    p = subprocess.Popen([COMPRESS_BIN, *map(str, argv)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        line = b""
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if b"pausing before rename" in line or not line:
                break
        assert b"pausing before rename" in line, f"compress did not reach the write step: {line!r}"
        p.send_signal(signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()


def _has_o_tmpfile(folder: Path) -> bool:
    try:
        os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("command", ["quantize", "prune"])
@pytest.mark.parametrize("previous", [False, True])
@pytest.mark.parametrize("temporaries", ["unnamed", "named"])
def test_sigkill_while_writing(command, previous, temporaries, tmp_path, compress_bin):
    """`named`: COMPRESS_TEST_NAMED_TEMPORARIES (test only) takes the path of filesystems
    without O_TMPFILE: the killed run leaves its named temporary, the next write removes it."""
    named = temporaries == "named" or not _has_o_tmpfile(tmp_path)
    env = dict(os.environ, **({"COMPRESS_TEST_NAMED_TEMPORARIES": "1"} if temporaries == "named" else {}))
    data = _good_data(tmp_path / "data", n=2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "model.onnx"
    if previous:
        shutil.copy(MODEL, target)
    before = _files(out_dir)
    argv = (["quantize", MODEL, "--calib", data, "-o", target] if command == "quantize"
            else ["prune", MODEL, "--method", "l1", "--ratio", "0.5", "-o", target])
    _kill_at_rename(argv, out_dir, env)
    left = sorted(p.name for p in out_dir.iterdir())
    stale = [n for n in left if n.startswith(".model.onnx.tmp-")]
    assert {k: v for k, v in _files(out_dir).items() if k not in stale} == before, "killed at the write step, the output changed"
    # With unnamed temporary files (O_TMPFILE) nothing at all is left; a named temporary
    # stays until the next write to the same output removes it.
    assert len(stale) == (1 if named else 0), f"temporary files after the kill: {stale}"
    # The same command, not killed, writes a complete model (the pause is only a delay).
    r = run_compress(*argv, env=dict(env, COMPRESS_TEST_PAUSE_BEFORE_RENAME="0.01"))
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.onnx"]


# ---------------------------------------------------------------------------------------------
# Outputs that are inputs

def test_outputs_that_are_inputs_are_refused(tmp_path, compress_bin):
    data = _good_data(tmp_path / "data", n=2)
    sample = sorted(data.iterdir())[0]
    model = tmp_path / "m.onnx"
    shutil.copy(MODEL, model)
    # Charts must be named .svg: other names of the inputs, as hard links and symlinks.
    os.link(model, tmp_path / "hard.svg")
    (tmp_path / "link.svg").symlink_to(sample)
    before = _snapshot(tmp_path)
    cases = [
        (["profile", model, "--device", "nvidia-h100-sxm", "--plot", tmp_path / "hard.svg"], ["--plot", "the input model"]),
        (["quantize", model, "--calib", data, "-o", tmp_path / "q.onnx", "--trt-cache", sample], ["--trt-cache", "a sample"]),
        (["quantize", model, "--calib", data, "-o", sample, "--force"], ["-o", "a sample"]),
        (["quantize", model, "--calib", data, "-o", tmp_path / "q.onnx", "--trt-cache", tmp_path / "q.onnx"],
         ["--trt-cache", "also the file of -o"]),
        (["prune", model, "--method", "l1", "--sensitivity", "--data", data, "--ratios", "0.5", "--plot", tmp_path / "hard.svg"],
         ["--plot", "the input model"]),
        (["distill", "--teacher", model, "--student", MODEL, "--data", data, "--plot", tmp_path / "link.svg"], ["--plot", "a sample"]),
        (["fuse", model, "--data", data, "-o", sample, "--force"], ["-o", "a sample"]),
        (["prune", model, "--method", "l1", "--ratio", "0.5", "--calib", data, "-o", sample, "--force"], ["-o", "a sample"]),
    ]
    failures = []
    for argv, fragments in cases:
        r = run_compress(*argv)
        try:
            assert_clean_failure(r, *fragments)
            assert _snapshot(tmp_path) == before, "a file changed"
        except AssertionError as e:
            failures.append(f"{argv[0]} {fragments}: {e}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# Shapes from the file that are too large to allocate or to count

def oversized_models() -> dict[str, bytes]:
    x = lambda dims: helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    # (a symbolic output shape: onnx.checker wants a shape field, and the models compress
    # writes from these are checked)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d0", "d1"])
    relu = helper.make_node("Relu", ["x"], ["y"], name="relu")
    expand = lambda a: helper.make_node("Expand", [a, "s"], ["y"], name="expand")
    shape = lambda v: numpy_helper.from_array(np.array([v, v], np.int64), "s")
    one = numpy_helper.from_array(np.ones(1, np.float32), "c")
    return {
        # 4 TiB input: profiled (nothing allocated), never made up as a sample.
        "huge_input.onnx": _model([relu], [x([1 << 20, 1 << 20])], [y]),
        # Element count overflows 64 bits.
        "overflowing_input.onnx": _model([relu], [x([1 << 40, 1 << 40])], [y]),
        # A constant shape asking Expand for 4 TiB, folded or run.
        "huge_expand_constant.onnx": _model([expand("c")], [], [y], [one, shape(1 << 20)]),
        "overflowing_expand.onnx": _model([expand("x")], [x([1])], [y], [shape(1 << 40)]),
    }


def test_oversized_shapes_never_crash(tmp_path, compress_bin):
    """Shapes read from the file that describe terabytes, or overflow: every command either
    handles the model without allocating them (info, profile) or refuses it in one line naming
    the file; never a signal or an allocation failure."""
    data = _good_data(tmp_path / "data", n=1)
    jobs = []
    for name, blob in oversized_models().items():
        path = tmp_path / name
        path.write_bytes(blob)
        for cmd in model_commands(path, tmp_path, data):
            out = tmp_path / f"out-{name}-{cmd}"
            out.mkdir()
            jobs.append((name, cmd, model_commands(path, out, data)[cmd], out, path))

    def one(job):
        name, cmd, argv, out, path = job
        r = run_compress(*argv, timeout=120)
        try:
            if name == "overflowing_input.onnx" and cmd not in ("info", "convert"):
                assert_clean_failure(r, str(path), "overflows")
            elif cmd in ("run", "distill-teacher", "distill-student") and r.returncode == 0:
                # The 1×1×8×8 sample fits none of these inputs (and the constant-only model
                # has no input for it): a success here fed or made up something.
                raise AssertionError(f"exit 0 with a sample that fits no input: {r.stdout[-300:]!r}")
            elif r.returncode == 0:
                assert crash_description(r) is None
                for m in out.rglob("*.onnx"):  # a model written is a valid one
                    onnx.checker.check_model(onnx.load(str(m)), full_check=True)
            else:
                line = assert_clean_failure(r)
                # The file the refusal is about: the model, or the sample that does not fit it.
                assert str(path) in line or str(data) in line, f"{line!r} names neither the model nor a sample"
                assert not list(out.rglob("*")), "output written by a failed command"
        except (AssertionError, onnx.checker.ValidationError) as e:
            return f"{name} / {cmd}: {str(e).splitlines()[0]}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(one, jobs) if f]
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# External data on write: fresh, aligned, before the model

def test_external_data_written_fresh_aligned_and_before_the_model(tmp_path, compress_bin):
    import onnxruntime as ort
    out = tmp_path / "out"
    out.mkdir()
    stale = np.random.default_rng(5).bytes(1 << 20)
    (out / "m.onnx.data").write_bytes(stale)  # a stale, larger data file of the same name
    argv = ["convert", MODEL, "-o", out / "m.onnx", "--external-data", "--external-threshold", "0"]
    r = run_compress(*argv)
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(out / "m.onnx"), load_external_data=False)
    ends = []
    for t in m.graph.initializer:
        assert t.data_location == TensorProto.EXTERNAL, t.name
        kv = {e.key: e.value for e in t.external_data}
        assert kv["location"] == "m.onnx.data"
        assert int(kv["offset"]) % 64 == 0, f"{t.name}: offset {kv['offset']} not 64-byte aligned"
        ends.append(int(kv["offset"]) + int(kv["length"]))
    size = (out / "m.onnx.data").stat().st_size
    assert size == max(ends), f"data file is {size} bytes, its tensors end at {max(ends)}: not written fresh"
    onnx.checker.check_model(str(out / "m.onnx"), full_check=True)
    x = np.load(DIGITS / "sample_0000.npy")
    want = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    got = ort.InferenceSession(str(out / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert all(np.array_equal(a, b) for a, b in zip(want, got))

    # Order: killed at the first rename (the data file), nothing appears; killed at the
    # second (the model), the new data file is in place and the model is not.
    for stop, expect in ((1, []), (2, ["m.onnx.data"])):
        fresh = tmp_path / f"order{stop}"
        fresh.mkdir()
        env = dict(os.environ, COMPRESS_TEST_PAUSE_BEFORE_RENAME="3")
        p = subprocess.Popen([COMPRESS_BIN, "convert", str(MODEL), "-o", str(fresh / "m.onnx"), "--external-data",
                              "--external-threshold", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            for _ in range(stop):
                assert b"pausing before rename" in p.stderr.readline()
            # (the second line comes when the first pause, 3 s, is over)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
        # Where the filesystem has no O_TMPFILE the killed run leaves its named temporary.
        left = sorted(q.name for q in fresh.iterdir())
        if not _has_o_tmpfile(fresh):
            left = [n for n in left if ".tmp-" not in n]
        assert left == expect


# ---------------------------------------------------------------------------------------------
# Graph rules against onnx.checker

def _random_graph(rng) -> onnx.ModelProto:
    """Relu/Add nodes wired mostly validly (reads of defined values, fresh outputs), sometimes
    not: a read of a later or undefined value, an output reusing a name."""
    defined, names = ["x"], ["x", "a", "b", "c", "d", "e", "f", "u"]
    nodes = []
    for k in range(int(rng.integers(1, 7))):
        op = "Relu" if rng.random() < 0.5 else "Add"
        ins = [defined[int(rng.integers(0, len(defined)))] if rng.random() < 0.85 else names[int(rng.integers(0, len(names)))]
               for _ in range(1 if op == "Relu" else 2)]
        fresh = [n for n in names[1:] if n not in defined]
        out = fresh[0] if fresh and rng.random() < 0.85 else names[int(rng.integers(0, len(names)))]
        defined.append(out)
        nodes.append(helper.make_node(op, ins, [out], name=f"n{k}"))
    if rng.random() < 0.3:  # swap two nodes (out of order, or harmless)
        i, j = sorted(rng.choice(len(nodes), 2, replace=True))
        nodes[i], nodes[j] = nodes[j], nodes[i]
    g = helper.make_graph(nodes, "g", [_vi("x", [2])], [_vi(nodes[-1].output[0], [2])])
    return helper.make_model(g, opset_imports=OPSET)


def test_graph_rules_agree_with_onnx_checker(tmp_path, compress_bin):
    """300 random small graphs: compress reads exactly those onnx.checker accepts (both apply
    ONNX's SSA, order and defined-input rules), and its refusals name a node or value."""
    rng = np.random.default_rng(2024)
    jobs = []
    for i in range(300):
        m = _random_graph(rng)
        try:
            onnx.checker.check_model(m)
            ok = True
        except onnx.checker.ValidationError:
            ok = False
        path = tmp_path / f"g{i}.onnx"
        path.write_bytes(m.SerializeToString())
        jobs.append((path, ok))

    def one(job):
        path, ok = job
        r = run_compress("info", path)
        if ok and r.returncode != 0:
            return f"{path.name}: checker accepts, compress refuses: {r.stderr.strip()}"
        if not ok:
            try:
                line = assert_clean_failure(r, str(path))
                # Refused for the graph rules, naming where: a node, or a graph output.
                assert "node " in line or "graph output '" in line, f"{line!r} names no node or graph output"
                assert any(w in line for w in ("no node produces", "topological order", "cycle", "also writes", "also a graph input",
                                                "twice", "not produced")), f"{line!r} gives no graph-rule cause"
            except AssertionError as e:
                return f"{path.name}: checker refuses, compress: {str(e).splitlines()[0]}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(one, jobs) if f]
    accepted = sum(ok for _, ok in jobs)
    assert 50 < accepted < 250, f"{accepted} of 300 valid: the generator should give both kinds"
    assert not failures, f"{len(failures)} disagreements:\n" + "\n".join(failures[:20])


# ---------------------------------------------------------------------------------------------
# A sample made for another model: a .pb naming an input the model does not have

def _pb(array: np.ndarray, name: str) -> bytes:
    return numpy_helper.from_array(array, name).SerializeToString()


def test_sample_naming_an_unknown_input_is_refused(tmp_path, compress_bin):
    """Files are matched to the inputs by position; a TensorProto naming an input the model
    lacks (or another of its inputs) was fed under the positional name without a word."""
    import onnxruntime as ort
    x = np.load(DIGITS / "sample_0000.npy")
    input_name = onnx.load(str(MODEL)).graph.input[0].name
    # Named for the model's input, or unnamed: accepted; the output is ONNX Runtime's.
    want = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {input_name: x})[0]
    for label, name in (("named", input_name), ("unnamed", "")):
        data = tmp_path / f"ok-{label}" / "test_data_set_0"
        data.mkdir(parents=True)
        (data / "input_0.pb").write_bytes(_pb(x, name))
        out = tmp_path / f"out-{label}"
        r = run_compress("run", MODEL, "--data", data.parent, "--out", out)
        assert r.returncode == 0, r.stderr
        got = np.load(out / "test_data_set_0.0.npy")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    data = tmp_path / "bad" / "test_data_set_0"
    data.mkdir(parents=True)
    bad = data / "input_0.pb"
    bad.write_bytes(_pb(x, "pixels"))
    out = tmp_path / "out-bad"
    r = run_compress("run", MODEL, "--data", data.parent, "--out", out)
    assert_clean_failure(r, str(bad), "'pixels'", "does not have")
    assert not out.exists(), "output written by a failed run"

    # Two inputs, each file named for the other one: refused, not swapped silently.
    a, b = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])
    model = tmp_path / "sub.onnx"
    model.write_bytes(_model([helper.make_node("Sub", ["a", "b"], ["y"], name="sub")], [a, b],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))
    data = tmp_path / "swapped" / "test_data_set_0"
    data.mkdir(parents=True)
    (data / "input_0.pb").write_bytes(_pb(np.ones(2, np.float32), "b"))
    (data / "input_1.pb").write_bytes(_pb(np.zeros(2, np.float32), "a"))
    r = run_compress("run", model, "--data", data.parent)
    assert_clean_failure(r, str(data / "input_0.pb"), "'b'", "'a'", "by position")


# ---------------------------------------------------------------------------------------------
# quantize: a side file that cannot be written leaves no model behind

@pytest.mark.parametrize("flag", ["--trt-cache", "--ncnn-table"])
@pytest.mark.parametrize("previous", [False, True])
def test_quantize_side_file_failure_writes_nothing(flag, previous, tmp_path, compress_bin):
    data = _good_data(tmp_path / "data", n=2)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "q.onnx"
    if previous:
        shutil.copy(MODEL, target)
    before = _snapshot(out)
    side = tmp_path / "no-such-folder" / "side.txt"
    r = run_compress("quantize", MODEL, "--calib", data, "-o", target, flag, side)
    assert_clean_failure(r, flag, str(side))
    assert _snapshot(out) == before, "the failed run changed the output folder"
    assert not side.parent.exists()
