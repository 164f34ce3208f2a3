import Foundation
import XCTest
import ModelIR
@testable import Runtime
import TensorCore

private func node(_ op: String, _ inputs: [Tensor?], _ attributes: [String: AttributeValue], outputs: Int) -> Node {
    Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" }, outputs: (0..<outputs).map { "y\($0)" },
         attributes: attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) })
}

private func evaluate(_ op: String, _ inputs: [Tensor?], _ attributes: [String: AttributeValue] = [:], opset: Int = 14,
                      outputs: Int = 3) throws -> [Tensor] {
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
    return try impl.kernel(inputs, KernelContext(node: node(op, inputs, attributes, outputs: outputs), opset: opset))
}

private func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

private func f(_ shape: [Int], _ v: [Float]) -> Tensor { Tensor(shape: shape, scalars: v) }

final class RecurrentTests: XCTestCase {
    /// One LSTM step, input size 2, hidden size 1, with bias, initial states and peepholes,
    /// against the ONNX equations evaluated by hand:
    ///   i = σ(0.1·1 + 0.2·2 + 0.5·0.5 + 0.1·(−1) + 0.1) = σ(0.75)
    ///   f = σ(−0.2·1 + 0.4·2 + 0.25·0.5 + 0.3·(−1))       = σ(0.425)
    ///   c = tanh(0.5·1 + 0.5·2 + 1·0.5 − 0.2)             = tanh(1.8)
    ///   C = f·(−1) + i·c = 0.0383714
    ///   o = σ(0.3·1 − 0.1·2 − 0.5·0.5 + 0.2·C + 0.1)     = σ(−0.05 + 0.2·C)
    ///   H = o·tanh(C) = 0.0187705
    func testOneStepLSTMByHand() throws {
        let x = f([1, 1, 2], [1, 2])
        let w = f([1, 4, 2], [0.1, 0.2, 0.3, -0.1, -0.2, 0.4, 0.5, 0.5])   // i, o, f, c
        let r = f([1, 4, 1], [0.5, -0.5, 0.25, 1])
        let b = f([1, 8], [0.1, 0, 0, -0.2, 0, 0.1, 0, 0])                 // Wb then Rb
        let h0 = f([1, 1, 1], [0.5]), c0 = f([1, 1, 1], [-1])
        let p = f([1, 3], [0.1, 0.2, 0.3])                                  // i, o, f
        let outs = try evaluate("LSTM", [x, w, r, b, nil, h0, c0, p], ["hidden_size": .int(1)])
        let cExpected = sigmoid(0.425) * -1 + sigmoid(0.75) * tanhf(1.8)
        let hExpected = sigmoid(-0.05 + 0.2 * cExpected) * tanhf(cExpected)
        XCTAssertEqual(cExpected, 0.0383714, accuracy: 1e-6)
        XCTAssertEqual(hExpected, 0.0187705, accuracy: 1e-6)
        XCTAssertEqual(outs[0].shape, [1, 1, 1, 1])
        XCTAssertEqual(outs[0].scalars(as: Float.self)[0], hExpected, accuracy: 1e-6)
        XCTAssertEqual(outs[1].scalars(as: Float.self)[0], hExpected, accuracy: 1e-6)
        XCTAssertEqual(outs[2].scalars(as: Float.self)[0], cExpected, accuracy: 1e-6)
    }

    /// One GRU step, input and hidden size 1, x = 2, h0 = 0.4, Rbh = 0.3, both reset modes:
    ///   z = σ(0.5·2 + 0.25·0.4), r = σ(−0.5·2 + 0.5·0.4)
    ///   h = tanh(1·2 + (r·0.4)·(−1) + 0.3)        linear_before_reset = 0
    ///   h = tanh(1·2 + r·(0.4·(−1) + 0.3))        linear_before_reset = 1
    ///   H = (1 − z)·h + z·0.4
    func testOneStepGRUByHandBothResetModes() throws {
        let x = f([1, 1, 1], [2]), w = f([1, 3, 1], [0.5, -0.5, 1]), r = f([1, 3, 1], [0.25, 0.5, -1])
        let b = f([1, 6], [0, 0, 0, 0, 0, 0.3]), h0 = f([1, 1, 1], [0.4])
        let z = sigmoid(0.5 * 2 + 0.25 * 0.4), rg = sigmoid(-0.5 * 2 + 0.5 * 0.4)
        for lbr in [0, 1] {
            let h = lbr == 0 ? tanhf(2 + (rg * 0.4) * -1 + 0.3) : tanhf(2 + rg * (0.4 * -1 + 0.3))
            let expected = (1 - z) * h + z * 0.4
            let outs = try evaluate("GRU", [x, w, r, b, nil, h0], ["hidden_size": .int(1), "linear_before_reset": .int(Int64(lbr))], outputs: 2)
            XCTAssertEqual(outs[1].scalars(as: Float.self)[0], expected, accuracy: 1e-6, "linear_before_reset \(lbr)")
        }
    }

