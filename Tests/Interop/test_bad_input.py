"""Bad input to `compress info` and `compress convert`: each case must end with exit status 1 and
one line on stderr naming the file and the problem — never a crash (signal, trap status ≥ 128,
Swift backtrace). `convert` must also leave no output or temporary file behind and never touch
its input; `-o` naming the input (or one of its external-data files) is refused without --force.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import COMPRESS_BIN, FIXTURES, assert_clean_failure, crash_description, run_compress

# ---------------------------------------------------------------------------------------------
# Building bad models


def _identity_model(init: TensorProto) -> bytes:
    """y = Identity(w) with `init` as the initializer w (serialized without checks)."""
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [init])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _external(location: str, **extra: str) -> TensorProto:
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2], data_location=TensorProto.EXTERNAL)
    for k, v in {"location": location, **extra}.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def _constant_node_model(value: TensorProto) -> bytes:
    node = helper.make_node("Constant", [], ["y"], name="const", value=value)
    g = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _digits_bytes() -> bytes:
    return (FIXTURES / "digits_cnn.onnx").read_bytes()


def _largest_raw_data_offset() -> int:
    data = _digits_bytes()
    m = onnx.load_from_string(data)
    biggest = max(m.graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    return data.index(biggest) + len(biggest) // 2


# name -> (file bytes, fragments the message must contain besides the file name)
def bad_models() -> dict[str, tuple[bytes, list[str]]]:
    digits = _digits_bytes()
    rng = np.random.default_rng(1234)
    cases: dict[str, tuple[bytes, list[str]]] = {
        "empty.onnx": (b"", ["empty file"]),
        "random_1.onnx": (rng.bytes(64), ["not an ONNX model"]),
        "random_2.onnx": (rng.bytes(4096), ["not an ONNX model"]),
        "random_3.onnx": (bytes(rng.integers(0, 256, 100_000, dtype=np.uint8)), ["not an ONNX model"]),
        "zeros.onnx": (bytes(1000), ["not an ONNX model"]),
        "text.onnx": (b"this is not a model\n" * 20, ["not an ONNX model"]),
        "tensor_proto.onnx": (numpy_helper.from_array(np.ones((2, 3), np.float32), "w").SerializeToString(),
                              ["not an ONNX model"]),
        "graph_proto.onnx": (onnx.load_from_string(digits).graph.SerializeToString(), ["not an ONNX model"]),
        "node_proto.onnx": (helper.make_node("Relu", ["x"], ["y"], name="n").SerializeToString(), ["not an ONNX model"]),
        "raw_data_length.onnx": (_identity_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3], raw_data=bytes(20))),
                                 ["'w'", "raw_data has 20 bytes", "need 24"]),
        "typed_count.onnx": (_identity_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3], float_data=[1, 2, 3])),
                             ["'w'", "float_data has 3 values", "need 6"]),
        "negative_dims.onnx": (_identity_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[-2, 3])),
                               ["'w'", "negative dimension -2"]),
        "overflow_dims.onnx": (_identity_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**40, 2**40], raw_data=bytes(8))),
                               ["'w'", "overflow"]),
        "overflow_int64.onnx": (_identity_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**62, 4])),
                                ["'w'", "overflow"]),
        "unknown_dtype.onnx": (_identity_model(TensorProto(name="w", data_type=99, dims=[2], raw_data=bytes(8))),
                               ["'w'", "unknown data_type 99"]),
        "no_data.onnx": (_identity_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3])),
                         ["'w'", "no data"]),
        "bad_attribute_tensor.onnx": (_constant_node_model(TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[4], raw_data=bytes(3))),
                                      ["node 'const'", "attribute 'value'", "raw_data has 3 bytes"]),
        "ext_absolute.onnx": (_identity_model(_external("/etc/passwd")), ["'w'", "'/etc/passwd'", "absolute"]),
        "ext_parent.onnx": (_identity_model(_external("../x.bin")), ["'w'", "'../x.bin'", "escapes"]),
        "ext_nested_parent.onnx": (_identity_model(_external("a/../../x.bin")), ["'w'", "'a/../../x.bin'", "escapes"]),
        "ext_symlink.onnx": (_identity_model(_external("link.bin")), ["'w'", "'link.bin'", "outside"]),
        "ext_missing.onnx": (_identity_model(_external("missing.bin")), ["'w'", "'missing.bin' not found"]),
        "ext_past_end.onnx": (_identity_model(_external("data.bin", offset="4")), ["'w'", "past the end", "data.bin"]),
        "ext_length.onnx": (_identity_model(_external("data.bin", length="7")), ["'w'", "length 7", "8 bytes"]),
        "ext_bad_offset.onnx": (_identity_model(_external("data.bin", offset="-1")), ["'w'", "offset '-1'"]),
        "ext_no_location.onnx": (_identity_model(_external("")), ["'w'", "no 'location'"]),
    }
    # A real model cut at several points: inside the header, the graph, a weight payload, and
    # one byte short of the end.
    raw_mid = _largest_raw_data_offset()
    for cut in (1, 2, 16, len(digits) // 4, raw_mid, len(digits) // 2, 3 * len(digits) // 4, len(digits) - 1):
        cases[f"truncated_{cut}.onnx"] = (digits[:cut], ["not"])
    return cases


def _setup_case(folder: Path, name: str, data: bytes) -> Path:
    """Writes the model and whatever its external data needs into a fresh folder."""
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data)
    (folder / "data.bin").write_bytes(bytes(8))
    outside = folder.parent / f"{folder.name}-outside.bin"
    outside.write_bytes(bytes(64))
    (folder / "link.bin").symlink_to(outside)
    (folder / "a").mkdir()
    return path


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.lstat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


CASES = bad_models()


@pytest.mark.parametrize("command", ["info", "convert", "convert-external"])
def test_bad_models_fail_cleanly(command, tmp_path, compress_bin):
    """Every bad model, through one command. The message names the file and the problem."""
    failures = []
    for i, (name, (data, fragments)) in enumerate(sorted(CASES.items())):
        folder = tmp_path / f"case{i:02d}"
        path = _setup_case(folder, name, data)
        out_dir = tmp_path / f"out{i:02d}"
        out_dir.mkdir()
        before = _snapshot(folder)
        if command == "info":
            r = run_compress("info", path)
        elif command == "convert":
            r = run_compress("convert", path, "-o", out_dir / "out.onnx")
        else:
            r = run_compress("convert", path, "-o", out_dir / "out.onnx", "--external-data", "--external-threshold", "0")
        try:
            line = assert_clean_failure(r, str(path), *fragments)
            assert len(line) < 400, f"message too long ({len(line)} characters)"
            if name.startswith("truncated_"):
                assert any(w in line for w in ("truncated", "not an ONNX model", "malformed")), line
            if command != "info":
                left = sorted(p.name for p in out_dir.iterdir())
                assert not left, f"left behind: {left}"
            assert _snapshot(folder) == before, "the input folder changed"
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)


def test_missing_file_and_directory(tmp_path, compress_bin):
    missing = tmp_path / "missing.onnx"
    assert_clean_failure(run_compress("info", missing), str(missing), "No such file")
    assert_clean_failure(run_compress("convert", missing, "-o", tmp_path / "o.onnx"), str(missing), "No such file")
    assert_clean_failure(run_compress("info", tmp_path), str(tmp_path), "is a directory")
    assert_clean_failure(run_compress("convert", tmp_path, "-o", tmp_path / "o.onnx"), "is a directory")
    assert sorted(tmp_path.iterdir()) == []


def test_unreadable_file(compress_bin):
    """A file the user may not read. Root reads any file, so as root the binary runs as nobody."""
    folder = Path(tempfile.mkdtemp(prefix="compress-unreadable-"))
    binary = COMPRESS_BIN
    try:
        os.chmod(folder, 0o755)
        path = folder / "secret.onnx"
        shutil.copy(FIXTURES / "digits_cnn.onnx", path)
        os.chmod(path, 0)
        preexec = None
        if os.geteuid() == 0:
            def preexec():  # noqa: E306
                os.setgid(65534)
                os.setuid(65534)
            # A copy nobody can reach (the checkout may sit under a folder only root may enter):
            # the check runs everywhere instead of being skipped where the path is closed.
            bin_dir = Path(tempfile.mkdtemp(prefix="compress-bin-"))
            os.chmod(bin_dir, 0o755)
            binary = str(bin_dir / "compress")
            shutil.copy2(COMPRESS_BIN, binary)
            os.chmod(binary, 0o755)
            probe = subprocess.run([binary, "--version"], capture_output=True, text=True, preexec_fn=preexec)
            assert probe.returncode == 0, f"the compress binary does not run as user nobody: {probe.stderr[-500:]}"
        r = subprocess.run([binary, "info", str(path)], capture_output=True, text=True, preexec_fn=preexec)
        assert_clean_failure(r, str(path), "Permission denied")
        os.chmod(folder, 0o777)
        r = subprocess.run([binary, "convert", str(path), "-o", str(folder / "out.onnx")],
                           capture_output=True, text=True, preexec_fn=preexec)
        assert_clean_failure(r, str(path), "Permission denied")
        assert sorted(p.name for p in folder.iterdir()) == ["secret.onnx"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if binary != COMPRESS_BIN:
            shutil.rmtree(os.path.dirname(binary), ignore_errors=True)


def test_output_over_input_needs_force(tmp_path, compress_bin):
    model = tmp_path / "m.onnx"
    shutil.copy(FIXTURES / "digits_cnn.onnx", model)
    os.utime(model, ns=(1_000_000_000, 1_000_000_000))
    before = (model.read_bytes(), model.stat().st_mtime_ns, model.stat().st_ino)
    (tmp_path / "link.onnx").symlink_to(model)
    os.link(model, tmp_path / "hard.onnx")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        for target in (str(model), "m.onnx", "./m.onnx", "../" + tmp_path.name + "/m.onnx", "link.onnx", "hard.onnx"):
            r = run_compress("convert", "m.onnx", "-o", target)
            assert_clean_failure(r, "is the input model", "--force")
            r = run_compress("convert", "m.onnx", "-o", target, "--external-data")
            assert_clean_failure(r, "is the input model", "--force")
    finally:
        os.chdir(cwd)
    assert (model.read_bytes(), model.stat().st_mtime_ns, model.stat().st_ino) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.onnx", "link.onnx", "m.onnx"]

    # With --force it is allowed, and the model written back is the same model.
    r = run_compress("convert", model, "-o", model, "--force")
    assert r.returncode == 0, r.stderr
    assert model.read_bytes() == before[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.onnx", "link.onnx", "m.onnx"]


def test_output_over_input_external_data_needs_force(tmp_path, compress_bin):
    """The input's external-data file is part of the input."""
    src = tmp_path / "in"
    shutil.copytree(FIXTURES / "external", src)
    data = src / "model.onnx.data"
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    r = run_compress("convert", src / "model.onnx", "-o", data)
    assert_clean_failure(r, "external-data file", "--force")
    r = run_compress("convert", src / "model.onnx", "-o", src / "copy.onnx", "--external-data",
                     "--external-location", "model.onnx.data")
    assert_clean_failure(r, "external-data file", "--force")
    r = run_compress("convert", src / "model.onnx", "-o", src / "model.onnx", "--external-data")
    assert_clean_failure(r, "is the input model")
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    # Rewriting in place with --force keeps the model loadable and equal.
    r = run_compress("convert", src / "model.onnx", "-o", src / "model.onnx", "--external-data", "--force")
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(str(src / "model.onnx"), full_check=True)
    a = onnx.load(str(FIXTURES / "external" / "model.onnx"))
    b = onnx.load(str(src / "model.onnx"))
    assert [numpy_helper.to_array(t).tobytes() for t in a.graph.initializer] == \
           [numpy_helper.to_array(t).tobytes() for t in b.graph.initializer]


