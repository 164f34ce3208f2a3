"""`compress run` and `compress ops` end to end: the digits accuracy recorded by the fixture
generator, logits against ONNX Runtime, the JSON schema, the progress bar, and bad input
(exit 1, one line on stderr naming the file)."""
import json
import os
import pty
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import COMPRESS_BIN as BIN  # noqa: E402  (this checkout's binary unless COMPRESS_BIN says otherwise)
ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "Fixtures"


def run(*args, check=True, **kw):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"compress {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def digits_files():
    return sorted((FIX / "digits").glob("*.npy"))


def test_digits_accuracy_matches_fixture():
    expected = json.loads((FIX / "digits_expected.json").read_text())
    for model in ["digits_cnn_bn.onnx", "digits_cnn.onnx"]:
        want = expected[model]
        p = run("run", FIX / model, "--data", FIX / "digits")
        assert f"top-1 {want['accuracy']:.4f} ({want['correct']}/{expected['num_samples']})" in p.stdout, p.stdout[-500:]
        assert p.stderr == ""  # not a terminal: no progress bar
        res = json.loads(run("run", FIX / model, "--data", FIX / "digits", "--format", "json").stdout)
        assert res["samples"] == expected["num_samples"] == res["labeled"]
        acc = res["accuracy"]
        assert acc["output"] == expected["output_name"]
        assert acc["top1_correct"] == want["correct"] and acc["evaluated"] == expected["num_samples"]
        assert abs(acc["top1"] - want["accuracy"]) < 1e-12


# threads "1": every kernel inline; conv "blas": convolution products through OpenBLAS instead of
# the C kernels (COMPRESS_CONV_GEMM=blas, the comparison switch), so that path stays correct too.
@pytest.mark.parametrize("threads,conv", [(None, None), ("1", None), (None, "blas")])
def test_digits_logits_match_onnxruntime(tmp_path, threads, conv):
    out = tmp_path / "out"
    env = dict(os.environ, COMPRESS_CONV_GEMM=conv) if conv else None
    run("run", FIX / "digits_cnn_bn.onnx", "--data", FIX / "digits", "--out", out, "--quiet",
        *(["--threads", threads] if threads else []), env=env)
    sess = ort.InferenceSession(str(FIX / "digits_cnn_bn.onnx"), providers=["CPUExecutionProvider"])
    files = digits_files()
    assert len(files) == 360, "Fixtures/digits holds 360 samples"  # else the loop below checks nothing
    assert len(list(out.glob("*.npy"))) == len(files)
    for f in files:
        x = np.load(f)
        ref = sess.run(None, {"input": x})[0]
        got = np.load(out / f"{f.stem}.0.npy")
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), f.name


