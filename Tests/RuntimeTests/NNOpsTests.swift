import ModelIR
import TensorCore
import XCTest
@testable import Runtime

/// Hand-computed cases for the NN operators (the ONNX backend node tests in
/// Tests/Interop/test_nn_ops.py cover the rest).
final class NNOpsTests: XCTestCase {
    func run(_ op: String, opset: Int = 17, _ inputs: [Tensor?], _ attrs: [String: AttributeValue] = [:], outputs: Int = 1,
             fused: FusedActivation? = nil) throws -> [Tensor] {
        let node = Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" },
                        outputs: (0..<outputs).map { "out\($0)" },
                        attributes: attrs.sorted { $0.key < $1.key }.map { Attribute(name: $0.key, value: $0.value) })
        let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
        let ctx = KernelContext(node: node, opset: opset, fusedActivation: fused)
        let outs = try impl.kernel(inputs, ctx)
        // The shape function must agree with the kernel.
        let infos = try impl.infer(inputs.map { $0.map(TensorInfo.init) }, inputs, ctx)
        // Every output the node names must come back from the kernel and be typed by the shape
        // function (zip alone would silently drop a missing one). A shape function may type all of
        // the op's outputs (BatchNormalization's 3, MaxPool's 2) even when the node names fewer;
        // ShapeInference zips them with the node's outputs.
        XCTAssertEqual(outs.count, outputs, "\(op) kernel output count")
        XCTAssertGreaterThanOrEqual(infos.count, outs.count, "\(op) shape function output count")
        for (o, i) in zip(outs, infos) { XCTAssertEqual(TensorInfo(o), i, "\(op) shape function") }
        return outs
    }

    func t(_ shape: [Int], _ v: [Float]) -> Tensor { Tensor(shape: shape, scalars: v) }

    /// Two groups of two input channels, 2×2 kernel, padding 1 on every side (im2col path).
    ///
    /// Group 0: W[0,0] = [[1,0],[0,1]] over c0 = [[1,2],[3,4]] gives [1,2,0, 3,5,2, 0,3,4];
    /// W[0,1] = [[0,0],[0,2]] over c1 = ones adds 2 where the window's lower-right tap is inside:
    /// [3,4,0, 5,7,2, 0,3,4]; bias 10. Group 1: ones over c2 = [[5,6],[7,8]] (c3 = 0) sums each
    /// window: [5,11,6, 12,26,14, 7,15,8]; bias −1.
    func testGroupedConvWithPadding() throws {
        let x = t([1, 4, 2, 2], [1, 2, 3, 4, 1, 1, 1, 1, 5, 6, 7, 8, 0, 0, 0, 0])
        let w = t([2, 2, 2, 2], [1, 0, 0, 1, 0, 0, 0, 2, 1, 1, 1, 1, 1, 1, 1, 1])
        let b = t([2], [10, -1])
        let y = try run("Conv", [x, w, b], ["group": .int(2), "pads": .ints([1, 1, 1, 1])])[0]
        XCTAssertEqual(y.shape, [1, 2, 3, 3])
        XCTAssertEqual(y.floatValues(), [13, 14, 10, 15, 17, 12, 10, 13, 14,
                                         4, 10, 5, 11, 25, 13, 6, 14, 7])
    }

    /// The same conv with Clip(0, 6) fused and biases −4 / −1 applied before the clip.
    func testConvFusedClip() throws {
        let x = t([1, 4, 2, 2], [1, 2, 3, 4, 1, 1, 1, 1, 5, 6, 7, 8, 0, 0, 0, 0])
        let w = t([2, 2, 2, 2], [1, 0, 0, 1, 0, 0, 0, 2, 1, 1, 1, 1, 1, 1, 1, 1])
        let y = try run("Conv", [x, w, t([2], [-4, -1])], ["group": .int(2), "pads": .ints([1, 1, 1, 1])],
                        fused: .clip(min: 0, max: 6))[0]
        XCTAssertEqual(y.floatValues(), [0, 0, 0, 1, 3, 0, 0, 0, 0,
                                         4, 6, 5, 6, 6, 6, 6, 6, 6])
    }

    /// Depthwise 3×3, stride 2, padding 1 over X = 1…16 (4×4), both channels the same input:
    /// the windows cover rows/cols {0,1}, {0,1}×{1,2,3}, {1,2,3}×{0,1}, {1,2,3}² →
    /// 14, 30, 57, 99; channel 1 has weights 2 and bias 1.
    func testDepthwiseStride2() throws {
        let plane = (1...16).map(Float.init)
        let x = t([1, 2, 4, 4], plane + plane)
        let w = t([2, 1, 3, 3], Array(repeating: 1, count: 9) + Array(repeating: 2, count: 9))
        let y = try run("Conv", [x, w, t([2], [0, 1])], ["group": .int(2), "pads": .ints([1, 1, 1, 1]),
                                                         "strides": .ints([2, 2]), "kernel_shape": .ints([3, 3])])[0]
        XCTAssertEqual(y.shape, [1, 2, 2, 2])
        XCTAssertEqual(y.floatValues(), [14, 30, 57, 99, 29, 61, 115, 199])
    }

    /// Depthwise 3×3, stride 1, padding 1 over a 3×3 plane of ones: each output counts the
    /// in-bounds taps; multiplier 2 (two outputs per input channel, the second with weights −1).
    func testDepthwiseMultiplier() throws {
        let x = t([1, 1, 3, 3], Array(repeating: 1, count: 9))
        let w = t([2, 1, 3, 3], Array(repeating: 1, count: 9) + Array(repeating: -1, count: 9))
        let y = try run("Conv", [x, w], ["group": .int(1), "pads": .ints([1, 1, 1, 1])])[0]
        XCTAssertEqual(y.floatValues(), [4, 6, 4, 6, 9, 6, 4, 6, 4, -4, -6, -4, -6, -9, -6, -4, -6, -4])
        // group = C = 1 is a plain conv; the same numbers through the depthwise path need C > 1.
        let x2 = t([1, 2, 3, 3], Array(repeating: 1, count: 18))
        let w2 = t([4, 1, 3, 3], Array(repeating: 1, count: 9) + Array(repeating: -1, count: 9)
                                + Array(repeating: 1, count: 9) + Array(repeating: -1, count: 9))
        let y2 = try run("Conv", [x2, w2], ["group": .int(2), "pads": .ints([1, 1, 1, 1])])[0]
        XCTAssertEqual(y2.floatValues(), y.floatValues() + y.floatValues())
    }

    /// A one-row Gemm whose B is the graph's constant `[N, K]` weights (a classifier at batch 1)
    /// takes the packed one-column product (`GemmOp.gemv`: its weights get a `PackedWeights`
    /// entry); with B not constant, beta ≠ 1, alpha ≠ 1, transA, C of one value broadcast, or two
    /// rows it stays on OpenBLAS (no entry). Every result against float64, with a fused LeakyRelu
    /// (applied twice or not at all, negative outputs would differ), C of [N], [1, N], [1] and none.
    func testGemmOneRowWithConstantWeights() throws {
        try XCTSkipIf(!GemmOp.gemvEnabled || Convolution.convolutionsThroughBLAS, "COMPRESS_GEMM_GEMV=0 or COMPRESS_CONV_GEMM=blas set")
        var state: UInt64 = 17
        let (n, k) = (70, 37)
        func random(_ count: Int) -> [Float] {   // uniform in [-1, 1) from a 64-bit LCG's high bits
            (0..<count).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(state >> 40) * 0x1p-23 - 1
            }
        }
        let cases: [(rows: Int, cShape: [Int], alpha: Float, beta: Float, transA: Bool, constant: Bool, taken: Bool)] = [
            (1, [n], 1, 1, false, true, true), (1, [1, n], 1, 1, false, true, true), (1, [], 1, 1, false, true, true),
            (1, [n], 1, 1, false, false, false), (1, [n], 1, 0.5, false, true, false), (2, [n], 1, 1, false, true, false),
            (1, [1], 1, 1, false, true, false), (1, [n], 2, 1, false, true, false), (1, [n], 1, 1, true, true, false)]
        for (rows, cShape, alpha, beta, transA, constant, taken) in cases {
            let a = transA ? t([k, rows], random(rows * k)) : t([rows, k], random(rows * k)), b = t([n, k], random(n * k))
            let c: Tensor? = cShape.isEmpty ? nil : t(cShape, random(cShape.reduce(1, *)))
            let node = Node(opType: "Gemm", inputs: ["a", "b"] + (c == nil ? [] : ["c"]), outputs: ["y"],
                            attributes: [Attribute(name: "alpha", value: .float(alpha)), Attribute(name: "beta", value: .float(beta)),
                                         Attribute(name: "transA", value: .int(transA ? 1 : 0)), Attribute(name: "transB", value: .int(1))])
            let impl = try XCTUnwrap(OpRegistry.standard.implementation("Gemm", domain: "", opset: 13))
            var ctx = KernelContext(node: node, opset: 13, fusedActivation: .leakyRelu(alpha: 0.1))
            ctx.constantInputs = constant ? [1] : []
            let y = try impl.kernel([a, b] + (c == nil ? [] : [c]), ctx)[0]
            XCTAssertEqual(y.shape, [rows, n])
            XCTAssertEqual(PackedWeights.holds(b.storage), taken, "rows \(rows) C \(cShape) α \(alpha) β \(beta) transA \(transA) constant \(constant)")
            let av = a.scalars(as: Float.self), bv = b.scalars(as: Float.self), cv = c?.scalars(as: Float.self) ?? []
            let yv = y.scalars(as: Float.self)
            for r in 0..<rows {
                for j in 0..<n {
                    var s = cv.isEmpty ? 0 : Double(beta) * Double(cv[cv.count == 1 ? 0 : j]), mag = abs(s)
                    for p in 0..<k {
                        let v = Double(alpha) * Double(transA ? av[p * rows + r] : av[r * k + p]) * Double(bv[j * k + p])
                        s += v; mag += abs(v)
                    }
                    XCTAssertEqual(Double(yv[r * n + j]), s >= 0 ? s : 0.1 * s, accuracy: 4 * Double(k + 1) * 0x1p-24 * mag + 1e-30,
                                   "rows \(rows) C \(cShape) α \(alpha) transA \(transA) at (\(r), \(j))")
                }
            }
        }
    }

    /// Y = 2·A·Bᵀ + 0.5·C with A = [[1,2,3],[4,5,6]], B = [[1,0,1],[0,1,0]], C = [10, 20]:
    /// A·Bᵀ = [[4,2],[10,5]] → [[13,14],[25,20]].
    func testGemmTransB() throws {
        let a = t([2, 3], [1, 2, 3, 4, 5, 6]), b = t([2, 3], [1, 0, 1, 0, 1, 0]), c = t([2], [10, 20])
        let y = try run("Gemm", opset: 13, [a, b, c], ["transB": .int(1), "alpha": .float(2), "beta": .float(0.5)])[0]
        XCTAssertEqual(y.shape, [2, 2])
        XCTAssertEqual(y.floatValues(), [13, 14, 25, 20])
        // C omitted (opset ≥ 11) and a fused Relu.
        let y2 = try run("Gemm", opset: 13, [a, t([3, 2], [1, -1, 0, -1, 1, -1])], fused: .relu)[0]
        XCTAssertEqual(y2.floatValues(), [4, 0, 10, 0])
        XCTAssertThrowsError(try run("Gemm", opset: 9, [a, b], ["transB": .int(1)]))
    }

    /// MaxPool 3×3 stride 2 over X = 1…16 (4×4): floor mode has one window (max 11); ceil mode
    /// adds windows that run past the edge: [[11, 12], [15, 16]], at flat indices 10, 11, 14, 15.
    func testMaxPoolCeilMode() throws {
        let x = t([1, 1, 4, 4], (1...16).map(Float.init))
        let attrs: [String: AttributeValue] = ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2])]
        XCTAssertEqual(try run("MaxPool", [x], attrs)[0].floatValues(), [11])
        var ceil = attrs
        ceil["ceil_mode"] = .int(1)
        let outs = try run("MaxPool", [x], ceil, outputs: 2)
        XCTAssertEqual(outs[0].shape, [1, 1, 2, 2])
        XCTAssertEqual(outs[0].floatValues(), [11, 12, 15, 16])
        XCTAssertEqual(outs[1].int64Values(), [10, 11, 14, 15])
        // Column-major indices (storage_order 1): (h, w) → h + 4·w.
        ceil["storage_order"] = .int(1)
        XCTAssertEqual(try run("MaxPool", [x], ceil, outputs: 2)[1].int64Values(), [10, 14, 11, 15])
    }

    /// AveragePool 2×2 with padding 1 over [[1,2],[3,4]]: corners see one value; with
    /// count_include_pad the divisor is always 4.
    func testAveragePoolPadding() throws {
        let x = t([1, 1, 2, 2], [1, 2, 3, 4])
        let attrs: [String: AttributeValue] = ["kernel_shape": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]
        XCTAssertEqual(try run("AveragePool", [x], attrs)[0].floatValues(), [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4])
        var inc = attrs
        inc["count_include_pad"] = .int(1)
        XCTAssertEqual(try run("AveragePool", [x], inc)[0].floatValues(), [0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1])
    }

    /// MatMul of a 1-D vector with a batch of matrices: [1, 2] · [2][2×2] → [2][2].
    func testMatMulVectorBatch() throws {
        let y = try run("MatMul", [t([2], [1, 2]), t([2, 2, 2], [1, 0, 0, 1, 2, 3, 4, 5])])[0]
        XCTAssertEqual(y.shape, [2, 2])
        XCTAssertEqual(y.floatValues(), [1, 2, 10, 13])
    }

    /// BatchNormalization (inference): (x − mean)/sqrt(var + ε)·scale + B with var + ε = 4.
    func testBatchNormInference() throws {
        let x = t([1, 2, 2], [1, 3, 5, 7])
        let y = try run("BatchNormalization", opset: 15,
                        [x, t([2], [2, 1]), t([2], [0, 1]), t([2], [1, 5]), t([2], [4 - 1e-5, 4 - 1e-5])])[0]
        XCTAssertEqual(y.floatValues(), [0, 2, 1, 2], accuracy: 1e-5)
    }

    /// Bad input gives an error naming the node, not a trap.
    func testConvChannelMismatchIsAnError() {
        let x = t([1, 3, 4, 4], Array(repeating: 0, count: 48))
        let w = t([2, 2, 3, 3], Array(repeating: 0, count: 36))
        XCTAssertThrowsError(try run("Conv", [x, w])) { e in
            XCTAssertTrue("\(e)".contains("input channels"), "\(e)")
        }
    }

    /// Conv → Sigmoid → Mul(conv, sigmoid) (SiLU as exporters write it) runs as one fused Conv;
    /// its output equals the three nodes run one by one (planned without passes).
    func testSiLUPatternFusesIntoConv() throws {
        var rng = SystemRandomNumberGenerator()
        func random(_ shape: [Int]) -> Tensor { Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -2...2, using: &rng) }) }
        var g = Graph(name: "silu")
        g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(3), .fixed(9), .fixed(9)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(1), .fixed(8), .fixed(9), .fixed(9)])]
        g.addInitializer(Initializer(name: "w", tensor: random([8, 3, 3, 3])))
        g.addInitializer(Initializer(name: "b", tensor: random([8])))
        g.nodes = [Node(opType: "Conv", inputs: ["x", "w", "b"], outputs: ["c"], attributes: [Attribute(name: "pads", value: .ints([1, 1, 1, 1]))]),
                   Node(opType: "Sigmoid", inputs: ["c"], outputs: ["s"]),
                   Node(opType: "Mul", inputs: ["s", "c"], outputs: ["y"])]
        let exec = try Executor(model: Model(graph: g))
        let x = random([1, 3, 9, 9])
        let fused = try XCTUnwrap(exec.run(["x": x])["y"])
        var seen: [String] = []
        let plain = try XCTUnwrap(Executor(model: Model(graph: g), passes: .none).run(["x": x], hooks: ExecutionHooks(names: ["c"]) { name, _ in seen.append(name) })["y"])
        XCTAssertEqual(seen, ["c"], "the unfused plan materializes the Conv output")
        XCTAssertThrowsError(try exec.run(["x": x], hooks: ExecutionHooks(names: ["c"]) { _, _ in })) { e in
            XCTAssertTrue("\(e)".contains("'c' (fused into Conv 'c' (SiLU applied in its store))"), "\(e)")
        }
        XCTAssertEqual(fused.shape, [1, 8, 9, 9])
        XCTAssertEqual(plain.shape, fused.shape)
        let (fv, pv) = (fused.floatValues(), plain.floatValues())
        XCTAssertEqual(fv.count, 8 * 81)
        XCTAssertEqual(pv.count, fv.count)
        for (a, b) in zip(fv, pv) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }
        var steps: [String] = []
        _ = try exec.run(["x": x], stepDone: { steps.append($0.opType) })
        XCTAssertEqual(steps, ["Conv"], "Sigmoid and Mul are fused into the Conv")
    }
}

private func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
