import ModelIR
import TensorCore
import XCTest
@testable import Quantize

/// The plan with layers kept in float (`only`, as mixed precision writes it) must need no range
/// that calibration, run for the full plan, did not observe.
final class QuantPlanTests: XCTestCase {
    /// x → Conv → a; x → MaxPool → p; Concat(p, a) → y. MaxPool is a pass-through op: in the full
    /// plan its output shares x's scale because the Conv quantizes x.
    func model() -> Model {
        let b = GraphBuilder(seed: 3)
        let x = b.input("x", .float32, [.fixed(1), .fixed(4), .fixed(8), .fixed(8)])
        let a = b.conv(x, 4, 4, kernel: 3, pad: 1, bias: true, name: "conv")
        let p = b.op("MaxPool", [x], ["kernel_shape": .ints([1, 1])], name: "pool")
        let y = b.op("Concat", [p, a], ["axis": .int(1)], name: "concat")
        b.output(y)
        return b.build(opset: 17)
    }

    func testKeepingAReaderOfAPassThroughInputInFloatKeepsTheSharedScale() throws {
        let m = model()
        let g = m.graph
        let conv = try XCTUnwrap(g.nodes.firstIndex { $0.name == "conv" })
        let pool = try XCTUnwrap(g.nodes.firstIndex { $0.name == "pool" })
        let concat = try XCTUnwrap(g.nodes.firstIndex { $0.name == "concat" })
        let p = g.nodes[pool].outputs[0], x = g.nodes[conv].inputs[0], a = g.nodes[conv].outputs[0]

        let full = Quantizer.plan(m, options: QuantizeOptions())
        XCTAssertEqual(full.roles[pool], .passThrough)
        XCTAssertEqual(full.sharesWith[p], x)
        XCTAssertEqual(Set(full.calibrated), [x, a])

        // The Conv kept in float: nothing quantized reads x any more, yet the pool's output
        // still takes x's scale (before the fix it became a tensor of its own, never observed).
        let mixed = Quantizer.plan(m, options: QuantizeOptions(), only: [concat])
        XCTAssertNil(mixed.roles[conv])
        XCTAssertEqual(mixed.roles[pool], .passThrough)
        XCTAssertEqual(mixed.sharesWith[p], x)
        XCTAssertEqual(Set(mixed.calibrated), [x, a])

        // Every subset of the quantized nodes: calibrated ⊆ the full plan's, and the model is
        // written from the full plan's ranges alone.
        let calib = MinMaxCalibrator(ranges: Dictionary(uniqueKeysWithValues: full.calibrated.map { ($0, (min: Float(-1), max: Float(2))) }), samples: 1)
        let chosen = full.roles.filter { $0.value != .passThrough }.map(\.key).sorted()
        for mask in 0..<(1 << chosen.count) {
            let only = Set(chosen.indices.filter { mask & (1 << $0) != 0 }.map { chosen[$0] })
            let plan = Quantizer.plan(m, options: QuantizeOptions(), only: only)
            XCTAssertTrue(Set(plan.calibrated).isSubset(of: Set(full.calibrated)), "\(only)")
            if plan.nodes.isEmpty { continue }
            XCTAssertNoThrow(try Quantizer.write(m, nodes: Array(only), calibration: calib, options: QuantizeOptions()), "\(only)")
        }
    }

