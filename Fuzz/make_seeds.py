"""Writes the small seed inputs of the fuzz targets into Fuzz/Seeds/<target>/ (committed; rerun
only to change them). Models are also seeded from the small Fixtures/*.onnx by scripts/fuzz.sh.
Needs numpy, onnx and pillow (the project's .venv)."""
import io
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Seeds")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


# tensor: TensorProto files (raw_data, typed fields, strings, external data)
rng = np.random.default_rng(0)
put("tensor", "f32_raw.pb", numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32), "x").SerializeToString())
put("tensor", "f16_raw.pb", numpy_helper.from_array(np.arange(4, dtype=np.float16), "h").SerializeToString())
put("tensor", "i64_typed.pb", helper.make_tensor("i", TensorProto.INT64, [3], [1, -2, 3]).SerializeToString())
put("tensor", "f32_typed.pb", helper.make_tensor("f", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0]).SerializeToString())
put("tensor", "u8_typed.pb", helper.make_tensor("b", TensorProto.UINT8, [4], [0, 1, 255, 7]).SerializeToString())
put("tensor", "str.pb", helper.make_tensor("s", TensorProto.STRING, [2], [b"a", b"bc"]).SerializeToString())
put("tensor", "scalar.pb", numpy_helper.from_array(np.array(3.5, dtype=np.float64)).SerializeToString())
ext = helper.make_tensor("e", TensorProto.FLOAT, [2], [0.0, 0.0])
ext.ClearField("float_data")
ext.data_location = TensorProto.EXTERNAL
ext.external_data.add(key="location", value="missing.bin")
put("tensor", "external.pb", ext.SerializeToString())

# npy: headers of every version, dtypes, byte orders, fortran order, 0-d and empty arrays
def npy(name, arr, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr)
    else:
        np.lib.format.write_array(buf, arr, version=version)
    put("npy", name, buf.getvalue())

npy("f32.npy", rng.standard_normal((2, 3)).astype(np.float32))
npy("f16.npy", np.arange(5, dtype=np.float16))
npy("i8.npy", np.array([[-1, 2], [3, -4]], dtype=np.int8))
npy("bool.npy", np.array([True, False, True]))
npy("be_u2.npy", np.arange(4, dtype=">u2"))
npy("be_f8.npy", np.arange(3, dtype=">f8"))
npy("fortran.npy", np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)))
npy("scalar.npy", np.array(7, dtype=np.int64))
npy("empty.npy", np.zeros((0, 3), dtype=np.float32))
npy("v2.npy", np.arange(3, dtype=np.uint64), version=(2, 0))
npy("v3.npy", np.arange(3, dtype=np.float64), version=(3, 0))

# image: PNG (gray, RGB, RGBA, palette, 16-bit) and JPEG (RGB, gray, progressive), tiny
def img(name, im, **kw):
    buf = io.BytesIO()
    im.save(buf, **kw)
    put("image", name, buf.getvalue())

pix = (rng.random((5, 4, 3)) * 255).astype(np.uint8)
img("rgb.png", Image.fromarray(pix), format="PNG")
img("gray.png", Image.fromarray(pix[:, :, 0]), format="PNG")
img("rgba.png", Image.fromarray(np.dstack([pix, pix[:, :, :1]])), format="PNG")
img("palette.png", Image.fromarray(pix).convert("P"), format="PNG")
img("gray16.png", Image.fromarray((pix[:, :, 0].astype(np.uint16) * 257)), format="PNG")
img("rgb.jpg", Image.fromarray(pix), format="JPEG", quality=90)
img("gray.jpg", Image.fromarray(pix[:, :, 0]), format="JPEG")
img("progressive.jpg", Image.fromarray(np.tile(pix, (2, 3, 1))), format="JPEG", progressive=True)

# external: location [NUL offset [NUL length]] against the fuzz target's model folder
for i, loc in enumerate([b"w.bin", b"sub/w.bin", b"./sub/deeper/w.bin", b"sub/../w.bin", b"sub/up/w.bin",
                         b"escape/secret.bin", b"sub/secret.bin", b"abs/secret.bin", b"../outside/secret.bin",
                         b"/etc/passwd", b"C:\\w.bin", b"sub\\..\\w.bin", b"w.bin\x008\x004", b"w.bin\x0062\x004",
                         b"w.bin\x00-1", b"w.bin\x000\x005", b"model.onnx\x000\x004"]):
    put("external", f"loc{i:02d}", loc)

# model: a tiny graph with a typed attribute of each kind, value_info, metadata and a subgraph
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
w = numpy_helper.from_array(np.ones((3,), dtype=np.float32), "w")
then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
nodes = [
    helper.make_node("Add", ["x", "w"], ["a"], name="add"),
    helper.make_node("ReduceSum", ["a"], ["s"], keepdims=0, name="sum"),
    helper.make_node("Greater", ["s", "zero"], ["c"]),
    helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
    helper.make_node("Custom", ["a"], ["z"], domain="my.domain", f=1.5, ints=[1, -2], strs=["a", "b"], t=w),
]
g = helper.make_graph(nodes, "g", [x], [y], [w, numpy_helper.from_array(np.array(0, dtype=np.float32), "zero")],
                      value_info=[helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)], producer_name="seeds")
helper.set_model_props(m, {"k": "v"})
put("model", "tiny_if_custom.onnx", m.SerializeToString())
