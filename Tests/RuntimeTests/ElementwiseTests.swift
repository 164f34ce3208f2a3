import XCTest
import ModelIR
@testable import Runtime
import TensorCore

/// Runs one node of the standard registry on `inputs`.
private func evaluate(_ op: String, _ inputs: [Tensor?], _ attributes: [Attribute] = [], opset: Int = 17, outputs: Int = 1) throws -> [Tensor] {
    let node = Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" },
                    outputs: (0..<outputs).map { "y\($0)" }, attributes: attributes)
    guard let impl = OpRegistry.standard.implementation(op, domain: "", opset: opset) else {
        throw RuntimeError.unsupported(op: op, domain: "", opset: opset, node: op)
    }
    return try impl.kernel(inputs, KernelContext(node: node, opset: opset))
}

private func infer(_ op: String, _ inputs: [TensorInfo?], _ attributes: [Attribute] = [], opset: Int = 17) throws -> [TensorInfo] {
    let node = Node(opType: op, inputs: inputs.indices.map { "x\($0)" }, outputs: ["y"], attributes: attributes)
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
    return try impl.infer(inputs, inputs.map { _ in nil }, KernelContext(node: node, opset: opset))
}

private func assertClose(_ a: [Float], _ b: [Float], _ tol: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: tol, "\(a) vs \(b)", file: file, line: line) }
}

private func floats(_ shape: [Int], _ v: [Float]) -> Tensor { Tensor(shape: shape, scalars: v) }

/// Bitwise comparison of float arrays, so NaN matches NaN and -0 differs from +0.
private func assertBits(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(a) vs \(b)", file: file, line: line)
}

final class ElementwiseTests: XCTestCase {
    // MARK: Broadcasting

    func testBroadcastShapeRules() {
        XCTAssertEqual(Broadcast.shape([2, 3, 1], [4]), [2, 3, 4])
        XCTAssertEqual(Broadcast.shape([1, 3, 1, 1], [2, 1, 5, 5]), [2, 3, 5, 5])
        XCTAssertEqual(Broadcast.shape([], [2, 2]), [2, 2])
        XCTAssertEqual(Broadcast.shape([0, 1], [1, 3]), [0, 3])
        XCTAssertNil(Broadcast.shape([2, 3], [3, 2]))
        XCTAssertTrue(Broadcast.isUnidirectional([3, 1, 1], to: [2, 3, 4, 4]))
        XCTAssertFalse(Broadcast.isUnidirectional([2, 3, 4, 4], to: [3, 1, 1]))
    }

    func testBroadcastLoopMergesChannelBroadcastIntoRows() {
        // x[2,3,4,5] * s[1,3,1,1]: rows of H·W = 20 in which s is constant.
        let loop = BroadcastLoop(outShape: [2, 3, 4, 5], operands: [[2, 3, 4, 5], [1, 3, 1, 1]])
        XCTAssertEqual(loop.rowLength, 20)
        var rows = 0
        loop.forEachRow { out, off, step, n in
            XCTAssertEqual(step.0, 1); XCTAssertEqual(step.1, 0); XCTAssertEqual(n, 20)
            XCTAssertEqual(off.0, out)
            XCTAssertEqual(off.1, (out / 20) % 3)
            rows += 1
        }
        XCTAssertEqual(rows, 6)
        // Same shapes are one row.
        XCTAssertEqual(BroadcastLoop(outShape: [2, 3, 4], operands: [[2, 3, 4], [2, 3, 4]]).rowLength, 24)
    }

    func testAddBroadcastsBothWays() throws {
        let a = floats([2, 1], [1, 2]), b = floats([3], [10, 20, 30])
        let y = try evaluate("Add", [a, b])[0]
        XCTAssertEqual(y.shape, [2, 3])
        XCTAssertEqual(y.floatValues(), [11, 21, 31, 12, 22, 32])
        XCTAssertEqual(try infer("Add", [TensorInfo(.float32, [2, 1]), TensorInfo(.float32, [3])]), [TensorInfo(.float32, [2, 3])])
    }

