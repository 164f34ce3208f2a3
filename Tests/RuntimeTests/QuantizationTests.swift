import XCTest
import ModelIR
@testable import Runtime
import TensorCore

/// Runs one quantization node of the standard registry.
private func evaluate(_ op: String, _ inputs: [Tensor?], _ attributes: [String: AttributeValue] = [:], opset: Int = 21,
                      outputs: Int = 1) throws -> [Tensor] {
    let node = Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" },
                    outputs: (0..<outputs).map { "y\($0)" },
                    attributes: attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) })
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
    return try impl.kernel(inputs, KernelContext(node: node, opset: opset))
}

private func infer(_ op: String, _ inputs: [TensorInfo?], _ attributes: [String: AttributeValue] = [:], opset: Int = 21) throws -> [TensorInfo] {
    let node = Node(opType: op, inputs: inputs.indices.map { "x\($0)" }, outputs: ["y"],
                    attributes: attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) })
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
    return try impl.infer(inputs, inputs.map { _ in nil }, KernelContext(node: node, opset: opset))
}

final class QuantizationTests: XCTestCase {
    // MARK: QuantizeLinear

    func testQuantizeRoundsHalfToEvenAndSaturatesInt8() throws {
        let x = Tensor(shape: [8], scalars: [Float(2.5), 3.5, -2.5, -3.5, 0.5, 1.5, 300, -300])
        let y = try evaluate("QuantizeLinear", [x, Tensor(scalar: Float(1)), Tensor(scalar: Int8(0))])[0]
        XCTAssertEqual(y.dtype, .int8)
        XCTAssertEqual(y.scalars(as: Int8.self), [2, 4, -2, -4, 0, 2, 127, -128])
    }

    func testQuantizeAddsZeroPointAfterRounding() throws {
        // round(2.5) = 2, + 1 = 3 (rounding x/scale + zero point in one step would give 4).
        let x = Tensor(shape: [3], scalars: [Float(2.5), 5, -1000])
        let y = try evaluate("QuantizeLinear", [x, Tensor(scalar: Float(1)), Tensor(scalar: UInt8(1))])[0]
        XCTAssertEqual(y.scalars(as: UInt8.self), [3, 6, 0])
    }

    func testQuantizeWithoutZeroPointIsUInt8() throws {
        let x = Tensor(shape: [4], scalars: [Float(-1), 0, 1.02, 600])
        let y = try evaluate("QuantizeLinear", [x, Tensor(scalar: Float(0.5))])[0]
        XCTAssertEqual(y.dtype, .uint8)
        XCTAssertEqual(y.scalars(as: UInt8.self), [0, 0, 2, 255])
    }

    func testQuantizePerAxisZero() throws {
        // Rows scaled by 1, 2, 4 with zero points 0, 10, -10.
        let x = Tensor(shape: [3, 2], scalars: [Float(1), -1, 5, 6, 10, -10])
        let s = Tensor(shape: [3], scalars: [Float(1), 2, 4])
        let z = Tensor(shape: [3], scalars: [Int8(0), 10, -10])
        let y = try evaluate("QuantizeLinear", [x, s, z], ["axis": .int(0)], opset: 13)[0]
        // 5/2 = 2.5 -> 2 (+10 = 12); 6/2 = 3 (+10 = 13); 10/4 = 2.5 -> 2 (-10 = -8); -2.5 -> -2 (-12).
        XCTAssertEqual(y.scalars(as: Int8.self), [1, -1, 12, 13, -8, -12])
    }

    func testQuantizeBlocked() throws {
        // Blocks of 2 along axis 1: scales [[1, 10]].
        let x = Tensor(shape: [1, 4], scalars: [Float(1), 2, 30, 45])
        let y = try evaluate("QuantizeLinear", [x, Tensor(shape: [1, 2], scalars: [Float(1), 10]), Tensor(shape: [1, 2], scalars: [Int8(0), 0])],
                             ["axis": .int(1), "block_size": .int(2)])[0]
        XCTAssertEqual(y.scalars(as: Int8.self), [1, 2, 3, 4])
    }

