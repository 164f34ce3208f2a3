"""Data loading (`--data DIR`) against independent references.

- `.npy`: NumPy writes every supported dtype in both byte orders and all three format versions;
  an Identity model run with `compress run --out` must hand back exactly the same values.
- `.pb` and ONNX test-data sets: written with onnx.numpy_helper, outputs compared with ONNX Runtime.
- Images: decoded pixels against Pillow (max difference 0 for PNG, <= 1 for JPEG); resize,
  crop, mean/std, BGR and layout against a NumPy reimplementation and ONNX Runtime's Resize.
"""
import json
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import COMPRESS_BIN as BIN  # noqa: E402  (this checkout's binary unless COMPRESS_BIN says otherwise)


def run(*args, check=True):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"compress {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def identity_model(path, dtype, shape, n_inputs=1):
    """Identity per input (y_k = x_k), so outputs are the loaded inputs."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info(f"x{k}", elem, shape) for k in range(n_inputs)]
    outputs = [helper.make_tensor_value_info(f"y{k}", elem, shape) for k in range(n_inputs)]
    nodes = [helper.make_node("Identity", [f"x{k}"], [f"y{k}"]) for k in range(n_inputs)]
    g = helper.make_graph(nodes, "identity", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]


def sample_values(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if dt.kind == "f":
        a = rng.standard_normal(shape).astype(dt) * 100
        a.flat[0] = -0.0
        return a
    info = np.iinfo(dt)
    a = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    a.flat[0], a.flat[-1] = info.min, info.max
    return a


@pytest.mark.parametrize("dtype", DTYPES)
def test_npy_every_dtype_byte_order_and_version(tmp_path, dtype):
    shape = [2, 3, 4]
    model = identity_model(tmp_path / "m.onnx", dtype, ["N", 3, 4])
    data = tmp_path / "data"
    data.mkdir()
    expected = {}
    for order in "<>":
        for version in [(1, 0), (2, 0), (3, 0)]:
            a = sample_values(dtype, shape, seed=len(expected))
            stored = a.astype(np.dtype(dtype).newbyteorder(order)) if np.dtype(dtype).itemsize > 1 else a
            name = f"{'le' if order == '<' else 'be'}_v{version[0]}"
            with open(data / f"{name}.npy", "wb") as f:
                np.lib.format.write_array(f, stored, version=version)
            # The file really has that byte order and version.
            with open(data / f"{name}.npy", "rb") as f:
                assert np.lib.format.read_magic(f) == version
            expected[name] = a
    out = tmp_path / "out"
    run("run", model, "--data", data, "--out", out, "--quiet")
    for name, a in expected.items():
        got = np.load(out / f"{name}.0.npy")
        assert got.dtype == np.dtype(dtype), (name, got.dtype)
        assert got.dtype.byteorder in "<|="
        assert got.shape == a.shape
        assert np.array_equal(got.view(np.uint8), np.ascontiguousarray(a).view(np.uint8)), name


def test_npy_batch_dim_added_and_flexible_batch(tmp_path):
    model = identity_model(tmp_path / "m.onnx", "float32", ["N", 1, 8, 8])
    data = tmp_path / "data"
    data.mkdir()
    a = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
    b = np.arange(3 * 64, dtype=np.float32).reshape(3, 1, 8, 8)
    np.save(data / "a.npy", a)
    np.save(data / "b.npy", b)
    out = tmp_path / "out"
    run("run", model, "--data", data, "--out", out, "--quiet")
    assert np.array_equal(np.load(out / "a.0.npy"), a[None])
    assert np.array_equal(np.load(out / "b.0.npy"), b)
    # Pinning the batch makes the 3-batch file an error naming it.
    p = run("run", model, "--data", data, "--input", "x0=1x1x8x8", check=False)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "b.npy" in p.stderr and "3x1x8x8" in p.stderr


def test_npy_float_conversions(tmp_path):
    model = identity_model(tmp_path / "m.onnx", "float32", [1, 5])
    data = tmp_path / "data"
    data.mkdir()
    d = np.array([[0.1, 1e-50, 3e38, -2.5, 1 / 3]], dtype=np.float64)
    h = np.array([[0.1, 65504, -1e-7, 2, 3]], dtype=np.float16)
    np.save(data / "d.npy", d)
    np.save(data / "h.npy", h)
    out = tmp_path / "out"
    run("run", model, "--data", data, "--out", out, "--quiet")
    assert np.array_equal(np.load(out / "d.0.npy"), d.astype(np.float32))
    assert np.array_equal(np.load(out / "h.0.npy"), h.astype(np.float32))


def test_pb_files_and_test_data_sets_match_onnxruntime(tmp_path):
    # y = a * b + c with a float input and two int64 inputs... keep types simple: float.
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in "abc"]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    g = helper.make_graph([helper.make_node("Mul", ["a", "b"], ["ab"]), helper.make_node("Add", ["ab", "c"], ["y"])],
                          "mac", inputs, [out])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(m, tmp_path / "m.onnx")
    root = tmp_path / "sets"
    rng = np.random.default_rng(0)
    feeds = []
    for n in range(3):
        d = root / f"test_data_set_{n}"
        d.mkdir(parents=True)
        f = {k: rng.standard_normal((n + 1, 4)).astype(np.float32) for k in "abc"}
        for k, name in enumerate("abc"):
            (d / f"input_{k}.pb").write_bytes(numpy_helper.from_array(f[name], name).SerializeToString())
        feeds.append(f)
    (root / "model.onnx").write_bytes(b"ignored")
    outdir = tmp_path / "out"
    res = json.loads(run("run", tmp_path / "m.onnx", "--data", root, "--out", outdir, "--format", "json", "--quiet").stdout)
    assert res["layout"] == "test_data_sets" and res["samples"] == 3
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for n, f in enumerate(feeds):
        ref = sess.run(None, f)[0]
        got = np.load(outdir / f"test_data_set_{n}.0.npy")
        assert np.abs(got - ref).max() <= 1e-6 * max(1.0, np.abs(ref).max())
    # Single-input model, a flat folder of .pb files.
    model = identity_model(tmp_path / "id.onnx", "int64", [2])
    flat = tmp_path / "flat"
    flat.mkdir()
    v = np.array([-(2 ** 62), 7], dtype=np.int64)
    (flat / "v.pb").write_bytes(numpy_helper.from_array(v).SerializeToString())
    run("run", model, "--data", flat, "--out", tmp_path / "o2", "--quiet")
    assert np.array_equal(np.load(tmp_path / "o2" / "v.0.npy"), v)


# ---------------------------------------------------------------------------------------------
# Images


def image_model(path, c, h, w, layout="nchw"):
    shape = [1, c, h, w] if layout == "nchw" else [1, h, w, c]
    return identity_model(path, "float32", shape)


def pixels(tmp_path, img_path, c, h, w, *flags):
    """The tensor compress feeds for one image, via an Identity model and --out."""
    layout = "nhwc" if "nhwc" in flags else "nchw"
    model = image_model(tmp_path / f"m{c}{h}{w}{layout}.onnx", c, h, w, layout)
    data = tmp_path / ("d_" + os.path.basename(img_path))
    data.mkdir(exist_ok=True)
    for f in data.iterdir():
        f.unlink()
    os.link(img_path, data / os.path.basename(img_path))
    out = tmp_path / ("o_" + os.path.basename(img_path))
    run("run", model, "--data", data, "--out", out, "--quiet", *flags)
    stem = os.path.splitext(os.path.basename(img_path))[0]
    return np.load(out / f"{stem}.0.npy")


def rgb_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth gradients plus noise, so JPEG artefacts stay small and resize is exercised.
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(base + rng.integers(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "PA", "1", "I;16", "RGB16", "RGBA16"])
def test_png_pixels_match_pillow(tmp_path, mode):
    h, w = 9, 13
    rgb = rgb_image(h, w)
    if mode in ("RGB16", "RGBA16"):
        # 16-bit RGB, written by hand (Pillow cannot write it); the reference is the
        # documented scaling round(v * 255 / 65535).
        import struct
        import zlib
        arr = (rgb.astype(np.uint16) * 257 + np.arange(w, dtype=np.uint16)[None, :, None])
        stored = arr
        if mode == "RGBA16":  # alpha varies; it must be dropped, not composited or premultiplied
            alpha = (np.arange(h * w, dtype=np.int64).reshape(h, w, 1) * 4099) % 65536
            stored = np.concatenate([arr, alpha.astype(np.uint16)], -1)
        raw = b"".join(b"\x00" + stored[r].astype(">u2").tobytes() for r in range(h))

        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if mode == "RGBA16" else 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
        p = tmp_path / "x.png"
        p.write_bytes(png)
        got = pixels(tmp_path, p, 3, h, w, "--scale", "1")
        ref = np.floor(arr.astype(np.float64) * 255 / 65535 + 0.5).transpose(2, 0, 1)[None]
        assert np.abs(got - ref).max() == 0
        return
    if mode in ("RGB", "RGBA"):
        img = Image.fromarray(rgb).convert(mode)
        if mode == "RGBA":
            a = np.array(img)
            a[..., 3] = np.arange(h * w).reshape(h, w) % 256
            img = Image.fromarray(a, "RGBA")
    elif mode in ("L", "LA", "1"):
        img = Image.fromarray(rgb).convert(mode)
    elif mode == "I;16":
        img = Image.fromarray(np.array(Image.fromarray(rgb).convert("L")).astype("<u2") * 257 + np.arange(w, dtype="<u2"))
        assert img.mode == "I;16"
    elif mode == "P":
        img = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    else:  # PA: palette with a transparent entry
        img = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
        img.info["transparency"] = 3
    p = tmp_path / "x.png"
    img.save(p)
    decoded = Image.open(p)
    if mode == "I;16":
        ref_gray = (np.array(decoded).astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
        ref_rgb = np.repeat(ref_gray[..., None], 3, -1)
    else:
        ref_rgb = np.array(decoded.convert("RGB"))
        ref_gray = np.array(decoded.convert("L"))
    got = pixels(tmp_path, p, 3, h, w, "--scale", "1")
    assert got.shape == (1, 3, h, w)
    assert np.abs(got[0].transpose(1, 2, 0) - ref_rgb).max() == 0
    gray = pixels(tmp_path, p, 1, h, w, "--scale", "1")
    assert np.abs(gray[0, 0] - ref_gray).max() == 0


@pytest.mark.parametrize("kind", ["420", "444", "gray", "progressive"])
def test_jpeg_pixels_match_pillow(tmp_path, kind):
    h, w = 24, 19
    img = Image.fromarray(rgb_image(h, w, seed=3))
    p = tmp_path / "x.jpg"
    if kind == "gray":
        img.convert("L").save(p, quality=85)
    elif kind == "progressive":
        img.save(p, quality=85, progressive=True)
    else:
        img.save(p, quality=85, subsampling={"420": 2, "444": 0}[kind])
    decoded = Image.open(p)
    got = pixels(tmp_path, p, 3, h, w, "--scale", "1")
    diff = np.abs(got[0].transpose(1, 2, 0) - np.array(decoded.convert("RGB")).astype(np.float32))
    assert diff.max() <= 1, diff.max()
    gray = pixels(tmp_path, p, 1, h, w, "--scale", "1")
    assert np.abs(gray[0, 0] - np.array(decoded.convert("L")).astype(np.float32)).max() <= 1


def np_resize(img, oh, ow, mode):
    """NumPy reimplementation of compress's resize (half-pixel bilinear without antialiasing;
    nearest = floor((d + 0.5) * in / out))."""
    ih, iw = img.shape[:2]
    img = img.astype(np.float64)
    if mode == "nearest":
        ys = np.minimum(np.floor((np.arange(oh) + 0.5) * ih / oh).astype(int), ih - 1)
        xs = np.minimum(np.floor((np.arange(ow) + 0.5) * iw / ow).astype(int), iw - 1)
        return img[ys][:, xs]

    def taps(n, m):
        s = np.maximum((np.arange(m) + 0.5) * n / m - 0.5, 0)
        lo = np.minimum(np.floor(s).astype(int), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, np.where(lo == hi, 0, s - lo)
    y0, y1, wy = taps(ih, oh)
    x0, x1, wx = taps(iw, ow)
    top = img[y0][:, x0] * (1 - wx)[None, :, None] + img[y0][:, x1] * wx[None, :, None]
    bot = img[y1][:, x0] * (1 - wx)[None, :, None] + img[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bot * wy[:, None, None]


def ort_resize(img, oh, ow, mode):
    """ONNX Runtime's Resize on an NCHW float image: linear/half_pixel, or nearest/
    tf_half_pixel_for_nn/floor — an independent check of the same sampling rule."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    sizes = numpy_helper.from_array(np.array([1, 3, oh, ow], dtype=np.int64), "sizes")
    attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel") if mode == "bilinear" else \
        dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)
    m = helper.make_model(helper.make_graph([node], "r", [x], [y], [sizes]), opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": img.astype(np.float32).transpose(2, 0, 1)[None]})[0][0].transpose(1, 2, 0)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(5, 7), (13, 17), (4, 16)])
def test_resize_matches_numpy_and_onnxruntime(tmp_path, mode, size):
    src = rgb_image(9, 11, seed=5)
    p = tmp_path / "x.png"
    Image.fromarray(src).save(p)
    oh, ow = size
    got = pixels(tmp_path, p, 3, oh, ow, "--scale", "1", "--resize", mode)[0].transpose(1, 2, 0)
    ref = np_resize(src, oh, ow, mode)
    assert np.abs(got - ref).max() <= 1e-4
    assert np.abs(got - ort_resize(src, oh, ow, mode)).max() <= 1e-3


def test_crop_normalize_bgr_layout_match_numpy(tmp_path):
    src = rgb_image(10, 12, seed=7)
    p = tmp_path / "x.png"
    Image.fromarray(src).save(p)
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    flags = ["--size", "9x11", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
    # torchvision-style: resize to 9x11, centre-crop 6x8 (offsets round((9-6)/2)=2, round((11-8)/2)=2 — halves to even).
    resized = np_resize(src, 9, 11, "bilinear")
    crop = resized[2:8, 2:10]
    ref = (crop / 255 - mean) / std
    got = pixels(tmp_path, p, 3, 6, 8, *flags)
    assert np.abs(got[0].transpose(1, 2, 0) - ref).max() <= 1e-5
    got_bgr_nhwc = pixels(tmp_path, p, 3, 6, 8, *flags, "--bgr", "--layout", "nhwc")
    assert got_bgr_nhwc.shape == (1, 6, 8, 3)
    assert np.abs(got_bgr_nhwc[0] - ref[..., ::-1]).max() <= 1e-5
    got_scale = pixels(tmp_path, p, 3, 10, 12, "--scale", "2", "--mean", "1", "--std", "4")
    assert np.abs(got_scale[0].transpose(1, 2, 0) - (src * 2.0 - 1) / 4).max() <= 1e-4


def test_images_by_class_folder_and_dynamic_size(tmp_path):
    # A model with dynamic H and W: --size pins them.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(m, tmp_path / "m.onnx")
    root = tmp_path / "classes"
    for c in ["b_dog", "a_cat"]:
        (root / c).mkdir(parents=True)
        Image.fromarray(rgb_image(6, 6, seed=len(c))).save(root / c / "img.png")
    p = run("run", tmp_path / "m.onnx", "--data", root, "--size", "4x5", "--out", tmp_path / "out", "--format", "json", "--quiet")
    res = json.loads(p.stdout)
    assert res["layout"] == "class_folders" and res["classes"] == ["a_cat", "b_dog"]
    assert [r["label"] for r in res["results"]] == [0, 1]
    assert res["inputs"][0]["shape"] == [1, 3, 4, 5]
    assert np.load(tmp_path / "out" / "a_cat" / "img.0.npy").shape == (1, 3, 4, 5)
    p = run("run", tmp_path / "m.onnx", "--data", root, check=False)
    assert p.returncode == 1 and "--input x=" in p.stderr
