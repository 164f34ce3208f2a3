"""`compress distill` against a NumPy reference on the same logits.

The reference reads the logits compress's executor produced (`compress run --out`, .npy per
sample and output), so the loss mathematics is checked to 1e-9 relative on identical inputs:
mean KL at T, T²·KL, KL at T = 1, soft cross-entropy and teacher entropy, hard CE and accuracy
with labels, the combined loss, top-1/top-5 agreement (also on a student that disagrees),
per-sample KL and agreement, feature MSE / cosine / max difference, and class axes of maps. Self-distillation gives exactly zero KL; a quantized student a small positive one;
±1e4 logits stay finite. Bad input exits 1 with one line.
"""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES, assert_clean_failure, run_compress

BN = FIXTURES / "digits_cnn_bn.onnx"
FOLDED = FIXTURES / "digits_cnn.onnx"
DATA = FIXTURES / "digits"
LABELS = {l.split()[0]: int(l.split()[1]) for l in (DATA / "labels.txt").read_text().splitlines()}


def ok(*args):
    p = run_compress(*args)
    assert p.returncode == 0, p.stderr
    return p


def with_output(src, value, dst):
    m = onnx.load(str(src))
    m.graph.output.append(helper.make_empty_tensor_value_info(value))
    onnx.save(m, str(dst))
    return dst


def dumped(model, folder, n):
    """compress's own outputs for the first n samples: {sample id: [output arrays]}."""
    ok("run", model, "--data", DATA, "--out", folder, "--quiet")
    ids = sorted(LABELS)[:n]
    outs = {}
    for sid in ids:
        stem = sid[:-4]
        k, arrays = 0, []
        while (folder / f"{stem}.{k}.npy").exists():
            arrays.append(np.load(folder / f"{stem}.{k}.npy").astype(np.float64))
            k += 1
        outs[stem] = arrays
    return outs


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def reference(t, s, T, label, W):
    lp, lq = log_softmax(t / T), log_softmax(s / T)
    p = np.exp(lp)
    kl = float((p * (lp - lq)).sum())
    lp1, lq1 = log_softmax(t), log_softmax(s)
    kl1 = float((np.exp(lp1) * (lp1 - lq1)).sum())
    return dict(kl=kl, kl_t2=T * T * kl, kl_t1=kl1, soft_ce=float(-(p * lq).sum()), teacher_entropy=float(-(p * lp).sum()),
                hard_ce_student=float(-lq1[label]), hard_ce_teacher=float(-lp1[label]),
                accuracy_student=float(s.argmax() == label), accuracy_teacher=float(t.argmax() == label),
                combined=W * float(-lq1[label]) + (1 - W) * T * T * kl,
                top1_agreement=float(t.argmax() == s.argmax()), top5_agreement=float(t.argmax() in np.argsort(-s, kind="stable")[:5]))