    func testMulByPerChannelScale() throws {
        let x = floats([1, 2, 2, 2], (0..<8).map(Float.init))
        let s = floats([1, 2, 1, 1], [10, -1])
        XCTAssertEqual(try evaluate("Mul", [x, s])[0].floatValues(), [0, 10, 20, 30, -4, -5, -6, -7])
        // Scalar operand on either side.
        XCTAssertEqual(try evaluate("Sub", [Tensor(scalar: Float(1)), floats([3], [1, 2, 3])])[0].floatValues(), [0, -1, -2])
    }

    func testIncompatibleShapesNameBothShapes() {
        XCTAssertThrowsError(try evaluate("Add", [floats([2, 3], Array(repeating: 0, count: 6)), floats([2], [0, 0])])) { e in
            XCTAssertTrue("\(e)".contains("[2, 3] and [2]"), "\(e)")
        }
        XCTAssertThrowsError(try infer("Mul", [TensorInfo(.float32, [4]), TensorInfo(.float32, [3])])) { e in
            XCTAssertTrue("\(e)".contains("cannot be broadcast"), "\(e)")
        }
    }

    func testMixedElementTypesAreRejected() {
        XCTAssertThrowsError(try evaluate("Add", [floats([1], [1]), Tensor(shape: [1], scalars: [Int64(1)])])) { e in
            XCTAssertTrue("\(e)".contains("different element types"), "\(e)")
        }
    }

    func testLegacyBroadcastWithAxis() throws {
        // Opset 6: B [3] aligned at axis 1 of A [2,3,2].
        let a = floats([2, 3, 2], Array(repeating: 0, count: 12)), b = floats([3], [1, 2, 3])
        let y = try evaluate("Add", [a, b], [Attribute(name: "broadcast", value: .int(1)), Attribute(name: "axis", value: .int(1))], opset: 6)[0]
        XCTAssertEqual(y.floatValues(), [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3])
    }

    // MARK: Integer semantics

    func testIntegerDivisionTruncatesAndNeverTraps() throws {
        let a = Tensor(shape: [6], scalars: [Int32(-3), 3, -3, 3, 7, Int32.min])
        let b = Tensor(shape: [6], scalars: [Int32(2), 2, -2, -2, 0, -1])
        XCTAssertEqual(try evaluate("Div", [a, b])[0].scalars(as: Int32.self), [-1, 1, 1, -1, 0, Int32.min])
    }

    func testModSignConventions() throws {
        let a = Tensor(shape: [4], scalars: [Int64(-4), 7, -7, 5]), b = Tensor(shape: [4], scalars: [Int64(3), -3, 3, 0])
        XCTAssertEqual(try evaluate("Mod", [a, b])[0].scalars(as: Int64.self), [2, -2, 2, 0])
        XCTAssertEqual(try evaluate("Mod", [a, b], [Attribute(name: "fmod", value: .int(1))])[0].scalars(as: Int64.self), [-1, 1, -1, 0])
        let x = floats([2], [-4.5, 4.5]), y = floats([2], [2, -2])
        XCTAssertEqual(try evaluate("Mod", [x, y], [Attribute(name: "fmod", value: .int(1))])[0].floatValues(), [-0.5, 0.5])
        XCTAssertEqual(try evaluate("Mod", [x, y])[0].floatValues(), [1.5, -1.5])
    }

    func testIntegerWrapsLikeNumPy() throws {
        let a = Tensor(shape: [2], scalars: [UInt8(250), 3]), b = Tensor(shape: [2], scalars: [UInt8(10), 5])
        XCTAssertEqual(try evaluate("Add", [a, b])[0].scalars(as: UInt8.self), [4, 8])
        XCTAssertEqual(try evaluate("Sub", [b, a])[0].scalars(as: UInt8.self), [16, 2])
    }

