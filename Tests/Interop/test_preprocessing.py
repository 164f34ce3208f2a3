"""Image preprocessing (`--resize`, `--size`, `--crop`, `--fit`, `--pad-value`, `--pad-position`)
against the libraries whose pipelines it reproduces, on photo-like images.

References (all independent of compress):
- `pil-bilinear`: Pillow's own `Image.resize(..., BILINEAR)`, and torchvision's
  `Resize(256)` + `CenterCrop(224)` on PIL images written out from torchvision's size and crop
  formulas around Pillow's resize. Expected: identical 8-bit values (max difference 0).
- `bilinear`, `area`: OpenCV's `cv2.resize` with `INTER_LINEAR` / `INTER_AREA`. On float32
  images OpenCV computes in float (difference <= 1e-3); on uint8 images it rounds its weights to
  11 bits and its result to 8 bits while compress keeps the exact fractional value (difference
  <= 1 level).
- `letterbox`: YOLOX's `preproc` (top-left) and ultralytics' `LetterBox` (centred), each
  written here from the project's source, on OpenCV; `pad-right`: PaddleOCR's
  `resize_norm_img` for text recognition.

Images: photo-like PNGs made with Pillow (Mandelbrot detail, gradients, Gaussian noise, sharp
shapes, a slight blur), plus scikit-learn's bundled photos when scikit-learn is installed.
"""
import json
import os

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image, ImageDraw, ImageFilter

from conftest import run_compress

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def photo(h, w, seed):
    """A photo-like RGB image: fractal detail, smooth gradients, noise, hard edges, a slight blur."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(-1.6, -0.4), rng.uniform(-0.6, 0.2)
    fractal = np.array(Image.effect_mandelbrot((w, h), (x0, y0, x0 + 0.9, y0 + 0.7), 60))
    grad = np.array(Image.linear_gradient("L").rotate(float(rng.uniform(0, 360))).resize((w, h)))
    noise = np.array(Image.effect_noise((w, h), 50))
    img = Image.fromarray(np.stack([fractal, grad, noise], -1))
    d = ImageDraw.Draw(img)
    for _ in range(14):
        a, b = rng.integers(0, w, 2), rng.integers(0, h, 2)
        box = [int(min(a)), int(min(b)), int(max(a)), int(max(b))]
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, outline=color, width=int(rng.integers(1, 4)))
        d.line([int(a[0]), int(b[0]), int(a[1]), int(b[1])], fill=color, width=1)
    return img.filter(ImageFilter.GaussianBlur(0.6))


def text_line(h, w, seed):
    """A dark-on-light text line image, as an OCR crop."""
    img = Image.new("RGB", (w, h), (236, 232, 225))
    d = ImageDraw.Draw(img)
    rng = np.random.default_rng(seed)
    d.text((3, h // 4), "".join(chr(int(c)) for c in rng.integers(65, 91, max(w // 7, 3))), fill=(20, 24, 30))
    return img


def sklearn_photos():
    """scikit-learn's bundled photos (china.jpg, flower.jpg, 427x640) when it is installed."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return {}
    return {f"sk{i}": Image.fromarray(a) for i, a in enumerate(load_sample_images().images)}


# Sizes: shrink by non-integer and integer factors, near-square, portrait, landscape, and one
# smaller than the input (enlarging).
PHOTOS = {"p0": photo(375, 500, 0), "p1": photo(480, 360, 1), "p2": photo(448, 448, 2),
          "p3": photo(301, 677, 3), "p4": photo(150, 130, 4), **sklearn_photos()}


def identity_model(path, shape):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return path


def fed(tmp_path, images, shape, *flags):
    """What compress feeds an Identity model of `shape` for each image (name -> array, NCHW
    without the batch dim), from one `compress run` over a folder of their PNGs."""
    key = len(list(tmp_path.iterdir()))
    data, out = tmp_path / f"d{key}", tmp_path / f"o{key}"
    data.mkdir()
    for name, img in images.items():
        img.save(data / f"{name}.png")
    model = identity_model(tmp_path / f"m{key}.onnx", shape)
    p = run_compress("run", model, "--data", data, "--out", out, "--quiet", *flags)
    assert p.returncode == 0, p.stderr
    return {name: np.load(out / f"{name}.0.npy")[0] for name in images}


def hwc(a):
    return a.transpose(1, 2, 0)


# -- pil-bilinear: Pillow / torchvision -------------------------------------------------------

