import ModelIR
import Runtime
import TensorCore
import XCTest
@testable import Quantize

/// The quality pass runs each activation's QuantizeLinear → DequantizeLinear pair as one fused
/// fake-quantize step; its values must be those of the two ONNX operators run as written (the
/// executor's QuantizeLinear/DequantizeLinear kernels, checked against ONNX Runtime elsewhere),
/// and its noise sums those of x against that output.
final class QualityPassTests: XCTestCase {
    /// x → Relu → Q/DQ (zero point 0) → Add ← Q/DQ (zero point 37, or 128 for uint8) ← x: y, the pairs
    /// int8 or (`unsigned`, as --asymmetric writes them) uint8.
    func model(count: Int, unsigned: Bool = false) -> Model {
        let v = { (n: String) in ValueInfo(n, .float32, [.fixed(count)]) }
        var g = Graph(nodes: [
            Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["r"]),
            Node(name: "q1", opType: "QuantizeLinear", inputs: ["r", "s1", "z1"], outputs: ["rq"]),
            Node(name: "dq1", opType: "DequantizeLinear", inputs: ["rq", "s1", "z1"], outputs: ["rdq"]),
            Node(name: "q2", opType: "QuantizeLinear", inputs: ["x", "s2", "z2"], outputs: ["xq"]),
            Node(name: "dq2", opType: "DequantizeLinear", inputs: ["xq", "s2", "z2"], outputs: ["xdq"]),
            Node(name: "add", opType: "Add", inputs: ["rdq", "xdq"], outputs: ["y"]),
        ], inputs: [v("x")], outputs: [v("y")])
        g.addInitializer(Initializer(name: "s1", tensor: Tensor(scalar: Float(0.0123))))
        g.addInitializer(Initializer(name: "z1", tensor: unsigned ? Tensor(scalar: UInt8(0)) : Tensor(scalar: Int8(0))))
        g.addInitializer(Initializer(name: "s2", tensor: Tensor(scalar: Float(0.031))))
        g.addInitializer(Initializer(name: "z2", tensor: unsigned ? Tensor(scalar: UInt8(128)) : Tensor(scalar: Int8(37))))
        return Model(graph: g, opsetImports: [OpsetImport(domain: "", version: 13)])
    }

    func testFusedPairsEqualTheOperatorsBitForBit() throws {
        try fusedPairsEqualTheOperators(unsigned: false)
    }

    func testFusedUInt8PairsEqualTheOperatorsBitForBit() throws {
        try fusedPairsEqualTheOperators(unsigned: true)
    }

    func fusedPairsEqualTheOperators(unsigned: Bool) throws {
        // Random values over and beyond both ranges, exact ties, NaN, ±infinity, −0; a length that
        // is not a multiple of 8 (the scalar tail) and spans several 512-value blocks.
        var rng = SplitMix64(seed: 7)
        var xs: [Float] = (0..<4099).map { _ in Float.random(in: -6...6, using: &rng) }
        xs[0] = .nan; xs[1] = .infinity; xs[2] = -.infinity; xs[3] = -0.0
        xs[4] = 0.0123 * 2.5; xs[5] = 0.031 * -3.5; xs[6] = 0.031 * 90.5
        xs[4097] = .nan; xs[4098] = 0.0123 * 0.5
        let m = model(count: xs.count, unsigned: unsigned)
        let params = ["r": QuantParams(scale: 0.0123, zeroPoint: 0), "x": QuantParams(scale: 0.031, zeroPoint: unsigned ? 128 : 37)]
        let pass = try QualityPass(quantized: m, activations: params, range: .of(unsigned ? .uint8 : .int8, symmetric: false))
        XCTAssertEqual(pass.executor.steps.filter { $0.opType == QualityPass.fakeQuantize }.count, 2)
        XCTAssertFalse(pass.executor.steps.contains { $0.opType == "QuantizeLinear" || $0.opType == "DequantizeLinear" })

        // The two operators as written, with every intermediate kept; then the same without the
        // infinities (whose noise sums are infinite), for the noise.
        var finite = xs
        finite[1] = 5e3; finite[2] = -5e3
        for values in [xs, finite] {
            let x = Tensor(shape: [values.count], scalars: values)
            var seen: [String: Tensor] = [:]
            let plain = try Executor(model: m, passes: .none)
            let ref = try plain.run(["x": x], hooks: ExecutionHooks(names: ["x", "r", "rdq", "xdq"]) { seen[$0] = $1 })["y"]!
            var r = QualityResult()
            try pass.add(["x": x], reference: [ref], label: nil, into: &r)
            let got = try pass.executor.run(["x": x])["y"]!
            XCTAssertEqual(got.scalars(as: Float.self).map(\.bitPattern), ref.scalars(as: Float.self).map(\.bitPattern))
            XCTAssertNil(r.output.sqnrDB)  // identical outputs
            if values[1].isInfinite { continue }
            // Noise: Σx² / Σ(x − x̂)² over the non-NaN values, x̂ the DequantizeLinear output.
            for (a, dq) in [("r", "rdq"), ("x", "xdq")] {
                var s = 0.0, n = 0.0
                for (u, v) in zip(seen[a]!.scalars(as: Float.self), seen[dq]!.scalars(as: Float.self)) where !u.isNaN {
                    s += Double(u) * Double(u); n += (Double(u) - Double(v)) * (Double(u) - Double(v))
                }
                XCTAssertEqual(try XCTUnwrap(r.tensors.sqnr(a)), 10 * log10(s / n), accuracy: 1e-4, a)
            }
        }
    }

    func testPairsOfAnotherFormRunAsWritten() throws {
        // The quantized value has a second reader: the pair stays QuantizeLinear → DequantizeLinear.
        var m = model(count: 16)
        m.graph.nodes.append(Node(name: "cast", opType: "Cast", inputs: ["rq"], outputs: ["rq32"], attributes: [Attribute(name: "to", value: .int(1))]))
        m.graph.outputs.append(ValueInfo("rq32", .float32, [.fixed(16)]))
        let pass = try QualityPass(quantized: m, activations: ["r": QuantParams(scale: 0.0123, zeroPoint: 0)], range: .of(.int8, symmetric: false))
        XCTAssertEqual(pass.executor.steps.filter { $0.opType == QualityPass.fakeQuantize }.count, 1)
        XCTAssertTrue(pass.executor.steps.contains { $0.opType == "QuantizeLinear" })
        let x = Tensor(shape: [16], scalars: (0..<16).map { Float($0) * 0.37 - 2.9 })
        var r = QualityResult()
        var seen: [String: Tensor] = [:]
        let ref = try Executor(model: m, passes: .none).run(["x": x], hooks: ExecutionHooks(names: ["r", "rdq"]) { seen[$0] = $1 })
        try pass.add(["x": x], reference: m.graph.outputs.map { ref[$0.name]! }, label: nil, into: &r)
        XCTAssertNil(r.output.sqnrDB)
        // Measured by the hook on the unfused pair: Σr² / Σ(r − r̂)², r̂ the DequantizeLinear output.
        var sig = 0.0, noise = 0.0
        for (u, v) in zip(seen["r"]!.scalars(as: Float.self), seen["rdq"]!.scalars(as: Float.self)) {
            sig += Double(u) * Double(u); noise += (Double(u) - Double(v)) * (Double(u) - Double(v))
        }
        XCTAssertGreaterThan(noise, 0)
        XCTAssertEqual(try XCTUnwrap(r.tensors.sqnr("r")), 10 * log10(sig / noise), accuracy: 1e-4)
    }
}