    func testPowMixedTypes() throws {
        let base = Tensor(shape: [3], scalars: [Int32(1), 2, 3]), e = floats([3], [4, 5, 6])
        let y = try evaluate("Pow", [base, e])[0]
        XCTAssertEqual(y.dtype, .int32)
        XCTAssertEqual(y.scalars(as: Int32.self), [1, 32, 729])
        let z = try evaluate("Pow", [floats([3], [2, -2, 4]), Tensor(shape: [3], scalars: [Int64(3), 2, -1])])[0]
        XCTAssertEqual(z.floatValues(), [8, 4, 0.25])
        XCTAssertEqual(try evaluate("Pow", [Tensor(shape: [3], scalars: [Int64(3), -1, 2]), Tensor(shape: [3], scalars: [Int64(4), 3, -1])])[0].scalars(as: Int64.self), [81, -1, 0])
    }

    // MARK: Special values

    func testNaNAndInfinityInUnaryOps() throws {
        let nan = Float.nan, inf = Float.infinity
        assertBits(try evaluate("Relu", [floats([4], [nan, -0.0, -1, 2])])[0].floatValues(), [nan, -0.0, 0, 2])
        let sq = try evaluate("Sqrt", [floats([3], [-1, -0.0, inf])])[0].floatValues()
        XCTAssertTrue(sq[0].isNaN)
        assertBits(Array(sq[1...]), [-0.0, inf])
        assertBits(try evaluate("Log", [floats([3], [0, -0.0, 1])])[0].floatValues(), [-inf, -inf, 0])
        assertBits(try evaluate("Reciprocal", [floats([2], [0, -0.0])])[0].floatValues(), [inf, -inf])
        XCTAssertEqual(try evaluate("Sigmoid", [floats([3], [-inf, 0, inf])])[0].floatValues(), [0, 0.5, 1])
        // σ(-100) = e^-100 / (1 + e^-100) ≈ 3.72e-44, a float32 subnormal, not 0 or NaN.
        let tiny = try evaluate("Sigmoid", [floats([1], [-100])])[0].floatValues()[0]
        XCTAssertTrue(tiny > 0 && tiny < 1e-30, "\(tiny)")
        let sp = try evaluate("Softplus", [floats([3], [100, -100, 0])])[0].floatValues()
        XCTAssertEqual(sp[0], 100)
        XCTAssertTrue(sp[1] > 0 && sp[1] < 1e-30, "\(sp[1])")
        XCTAssertEqual(sp[2], logf(2))
        XCTAssertEqual(try evaluate("Tanh", [floats([2], [-inf, inf])])[0].floatValues(), [-1, 1])
        XCTAssertEqual(try evaluate("Exp", [floats([2], [-inf, inf])])[0].floatValues(), [0, inf])
        assertBits(try evaluate("Abs", [floats([2], [-0.0, -inf])])[0].floatValues(), [0, inf])
        assertBits(try evaluate("Neg", [floats([2], [0, nan])])[0].floatValues().map { $0.isNaN ? Float.nan : $0 }, [-0.0, Float.nan])
    }

    func testFastFloatExpIsAccurateOverItsRange() {
        // Relative error against float64 exp, in float32 ulps (2^-23 relative), over normal results.
        var worst = 0.0
        var x: Float = -87
        while x < 88.7 {
            let exact = Foundation.exp(Double(x)), got = Double(FloatExp.exp(x))
            worst = max(worst, Swift.abs(got - exact) / exact * 8_388_608)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 2.5)
        XCTAssertEqual(FloatExp.exp(0), 1)
        XCTAssertEqual(FloatExp.exp(-.infinity), 0)
        XCTAssertEqual(FloatExp.exp(.infinity), .infinity)
        XCTAssertEqual(FloatExp.exp(89), .infinity)
        XCTAssertTrue(FloatExp.exp(.nan).isNaN)
        // Gradual underflow: e^-100 ≈ 3.72e-44 is a subnormal, not 0.
        XCTAssertEqual(Double(FloatExp.exp(-100)), Foundation.exp(-100.0), accuracy: 2e-45)
    }

