import XCTest
import ModelIR
@testable import Runtime
import TensorCore

private func evaluate(_ op: String, _ inputs: [Tensor?], _ attributes: [Attribute] = [], opset: Int = 18) throws -> Tensor {
    let node = Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" }, outputs: ["y"], attributes: attributes)
    guard let impl = OpRegistry.standard.implementation(op, domain: "", opset: opset) else {
        throw RuntimeError.unsupported(op: op, domain: "", opset: opset, node: op)
    }
    return try impl.kernel(inputs, KernelContext(node: node, opset: opset))[0]
}

private func infer(_ op: String, _ x: TensorInfo, axes: Tensor?, _ attributes: [Attribute] = [], opset: Int = 18) throws -> TensorInfo {
    let node = Node(opType: op, inputs: axes == nil ? ["x"] : ["x", "axes"], outputs: ["y"], attributes: attributes)
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
    let infos: [TensorInfo?] = axes == nil ? [x] : [x, TensorInfo(axes!)]
    return try impl.infer(infos, axes == nil ? [nil] : [nil, axes], KernelContext(node: node, opset: opset))[0]
}

private func axes(_ a: [Int64]) -> Tensor { Tensor(shape: [a.count], scalars: a) }
private func keep(_ k: Int64) -> Attribute { Attribute(name: "keepdims", value: .int(k)) }

/// x = 0..<12 as [2, 3, 2].
private let x232 = Tensor(shape: [2, 3, 2], scalars: (0..<12).map(Float.init))

final class ReduceTests: XCTestCase {
    func testReduceSumOverNonContiguousAxes() throws {
        // Sum over axes 0 and 2: for j in 0..<3, Σ_{i,k} x[i,j,k] = (2j)+(2j+1)+(6+2j)+(7+2j) = 8j + 14.
        let y = try evaluate("ReduceSum", [x232, axes([0, 2])], [keep(0)], opset: 13)
        XCTAssertEqual(y.shape, [3])
        XCTAssertEqual(y.floatValues(), [14, 22, 30])
        let k = try evaluate("ReduceSum", [x232, axes([-1, 0])], opset: 13)
        XCTAssertEqual(k.shape, [1, 3, 1])
        XCTAssertEqual(try infer("ReduceSum", TensorInfo(x232), axes: axes([0, 2]), opset: 13), TensorInfo(.float32, [1, 3, 1]))
    }

    func testAxesAttributeBeforeOpset18() throws {
        let y = try evaluate("ReduceMean", [x232], [Attribute(name: "axes", value: .ints([1])), keep(0)], opset: 13)
        XCTAssertEqual(y.shape, [2, 2])
        XCTAssertEqual(y.floatValues(), [2, 3, 8, 9])
        XCTAssertEqual(try evaluate("ReduceMax", [x232], [keep(0)], opset: 11).floatValues(), [11])
    }

    func testEmptyAxesReduceAllOrNothing() throws {
        XCTAssertEqual(try evaluate("ReduceSum", [x232, axes([])], opset: 13).shape, [1, 1, 1])
        XCTAssertEqual(try evaluate("ReduceSum", [x232], opset: 13).floatValues(), [66])
        let noop = try evaluate("ReduceSum", [x232, axes([])], [Attribute(name: "noop_with_empty_axes", value: .int(1))], opset: 13)
        XCTAssertEqual(noop.shape, [2, 3, 2])
        XCTAssertEqual(noop.floatValues(), x232.floatValues())
    }

    func testEmptySetIdentities() throws {
        let empty = Tensor(dtype: .float32, shape: [2, 0, 4])
        let a = axes([1])
        XCTAssertEqual(try evaluate("ReduceSum", [empty, a]).floatValues(), Array(repeating: 0, count: 8))
        XCTAssertEqual(try evaluate("ReduceProd", [empty, a]).floatValues(), Array(repeating: 1, count: 8))
        XCTAssertEqual(try evaluate("ReduceMax", [empty, a]).floatValues(), Array(repeating: -.infinity, count: 8))
        XCTAssertEqual(try evaluate("ReduceMin", [empty, a]).floatValues(), Array(repeating: .infinity, count: 8))
        XCTAssertEqual(try evaluate("ReduceLogSumExp", [empty, a]).floatValues(), Array(repeating: -.infinity, count: 8))
    }

    func testNormsAndLogSumExpAreStable() throws {
        let v = Tensor(shape: [1, 4], scalars: [Float(3), -4, 0, 0])
        XCTAssertEqual(try evaluate("ReduceL1", [v, axes([1])]).floatValues(), [7])
        XCTAssertEqual(try evaluate("ReduceL2", [v, axes([1])]).floatValues(), [5])
        XCTAssertEqual(try evaluate("ReduceSumSquare", [v, axes([1])]).floatValues(), [25])
        // log(e^1000 + e^1000) = 1000 + log 2 — without the max shift this overflows.
        let big = Tensor(shape: [2], scalars: [Float(1000), 1000])
        XCTAssertEqual(try evaluate("ReduceLogSumExp", [big, axes([0])]).floatValues()[0], 1000 + logf(2), accuracy: 1e-3)
        // NaN propagates through max.
        XCTAssertTrue(try evaluate("ReduceMax", [Tensor(shape: [3], scalars: [Float(1), .nan, 2]), axes([0])]).floatValues()[0].isNaN)
    }

