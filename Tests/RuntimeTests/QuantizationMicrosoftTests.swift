import XCTest
import ModelIR
@testable import Runtime
import TensorCore

/// Runs one com.microsoft node of the standard registry (since-version 1).
private func evaluate(_ op: String, _ inputs: [Tensor?], _ attributes: [String: AttributeValue] = [:]) throws -> [Tensor] {
    let node = Node(opType: op, domain: "com.microsoft", inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" },
                    outputs: ["y"], attributes: attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) })
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "com.microsoft", opset: 1))
    return try impl.kernel(inputs, KernelContext(node: node, opset: 1))
}

/// Hand-computed cases; Tests/Interop/test_ms_quant_ops.py compares every op with ONNX Runtime.
final class QuantizationMicrosoftTests: XCTestCase {
    func testQLinearAddIsFusedFloatArithmetic() throws {
        // 10·0.5 + 20·0.25 = 10, zero points 0: exact in float32.
        let y = try evaluate("QLinearAdd", [Tensor(shape: [2], scalars: [UInt8(10), 0]), Tensor(scalar: Float(0.5)), Tensor(scalar: UInt8(0)),
                                            Tensor(shape: [2], scalars: [UInt8(20), 3]), Tensor(scalar: Float(0.25)), Tensor(scalar: UInt8(0)),
                                            Tensor(scalar: Float(1)), Tensor(scalar: UInt8(0))])[0]
        // 0.75 rounds to 1.
        XCTAssertEqual(y.scalars(as: UInt8.self), [10, 1])
    }

    func testQLinearAddOverflowSaturatesToMinimumLikeONNXRuntime() throws {
        // 255 · 1e9 overflows int32 before the saturating pack: ORT's cvtps2dq gives INT32_MIN,
        // so the uint8 result is 0, not 255.
        let y = try evaluate("QLinearAdd", [Tensor(shape: [1], scalars: [UInt8(255)]), Tensor(scalar: Float(1e9)), Tensor(scalar: UInt8(0)),
                                            Tensor(shape: [1], scalars: [UInt8(0)]), Tensor(scalar: Float(1)), Tensor(scalar: UInt8(0)),
                                            Tensor(scalar: Float(1)), Tensor(scalar: UInt8(0))])[0]
        XCTAssertEqual(y.scalars(as: UInt8.self), [0])
    }

    func testQLinearMulBroadcastsAndSaturates() throws {
        // (a − 1)(b − 0) · (0.5·0.5/0.25) + 3 for a = [1, 2, 100], b = 2.
        let y = try evaluate("QLinearMul", [Tensor(shape: [3], scalars: [Int8(1), 2, 100]), Tensor(scalar: Float(0.5)), Tensor(scalar: Int8(1)),
                                            Tensor(scalar: Int8(2)), Tensor(scalar: Float(0.5)), Tensor(scalar: Int8(0)),
                                            Tensor(scalar: Float(0.25)), Tensor(scalar: Int8(3))])[0]
        XCTAssertEqual(y.scalars(as: Int8.self), [3, 5, 127])
    }

    func testQLinearLeakyReluTable() throws {
        // x = 0.5·q; y = x ≥ 0 ? x : 0.25x; q_y = y / 0.125.
        let y = try evaluate("QLinearLeakyRelu", [Tensor(shape: [3], scalars: [Int8(-8), 5, -128]), Tensor(scalar: Float(0.5)), Tensor(scalar: Int8(0)),
                                                  Tensor(scalar: Float(0.125)), Tensor(scalar: Int8(0))], ["alpha": .float(0.25)])[0]
        XCTAssertEqual(y.scalars(as: Int8.self), [-8, 20, -128])
    }

    func testQLinearGlobalAveragePoolRefusesWhatONNXRuntimeRefuses() throws {
        // x_scale / (y_scale · 4) = 256 is outside [2^-32, 256).
        let x = Tensor(dtype: .uint8, shape: [1, 1, 2, 2])
        XCTAssertThrowsError(try evaluate("QLinearGlobalAveragePool", [x, Tensor(scalar: Float(1024)), Tensor(scalar: UInt8(0)),
                                                                      Tensor(scalar: Float(1)), Tensor(scalar: UInt8(0))]))
        let y = try evaluate("QLinearGlobalAveragePool", [Tensor(shape: [1, 2, 1, 3], scalars: [UInt8(1), 2, 4, 10, 10, 11]),
                                                          Tensor(scalar: Float(1)), Tensor(scalar: UInt8(1)),
                                                          Tensor(scalar: Float(1)), Tensor(scalar: UInt8(0))])[0]
        // means of (x − 1): 4/3 -> 1, 28/3 -> 9
        XCTAssertEqual(y.shape, [1, 2, 1, 1])
        XCTAssertEqual(y.scalars(as: UInt8.self), [1, 9])
    }

    func testQGemmFloatOutput() throws {
        // alpha·s_a·s_b·(A·B) = 2·0.5·0.5·3 + C·(same multiplier).
        let a = Tensor(shape: [1, 2], scalars: [UInt8(1), 2]), b = Tensor(shape: [2, 1], scalars: [Int8(1), 1])
        let y = try evaluate("QGemm", [a, Tensor(scalar: Float(0.5)), Tensor(scalar: UInt8(0)), b, Tensor(scalar: Float(0.5)),
                                       Tensor(scalar: Int8(0)), Tensor(shape: [1], scalars: [Int32(1)])], ["alpha": .float(2)])[0]
        XCTAssertEqual(y.dtype, .float32)
        XCTAssertEqual(y.scalars(as: Float.self), [2])
    }
}