@pytest.mark.parametrize("T,W", [(4.0, 0.0), (2.0, 0.5), (1.0, 1.0)])
def test_every_figure_equals_numpy_on_the_same_logits(T, W, tmp_path):
    n = 40
    student = tmp_path / "student.onnx"
    p = run_compress("quantize", BN, "--calib", DATA, "--max-samples", 32, "-o", student)
    assert p.returncode == 0, p.stderr
    # Expose pool_out in both so the feature pair can be recomputed from compress's own values.
    t2, s2 = with_output(BN, "pool_out", tmp_path / "t.onnx"), with_output(student, "pool_out", tmp_path / "s.onnx")
    report = json.loads(ok("distill", "--teacher", t2, "--student", s2, "--data", DATA, "--max-samples", n, "--temperature", T,
                           "--hard-weight", W, "--output", "logits", "--feature", "pool_out=pool_out", "--worst", 3, "--format", "json").stdout)
    to, so = dumped(t2, tmp_path / "to", n), dumped(s2, tmp_path / "so", n)
    assert report["samples"] == n and len(to) == n
    rows = {k: reference(to[k][0][0], so[k][0][0], T, LABELS[k + ".npy"], W) for k in to}
    o = report["outputs"][0]
    assert o["shape"] == [1, 10] and o["class_axis"] == 1 and o["distributions_per_sample"] == 1
    for key in ["kl", "kl_t2", "kl_t1", "soft_ce", "teacher_entropy", "hard_ce_student", "hard_ce_teacher",
                "accuracy_student", "accuracy_teacher", "combined", "top1_agreement", "top5_agreement"]:
        want = np.mean([r[key] for r in rows.values()])
        assert o[key] == pytest.approx(want, rel=1e-9, abs=1e-15), key
    assert o["kl"] > 0 and o["kl"] < 0.01, "a quantized student is close but not equal"
    assert len(report["per_sample"]) == n
    per = {s["id"]: s for s in report["per_sample"]}
    for k, r in rows.items():
        assert per[k]["loss"][0] == pytest.approx(r["kl"], rel=1e-9, abs=1e-15)
        assert per[k]["agreement"][0] == r["top1_agreement"]
    assert [w["id"] for w in report["worst"]] == sorted(rows, key=lambda k: (-rows[k]["kl"], k))[:3]
    # Feature pair: MSE and cosine averaged per sample, max |difference| over all.
    f = report["features"][0]
    a = [to[k][1].ravel() for k in to]
    b = [so[k][1].ravel() for k in to]
    assert f["mse"] == pytest.approx(np.mean([((x - y) ** 2).mean() for x, y in zip(a, b)]), rel=1e-9)
    assert f["cosine"] == pytest.approx(np.mean([x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]), rel=1e-9)
    assert f["max_abs"] == pytest.approx(max(np.abs(x - y).max() for x, y in zip(a, b)), rel=1e-9)


def test_teacher_against_itself_is_exactly_zero():
    r = json.loads(ok("distill", "--teacher", BN, "--student", BN, "--data", DATA, "--max-samples", 60, "--format", "json").stdout)
    o = r["outputs"][0]
    assert o["kl"] == 0 and o["kl_t1"] == 0 and o["kl_t2"] == 0
    assert o["top1_agreement"] == 1 and o["top5_agreement"] == 1
    assert o["soft_ce"] == pytest.approx(o["teacher_entropy"], rel=1e-12)


def test_extreme_logits_stay_finite(tmp_path):
    """Logits of ±1e4 (the input scaled by 1e4): log-softmax with the maximum subtracted."""
    def scaled(path, k):
        g = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              [numpy_helper.from_array(np.array(k, np.float32), "k")])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    scaled(tmp_path / "t.onnx", 1e4)
    scaled(tmp_path / "s.onnx", -1e4)
    data = tmp_path / "d"
    data.mkdir()
    for i in range(4):
        np.save(data / f"{i}.npy", np.random.default_rng(i).uniform(-1, 1, (1, 5)).astype(np.float32))
    r = json.loads(ok("distill", "--teacher", tmp_path / "t.onnx", "--student", tmp_path / "s.onnx", "--data", data,
                      "--temperature", 1, "--format", "json").stdout)
    o = r["outputs"][0]
    assert all(np.isfinite(o[k]) for k in ("kl", "kl_t1", "soft_ce", "teacher_entropy"))
    # Against NumPy on the same logits (input·1e4 and input·−1e4, in float32 as the models compute).
    xs = [np.load(f).astype(np.float32)[0] for f in sorted(data.glob("*.npy"))]
    refs = [reference((x * np.float32(1e4)).astype(np.float64), (x * np.float32(-1e4)).astype(np.float64), 1.0, 0, 0.0) for x in xs]
    assert o["kl"] == pytest.approx(np.mean([r["kl"] for r in refs]), rel=1e-9) and o["kl"] > 1e3
    assert o["top1_agreement"] == 0


