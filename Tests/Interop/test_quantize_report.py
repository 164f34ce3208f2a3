"""`compress quantize`: statistics files, the quality report, the plot and mixed precision.

References are independent of compress: ONNX Runtime runs the float model and the written
quantized model (with graph optimizations off, so it executes the QDQ arithmetic as written, as
compress's report simulates it; and with its defaults, integer kernels), NumPy computes every
figure from those outputs, and PIL reads the SVG rendered by rsvg-convert.
"""
import json
import shutil
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES, assert_clean_failure, run_compress

BN = FIXTURES / "digits_cnn_bn.onnx"
FOLDED = FIXTURES / "digits_cnn.onnx"
DIGITS = FIXTURES / "digits"
LABELS = dict(line.split() for line in (DIGITS / "labels.txt").read_text().splitlines())
FILES = sorted(DIGITS.glob("sample_*.npy"))


def quantize(*args):
    p = run_compress("quantize", *map(str, args), "--format", "json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def folder(tmp_path, name, files, labels=False):
    d = tmp_path / name
    d.mkdir()
    for f in files:
        shutil.copy(f, d / f.name)
    if labels:
        (d / "labels.txt").write_text("".join(f"{f.name} {LABELS[f.name]}\n" for f in files))
    return d


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def session(path, optimized):
    so = ort.SessionOptions()
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def with_outputs(path, names, out):
    m = onnx.load(str(path))
    for n in names:
        m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    onnx.save(m, str(out))
    return out


def np_sqnr(ref, got):
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile", "mean-minmax"])
def test_stats_of_two_halves_merge_to_one_run(method, tmp_path):
    """Calibration split in two (--save-stats on each half), merged (--stats a b): every scale and
    zero point of the written model equals one run over all the samples, bit for bit (for the
    histogram methods too: power-of-two histogram ranges reconcile exactly)."""
    files = FILES[:48]
    a, b, both = folder(tmp_path, "a", files[:24]), folder(tmp_path, "b", files[24:]), folder(tmp_path, "all", files)
    common = ["--method", method, "--percentile", "99.9"]
    quantize(BN, "--calib", a, "-o", tmp_path / "qa.onnx", "--save-stats", tmp_path / "a.json", *common)
    quantize(BN, "--calib", b, "-o", tmp_path / "qb.onnx", "--save-stats", tmp_path / "b.json", *common)
    merged = quantize(BN, "--stats", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "qm.onnx", *common)
    one = quantize(BN, "--calib", both, "-o", tmp_path / "q1.onnx", "--save-stats", tmp_path / "all.json", *common)
    x, y = initializers(tmp_path / "qm.onnx"), initializers(tmp_path / "q1.onnx")
    assert sorted(x) == sorted(y)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    assert all(t.get("sqnr_db") is None for t in merged["summary"]["activations"]), "no samples given: no per-tensor SQNR"
    assert merged["quality"]["samples"] == 0 and one["quality"]["samples"] == 48
    # The merged statistics file of one run: the graph input's min/max and |x| histogram against NumPy.
    s = json.loads((tmp_path / "all.json").read_text())
    assert s["schema"] == "compress.quantize-stats/1" and s["samples"] == 48 and s["bins"] == 2048
    t = next(t for t in s["tensors"] if t["name"] == "input")
    v = np.concatenate([np.load(f).ravel() for f in files])
    assert t["min"] == v.min() and t["max"] == v.max()
    r = float(2.0 ** np.frexp(float(np.abs(v).max()))[1])
    assert t["hist_range"] == r
    np.testing.assert_array_equal(t["counts"], np.histogram(np.abs(v), bins=2048, range=(0, r))[0])
    # The sums of per-sample extremes (mean-minmax) against NumPy's per-file min and max.
    assert t["min_count"] == 48 and t["max_count"] == 48
    assert t["sum_min"] == pytest.approx(sum(float(np.load(f).min()) for f in files), rel=1e-12)
    assert t["sum_max"] == pytest.approx(sum(float(np.load(f).max()) for f in files), rel=1e-12)


def test_mean_minmax_refuses_a_statistics_file_without_the_sums(tmp_path):
    """A statistics file written before mean-minmax existed (no sums of per-sample extremes):
    merged with a new one, mean-minmax is refused (its means would cover only part of the
    samples) while minmax still quantizes from both."""
    a, b = folder(tmp_path, "a", FILES[:8]), folder(tmp_path, "b", FILES[8:16])
    quantize(BN, "--calib", a, "-o", tmp_path / "qa.onnx", "--save-stats", tmp_path / "a.json")
    quantize(BN, "--calib", b, "-o", tmp_path / "qb.onnx", "--save-stats", tmp_path / "b.json")
    old = json.loads((tmp_path / "a.json").read_text())
    for t in old["tensors"]:
        for k in ("sum_min", "sum_max", "min_count", "max_count"):
            del t[k]
    (tmp_path / "a.json").write_text(json.dumps(old))
    r = run_compress("quantize", BN, "--stats", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "q.onnx",
                     "--method", "mean-minmax")
    assert r.returncode == 1 and "saved without per-sample extremes" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "q.onnx").exists()
    quantize(BN, "--stats", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "q.onnx", "--method", "minmax")
    assert (tmp_path / "q.onnx").exists()