    /// Every subset of the nodes a format quantizes, kept as `only`: the plan calibrates nothing
    /// the full plan did not, and the model is written from the full plan's ranges alone.
    func checkSubsets(_ m: Model, format: QuantFormat, file: StaticString = #filePath, line: UInt = #line) {
        var options = QuantizeOptions()
        options.format = format
        let (fullCalibrated, chosen): ([String], [Int])
        switch format {
        case .qdq:
            let full = Quantizer.plan(m, options: options)
            (fullCalibrated, chosen) = (full.calibrated, full.roles.filter { $0.value != .passThrough }.map(\.key).sorted())
        case .qoperator:
            let full = QOperatorWriter.plan(m, options: options)
            (fullCalibrated, chosen) = (full.calibrated, full.nodes)
        }
        XCTAssertFalse(chosen.isEmpty, file: file, line: line)
        let calib = MinMaxCalibrator(ranges: Dictionary(uniqueKeysWithValues: fullCalibrated.map { ($0, (min: Float(-1), max: Float(2))) }), samples: 1)
        for mask in 1..<(1 << chosen.count) {
            let only = Set(chosen.indices.filter { mask & (1 << $0) != 0 }.map { chosen[$0] })
            let calibrated = format == .qdq ? Quantizer.plan(m, options: options, only: only).calibrated
                                            : QOperatorWriter.plan(m, options: options, only: only).calibrated
            XCTAssertTrue(Set(calibrated).isSubset(of: Set(fullCalibrated)), "\(format) \(only): \(calibrated) vs \(fullCalibrated)", file: file, line: line)
            XCTAssertNoThrow(try Quantizer.write(m, nodes: Array(only), calibration: calib, options: options), "\(format) \(only)", file: file, line: line)
        }
    }

    func testEverySubsetOfThePoolModel() {
        checkSubsets(model(), format: .qdq)
        checkSubsets(model(), format: .qoperator)
    }

    /// x → Conv → Softmax → Conv: the Softmax output's range is [0, 1] (fixed, never calibrated),
    /// also when the Softmax itself is kept in float and the second Conv quantizes its output.
    func testSoftmaxKeptInFloatKeepsItsFixedRange() throws {
        let b = GraphBuilder(seed: 5)
        let x = b.input("x", .float32, [.fixed(1), .fixed(4), .fixed(6), .fixed(6)])
        let a = b.conv(x, 4, 4, kernel: 1, bias: true, name: "conv1")
        let sm = b.op("Softmax", [a], ["axis": .int(1)], name: "softmax")
        b.output(b.conv(sm, 4, 3, kernel: 1, bias: true, name: "conv2"))
        let m = b.build(opset: 17)
        let conv2 = try XCTUnwrap(m.graph.nodes.firstIndex { $0.name == "conv2" })
        let plan = Quantizer.plan(m, options: QuantizeOptions(), only: [conv2])
        XCTAssertEqual(plan.fixedRanges[sm], 0...1)
        XCTAssertFalse(plan.calibrated.contains(sm))
        checkSubsets(m, format: .qdq)
    }

    /// x → Conv → Reshape → Conv in the QOperator format: the Reshape is a direct op of the full
    /// plan (its output the first Conv's integers); with the first Conv kept in float its output
    /// takes the first Conv's range instead of one calibration never observed.
    func testQOperatorDirectOpAfterAFloatLayerTakesItsSourceRange() throws {
        let b = GraphBuilder(seed: 9)
        let x = b.input("x", .float32, [.fixed(1), .fixed(4), .fixed(6), .fixed(6)])
        let a = b.conv(x, 4, 8, kernel: 1, bias: true, name: "conv1")
        let shape = b.initializer("shape", Tensor(shape: [4], scalars: [Int64](arrayLiteral: 1, 4, 12, 6)))
        let r = b.op("Reshape", [a, shape], name: "reshape")
        b.output(b.conv(r, 4, 3, kernel: 1, bias: true, name: "conv2"))
        let m = b.build(opset: 17)
        let conv1 = try XCTUnwrap(m.graph.nodes.firstIndex { $0.name == "conv1" })
        let conv2 = try XCTUnwrap(m.graph.nodes.firstIndex { $0.name == "conv2" })
        var options = QuantizeOptions()
        options.format = .qoperator
        let full = QOperatorWriter.plan(m, options: options)
        XCTAssertFalse(full.calibrated.contains(r))   // the full plan passes conv1's integers through
        let mixed = QOperatorWriter.plan(m, options: options, only: [conv2])
        XCTAssertNil(mixed.kinds[conv1])
        XCTAssertEqual(mixed.rangeOf[r], m.graph.nodes[conv1].outputs[0])
        checkSubsets(m, format: .qoperator)
    }
}
