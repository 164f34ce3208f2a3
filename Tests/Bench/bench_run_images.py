"""`compress run` over a folder of JPEGs against the usual Python loop (not a test).

The workload of an image classifier's evaluation or calibration: 200 photo-like JPEGs
(500x375, quality 90), each decoded, resized so the shorter side is 256 with Pillow's
antialiased bilinear filter, centre-cropped to 224x224, normalized with ImageNet's mean/std and
run through ResNet-18 (`compress build-reference resnet18`, random weights; `--model` picks
another reference architecture).

  * compress: `compress run MODEL --data DIR --size 256 --crop 224 --resize pil-bilinear
    --mean … --std … --threads T --format json --quiet`, the wall time of the whole process
    (start, model load, every sample). Decoding runs on a background thread while the
    executor runs (PrefetchingLoader); the report's `timing_ms.total` (executor time alone) is
    printed beside the wall time, so the overlap shows.
  * Python: Pillow `Image.open(...).convert("RGB")`, `resize` to the shorter side 256
    (BILINEAR, as torchvision's Resize on PIL images), `crop`, NumPy normalize, ONNX Runtime
    `InferenceSession(intra_op_num_threads=T)`.run, one sample at a time in one thread — timed
    from the session's creation to the last sample (interpreter start and imports not counted,
    which favours Python).
  * Optionally (`--before BIN`) another compress binary, e.g. one built before decode-ahead,
    and this one, both with `--size 256x341 --resize bilinear` (flags an older binary takes;
    the same geometry for these 500x375 images).

Rounds alternate the tools so that a busy machine slows each alike; every round is printed and
the figure per tool is its best round. Both read the same files; the first round warms the page
cache for all.

Usage:
    COMPRESS_BIN=.build/release/compress python Tests/Bench/bench_run_images.py [--images 200] [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COMPRESS = os.environ.get("COMPRESS_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "release", "compress"))
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def photo(h, w, seed):
    """A photo-like image: fractal detail, a gradient, noise, shapes, a slight blur."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(-1.6, -0.4), rng.uniform(-0.6, 0.2)
    fractal = np.array(Image.effect_mandelbrot((w, h), (x0, y0, x0 + 0.9, y0 + 0.7), 60))
    grad = np.array(Image.linear_gradient("L").rotate(float(rng.uniform(0, 360))).resize((w, h)))
    noise = np.array(Image.effect_noise((w, h), 50))
    img = Image.fromarray(np.stack([fractal, grad, noise], -1))
    d = ImageDraw.Draw(img)
    for _ in range(14):
        a, b = rng.integers(0, w, 2), rng.integers(0, h, 2)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        d.rectangle([int(min(a)), int(min(b)), int(max(a)), int(max(b))], outline=color, width=2)
    return img.filter(ImageFilter.GaussianBlur(0.6))


def python_loop(model, files, threads):
    import onnxruntime as ort
    start = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    tops = []
    infer = 0.0
    for f in files:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        nl = int(256 * long / short)
        nw, nh = (256, nl) if w <= h else (nl, 256)
        img = img.resize((nw, nh), Image.BILINEAR)
        top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
        a = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
        x = ((a - MEAN) / STD).transpose(2, 0, 1)[None]
        t = time.perf_counter()
        y = sess.run(None, {name: x})[0]
        infer += time.perf_counter() - t
        tops.append(int(y.argmax()))
    return time.perf_counter() - start, infer, tops


RECIPE = ["--size", "256", "--crop", "224", "--resize", "pil-bilinear"]
# The same geometry in flags an older binary takes (500x375 images: the shorter side 256 is 256x341).
PLAIN = ["--size", "256x341", "--resize", "bilinear"]


def compress_run(binary, model, data, threads, geometry=RECIPE):
    start = time.perf_counter()
    p = subprocess.run([binary, "run", model, "--data", data, *geometry,
                        "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--threads", str(threads),
                        "--top-k", "1", "--format", "json", "--quiet"], capture_output=True, text=True,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS=str(threads)))
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise RuntimeError(f"{binary} failed: {p.stderr.strip()}")
    r = json.loads(p.stdout)
    return wall, r["timing_ms"]["total"] / 1e3, [x["outputs"][0]["top"][0][0]["class"] for x in r["results"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--before", help="another compress binary to time on the same folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, f"{args.model}.onnx")
        subprocess.run([COMPRESS, "build-reference", args.model, "-o", model], check=True, capture_output=True)
        data = os.path.join(tmp, "images")
        os.mkdir(data)
        for i in range(args.images):
            photo(375, 500, i).save(os.path.join(data, f"img_{i:04d}.jpg"), quality=90)
        files = sorted(os.path.join(data, f) for f in os.listdir(data))
        print(f"{args.images} JPEGs 500x375 -> Resize(256) + CenterCrop(224) (pil-bilinear) -> {args.model}, {args.threads} threads")
        best = {}
        ratios = []
        agree = None
        for r in range(args.rounds):
            line = [f"round {r + 1}"]
            wall, execs, top_c = compress_run(COMPRESS, model, data, args.threads)
            best["compress"] = min(best.get("compress", wall), wall)
            best["compress_exec"] = min(best.get("compress_exec", execs), execs)
            line.append(f"compress {wall:.2f} s (executor {execs:.2f} s)")
            py, infer, top_p = python_loop(model, files, args.threads)
            best["python"] = min(best.get("python", py), py)
            best["python_infer"] = min(best.get("python_infer", infer), infer)
            ratios.append(wall / py)
            line.append(f"PIL + ONNX Runtime {py:.2f} s (session.run {infer:.2f} s)")
            if args.before:
                for key, binary in (("plain", COMPRESS), ("before", args.before)):
                    wb, eb, _ = compress_run(binary, model, data, args.threads, PLAIN)
                    best[key] = min(best.get(key, wb), wb)
                    line.append(f"{key} {wb:.2f} s (executor {eb:.2f} s)")
            agree = sum(a == b for a, b in zip(top_c, top_p)) / len(top_p)
            print("  " + ", ".join(line), flush=True)
        n = args.images
        print(f"best: compress {best['compress']:.2f} s ({1e3 * best['compress'] / n:.1f} ms/image; executor alone "
              f"{1e3 * best['compress_exec'] / n:.1f} ms/image), PIL + ONNX Runtime {best['python']:.2f} s "
              f"({1e3 * best['python'] / n:.1f} ms/image; session.run alone {1e3 * best['python_infer'] / n:.1f} ms/image); "
              f"ratio compress / Python: best rounds {best['compress'] / best['python']:.2f}, "
              f"per-round median {sorted(ratios)[len(ratios) // 2]:.2f}; executors alone "
              f"{best['compress_exec'] / best['python_infer']:.2f}")
        if "before" in best:
            print(f"with {' '.join(PLAIN)} (flags both binaries take): this {best['plain']:.2f} s, before {best['before']:.2f} s; "
                  f"ratio this / before = {best['plain'] / best['before']:.2f}")
        print(f"top-1 agreement compress vs ONNX Runtime: {agree:.3f}")


if __name__ == "__main__":
    sys.exit(main())
