import XCTest
import ModelIR
import Passes
@testable import Runtime
import TensorCore

/// The executor plans the graph the passes rewrote, and hooks observe that plan.
final class ExecutorPlanTests: XCTestCase {
    var state: UInt64 = 7
    func random(_ shape: [Int], positive: Bool = false) -> Tensor {
        Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(state >> 40) / Float(1 << 24)
            return positive ? u + 0.5 : u * 4 - 2
        })
    }

    /// x -> Conv -> c -> BN -> bn -> MaxPool -> y (the BN stays in the model).
    func convBNModel() -> Model {
        var g = Graph(name: "convbn")
        g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(3), .fixed(6), .fixed(6)])]
        g.outputs = [ValueInfo("y", .float32, [])]
        g.addInitializer(Initializer(name: "W", tensor: random([4, 3, 3, 3])))
        for (n, pos) in [("gamma", true), ("beta", false), ("mean", false), ("var", true)] {
            g.addInitializer(Initializer(name: n, tensor: random([4], positive: pos)))
        }
        g.nodes = [
            Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"], attributes: [Attribute(name: "pads", value: .ints([1, 1, 1, 1]))]),
            Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "gamma", "beta", "mean", "var"], outputs: ["bn"]),
            Node(name: "pool", opType: "MaxPool", inputs: ["bn"], outputs: ["y"], attributes: [Attribute(name: "kernel_shape", value: .ints([2, 2]))]),
        ]
        return Model(graph: g)
    }

    /// Conv keeps its geometry per step (`KernelMemo`), keyed by the input shapes: one executor
    /// run on inputs of changing shape (height, width, batch, and back) gives each time the
    /// shape worked out by hand and the values of a fresh executor.
    func testConvGeometryKeptPerStepFollowsTheInputShape() throws {
        var g = Graph(name: "dyn")
        g.inputs = [ValueInfo("x", .float32, [.symbolic("n"), .fixed(3), .symbolic("h"), .symbolic("w")])]
        g.outputs = [ValueInfo("y", .float32, [])]
        g.addInitializer(Initializer(name: "W", tensor: random([4, 3, 3, 3])))
        g.addInitializer(Initializer(name: "B", tensor: random([4])))
        g.nodes = [Node(name: "conv", opType: "Conv", inputs: ["x", "W", "B"], outputs: ["y"],
                        attributes: [Attribute(name: "pads", value: .ints([1, 1, 1, 1])), Attribute(name: "strides", value: .ints([2, 2]))])]
        let model = Model(graph: g)
        let exec = try Executor(model: model)
        // One dimension changes at a time (batch, then width, then height), then back.
        for shape in [[1, 3, 6, 6], [2, 3, 6, 6], [2, 3, 6, 5], [2, 3, 9, 5], [1, 3, 9, 5], [1, 3, 6, 6]] {
            let x = random(shape)
            let y = try XCTUnwrap(exec.run(["x": x])["y"])
            XCTAssertEqual(y.shape, [shape[0], 4, (shape[2] - 1) / 2 + 1, (shape[3] - 1) / 2 + 1], "\(shape)")
            let fresh = try XCTUnwrap(Executor(model: model).run(["x": x])["y"])
            XCTAssertEqual(y.scalars(as: Float.self).map(\.bitPattern), fresh.scalars(as: Float.self).map(\.bitPattern), "\(shape)")
        }
    }

    /// The memo keeps one value per key, remakes it for another key or type, and keeps the old
    /// one when making throws.
    func testKernelMemoRemakesForOtherShapesOrTypes() {
        let memo = KernelMemo()
        struct Refused: Error {}
        var made = 0
        XCTAssertEqual(memo.value(for: [1, 2]) { made += 1; return 10 }, 10)
        XCTAssertEqual(memo.value(for: [1, 2]) { made += 1; return 11 }, 10, "kept for the same key")
        XCTAssertEqual(made, 1)
        XCTAssertEqual(memo.value(for: [1, 3]) { made += 1; return 12 }, 12, "remade for another key")
        XCTAssertEqual(memo.value(for: [1, 3]) { made += 1; return "s" }, "s", "remade for another type")
        XCTAssertEqual(made, 3)
        XCTAssertThrowsError(try memo.value(for: [9]) { () throws -> String in throw Refused() })
        XCTAssertEqual(memo.value(for: [1, 3]) { made += 1; return "t" }, "s", "a failed make left the kept value")
        XCTAssertEqual(made, 3)
    }

    func testFeedForANameThatIsNotAnInputIsRefused() throws {
        let exec = try Executor(model: convBNModel())
        let x = random([1, 3, 6, 6])
        XCTAssertNoThrow(try exec.run(["x": x]))
        // Once dropped silently; the caller believed the value was used.
        XCTAssertThrowsError(try exec.run(["x": x, "pixels": x])) { e in
            XCTAssertTrue("\(e)".contains("'pixels', which is not an input of the model (its inputs: 'x')"), "\(e)")
        }
        // A name the model has, but as an initializer (not a graph input), is not a feed either.
        XCTAssertThrowsError(try exec.run(["x": x, "W": random([4, 3, 3, 3])])) { e in
            XCTAssertTrue("\(e)".contains("'W'"), "\(e)")
        }
    }

    func testHooksObserveTheFoldedConv() throws {
        let model = convBNModel()
        let x = random([1, 3, 6, 6])
        let exec = try Executor(model: model)
        XCTAssertEqual(exec.steps.map(\.opType), ["Conv", "MaxPool"], "the BN is folded")
        var seen: [String: Tensor] = [:]
        _ = try exec.run(["x": x], hooks: ExecutionHooks(names: ["bn", "x", "W#bnfolded"]) { seen[$0] = $1 })
        XCTAssertEqual(Set(seen.keys), ["bn", "x", "W#bnfolded"], "graph inputs and initializers of the plan are observable")
        var reference: Tensor?
        _ = try Executor(model: model, passes: .none).run(["x": x], hooks: ExecutionHooks(names: ["bn"]) { reference = $1 })
        let want = try XCTUnwrap(reference), got = try XCTUnwrap(seen["bn"])
        XCTAssertEqual(got.shape, want.shape)
        for (a, b) in zip(got.floatValues(), want.floatValues()) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }

        // A folded-away value is refused, saying where it went; so is a name the graph lacks.
        XCTAssertThrowsError(try exec.run(["x": x], hooks: ExecutionHooks(names: ["c", "nope", "bn"]) { _, _ in })) { e in
            XCTAssertEqual("\(e)", "hooks ask for values the optimized plan does not compute: 'c' (folded into Conv 'conv' with BatchNormalization 'bn'); "
                + "'nope' (no value of the graph has this name). Plan without passes (Executor(model:passes: .none)) to observe values the passes remove.")
        }
        // Hooks without names see every graph input and step output of the plan.
        var all: [String] = []
        _ = try exec.run(["x": x], hooks: ExecutionHooks { name, _ in all.append(name) })
        XCTAssertEqual(all, ["x", "bn", "y"])
    }

    /// As exporters write it: weights shared through Identity nodes, Clip bounds from Constant
    /// nodes placed between the Conv and the Clip.
    func testExportStyleModelPlansWithoutConstantOrIdentitySteps() throws {
        var g = Graph(name: "export")
        g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(3), .fixed(5), .fixed(5)])]
        g.outputs = [ValueInfo("y", .float32, [])]
        g.addInitializer(Initializer(name: "W", tensor: random([3, 3, 1, 1])))
        g.addInitializer(Initializer(name: "B", tensor: random([3])))
        g.nodes = [
            Node(name: "share1", opType: "Identity", inputs: ["W"], outputs: ["W1"]),
            Node(name: "share2", opType: "Identity", inputs: ["W"], outputs: ["W2"]),
            Node(name: "conv1", opType: "Conv", inputs: ["x", "W1", "B"], outputs: ["c1"]),
            Node(name: "min", opType: "Constant", inputs: [], outputs: ["lo"], attributes: [Attribute(name: "value", value: .tensor(Tensor(scalar: Float(0))))]),
            Node(name: "max", opType: "Constant", inputs: [], outputs: ["hi"], attributes: [Attribute(name: "value", value: .tensor(Tensor(scalar: Float(1))))]),
            Node(name: "clip", opType: "Clip", inputs: ["c1", "lo", "hi"], outputs: ["a"]),
            Node(name: "conv2", opType: "Conv", inputs: ["a", "W2"], outputs: ["y"]),
        ]
        let model = Model(graph: g)
        let exec = try Executor(model: model)
        XCTAssertEqual(exec.steps.map(\.opType), ["Conv", "Conv"], "no Constant, Identity or Clip step: \(exec.steps)")
        XCTAssertEqual(exec.steps[0].fusedActivation, .clip(min: 0, max: 1))
        XCTAssertEqual(exec.steps[0].inputs, ["x", "W", "B"])
        XCTAssertEqual(exec.steps[0].outputs, ["a"])
        XCTAssertEqual(exec.steps[1].inputs, ["a", "W"])
        XCTAssertEqual(exec.steps[0].description, "Conv+clip(min: 0.0, max: 1.0)(x, W, B) -> a")
        let x = random([1, 3, 5, 5])
        let got = try XCTUnwrap(exec.run(["x": x])["y"])
        let want = try XCTUnwrap(Executor(model: model, passes: .none).run(["x": x])["y"])
        for (a, b) in zip(got.floatValues(), want.floatValues()) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }
        XCTAssertEqual(model.graph.nodes.count, 7, "the model is untouched")
    }

    /// A plan marks which inputs of a step are the graph's initializers: a classifier Gemm at
    /// batch 1 (weights an initializer) keeps a packed copy of its weights; the same Gemm with its
    /// weights fed as a graph input keeps none; `packWeights: false` keeps none. Both results
    /// against a plain sum in Double.
    func testGemmWeightsThatAreInitializersArePacked() throws {
        try XCTSkipIf(!GemmOp.gemvEnabled || Convolution.convolutionsThroughBLAS, "COMPRESS_GEMM_GEMV=0 or COMPRESS_CONV_GEMM=blas set")
        let (n, k) = (12, 20)
        for (asInitializer, pack) in [(true, true), (false, true), (true, false)] {
            // New weights each case: a packed copy is kept as long as its storage lives.
            let w = random([n, k]), bias = random([n])
            var g = Graph(name: "fc")
            g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(k)])] + (asInitializer ? [] : [ValueInfo("W", .float32, [.fixed(n), .fixed(k)])])
            g.outputs = [ValueInfo("y", .float32, [])]
            if asInitializer { g.addInitializer(Initializer(name: "W", tensor: w)) }
            g.addInitializer(Initializer(name: "B", tensor: bias))
            g.nodes = [Node(name: "fc", opType: "Gemm", inputs: ["x", "W", "B"], outputs: ["y"], attributes: [Attribute(name: "transB", value: .int(1))])]
            let exec = try Executor(model: Model(graph: g), packWeights: pack)
            let x = random([1, k])
            let y = try XCTUnwrap(exec.run(asInitializer ? ["x": x] : ["x": x, "W": w])["y"])
            let weights = asInitializer ? try XCTUnwrap(exec.optimizedGraph.initializers.first { $0.name == "W" }).tensor : w
            XCTAssertEqual(PackedWeights.holds(weights.storage), asInitializer && pack, "initializer \(asInitializer) pack \(pack)")
            let xs = x.floatValues(), ws = w.floatValues(), bs = bias.floatValues(), ys = y.floatValues()
            XCTAssertEqual(y.shape, [1, n])
            for j in 0..<n {
                var sum = Double(bs[j])
                for p in 0..<k { sum += Double(xs[p]) * Double(ws[j * k + p]) }
                XCTAssertEqual(Double(ys[j]), sum, accuracy: 1e-5 * max(1, abs(sum)), "initializer \(asInitializer) pack \(pack) at \(j)")
            }
        }
    }

    /// `packWeights: false` (a plan that runs once, as fuse's verification) leaves the convolution
    /// weights unpacked and computes what a plain sum computes; the default plan keeps the packed
    /// copy of the same storage (so the storage checked is the one the kernel would pack). Cases:
    /// 1×1 (direct product), 3×3 with padding (the implicit product), a batch of two 1×1 images.
    func testUnpackedWeightsGiveThePackedResult() throws {
        if Convolution.convolutionsThroughBLAS { throw XCTSkip("COMPRESS_CONV_GEMM=blas: no convolution packs its weights") }
        for (batch, c, k, o, pad) in [(1, 24, 1, 20, 0), (1, 5, 3, 7, 1), (2, 16, 1, 9, 0)] {
            let h = 9
            var g = Graph(name: "conv")
            g.inputs = [ValueInfo("x", .float32, [.fixed(batch), .fixed(c), .fixed(h), .fixed(h)])]
            g.outputs = [ValueInfo("y", .float32, [])]
            let w = random([o, c, k, k])
            g.addInitializer(Initializer(name: "W", tensor: w))
            g.nodes = [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["y"],
                            attributes: [Attribute(name: "pads", value: .ints([Int64](repeating: Int64(pad), count: 4)))])]
            let x = random([batch, c, h, h])
            let plain = try Executor(model: Model(graph: g), packWeights: false)
            let got = try XCTUnwrap(plain.run(["x": x])["y"])
            let weights = try XCTUnwrap(plain.optimizedGraph.initializers.first { $0.name == "W" }).tensor
            XCTAssertFalse(PackedWeights.holds(weights.storage), "no packed copy kept (\(k)x\(k), batch \(batch))")
            // The reference: the convolution as a plain sum in Double (stride 1, same size out).
            let xs = x.floatValues(), ws = w.floatValues(), ys = got.floatValues()
            XCTAssertEqual(got.shape, [batch, o, h, h])
            for n in 0..<batch {
                for oc in 0..<o {
                    for yy in 0..<h {
                        for xx in 0..<h {
                            var sum = 0.0
                            for ic in 0..<c {
                                for ky in 0..<k {
                                    for kx in 0..<k {
                                        let iy = yy + ky - pad, ix = xx + kx - pad
                                        guard iy >= 0, iy < h, ix >= 0, ix < h else { continue }
                                        sum += Double(ws[((oc * c + ic) * k + ky) * k + kx]) * Double(xs[((n * c + ic) * h + iy) * h + ix])
                                    }
                                }
                            }
                            XCTAssertEqual(Double(ys[((n * o + oc) * h + yy) * h + xx]), sum, accuracy: 1e-4, "y[\(n), \(oc), \(yy), \(xx)] \(k)x\(k)")
                        }
                    }
                }
            }
            let packed = try Executor(model: Model(graph: g))
            let again = try XCTUnwrap(packed.run(["x": x])["y"]).floatValues()
            for (a, b) in zip(again, ys) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)), "the packed plan computes the same") }
            let kept = try XCTUnwrap(packed.optimizedGraph.initializers.first { $0.name == "W" }).tensor
            XCTAssertTrue(PackedWeights.holds(kept.storage), "the default plan keeps the packed copy (\(k)x\(k), batch \(batch))")
        }
    }

    func testAnnotateWritesInferredTypesIntoValueInfo() throws {
        var model = convBNModel()
        model.graph.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float32, shape: nil))]
        let m = try ShapeInference.annotate(model: model)
        XCTAssertEqual(m.graph.type(of: "c"), TensorType(.float32, [1, 4, 6, 6]))
        XCTAssertEqual(m.graph.type(of: "bn"), TensorType(.float32, [1, 4, 6, 6]))
        XCTAssertEqual(m.graph.outputs[0].type, TensorType(.float32, [1, 4, 5, 5]), "an output declared without shape is filled in")
    }
}