def test_agreement_and_top5_on_a_student_that_disagrees(tmp_path):
    """Eight classes; the student's logits are the teacher's shifted by a fixed permutation, so
    some samples agree and some do not, at top-1 and at top-5; against NumPy per sample."""
    def linear(path, w):
        g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                              [numpy_helper.from_array(w.astype(np.float32), "w")])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    rng = np.random.default_rng(9)
    w = rng.standard_normal((8, 8))
    t, s = tmp_path / "t.onnx", tmp_path / "s.onnx"
    linear(t, w)
    linear(s, w[:, [1, 0, 2, 3, 4, 5, 7, 6]] + 0.3 * rng.standard_normal((8, 8)))
    data = tmp_path / "d"
    data.mkdir()
    for i in range(50):
        np.save(data / f"{i:02d}.npy", rng.standard_normal((1, 8)).astype(np.float32))
    r = json.loads(ok("distill", "--teacher", t, "--student", s, "--data", data, "--temperature", 3, "--format", "json").stdout)
    to, so = {}, {}
    for name, m, dst in (("t", t, to), ("s", s, so)):
        d = tmp_path / f"o{name}"
        ok("run", m, "--data", data, "--out", d, "--quiet")
        for f in d.glob("*.npy"):
            dst[f.name.split(".")[0]] = np.load(f).astype(np.float64)[0]
    refs = {k: reference(to[k], so[k], 3.0, 0, 0.0) for k in to}
    o = r["outputs"][0]
    top1, top5 = np.mean([x["top1_agreement"] for x in refs.values()]), np.mean([x["top5_agreement"] for x in refs.values()])
    assert 0 < top1 < 1 and 0 < top5 < 1, (top1, top5)
    assert o["top1_agreement"] == pytest.approx(top1, abs=1e-12) and o["top5_agreement"] == pytest.approx(top5, abs=1e-12)
    assert o["kl"] == pytest.approx(np.mean([x["kl"] for x in refs.values()]), rel=1e-9)
    assert {x["id"]: x["agreement"][0] for x in r["per_sample"]} == {k: x["top1_agreement"] for k, x in refs.items()}


def test_class_axis_of_a_map_averages_positions_then_samples(tmp_path):
    """[1, 4, 3, 3] maps with --axis 1: each of the 9 positions is a distribution over 4 classes;
    a sample's KL is the mean over its positions, then the mean over samples."""
    def conv(path, seed):
        r = np.random.default_rng(seed)
        g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])],
                              [numpy_helper.from_array(r.standard_normal((4, 2, 3, 3)).astype(np.float32), "w")])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    t, s = tmp_path / "t.onnx", tmp_path / "s.onnx"
    conv(t, 1)
    conv(s, 2)
    data = tmp_path / "d"
    data.mkdir()
    rng = np.random.default_rng(3)
    for i in range(7):
        np.save(data / f"{i}.npy", rng.standard_normal((1, 2, 5, 5)).astype(np.float32))
    r = json.loads(ok("distill", "--teacher", t, "--student", s, "--data", data, "--axis", 1, "--temperature", 2, "--format", "json").stdout)
    o = r["outputs"][0]
    assert o["class_axis"] == 1 and o["distributions_per_sample"] == 9
    outs = {}
    for name, m in (("t", t), ("s", s)):
        d = tmp_path / f"o{name}"
        ok("run", m, "--data", data, "--out", d, "--quiet")
        outs[name] = {f.name.split(".")[0]: np.load(f).astype(np.float64)[0] for f in d.glob("*.npy")}
    per_sample = []
    for k in outs["t"]:
        a = np.moveaxis(outs["t"][k], 0, -1).reshape(-1, 4)
        b = np.moveaxis(outs["s"][k], 0, -1).reshape(-1, 4)
        per_sample.append(np.mean([reference(x, y, 2.0, 0, 0.0)["kl"] for x, y in zip(a, b)]))
    assert o["kl"] == pytest.approx(np.mean(per_sample), rel=1e-9)