def test_json_schema_and_top_k(tmp_path):
    res = json.loads(run("run", FIX / "digits_cnn_bn.onnx", "--data", FIX / "digits", "--format", "json", "--top-k", "3").stdout)
    assert set(res) == {"model", "data", "layout", "inputs", "samples", "labeled", "top_k", "accuracy", "timing_ms", "results"}
    assert res["layout"] == "files" and res["top_k"] == 3
    assert res["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 1, 8, 8]}]
    t = res["timing_ms"]
    assert set(t) == {"mean", "p50", "p90", "min", "max", "total"}
    assert 0 < t["min"] <= t["p50"] <= t["p90"] <= t["max"] and abs(t["total"] - sum(r["ms"] for r in res["results"])) < 1e-6 * t["total"] + 1e-9
    r0 = res["results"][0]
    assert r0["id"] == "sample_0000" and r0["label"] == 7 and r0["files"][0].endswith("sample_0000.npy")
    o = r0["outputs"][0]
    assert o["name"] == "logits" and o["shape"] == [1, 10] and o["dtype"] == "float32"
    top = o["top"][0]
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    # Scores are the logits, in the order ONNX Runtime's would sort them.
    sess = ort.InferenceSession(str(FIX / "digits_cnn_bn.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": np.load(FIX / "digits" / "sample_0000.npy")})[0][0]
    assert [e["class"] for e in top] == list(np.argsort(-ref, kind="stable")[:3])
    assert abs(top[0]["score"] - ref.max()) <= 1e-4 * np.abs(ref).max()
    acc = res["accuracy"]
    assert acc["k"] == 3 and acc["topk_correct"] >= acc["top1_correct"]
    # CSV: one line per sample and rank.
    csv = run("run", FIX / "digits_cnn_bn.onnx", "--data", FIX / "digits", "--format", "csv", "--top-k", "2").stdout.splitlines()
    assert csv[0] == "id,label,ms,output,row,rank,class,score" and len(csv) == 1 + 2 * len(digits_files())


def test_no_labels_no_classifier(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    np.save(data / "a.npy", np.ones((1, 1, 8, 8), np.float32))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(m, tmp_path / "m.onnx")
    res = json.loads(run("run", tmp_path / "m.onnx", "--data", data, "--format", "json").stdout)
    assert "accuracy" not in res and res["labeled"] == 0
    assert "top" not in res["results"][0]["outputs"][0]
    p = run("run", tmp_path / "m.onnx", "--data", data)
    assert "outputs  y float32[1x1x8x8]" in p.stdout and "accuracy" not in p.stdout


def test_progress_bar_only_on_a_terminal():
    # stderr is a pty: the bar is drawn (and erased at the end).
    master, slave = pty.openpty()
    p = subprocess.run([BIN, "run", str(FIX / "digits_cnn_bn.onnx"), "--data", str(FIX / "digits"), "--format", "json"],
                       stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    err = b"".join(chunks).decode()
    assert p.returncode == 0
    assert "run [" in err and "360/360" in err
    # --quiet: nothing on the terminal.
    master, slave = pty.openpty()
    p = subprocess.run([BIN, "run", str(FIX / "digits_cnn_bn.onnx"), "--data", str(FIX / "digits"), "--quiet", "--format", "json"],
                       stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    os.set_blocking(master, False)
    try:
        quiet = os.read(master, 65536)
    except (BlockingIOError, OSError):
        quiet = b""
    os.close(master)
    assert p.returncode == 0 and quiet == b""


def test_ops_lists_the_registry():
    res = json.loads(run("ops", "--format", "json").stdout)
    ops = {(r["domain"], r["op"]): r for r in res}
    for op in ["Conv", "Gemm", "Relu", "Identity", "Add"]:
        assert ("ai.onnx", op) in ops, op
    for r in res:
        assert r["since_versions"] == sorted(r["since_versions"])
        assert r["ranges"][-1].get("to") is None
        for a, b in zip(r["ranges"], r["ranges"][1:]):
            assert a["to"] == b["from"] - 1
    table = run("ops").stdout
    assert table.splitlines()[0].split() == ["domain", "op", "opsets"]
    assert f"{len(res)} operators" in table


# ---------------------------------------------------------------------------------------------
# Bad input: exit 1 and one line naming the file.


def identity(path, shape, dtype=TensorProto.FLOAT, n=1):
    ins = [helper.make_tensor_value_info(f"x{k}", dtype, shape) for k in range(n)]
    outs = [helper.make_tensor_value_info(f"y{k}", dtype, shape) for k in range(n)]
    nodes = [helper.make_node("Identity", [f"x{k}"], [f"y{k}"]) for k in range(n)]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", ins, outs), opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def bad_case(tmp_path, name):
    """Builds a data folder for one bad-input case; returns (extra args, the path the message must name, a phrase)."""
    d = tmp_path / "data"
    d.mkdir()
    good = np.zeros((1, 1, 8, 8), np.float32)
    if name == "corrupt_header":
        raw = bytearray(open(FIX / "digits" / "sample_0000.npy", "rb").read())
        raw[10:20] = b"{'descr!!:"
        (d / "x.npy").write_bytes(bytes(raw))
        return [], d / "x.npy", "bad .npy header"
    if name == "truncated":
        (d / "x.npy").write_bytes(open(FIX / "digits" / "sample_0000.npy", "rb").read()[:-5])
        return [], d / "x.npy", "truncated"
    if name == "fortran":
        np.save(d / "x.npy", np.asfortranarray(np.zeros((1, 1, 8, 8), np.float32).transpose(0, 1, 3, 2).copy(order="F")))
        return [], d / "x.npy", "Fortran order"
    if name == "int_for_float":
        np.save(d / "x.npy", good.astype(np.int64))
        return [], d / "x.npy", "dtype int64 cannot feed input 'x0' (float32)"
    if name == "shape_mismatch":
        np.save(d / "x.npy", np.zeros((1, 1, 7, 8), np.float32))
        return [], d / "x.npy", "shape 1x1x7x8 does not fit input 'x0'"
    if name == "disagrees_with_input_flag":
        np.save(d / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
        return ["--input", "x0=1x1x8x8"], d / "x.npy", "as pinned by --input"
    if name == "empty_folder":
        return [], d, "no samples"
    if name == "missing_folder":
        return ["--data", tmp_path / "nope"], tmp_path / "nope", "no such folder"
    if name == "unreadable_file":
        os.symlink(tmp_path / "gone.npy", d / "x.npy")
        return [], d / "x.npy", "cannot open"
    if name == "undecodable_png":
        (d / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        return [], d / "x.png", "not a decodable PNG"
    if name == "undecodable_jpeg":
        (d / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
        return [], d / "x.jpg", "not a decodable JPEG"
    if name == "unknown_file":
        (d / "notes.md").write_text("hi")
        return [], d / "notes.md", "not a data file"
    if name == "bad_labels":
        np.save(d / "x.npy", good)
        (d / "labels.txt").write_text("x.npy cat\n")
        return [], f"{d / 'labels.txt'}:1", "expected 'NAME LABEL'"
    if name == "multi_input_plain_files":
        np.save(d / "x.npy", good)
        return ["MODEL2"], d, "test_data_set_0/input_0.pb"
    if name == "bad_pb":
        (d / "x.pb").write_bytes(b"\x08\x01\x12\x05abcde\xff\xff")
        return [], d / "x.pb", "TensorProto"
    raise KeyError(name)


CASES = ["corrupt_header", "truncated", "fortran", "int_for_float", "shape_mismatch", "disagrees_with_input_flag",
         "empty_folder", "missing_folder", "unreadable_file", "undecodable_png", "undecodable_jpeg", "unknown_file",
         "bad_labels", "multi_input_plain_files", "bad_pb"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_1_with_one_line_naming_the_file(tmp_path, case):
    model = identity(tmp_path / "m.onnx", ["N", 1, 8, 8])
    extra, named, phrase = bad_case(tmp_path, case)
    if extra and extra[0] == "MODEL2":
        model = identity(tmp_path / "m2.onnx", ["N", 1, 8, 8], n=2)
        extra = []
    args = ["run", model, "--data", tmp_path / "data", *extra]
    p = run(*args, check=False)
    assert p.returncode == 1, (case, p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert str(named) in lines[0], (str(named), lines[0])
    assert phrase in lines[0], (phrase, lines[0])


@pytest.mark.parametrize("flags,phrase", [
    (["--size", "12x0"], "--size"), (["--crop", "a"], "--crop"), (["--fit", "pad"], "--fit"), (["--mean", "1,2"], "--mean"), (["--std", "0"], "--std"),
    (["--scale", "x"], "--scale"), (["--input", "x0"], "--input"), (["--top-k", "-1"], "--top-k"),
    (["--layout", "chw"], "--layout"), (["--resize", "cubic"], "--resize"), (["--threads", "0"], "--threads"),
])
def test_bad_flags_are_usage_errors(tmp_path, flags, phrase):
    p = run("run", FIX / "digits_cnn_bn.onnx", "--data", FIX / "digits", *flags, check=False)
    assert p.returncode == 64, (flags, p.returncode, p.stderr)
    assert phrase in p.stderr