def test_bad_output_paths(tmp_path, compress_bin):
    model = FIXTURES / "digits_cnn.onnx"
    before = (model.read_bytes(), model.stat().st_mtime_ns)
    assert_clean_failure(run_compress("convert", model, "-o", tmp_path / "no" / "such" / "o.onnx"), "does not exist")
    assert_clean_failure(run_compress("convert", model, "-o", tmp_path), "is a directory")
    r = run_compress("convert", model, "-o", "/proc/compress-test.onnx")
    assert_clean_failure(r, "/proc/compress-test.onnx")
    assert ".tmp-" not in r.stderr, "the message names the temporary file, not the output"
    # The external-data file cannot be placed: the model is not written either.
    (tmp_path / "o.onnx.data").mkdir()
    r = run_compress("convert", model, "-o", tmp_path / "o.onnx", "--external-data", "--external-threshold", "0")
    assert_clean_failure(r, "o.onnx.data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx.data"]
    assert list((tmp_path / "o.onnx.data").iterdir()) == []
    assert (model.read_bytes(), model.stat().st_mtime_ns) == before


@pytest.mark.parametrize("args", [
    ["convert", "MODEL", "-o", "OUT", "--external-data", "--inline"],
    ["convert", "MODEL", "-o", "OUT", "--external-threshold", "-5"],
    ["convert", "MODEL", "-o", "OUT", "--external-data", "--external-location", "../x.data"],
    ["convert", "MODEL", "-o", "OUT", "--external-data", "--external-location", "/tmp/x.data"],
    ["convert", "MODEL"],
    ["info"],
    ["info", "MODEL", "--format", "yaml"],
])
def test_usage_errors(args, tmp_path, compress_bin):
    """Flag mistakes are usage errors (exit 64) reported before any work; nothing is written."""
    argv = [str(FIXTURES / "digits_cnn.onnx") if a == "MODEL" else str(tmp_path / "o.onnx") if a == "OUT" else a for a in args]
    r = run_compress(*argv)
    assert crash_description(r) is None, r.stderr
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert r.stderr.startswith("Error: "), r.stderr
    assert list(tmp_path.iterdir()) == []


def test_hostile_names_stay_on_one_line(tmp_path, compress_bin):
    """Names come from the file: line breaks and escape sequences in them are shown escaped."""
    t = TensorProto(name="w\nsecond line\x1b[31m", data_type=TensorProto.FLOAT, dims=[2], raw_data=bytes(3))
    g = helper.make_graph([helper.make_node("Identity", [t.name], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [t])
    path = tmp_path / "hostile.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    line = assert_clean_failure(run_compress("info", path), "raw_data has 3 bytes", "\\n", "\\u{1B}")
    assert "\x1b" not in line