def test_gates_exit_3(tmp_path):
    student = tmp_path / "q.onnx"
    ok("quantize", BN, "--calib", DATA, "--max-samples", 16, "-o", student)
    r = run_compress("distill", "--teacher", BN, "--student", student, "--data", DATA, "--max-samples", 20, "--max-kl", "1e-12")
    assert r.returncode == 3 and "gate failed: --max-kl" in r.stderr and "KL(T)" in r.stdout
    r = run_compress("distill", "--teacher", BN, "--student", student, "--data", DATA, "--max-samples", 20, "--min-agreement", "0.5")
    assert r.returncode == 0, r.stderr
    r = run_compress("distill", "--teacher", BN, "--student", student, "--data", DATA, "--max-samples", 20, "--min-agreement", "1.01")
    assert r.returncode == 3 and "gate failed: --min-agreement" in r.stderr
    r = run_compress("distill", "--teacher", BN, "--student", student, "--data", DATA, "--loss", "mse", "--max-kl", "1")
    assert r.returncode == 64 and "--loss mse" in r.stderr


def test_bad_input(tmp_path):
    other = tmp_path / "other.onnx"
    g = helper.make_graph([helper.make_node("Flatten", ["input"], ["y"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(other))
    r = run_compress("distill", "--teacher", BN, "--student", other, "--data", DATA, "--max-samples", 2)
    assert_clean_failure(r, "shape [1, 10]", "[1, 64]")
    r = run_compress("distill", "--teacher", BN, "--student", BN, "--data", DATA, "--feature", "pool_outt=pool_out")
    assert_clean_failure(r, "no tensor 'pool_outt'", "pool_out")
    r = run_compress("distill", "--teacher", BN, "--student", BN, "--data", DATA, "--temperature", "0")
    assert r.returncode == 64 and "--temperature" in r.stderr
    r = run_compress("distill", "--teacher", BN, "--student", BN, "--data", DATA, "--hard-weight", "1.5")
    assert r.returncode == 64 and "--hard-weight" in r.stderr
    bad_labels = tmp_path / "bad_labels"
    bad_labels.mkdir()
    first = sorted(DATA.glob("*.npy"))[0]
    (bad_labels / first.name).write_bytes(first.read_bytes())
    (bad_labels / "labels.txt").write_text(f"{first.name} 12\n")
    assert_clean_failure(run_compress("distill", "--teacher", BN, "--student", BN, "--data", bad_labels), "label 12", "10 classes")
    partial = tmp_path / "partial"
    partial.mkdir()
    for i, f in enumerate(sorted(DATA.glob("*.npy"))[:3]):
        (partial / f.name).write_bytes(f.read_bytes())
    (partial / "labels.txt").write_text(f"{sorted(DATA.glob('*.npy'))[0].name} 3\n")
    r = run_compress("distill", "--teacher", BN, "--student", BN, "--data", partial, "--format", "json")
    assert_clean_failure(r, "1 of 3 samples have labels", "sample_0001.npy")


def test_plot_renders_and_confidence_is_the_teachers_top_probability(tmp_path):
    import shutil
    import subprocess
    from PIL import Image
    student = tmp_path / "q.onnx"
    ok("quantize", BN, "--calib", DATA, "--max-samples", 16, "-o", student, "--method", "entropy")
    svg, png = tmp_path / "d.svg", tmp_path / "d.png"
    r = json.loads(ok("distill", "--teacher", BN, "--student", student, "--data", DATA, "--max-samples", 60, "--plot", svg,
                      "--format", "json").stdout)
    to = dumped(BN, tmp_path / "to", 60)
    assert len(r["per_sample"]) == 60
    for s in r["per_sample"]:
        t = to[s["id"]][0][0]
        assert s["teacher_confidence"][0] == pytest.approx(float(np.exp(log_softmax(t)).max()), rel=1e-9)
    rsvg = shutil.which("rsvg-convert")
    assert rsvg, "rsvg-convert (librsvg2-bin, installed by make deps) is needed to check the chart"
    subprocess.run([rsvg, "-o", str(png), str(svg)], check=True)
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[:2] == (420, 960)
    blue = ((img[:, :, 2] > 150) & (img[:, :, 0] < 80)).sum()
    orange = ((img[:, :, 0] > 200) & (img[:, :, 2] < 80)).sum()
    assert blue > 1000 and orange > 1000, (blue, orange)


def test_class_axis_regression_loss_csv_and_an_ort_quantized_student(tmp_path):
    # --axis on a [1, 10] output: axis 1 is also the last axis, so the figures are the default's
    # (spatial class axes: test_class_axis_of_a_map_averages_positions_then_samples).
    a = json.loads(ok("distill", "--teacher", BN, "--student", FOLDED, "--data", DATA, "--max-samples", 20, "--format", "json").stdout)
    b = json.loads(ok("distill", "--teacher", BN, "--student", FOLDED, "--data", DATA, "--max-samples", 20, "--axis", 1, "--format", "json").stdout)
    assert a["outputs"][0]["kl"] == b["outputs"][0]["kl"] and b["outputs"][0]["class_axis"] == 1
    # --loss mse / l1 on the same logits, against NumPy.
    to, so = dumped(BN, tmp_path / "to", 20), dumped(FOLDED, tmp_path / "so", 20)
    r = json.loads(ok("distill", "--teacher", BN, "--student", FOLDED, "--data", DATA, "--max-samples", 20, "--loss", "mse", "--format", "json").stdout)
    o = r["outputs"][0]
    assert o["mse"] == pytest.approx(np.mean([((to[k][0] - so[k][0]) ** 2).mean() for k in to]), rel=1e-9)
    assert o["l1"] == pytest.approx(np.mean([np.abs(to[k][0] - so[k][0]).mean() for k in to]), rel=1e-9)
    # CSV: one row per figure.
    csv = ok("distill", "--teacher", BN, "--student", FOLDED, "--data", DATA, "--max-samples", 20, "--format", "csv").stdout.splitlines()
    assert csv[0] == "section,teacher,student,figure,value"
    rows = {line.split(",")[3]: float(line.split(",")[4]) for line in csv[1:]}
    assert rows["kl"] == pytest.approx(a["outputs"][0]["kl"], rel=1e-12) and "top5_agreement" in rows
    # A student written by ONNX Runtime's QOperator quantizer (com.microsoft ops) runs beside the teacher.
    q = json.loads(ok("distill", "--teacher", FOLDED, "--student", FIXTURES / "digits_cnn_qoperator.onnx", "--data", DATA,
                      "--max-samples", 40, "--format", "json").stdout)["outputs"][0]
    assert 0 < q["kl"] < 0.05 and q["top1_agreement"] >= 0.95


def test_student_with_another_input_size_on_images(tmp_path):
    """Teacher 16x16, student 8x8: each image is prepared for each model's input size; the
    figures equal NumPy on the outputs `compress run` gives each model on the same folder."""
    from PIL import Image
    rng = np.random.default_rng(4)
    def model(path, side, seed):
        r = np.random.default_rng(seed)
        init = [numpy_helper.from_array(r.standard_normal((6, 3, 3, 3)).astype(np.float32), "w"),
                numpy_helper.from_array(r.standard_normal((5, 6)).astype(np.float32), "fc")]
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
                 helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], init)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    t, s = tmp_path / "t.onnx", tmp_path / "s.onnx"
    model(t, 16, 1)
    model(s, 8, 1)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(images / f"im{k}.png")
    r = json.loads(ok("distill", "--teacher", t, "--student", s, "--data", images, "--temperature", 2, "--format", "json").stdout)
    outs = {}
    for name, m in (("t", t), ("s", s)):
        d = tmp_path / f"out-{name}"
        ok("run", m, "--data", images, "--out", d, "--quiet")
        outs[name] = {f.name.split(".")[0]: np.load(f).astype(np.float64)[0] for f in d.glob("*.npy")}
    kls = [reference(outs["t"][k], outs["s"][k], 2.0, 0, 0.0)["kl"] for k in sorted(outs["t"])]
    assert r["samples"] == 6 and r["outputs"][0]["kl"] == pytest.approx(np.mean(kls), rel=1e-9)
    assert r["outputs"][0]["kl"] > 0, "different input sizes see different pixels"