    func testIntegerReductionsAreExact() throws {
        let big = Tensor(shape: [3], scalars: [Int64(1) << 60, 1, -(Int64(1) << 60)])
        XCTAssertEqual(try evaluate("ReduceSum", [big, axes([0])]).scalars(as: Int64.self), [1])
        let i = Tensor(shape: [2, 2], scalars: [Int32(-7), 2, 5, 3])
        XCTAssertEqual(try evaluate("ReduceMean", [i, axes([1])]).scalars(as: Int32.self), [-2, 4])
        XCTAssertEqual(try evaluate("ReduceMin", [i, axes([0])]).scalars(as: Int32.self), [-7, 2])
        let b = Tensor(shape: [2, 2], scalars: [true, false, false, false])
        XCTAssertEqual(try evaluate("ReduceMax", [b, axes([1])], opset: 20).scalars(as: Bool.self), [true, false])
    }

    func testArgMaxSelectLastIndexAndKeepDims() throws {
        let x = Tensor(shape: [2, 3], scalars: [Float(1), 5, 5, 2, 2, 0])
        let first = try evaluate("ArgMax", [x], [Attribute(name: "axis", value: .int(1))], opset: 13)
        XCTAssertEqual(first.shape, [2, 1])
        XCTAssertEqual(first.scalars(as: Int64.self), [1, 0])
        let last = try evaluate("ArgMax", [x], [Attribute(name: "axis", value: .int(1)), Attribute(name: "select_last_index", value: .int(1)), keep(0)], opset: 13)
        XCTAssertEqual(last.shape, [2])
        XCTAssertEqual(last.scalars(as: Int64.self), [2, 1])
        XCTAssertEqual(try evaluate("ArgMin", [x], [keep(0)], opset: 13).scalars(as: Int64.self), [0, 1, 1])
    }

    func testSoftmaxIsStableAndHonoursOpsetAxisRule() throws {
        // Large inputs: e^1000 overflows unless the max is subtracted first.
        let big = Tensor(shape: [1, 2], scalars: [Float(1000), 1000])
        XCTAssertEqual(try evaluate("Softmax", [big], opset: 13).floatValues(), [0.5, 0.5])
        let ls = try evaluate("LogSoftmax", [big], opset: 13).floatValues()
        XCTAssertEqual(ls[0], -logf(2), accuracy: 1e-6)
        // [2, 2, 2] ones: opset 13 normalizes along the last axis (1/2 each); opset 11 flattens
        // everything from axis 1 into one row of 4 (1/4 each).
        let ones = Tensor(shape: [2, 2, 2], scalars: Array(repeating: Float(1), count: 8))
        XCTAssertEqual(try evaluate("Softmax", [ones], opset: 13).floatValues(), Array(repeating: 0.5, count: 8))
        XCTAssertEqual(try evaluate("Softmax", [ones], opset: 11).floatValues(), Array(repeating: 0.25, count: 8))
        let axis0 = try evaluate("Softmax", [Tensor(shape: [2, 1], scalars: [Float(0), logf(3)])], [Attribute(name: "axis", value: .int(0))], opset: 13)
        XCTAssertEqual(axis0.floatValues()[0], 0.25, accuracy: 1e-6)
        XCTAssertEqual(axis0.floatValues()[1], 0.75, accuracy: 1e-6)
    }

    func testCumSumExclusiveAndReverse() throws {
        let x = Tensor(shape: [2, 3], scalars: [Float(1), 2, 3, 4, 5, 6])
        let ax = Tensor(scalar: Int64(1))
        XCTAssertEqual(try evaluate("CumSum", [x, ax], opset: 14).floatValues(), [1, 3, 6, 4, 9, 15])
        XCTAssertEqual(try evaluate("CumSum", [x, ax], [Attribute(name: "exclusive", value: .int(1))], opset: 14).floatValues(), [0, 1, 3, 0, 4, 9])
        XCTAssertEqual(try evaluate("CumSum", [x, ax], [Attribute(name: "reverse", value: .int(1))], opset: 14).floatValues(), [6, 5, 3, 15, 11, 6])
        XCTAssertEqual(try evaluate("CumSum", [x, Tensor(scalar: Int32(-2))], opset: 14).floatValues(), [1, 2, 3, 5, 7, 9])
    }

    func testBadAxesAreNamed() {
        XCTAssertThrowsError(try evaluate("ReduceSum", [x232, axes([3])], opset: 13)) { e in
            XCTAssertTrue("\(e)".contains("out of range"), "\(e)")
        }
        XCTAssertThrowsError(try evaluate("ReduceSum", [x232, axes([1, -2])], opset: 13)) { e in
            XCTAssertTrue("\(e)".contains("twice"), "\(e)")
        }
    }
}
