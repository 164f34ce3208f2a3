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
}