    func testRoundHalfToEvenAndSign() throws {
        XCTAssertEqual(try evaluate("Round", [floats([7], [0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6])])[0].floatValues(), [0, 2, 2, -0.0, -2, 2, -3])
        let s = try evaluate("Sign", [floats([4], [-3, 0, 2, .nan])])[0].floatValues()
        XCTAssertEqual(Array(s.prefix(3)), [-1, 0, 1])
        XCTAssertTrue(s[3].isNaN)
        XCTAssertEqual(try evaluate("Sign", [Tensor(shape: [3], scalars: [Int64(-5), 0, 9])])[0].scalars(as: Int64.self), [-1, 0, 1])
    }

    func testMaxMinPropagateNaNAndBroadcast() throws {
        let y = try evaluate("Max", [floats([3], [1, .nan, 3]), floats([1], [2]), floats([1, 1], [0])])[0]
        XCTAssertEqual(y.shape, [1, 3])
        let v = y.floatValues()
        XCTAssertEqual(v[0], 2); XCTAssertTrue(v[1].isNaN); XCTAssertEqual(v[2], 3)
        XCTAssertEqual(try evaluate("Min", [Tensor(shape: [2], scalars: [Int32(-1), 7]), Tensor(shape: [2], scalars: [Int32(3), 4])])[0].scalars(as: Int32.self), [-1, 4])
        XCTAssertEqual(try evaluate("Mean", [floats([2], [1, 2]), floats([2], [3, 6])])[0].floatValues(), [2, 4])
    }

    func testComparisonsWithNaNAndSignedZero() throws {
        let a = floats([3], [.nan, -0.0, 1]), b = floats([3], [.nan, 0, 2])
        XCTAssertEqual(try evaluate("Equal", [a, b])[0].scalars(as: Bool.self), [false, true, false])
        XCTAssertEqual(try evaluate("Less", [a, b])[0].scalars(as: Bool.self), [false, false, true])
        XCTAssertEqual(try evaluate("GreaterOrEqual", [a, b])[0].scalars(as: Bool.self), [false, true, false])
        let t = Tensor(shape: [2], scalars: [true, false]), f = Tensor(shape: [2, 1], scalars: [true, false])
        XCTAssertEqual(try evaluate("Xor", [t, f])[0].scalars(as: Bool.self), [false, true, true, false])
        XCTAssertEqual(try evaluate("Not", [t])[0].scalars(as: Bool.self), [false, true])
    }

    func testWhereBroadcastsThreeWays() throws {
        let c = Tensor(shape: [2, 1], scalars: [true, false])
        let x = Tensor(shape: [3], scalars: [Int64(1), 2, 3])
        let y = Tensor(shape: [], scalars: [Int64(-1)])
        let z = try evaluate("Where", [c, x, y])[0]
        XCTAssertEqual(z.shape, [2, 3])
        XCTAssertEqual(z.scalars(as: Int64.self), [1, 2, 3, -1, -1, -1])
    }

    // MARK: Activations with attributes

    func testActivationFormulas() throws {
        let x = floats([4], [-2, -0.5, 0, 3])
        let alpha = [Attribute(name: "alpha", value: .float(0.1))]
        XCTAssertEqual(try evaluate("LeakyRelu", [x], alpha)[0].floatValues(), [-0.2, -0.05, 0, 3])
        let elu = try evaluate("Elu", [x])[0].floatValues()
        XCTAssertEqual(elu[0], expf(-2) - 1, accuracy: 1e-6)
        XCTAssertEqual(Array(elu[2...]), [0, 3])
        assertClose(try evaluate("HardSigmoid", [x])[0].floatValues(), [0.1, 0.4, 0.5, 1], 1e-7)
        assertClose(try evaluate("HardSwish", [floats([4], [-4, -1, 1, 4])])[0].floatValues(), [0, -1.0 / 3, 2.0 / 3, 4], 1e-6)
        let gelu = try evaluate("Gelu", [floats([2], [1, -1])], opset: 20)[0].floatValues()
        XCTAssertEqual(gelu[0], 0.8413447, accuracy: 1e-6)   // Φ(1)
        XCTAssertEqual(gelu[1], -0.1586553, accuracy: 1e-6)
        let geluTanh = try evaluate("Gelu", [floats([1], [1])], [Attribute(name: "approximate", value: .string("tanh"))], opset: 20)[0]
        XCTAssertEqual(geluTanh.floatValues()[0], 0.8411920, accuracy: 1e-6)
        let prelu = try evaluate("PRelu", [floats([1, 2, 1, 2], [-1, 1, -1, 1]), floats([2, 1, 1], [0.5, 2])])[0]
        XCTAssertEqual(prelu.floatValues(), [-0.5, 1, -2, 1])
    }