    /// sequence_lens: Y is zero past each row's length, Y_h is the state at the last valid step
    /// (forward) or after step 0 (reverse), identical to running the row's prefix alone.
    func testSequenceLengthsMatchPrefixRuns() throws {
        let seq = 4, hidden = 2, input = 1
        var xs: [Float] = []
        for t in 0..<seq { xs += [Float(t) * 0.3 - 0.5, Float(t) * -0.2 + 0.1] }     // [seq, batch 2, 1]
        let x = f([seq, 2, input], xs)
        let w = f([1, 4 * hidden, input], (0..<8).map { Float($0) * 0.1 - 0.35 })
        let r = f([1, 4 * hidden, hidden], (0..<16).map { Float($0 % 5) * 0.15 - 0.3 })
        let lens = Tensor(shape: [2], scalars: [Int32(4), 2])
        for direction in ["forward", "reverse"] {
            let outs = try evaluate("LSTM", [x, w, r, nil, lens], ["hidden_size": .int(Int64(hidden)), "direction": .string(direction)])
            let y = outs[0].scalars(as: Float.self), yh = outs[1].scalars(as: Float.self)
            // Row 1 alone, over its first 2 steps.
            let prefix = f([2, 1, input], [xs[1], xs[3]])
            let alone = try evaluate("LSTM", [prefix, w, r], ["hidden_size": .int(Int64(hidden)), "direction": .string(direction)])
            let ya = alone[0].scalars(as: Float.self)
            for t in 0..<seq {
                for k in 0..<hidden {
                    let v = y[(t * 2 + 1) * hidden + k]   // Y[t, 0, 1, k]
                    if t < 2 { XCTAssertEqual(v, ya[t * hidden + k], accuracy: 1e-6) } else { XCTAssertEqual(v, 0) }
                }
            }
            XCTAssertEqual(Array(yh[hidden..<(2 * hidden)]), alone[1].scalars(as: Float.self), direction)
        }
    }

    func testLayoutOneShapes() throws {
        let impl = try XCTUnwrap(OpRegistry.standard.implementation("GRU", domain: "", opset: 14))
        let types: [TensorInfo?] = [TensorInfo(.float32, [3, 5, 2]), TensorInfo(.float32, [2, 12, 2]), TensorInfo(.float32, [2, 12, 4])]
        let n = Node(opType: "GRU", inputs: ["x0", "x1", "x2"], outputs: ["y0", "y1"],
                     attributes: [Attribute(name: "layout", value: .int(1)), Attribute(name: "direction", value: .string("bidirectional"))])
        let out = try impl.infer(types, [nil, nil, nil], KernelContext(node: n, opset: 14))
        XCTAssertEqual(out, [TensorInfo(.float32, [3, 5, 2, 4]), TensorInfo(.float32, [3, 2, 4])])
    }

    func testBadWeightShapeIsANodeError() {
        let x = f([1, 1, 2], [1, 2])
        XCTAssertThrowsError(try evaluate("LSTM", [x, f([1, 4, 3], [Float](repeating: 0, count: 12)), f([1, 4, 1], [0, 0, 0, 0])])) { e in
            XCTAssertEqual("\(e)", "node 'LSTM(y0)' (LSTM): W has shape [1, 4, 3]; expected [1, 4, 2]")
        }
        XCTAssertThrowsError(try evaluate("LSTM", [x, f([1, 4, 2], [Float](repeating: 0, count: 8)), f([1, 4, 1], [0, 0, 0, 0])],
                                          ["activations": .strings(["Sigmoid", "Gelu", "Tanh"])])) { e in
            XCTAssertTrue("\(e)".contains("activation 'Gelu'"), "\(e)")
        }
    }

    func testActivationAttributeParsing() {
        XCTAssertEqual(RecurrentActivation.named("HardSigmoid", alpha: nil, beta: nil), .hardSigmoid(alpha: 0.2, beta: 0.5))
        XCTAssertEqual(RecurrentActivation.named("leakyrelu", alpha: nil, beta: nil), .leakyRelu(alpha: 0.01))
        XCTAssertEqual(RecurrentActivation.hardSigmoid(alpha: 0.2, beta: 0.5).apply(10), 1)
        XCTAssertEqual(RecurrentActivation.scaledTanh(alpha: 2, beta: 0.5).apply(2), 2 * tanhf(1), accuracy: 1e-7)
        XCTAssertNil(RecurrentActivation.named("Gelu", alpha: nil, beta: nil))
    }
}