    func testQuantizeRejectsMismatchedScaleWithNodeName() {
        let x = Tensor(shape: [2, 3], scalars: [Float](repeating: 1, count: 6))
        XCTAssertThrowsError(try evaluate("QuantizeLinear", [x, Tensor(shape: [4], scalars: [Float](repeating: 1, count: 4))], opset: 13)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("QuantizeLinear") && text.contains("per-axis"), text)
        }
    }

    func testQuantizeShapeFunction() throws {
        let t = try infer("QuantizeLinear", [TensorInfo(.float32, [2, 3]), TensorInfo(.float32, [3]), TensorInfo(.int8, [3])])
        XCTAssertEqual(t, [TensorInfo(.int8, [2, 3])])
        let d = try infer("DequantizeLinear", [TensorInfo(.uint8, [2, 3]), TensorInfo(.float16, [])])
        XCTAssertEqual(d, [TensorInfo(.float16, [2, 3])])
    }

    // MARK: DequantizeLinear

    func testDequantizePerAxis() throws {
        let x = Tensor(shape: [2, 2], scalars: [Int8(-128), 127, 10, 0])
        let y = try evaluate("DequantizeLinear", [x, Tensor(shape: [2], scalars: [Float(0.5), 2]), Tensor(shape: [2], scalars: [Int8(0), 10])],
                             ["axis": .int(0)], opset: 13)[0]
        XCTAssertEqual(y.scalars(as: Float.self), [-64, 63.5, 0, -20])
    }

    func testDequantizeInt4Packed() throws {
        // int4 values [-8, 7, 1] packed low nibble first: 0x78, 0x01.
        let x = [UInt8(0x78), 0x01].withUnsafeBytes { Tensor(dtype: .int4, shape: [3], bytes: $0) }
        let y = try evaluate("DequantizeLinear", [x, Tensor(scalar: Float(2))])[0]
        XCTAssertEqual(y.scalars(as: Float.self), [-16, 14, 2])
    }

    // MARK: DynamicQuantizeLinear

    func testDynamicQuantizeGoldenRange() throws {
        // ONNX Runtime's golden case: data spanning (-1, 2) -> scale 3/255, zero point 85.
        let p = Quantization.dynamicParameters(minValue: -1, maxValue: 2)
        XCTAssertEqual(p.scale, Float(3) / 255)
        XCTAssertEqual(p.zeroPoint, 85)
        let x = Tensor(shape: [4], scalars: [Float(-1), 0, 1, 2])
        let outs = try evaluate("DynamicQuantizeLinear", [x], opset: 11, outputs: 3)
        XCTAssertEqual(outs[0].scalars(as: UInt8.self), [0, 85, 170, 255])
        XCTAssertEqual(outs[1].scalars(as: Float.self), [Float(3) / 255])
        XCTAssertEqual(outs[2].scalars(as: UInt8.self), [85])
    }

    func testDynamicQuantizeIncludesZero() {
        // All-positive data: the range widens to [0, max], so the zero point is 0.
        let p = Quantization.dynamicParameters(minValue: 2, maxValue: 5.1)
        XCTAssertEqual(p.zeroPoint, 0)
        XCTAssertEqual(p.scale, Float(5.1) / 255)
        // Constant zero data: scale 1 (max == min).
        XCTAssertEqual(Quantization.dynamicParameters(minValue: 0, maxValue: 0).scale, 1 / 255)
    }

    // MARK: Small float formats

    func testFloat8E4M3FNRoundingAndSaturation() {
        let f = Minifloat.e4m3fn
        XCTAssertEqual(f.maxFinite, 448)
        XCTAssertEqual(f.decode(f.encode(448)), 448)
        XCTAssertEqual(f.decode(f.encode(464)), 448)              // tie between 448 and 480: even mantissa
        XCTAssertTrue(f.decode(f.encode(465, saturate: false)).isNaN)
        XCTAssertEqual(f.decode(f.encode(465)), 448)              // saturating
        XCTAssertEqual(f.decode(f.encode(-1e9)), -448)
        XCTAssertEqual(f.encode(.nan), 0x7F)
        XCTAssertEqual(f.decode(0x01), 0.001953125)               // smallest subnormal, 2^-9
        XCTAssertEqual(f.encode(0.0009765625), 0)                 // 2^-10: tie between 0 and 2^-9 -> 0
        XCTAssertEqual(f.encode(0.0029296875), 0x02)              // 1.5·2^-9: tie -> 2·2^-9
    }

    /// ONNX Cast (opset 19) table: with saturate, ±Inf becomes ±FLT_MAX for E5M2 too; without
    /// it, E5M2 keeps ±Inf.
    func testFloat8E5M2SaturatesInfinity() {
        let f = Minifloat.e5m2
        XCTAssertEqual(f.maxFinite, 57344)
        XCTAssertEqual(f.decode(f.encode(.infinity)), 57344)
        XCTAssertEqual(f.decode(f.encode(-.infinity)), -57344)
        XCTAssertEqual(f.decode(f.encode(.infinity, saturate: false)), .infinity)
        XCTAssertEqual(Minifloat.e4m3fnuz.decode(Minifloat.e4m3fnuz.encode(-2)), -2)   // FNUZ negatives keep their sign
        XCTAssertEqual(f.decode(f.encode(1e6)), 57344)
        XCTAssertEqual(f.decode(f.encode(1e6, saturate: false)), .infinity)
        XCTAssertEqual(f.decode(f.encode(50000)), 49152)
    }

    func testFloat4E2M1Values() {
        let f = Minifloat.e2m1
        let values: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
        for (code, v) in values.enumerated() {
            XCTAssertEqual(f.decode(UInt8(code)), v)
            XCTAssertEqual(f.encode(v), UInt8(code))
            XCTAssertEqual(f.decode(f.encode(-v)), -v)
        }
        XCTAssertEqual(f.decode(f.encode(100)), 6)
        XCTAssertEqual(f.decode(f.encode(2.5)), 2)   // tie -> even mantissa
        XCTAssertEqual(f.decode(f.encode(5)), 4)     // tie between 4 and 6 -> 4
    }

    // MARK: Integer ops

    func testMatMulIntegerPerRowAndColumnZeroPoints() throws {
        let a = Tensor(shape: [2, 2], scalars: [UInt8(10), 20, 30, 40])
        let b = Tensor(shape: [2, 2], scalars: [Int8(1), -1, 2, 3])
        let az = Tensor(shape: [2], scalars: [UInt8(10), 0])
        let bz = Tensor(shape: [2], scalars: [Int8(0), 1])
        let y = try evaluate("MatMulInteger", [a, b, az, bz], opset: 10)[0]
        // A - az = [[0, 10], [30, 40]]; B - bz = [[1, -2], [2, 2]].
        XCTAssertEqual(y.scalars(as: Int32.self), [20, 20, 110, 20])
    }

    func testQLinearMatMulRequantizes() throws {
        // acc = (4-2)·(3-1) = 4; y = round(4 · 0.5·0.25/0.1) + 5 = round(5) + 5 = 10.
        let outs = try evaluate("QLinearMatMul", [
            Tensor(shape: [1, 1], scalars: [UInt8(4)]), Tensor(scalar: Float(0.5)), Tensor(scalar: UInt8(2)),
            Tensor(shape: [1, 1], scalars: [UInt8(3)]), Tensor(scalar: Float(0.25)), Tensor(scalar: UInt8(1)),
            Tensor(scalar: Float(0.1)), Tensor(scalar: UInt8(5)),
        ], opset: 10)
        XCTAssertEqual(outs[0].scalars(as: UInt8.self), [10])
    }

    func testConvIntegerPadsWithZeroAfterZeroPoint() throws {
        // 1×1×3 input [5, 6, 7] with zero point 5 -> [0, 1, 2]; kernel [1, 1, 1], pad 1.
        let x = Tensor(shape: [1, 1, 3], scalars: [UInt8(5), 6, 7])
        let w = Tensor(shape: [1, 1, 3], scalars: [UInt8(1), 1, 1])
        let y = try evaluate("ConvInteger", [x, w, Tensor(scalar: UInt8(5))], ["pads": .ints([1, 1])], opset: 10)[0]
        XCTAssertEqual(y.shape, [1, 1, 3])
        XCTAssertEqual(y.scalars(as: Int32.self), [1, 3, 3])
    }
}