def test_report_against_onnxruntime(tmp_path):
    """Per-tensor QDQ SQNR, output SQNR, cosine similarity, top-1 agreement and accuracy, each
    recomputed with NumPy from ONNX Runtime's runs of the float model and the written model."""
    files = FILES[:40]
    calib, ev = folder(tmp_path, "calib", FILES[200:264]), folder(tmp_path, "eval", files, labels=True)
    out = tmp_path / "q.onnx"
    r = quantize(BN, "--calib", calib, "--eval", ev, "-o", out, "--method", "entropy")
    q = r["quality"]
    assert q["samples"] == 40 and q["on"] == f"--eval {ev}"
    acts = r["summary"]["activations"]
    probe = session(with_outputs(out, [a["name"] for a in acts], tmp_path / "probe.onnx"), optimized=False)
    ref = session(BN, optimized=True)
    init = initializers(out)
    sig = {a["name"]: 0.0 for a in acts}
    noi = dict(sig)
    f_out, q_out = [], []
    for f in files:
        x = np.load(f)
        res = probe.run(None, {"input": x})
        q_out.append(res[0])
        f_out.append(ref.run(None, {"input": x})[0])
        for a, v in zip(acts, res[1:]):
            s, z = init[a["name"] + "_scale"], init[a["name"] + "_zero_point"]
            info = np.iinfo(z.dtype)
            xq = (np.clip(np.rint(v / s) + z.astype(np.float32), info.min, info.max) - z.astype(np.float32)) * s
            sig[a["name"]] += (v.astype(np.float64) ** 2).sum()
            noi[a["name"]] += ((v.astype(np.float64) - xq) ** 2).sum()
    for a in acts:
        assert a["sqnr_db"] == pytest.approx(10 * np.log10(sig[a["name"]] / noi[a["name"]]), abs=0.02), a["name"]
    F, Q = np.concatenate(f_out), np.concatenate(q_out)
    assert q["output_sqnr_db"] == pytest.approx(np_sqnr(F, Q), abs=0.02)
    assert r["output_sqnr_db"] == q["output_sqnr_db"]
    cos = np.mean([(a.ravel() @ b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(f_out, q_out)])
    assert q["cosine_similarity"] == pytest.approx(cos, abs=1e-5)
    assert q["top1_agreement"] == pytest.approx((F.argmax(1) == Q.argmax(1)).mean())
    labels = np.array([int(LABELS[f.name]) for f in files])
    assert q["float_accuracy"] == pytest.approx((F.argmax(1) == labels).mean())
    assert q["quantized_accuracy"] == pytest.approx((Q.argmax(1) == labels).mean())
    # The CSV form carries the same figures.
    p = run_compress("quantize", BN, "--calib", calib, "--eval", ev, "-o", tmp_path / "q2.onnx", "--method", "entropy", "--format", "csv")
    assert p.returncode == 0, p.stderr
    head, tail = p.stdout.split("\n\n")
    rows = head.splitlines()
    assert rows[0] == "activation,min,max,threshold,scale,zero_point,sqnr_db" and len(rows) == 1 + len(acts)
    metrics = dict(line.split(",") for line in tail.splitlines()[1:])
    assert float(metrics["output_sqnr_db"]) == pytest.approx(q["output_sqnr_db"], rel=1e-9)
    assert float(metrics["quantized_accuracy"]) == pytest.approx(q["quantized_accuracy"])


def test_plot_renders(tmp_path):
    svg, png = tmp_path / "sqnr.svg", tmp_path / "sqnr.png"
    r = quantize(BN, "--calib", DIGITS, "--max-samples", 32, "-o", tmp_path / "q.onnx", "--plot", svg)
    import xml.etree.ElementTree as ET
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(ns + "title")]
    acts = r["summary"]["activations"]
    # One SQNR bar and one range bar per activation, named in graph order.
    assert [t.split(":")[0] for t in titles[: len(acts)]] == [a["name"] for a in acts]
    assert len(titles) == 2 * len(acts)
    subprocess.run(["rsvg-convert", "-o", str(png), str(svg)], check=True)
    from PIL import Image
    im = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert im.shape[0] > 300 and im.shape[1] > 150
    blue = ((im[..., 2] > 150) & (im[..., 0] < 100)).sum()
    red = ((im[..., 0] > 180) & (im[..., 1] < 80) & (im[..., 2] < 80)).sum()
    assert blue > 500 and red > 50, (blue, red)  # bars drawn, the worst layer in red