def test_pil_bilinear_equals_pillow_resize(tmp_path):
    got = fed(tmp_path, PHOTOS, [1, 3, 224, 224], "--resize", "pil-bilinear", "--scale", "1")
    for name, img in PHOTOS.items():
        ref = np.asarray(img.resize((224, 224), Image.BILINEAR), dtype=np.float32)
        assert np.abs(hwc(got[name]) - ref).max() == 0, name
    # Non-square targets, both shrinking and growing per axis; gray (1-channel) inputs.
    got = fed(tmp_path, PHOTOS, [1, 1, 97, 300], "--resize", "pil-bilinear", "--scale", "1")
    for name, img in PHOTOS.items():
        ref = np.asarray(img.convert("L").resize((300, 97), Image.BILINEAR), dtype=np.float32)
        assert np.abs(got[name][0] - ref).max() == 0, name


def torchvision_resize_crop(img, size, crop):
    """torchvision.transforms Resize(size) + CenterCrop(crop) on a PIL image, from torchvision's
    `_compute_resized_output_size` and `center_crop` (F.resize on PIL calls Image.resize(BILINEAR))."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    r = img.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    return r.crop((left, top, left + crop, top + crop))


def test_torchvision_resize_256_centercrop_224(tmp_path):
    flags = ["--size", "256", "--crop", "224", "--resize", "pil-bilinear"]
    raw = fed(tmp_path, PHOTOS, [1, 3, 224, 224], *flags, "--scale", "1")
    norm = fed(tmp_path, PHOTOS, [1, 3, 224, 224], *flags, "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225")
    for name, img in PHOTOS.items():
        ref = np.asarray(torchvision_resize_crop(img, 256, 224), dtype=np.float64)
        assert np.abs(hwc(raw[name]) - ref).max() == 0, name
        # ToTensor + Normalize
        assert np.abs(hwc(norm[name]) - (ref / 255 - MEAN) / STD).max() <= 1e-5, name


def test_torchvision_recipe_on_jpeg_and_dynamic_input(tmp_path):
    # JPEG decoding agrees with Pillow's within 1 level, and the antialiased resize keeps that bound.
    data = tmp_path / "jpg"
    data.mkdir()
    for name, img in PHOTOS.items():
        img.save(data / f"{name}.jpg", quality=92)
    model = identity_model(tmp_path / "m.onnx", [1, 3, 224, 224])
    p = run_compress("run", model, "--data", data, "--out", tmp_path / "out", "--quiet",
                     "--size", "256", "--crop", "224", "--resize", "pil-bilinear", "--scale", "1")
    assert p.returncode == 0, p.stderr
    for name in PHOTOS:
        got = np.load(tmp_path / "out" / f"{name}.0.npy")[0]
        ref = np.asarray(torchvision_resize_crop(Image.open(data / f"{name}.jpg").convert("RGB"), 256, 224), dtype=np.float32)
        assert np.abs(hwc(got) - ref).max() <= 1, name
    # A model with dynamic H and W: --crop pins them.
    got = fed(tmp_path, {"p0": PHOTOS["p0"]}, ["N", 3, "H", "W"], "--size", "256", "--crop", "224", "--resize", "pil-bilinear", "--scale", "1")
    assert got["p0"].shape == (3, 224, 224)
    assert np.abs(hwc(got["p0"]) - np.asarray(torchvision_resize_crop(PHOTOS["p0"], 256, 224))).max() == 0


# -- bilinear and area: OpenCV ----------------------------------------------------------------

@pytest.mark.parametrize("mode,interp", [("bilinear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA)])
@pytest.mark.parametrize("h,w", [(224, 224), (125, 250), (160, 600), (600, 41)])
def test_bilinear_and_area_match_opencv(tmp_path, mode, interp, h, w):
    got = fed(tmp_path, PHOTOS, [1, 3, h, w], "--resize", mode, "--scale", "1")
    for name, img in PHOTOS.items():
        a = np.asarray(img)
        exact = cv2.resize(a.astype(np.float32), (w, h), interpolation=interp)
        rounded = cv2.resize(a, (w, h), interpolation=interp).astype(np.float32)
        assert np.abs(hwc(got[name]) - exact).max() <= 1e-4, name
        assert np.abs(hwc(got[name]) - rounded).max() <= 1, name


def test_area_integer_factor_is_the_box_mean(tmp_path):
    img = {"p2": PHOTOS["p2"]}  # 448x448 -> 112x112: 4x4 cells
    got = fed(tmp_path, img, [1, 3, 112, 112], "--resize", "area", "--scale", "1")
    a = np.asarray(PHOTOS["p2"], dtype=np.float64)
    ref = a.reshape(112, 4, 112, 4, 3).mean(axis=(1, 3))
    assert np.abs(hwc(got["p2"]) - ref).max() <= 1e-3


# -- letterbox: YOLOX and ultralytics ---------------------------------------------------------

def yolox_preproc(img_bgr, input_size, swap=(2, 0, 1)):
    """YOLOX yolox/data/data_augment.py `preproc` (legacy=False): 114 pad, top-left, no scaling."""
    padded = np.ones((input_size[0], input_size[1], 3), dtype=np.uint8) * 114
    r = min(input_size[0] / img_bgr.shape[0], input_size[1] / img_bgr.shape[1])
    resized = cv2.resize(img_bgr, (int(img_bgr.shape[1] * r), int(img_bgr.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    padded[: int(img_bgr.shape[0] * r), : int(img_bgr.shape[1] * r)] = resized
    return np.ascontiguousarray(padded.transpose(swap), dtype=np.float32), (int(img_bgr.shape[0] * r), int(img_bgr.shape[1] * r))


def ultralytics_letterbox(img_bgr, new_shape):
    """ultralytics.data.augment.LetterBox(new_shape, auto=False, scaleup=True, center=True)."""
    shape = img_bgr.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    dw /= 2
    dh /= 2
    img = img_bgr
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return img, (top, left, new_unpad[1], new_unpad[0])


@pytest.mark.parametrize("h,w", [(416, 416), (320, 480)])
def test_letterbox_top_left_matches_yolox(tmp_path, h, w):
    got = fed(tmp_path, PHOTOS, [1, 3, h, w], "--fit", "letterbox", "--pad-position", "top-left", "--scale", "1", "--bgr")
    padded = 0
    for name, img in PHOTOS.items():
        bgr = np.asarray(img)[..., ::-1]
        ref, (rh, rw) = yolox_preproc(bgr, (h, w))
        mine = got[name]
        assert np.abs(mine - ref).max() <= 1, name
        # The padding is exactly 114; the image sits at the top left.
        pad = np.ones((h, w), bool)
        pad[:rh, :rw] = False
        padded += pad.any()
        assert np.all(mine[:, pad] == 114), name
        exact = cv2.resize(bgr.astype(np.float32), (rw, rh), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        assert np.abs(mine[:, :rh, :rw] - exact).max() <= 1e-3, name
    assert padded >= 3


@pytest.mark.parametrize("h,w", [(640, 640), (384, 640), (480, 320)])
def test_letterbox_center_matches_ultralytics(tmp_path, h, w):
    got = fed(tmp_path, PHOTOS, [1, 3, h, w], "--fit", "letterbox", "--scale", "1/255")
    padded = 0
    for name, img in PHOTOS.items():
        bgr = np.asarray(img)[..., ::-1]
        boxed, (top, left, rh, rw) = ultralytics_letterbox(bgr, (h, w))
        assert boxed.shape == (h, w, 3)
        ref = boxed[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255  # BGR -> RGB, /255
        mine = got[name]
        assert np.abs(mine - ref).max() <= 1 / 255 + 1e-6, name
        pad = np.ones((h, w), bool)
        pad[top:top + rh, left:left + rw] = False
        padded += pad.any()
        assert np.all(np.abs(mine[:, pad] - 114 / 255) <= 1e-6), name
    assert padded >= 3


# -- pad-right: PaddleOCR text recognition ----------------------------------------------------

def paddleocr_resize_norm_img(img_bgr, shape):
    """PaddleOCR tools/infer/predict_rec.py `resize_norm_img` for one image (max_wh_ratio = imgW/imgH)."""
    import math
    imgC, imgH, imgW = shape
    max_wh_ratio = imgW / imgH
    imgW = int(imgH * max_wh_ratio)
    h, w = img_bgr.shape[:2]
    ratio = w / float(h)
    resized_w = imgW if math.ceil(imgH * ratio) > imgW else int(math.ceil(imgH * ratio))
    resized = cv2.resize(img_bgr, (resized_w, imgH)).astype("float32")
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    padding = np.zeros((imgC, imgH, imgW), dtype=np.float32)
    padding[:, :, 0:resized_w] = resized
    return padding, resized_w


def test_pad_right_matches_paddleocr(tmp_path):
    # Lines shorter than the input (padded) and longer (squeezed to the full width).
    lines = {"t0": text_line(32, 100, 0), "t1": text_line(40, 500, 1), "t2": text_line(24, 100, 2), "t3": text_line(64, 90, 3)}
    got = fed(tmp_path, lines, [1, 3, 48, 320], "--fit", "pad-right", "--pad-value", "127.5", "--mean", "0.5", "--std", "0.5", "--bgr")
    for name, img in lines.items():
        ref, rw = paddleocr_resize_norm_img(np.asarray(img)[..., ::-1], (3, 48, 320))
        # One 8-bit level after normalization is 1/127.5.
        assert np.abs(got[name] - ref).max() <= 1 / 127.5 + 1e-6, name
        assert np.all(np.abs(got[name][:, :, rw:]) <= 1e-6), name
    # Gray 1-channel recognizers (CRNN-style), pad 0 before normalization.
    got = fed(tmp_path, lines, [1, 1, 32, 128], "--fit", "pad-right", "--pad-value", "0", "--scale", "1")
    for name, img in lines.items():
        g = np.asarray(img.convert("L"))
        rw = min(128, int(np.ceil(32 * (g.shape[1] / g.shape[0]))))
        exact = cv2.resize(g.astype(np.float32), (rw, 32), interpolation=cv2.INTER_LINEAR)
        assert np.abs(got[name][0, :, :rw] - exact).max() <= 1e-3, name
        assert np.all(got[name][0, :, rw:] == 0), name


# -- errors -----------------------------------------------------------------------------------

def test_flag_errors(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    PHOTOS["p4"].save(data / "a.png")
    model = identity_model(tmp_path / "m.onnx", [1, 3, 64, 64])
    cases = [  # (flags, exit status, message)
        (["--fit", "letterbox", "--size", "640"], 64, "--size 640: with --fit letterbox"),
        (["--pad-position", "top-left"], 64, "--pad-position: only with --fit letterbox"),
        (["--pad-value", "0"], 64, "--pad-value: only with --fit letterbox or pad-right"),
        (["--fit", "letterbox", "--crop", "64"], 64, "--crop: only with --fit crop"),
        (["--resize", "bicubic"], 64, "bicubic"),
        (["--size", "256x"], 64, "--size '256x'"),
        (["--crop", "60"], 1, "a.png: --crop 60x60 differs from input 'x' (64x64)"),
        (["--fit", "letterbox", "--size", "32x32"], 1, "a.png: --size 32x32 differs from input 'x' (64x64)"),
        (["--size", "50"], 1, "a.png: --size 50 (57x50 for this 150x130 image) is smaller than input 'x' (64x64)"),
    ]
    for flags, status, message in cases:
        p = run_compress("run", model, "--data", data, "--quiet", *flags)
        assert p.returncode == status and message in p.stderr, (flags, p.returncode, p.stderr)
    # A dynamic model with a shorter-side size and no --crop cannot know its input size.
    dyn = identity_model(tmp_path / "dyn.onnx", ["N", 3, "H", "W"])
    p = run_compress("run", dyn, "--data", data, "--quiet", "--size", "256")
    assert p.returncode == 1 and "--input x=" in p.stderr, p.stderr


def test_load_errors_keep_sample_order(tmp_path):
    # Decoding ahead on another thread must not change which error is reported: the first bad
    # file in folder order, after the good ones before it ran.
    data = tmp_path / "d"
    data.mkdir()
    for i in range(6):
        PHOTOS["p4"].save(data / f"s{i}.png")
    (data / "s2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (data / "s4.png").write_bytes(b"not a png either")
    model = identity_model(tmp_path / "m.onnx", [1, 3, 32, 32])
    for _ in range(3):
        p = run_compress("run", model, "--data", data, "--quiet", "--format", "json")
        assert p.returncode == 1 and p.stderr.startswith(f"error: {data}/s2.png: not a decodable PNG"), p.stderr
    (data / "s2.png").unlink()
    (data / "s4.png").unlink()
    p = run_compress("run", model, "--data", data, "--quiet", "--format", "json")
    assert [r["id"] for r in json.loads(p.stdout)["results"]] == ["s0", "s1", "s3", "s5"]