    func testClipBoundsAndIntegers() throws {
        let x = floats([3], [-2, 0, 6])
        XCTAssertEqual(try evaluate("Clip", [x, Tensor(scalar: Float(2)), Tensor(scalar: Float(1))])[0].floatValues(), [1, 1, 1])
        XCTAssertEqual(try evaluate("Clip", [x, nil, Tensor(scalar: Float(1))])[0].floatValues(), [-2, 0, 1])
        let old = try evaluate("Clip", [x], [Attribute(name: "min", value: .float(-1)), Attribute(name: "max", value: .float(5))], opset: 6)[0]
        XCTAssertEqual(old.floatValues(), [-1, 0, 5])
        let i = Tensor(shape: [3], scalars: [Int8(-128), 0, 127])
        XCTAssertEqual(try evaluate("Clip", [i, Tensor(scalar: Int8(-5)), Tensor(scalar: Int8(5))], opset: 13)[0].scalars(as: Int8.self), [-5, 0, 5])
    }

    // MARK: Cast and friends

    func testCastSemantics() throws {
        let x = floats([5], [-1.7, 2.9, .nan, 0, -0.0])
        let toInt = try evaluate("Cast", [x], [Attribute(name: "to", value: .int(Int64(DType.int32.rawValue)))])[0]
        XCTAssertEqual(toInt.scalars(as: Int32.self), [-1, 2, 0, 0, 0])
        let toBool = try evaluate("Cast", [x], [Attribute(name: "to", value: .int(Int64(DType.bool.rawValue)))])[0]
        XCTAssertEqual(toBool.scalars(as: Bool.self), [true, true, true, false, false])
        let like = try evaluate("CastLike", [Tensor(shape: [2], scalars: [Int64(3), -2]), Tensor(scalar: Double(0))])[0]
        XCTAssertEqual(like.dtype, .float64)
        XCTAssertEqual(like.scalars(as: Double.self), [3, -2])
        XCTAssertThrowsError(try evaluate("Cast", [x], [Attribute(name: "to", value: .int(Int64(DType.string.rawValue)))])) { e in
            XCTAssertTrue("\(e)".contains("string tensors are not supported"), "\(e)")
        }
    }

    func testDropoutIsIdentityWithTrueMask() throws {
        let x = floats([2, 2], [1, 2, 3, 4])
        let outs = try evaluate("Dropout", [x, Tensor(scalar: Float(0.5))], opset: 13, outputs: 2)
        XCTAssertEqual(outs[0].floatValues(), [1, 2, 3, 4])
        XCTAssertEqual(outs[1].dtype, .bool)
        XCTAssertEqual(outs[1].scalars(as: Bool.self), [true, true, true, true])
        XCTAssertThrowsError(try evaluate("Dropout", [x, Tensor(scalar: Float(0.5)), Tensor(scalar: true)], opset: 13)) { e in
            XCTAssertTrue("\(e)".contains("training_mode"), "\(e)")
        }
        XCTAssertEqual(try evaluate("Identity", [x])[0].floatValues(), [1, 2, 3, 4])
    }

    func testHalfPrecisionGoesThroughFloat32() throws {
        let h = floats([3], [1, -2, 0.5]).converted(to: .float16)
        let y = try evaluate("Add", [h, h])[0]
        XCTAssertEqual(y.dtype, .float16)
        XCTAssertEqual(y.floatValues(), [2, -4, 1])
        let b = floats([2], [-1, 4]).converted(to: .bfloat16)
        let r = try evaluate("Relu", [b])[0]
        XCTAssertEqual(r.dtype, .bfloat16)
        XCTAssertEqual(r.floatValues(), [0, 4])
    }
}
