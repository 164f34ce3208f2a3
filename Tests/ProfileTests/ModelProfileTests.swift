import Foundation
import ModelIR
@testable import Profile
import Runtime
import TensorCore
import XCTest

/// Whole-graph profiles of small models built in code, checked against hand-computed figures.
final class ModelProfileTests: XCTestCase {
    func profile(_ b: GraphBuilder, opset: Int64 = 17) throws -> ModelProfile {
        try ModelProfile(model: b.build(opset: opset))
    }

    func row(_ p: ModelProfile, _ op: String) throws -> NodeProfile {
        try XCTUnwrap(p.nodes.first { $0.opType == op }, "no \(op) row")
    }

    /// Conv 3×3 3→4 with bias, pad 1, on [1,3,8,8] float32:
    /// MACs 1·4·8·8·3·9 = 6,912; FLOPs 2·6,912 + 256 = 14,080; weights (108 + 4)·4 = 448 B;
    /// input 192·4 = 768 B; output 256·4 = 1,024 B; traffic 2,240 B; intensity 6.2857.
    func testConvTrafficAndIntensity() throws {
        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(1), .fixed(3), .fixed(8), .fixed(8)])
        let y = b.conv(x, 3, 4, kernel: 3, pad: 1, bias: true, name: "conv")
        b.output(y)
        let n = try row(try profile(b), "Conv")
        XCTAssertEqual([n.macs, n.flops, n.params, n.weightBytes, n.inputBytes, n.outputBytes, n.trafficBytes],
                       [6_912, 14_080, 112, 448, 768, 1_024, 2_240])
        XCTAssertEqual(n.intensity!, 14_080.0 / 2_240.0, accuracy: 1e-12)
        XCTAssertEqual(n.outputShape, [1, 4, 8, 8])
    }

    /// Depthwise 3×3 on [1,8,8,8], group 8, no bias: MACs 512·9 = 4,608; FLOPs 9,216;
    /// weights 72·4 = 288 B; input 2,048 B; output 2,048 B; traffic 4,384 B; intensity 2.1022.
    func testDepthwiseConv() throws {
        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(1), .fixed(8), .fixed(8), .fixed(8)])
        b.output(b.conv(x, 8, 8, kernel: 3, pad: 1, group: 8, name: "dw"))
        let n = try row(try profile(b), "Conv")
        XCTAssertEqual([n.macs, n.flops, n.params, n.weightBytes, n.inputBytes, n.outputBytes, n.trafficBytes],
                       [4_608, 9_216, 72, 288, 2_048, 2_048, 4_384])
        XCTAssertEqual(n.intensity!, 9_216.0 / 4_384.0, accuracy: 1e-12)
    }

    /// Gemm [2,16]·W[8,16]ᵀ + b[8]: MACs 256; FLOPs 512 + 16 = 528; weights (128 + 8)·4 = 544 B;
    /// input 128 B; output 64 B; traffic 736 B. Add of two [1,8,4,4]: 128 FLOPs over 1,536 B.
    func testGemmAndAdd() throws {
        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(2), .fixed(16)])
        b.output(b.linear(x, 16, 8, name: "fc"))
        let p = b.input("p", .float32, [.fixed(1), .fixed(8), .fixed(4), .fixed(4)])
        let q = b.input("q", .float32, [.fixed(1), .fixed(8), .fixed(4), .fixed(4)])
        b.output(b.add(p, q))
        let prof = try profile(b)
        let g = try row(prof, "Gemm")
        XCTAssertEqual([g.macs, g.flops, g.params, g.weightBytes, g.inputBytes, g.outputBytes, g.trafficBytes], [256, 528, 136, 544, 128, 64, 736])
        let a = try row(prof, "Add")
        XCTAssertEqual([a.macs, a.flops, a.params, a.weightBytes, a.inputBytes, a.outputBytes, a.trafficBytes], [0, 128, 0, 0, 1_024, 512, 1_536])
        XCTAssertEqual(a.intensity!, 128.0 / 1_536.0, accuracy: 1e-12)
    }

    /// A QDQ Conv: x (graph input) → QuantizeLinear → DequantizeLinear → Conv(W = DQ(int8 W_q),
    /// B = DQ(int32 B_q)) → QuantizeLinear → DequantizeLinear → output. The Conv reads int8
    /// activations (192 B), int8 weights with per-channel scales (108 + 4·4 + 4 = 128 B) and an
    /// int32 bias with scales (16 + 16 = 32 B), and writes int8 (256 B); it computes at int8.
    func testQDQConvIsInt8() throws {
        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(1), .fixed(3), .fixed(8), .fixed(8)])
        let xs = b.initializer("xs", Tensor(scalar: Float(0.1)))
        let xz = b.initializer("xz", Tensor(dtype: .int8, shape: []))
        let wq = b.initializer("wq", Tensor(dtype: .int8, shape: [4, 3, 3, 3]))
        let ws = b.initializer("ws", Tensor(shape: [4], scalars: [Float](repeating: 0.01, count: 4)))
        let wz = b.initializer("wz", Tensor(dtype: .int8, shape: [4]))
        let bq = b.initializer("bq", Tensor(dtype: .int32, shape: [4]))
        let bs = b.initializer("bs", Tensor(shape: [4], scalars: [Float](repeating: 0.001, count: 4)))
        let xq = b.op("QuantizeLinear", [x, xs, xz], name: "q_in")
        let xd = b.op("DequantizeLinear", [xq, xs, xz], name: "dq_in")
        let wd = b.op("DequantizeLinear", [wq, ws, wz], ["axis": .int(0)], name: "dq_w")
        let bd = b.op("DequantizeLinear", [bq, bs], ["axis": .int(0)], name: "dq_b")
        let y = b.op("Conv", [xd, wd, bd], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])], name: "conv")
        let yq = b.op("QuantizeLinear", [y, xs, xz], name: "q_out")
        b.output(b.op("DequantizeLinear", [yq, xs, xz], name: "dq_out"))
        let p = try profile(b, opset: 13)
        let conv = try row(p, "Conv")
        XCTAssertEqual(conv.weightBytes, 128 + 32)
        XCTAssertEqual(conv.inputBytes, 192)
        XCTAssertEqual(conv.outputBytes, 256)
        XCTAssertEqual(conv.params, 112)
        XCTAssertEqual(conv.macs, 6_912)
        XCTAssertEqual(conv.precision, .int8)
        let status = Dictionary(uniqueKeysWithValues: p.nodes.map { ($0.name, $0.status) })
        XCTAssertEqual(status["dq_w"], .constant)
        XCTAssertEqual(status["dq_b"], .constant)
        XCTAssertEqual(status["dq_in"], .fused)
        XCTAssertEqual(status["q_out"], .fused)
        // The input QuantizeLinear reads the float graph input: a real op. The last
        // DequantizeLinear writes the float graph output: a real op.
        XCTAssertEqual(status["q_in"], .counted)
        XCTAssertEqual(status["dq_out"], .counted)
        XCTAssertEqual(try row(p, "QuantizeLinear").flops, 3 * 192)
    }

    /// Parameters: BatchNormalization mean/var are buffers; Clip bounds and shape constants
    /// are configuration; a shared weight counts once in the totals.
    func testParameterConventions() throws {
        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(1), .fixed(4), .fixed(4), .fixed(4)])
        let y = b.relu6(b.batchNorm(x, 4, name: "bn"))
        let w = b.initializer("w", Tensor(dtype: .float32, shape: [64, 10]))
        let flat = b.op("Reshape", [y, b.initializer("shape", Tensor(shape: [2], scalars: [Int64(1), Int64(64)]))])
        let h1 = b.op("MatMul", [flat, w], name: "mm1")
        let h2 = b.op("MatMul", [flat, w], name: "mm2")
        b.output(b.add(h1, h2))
        let p = try profile(b)
        let t = p.totals
        XCTAssertEqual(t.params, 8 + 640)
        XCTAssertEqual(t.buffers, 8)
        XCTAssertEqual(try row(p, "Clip").params, 0)
        XCTAssertEqual(p.nodes.filter { $0.opType == "MatMul" }.map(\.params), [640, 640])
        XCTAssertEqual(try row(p, "Reshape").trafficBytes, 0)
        XCTAssertEqual(t.parameterBytes, (8 + 8 + 640) * 4)
    }

    func testUnknownOperatorIsNotCountedWithWarning() throws {
        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(1), .fixed(4)])
        let y = b.node("Frobnicate", [x], name: "mystery", domain: "com.example")[0]
        b.graph.valueInfo.append(ValueInfo(y, .float32, [.fixed(1), .fixed(4)]))
        b.output(b.op("Relu", [y]))
        var m = b.build()
        m.opsetImports.append(OpsetImport(domain: "com.example", version: 1))
        let p = try ModelProfile(model: m)
        XCTAssertEqual(p.nodes[0].status, .notCounted)
        XCTAssertEqual(p.totals.uncountedNodes, 1)
        XCTAssertTrue(p.warnings.contains { $0.contains("not counted") && $0.contains("com.example::Frobnicate") && $0.contains("mystery") }, "\(p.warnings)")
        XCTAssertEqual(p.nodes[1].flops, 4)
    }

    /// A Loop with a constant trip count of 5 whose body runs a 4×4 MatMul on a [1,4] carried
    /// value: 5·16 = 80 MACs. An If whose branches cost 4 and 16 FLOPs: the totals take 16.
    func testSubgraphs() throws {
        let body = GraphBuilder(randomWeights: false)
        body.input("i", .int64, [])
        let cond = body.input("cond", .bool, [])
        let h = body.input("h", .float32, [.fixed(1), .fixed(4)])
        let w = body.initializer("wl", Tensor(dtype: .float32, shape: [4, 4]))
        let next = body.op("MatMul", [h, w], name: "body_mm")
        let condOut = body.op("Identity", [cond], name: "cond_id")
        body.output(condOut, .bool, [])
        body.output(next, .float32, [.fixed(1), .fixed(4)])

        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(1), .fixed(4)])
        let trip = b.initializer("trip", Tensor(shape: [], scalars: [Int64(5)]))
        let yes = b.initializer("yes", Tensor(shape: [], scalars: [true]))
        let out = b.node("Loop", [trip, yes, x], ["body": .graph(body.graph)], name: "loop")[0]

        let thenB = GraphBuilder(randomWeights: false)
        thenB.output(thenB.op("Relu", [out], name: "cheap"), .float32, [.fixed(1), .fixed(4)])
        let elseB = GraphBuilder(randomWeights: false)
        let sq = elseB.op("Mul", [out, out], name: "dear1")
        let e2 = elseB.op("Add", [sq, out], name: "dear2")
        let e3 = elseB.op("Sub", [e2, out], name: "dear3")
        elseB.output(elseB.op("Div", [e3, out], name: "dear4"), .float32, [.fixed(1), .fixed(4)])
        let c = b.input("c", .bool, [])
        let r = b.node("If", [c], ["then_branch": .graph(thenB.graph), "else_branch": .graph(elseB.graph)], name: "branch")[0]
        b.output(r)
        let p = try profile(b, opset: 16)
        let mm = try row(p, "MatMul")
        XCTAssertEqual(mm.scope, "loop/body")
        XCTAssertEqual(mm.repeats, 5)
        XCTAssertEqual(mm.macs, 80)
        XCTAssertEqual(mm.params, 16)
        XCTAssertEqual(try row(p, "Loop").status, .control)
        XCTAssertFalse(try row(p, "Relu").inTotal)
        XCTAssertTrue(try row(p, "Mul").inTotal)
        XCTAssertEqual(p.totals.flops, 2 * 80 + 16)
    }

    /// A Loop whose trip count is an input: counted once, and a warning says so.
    func testLoopWithUnknownTripCountIsFlagged() throws {
        let body = GraphBuilder(randomWeights: false)
        body.input("i", .int64, [])
        let cond = body.input("cond", .bool, [])
        let h = body.input("h", .float32, [.fixed(1), .fixed(4)])
        body.output(body.op("Identity", [cond]), .bool, [])
        body.output(body.op("Relu", [h]), .float32, [.fixed(1), .fixed(4)])
        let b = GraphBuilder(randomWeights: false)
        let n = b.input("n", .int64, [])
        let x = b.input("x", .float32, [.fixed(1), .fixed(4)])
        b.output(b.node("Loop", [n, "", x], ["body": .graph(body.graph)], name: "loop")[0])
        let p = try profile(b, opset: 16)
        XCTAssertEqual(try row(p, "Relu").flops, 4)
        XCTAssertTrue(p.warnings.contains { $0.contains("Loop 'loop'") && $0.contains("trip count") }, "\(p.warnings)")
    }

    /// Shape arithmetic on static shapes (Shape → Gather → Unsqueeze → Concat → Reshape) is
    /// folded at load: only the Reshape (a free view) remains, and its output type is known
    /// (shape inference evaluates Shape of a typed value): [2, 12], counted, 0 bytes of traffic,
    /// no warning. (The test once accepted an unresolved Reshape as well; with every shape static
    /// that would be a regression of shape inference, so it fails now.)
    func testShapeArithmeticIsConstant() throws {
        let b = GraphBuilder(randomWeights: false)
        let x = b.input("x", .float32, [.fixed(2), .fixed(3), .fixed(4)])
        let s = b.op("Shape", [x])
        let d0 = b.op("Gather", [s, b.initializer("zero", Tensor(shape: [], scalars: [Int64(0)]))], ["axis": .int(0)])
        let u = b.op("Unsqueeze", [d0, b.initializer("ax", Tensor(shape: [1], scalars: [Int64(0)]))])
        let shape = b.op("Concat", [u, b.initializer("rest", Tensor(shape: [1], scalars: [Int64(-1)]))], ["axis": .int(0)])
        b.output(b.op("Reshape", [x, shape]))
        let p = try profile(b)
        XCTAssertEqual(p.nodes.filter { $0.status == .constant }.map(\.opType), ["Shape", "Gather", "Unsqueeze", "Concat"])
        let reshape = try row(p, "Reshape")
        XCTAssertEqual(reshape.status, .counted)
        XCTAssertEqual(reshape.outputShape, [2, 12])
        XCTAssertEqual(reshape.trafficBytes, 0)
        XCTAssertEqual(p.totals.trafficBytes, 0)
        XCTAssertEqual(p.totals.uncountedNodes, 0)
        XCTAssertTrue(p.warnings.isEmpty, "\(p.warnings)")
    }
}