def test_mixed_precision_meets_target_in_onnxruntime(tmp_path):
    calib = folder(tmp_path, "calib", FILES[:64])
    full = quantize(FOLDED, "--calib", calib, "-o", tmp_path / "full.onnx", "--method", "entropy")
    target = full["output_sqnr_db"] + 6
    out = tmp_path / "mp.onnx"
    r = quantize(FOLDED, "--calib", calib, "-o", out, "--method", "entropy", "--mixed-precision", "--target-sqnr", target)
    mp = r["quality"]["mixed_precision"]
    assert mp["met"] and 0 < len(mp["float_nodes"]) < len(full["summary"]["nodes"]) and r["output_sqnr_db"] >= target
    assert mp["fully_quantized_sqnr_db"] == pytest.approx(full["output_sqnr_db"])
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    producers = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            quantized = n.input[1] in producers and producers[n.input[1]].op_type == "DequantizeLinear"
            assert quantized == (n.name not in mp["float_nodes"]), n.name
    x = np.concatenate([np.load(f) for f in FILES[:64]])
    ref = session(FOLDED, optimized=True).run(None, {"input": x})[0]
    simulated = session(out, optimized=False).run(None, {"input": x})[0]
    assert np_sqnr(ref, simulated) >= target - 0.02
    assert np_sqnr(ref, simulated) == pytest.approx(r["output_sqnr_db"], abs=0.02)
    executed = session(out, optimized=True).run(None, {"input": x})[0]
    assert np_sqnr(ref, executed) >= target - 0.5, "ONNX Runtime's integer kernels"


def test_bad_input(tmp_path):
    out = tmp_path / "q.onnx"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert_clean_failure(run_compress("quantize", BN, "--stats", bad, "-o", out), str(bad))
    assert_clean_failure(run_compress("quantize", BN, "--stats", tmp_path / "missing.json", "-o", out), "missing.json")
    for args, words in ((["-o", out], "--calib DIR or --stats"), (["--calib", DIGITS, "-o", out, "--mixed-precision"], "--target-sqnr"),
                        (["--calib", DIGITS, "-o", out, "--plot", tmp_path / "x.png"], "svg"),
                        (["--calib", DIGITS, "-o", out, "--bins", "1000"], "power of two")):
        p = run_compress("quantize", BN, *args)  # usage errors: ArgumentParser's message and usage, status 64
        assert p.returncode == 64 and p.stderr.startswith("Error: ") and words in p.stderr.splitlines()[0], p.stderr
    # Statistics of another model: its tensors are not this model's.
    other = tmp_path / "other.json"
    p = run_compress("quantize", tmp_path / "conv.onnx", "--calib", DIGITS, "-o", out)  # (missing model: error)
    assert p.returncode == 1
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "conv.onnx"))
    assert run_compress("quantize", tmp_path / "conv.onnx", "--calib", DIGITS, "--max-samples", 4, "-o", out, "--save-stats", other).returncode == 0
    out.unlink()
    assert_clean_failure(run_compress("quantize", BN, "--stats", other, "-o", out), "no statistics for activation")
    assert not out.exists()
