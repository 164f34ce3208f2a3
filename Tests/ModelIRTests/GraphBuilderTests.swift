import Foundation
import XCTest
@testable import ModelIR
import TensorCore

/// GraphBuilder and the reference architectures. (That the built graphs run in ONNX Runtime and
/// pass onnx.checker is checked by Tests/Interop/test_roundtrip.py.)
final class GraphBuilderTests: XCTestCase {
    func testBuildsAValidGraph() throws {
        let b = GraphBuilder(name: "tiny", seed: 3)
        let x = b.input("x", .float32, [.symbolic("N"), .fixed(3), .fixed(8), .fixed(8)])
        var h = b.relu(b.batchNorm(b.conv(x, 3, 4, kernel: 3, pad: 1, bias: true, name: "c1"), 4, name: "bn1"))
        h = b.maxPool(h, kernel: 2, stride: 2)
        h = b.flatten(b.globalAveragePool(h))
        let y = b.linear(h, 4, 2, name: "fc")
        b.output(y, .float32, [.symbolic("N"), .fixed(2)])
        let m = b.build(opset: 17)

        let g = m.graph
        XCTAssertNoThrow(try g.checkTopologicalOrder())
        XCTAssertEqual(g.nodes.map(\.opType), ["Conv", "BatchNormalization", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"])
        XCTAssertEqual(Set(g.nodes.map(\.name)).count, g.nodes.count, "node names are unique")
        let produced = g.nodes.flatMap(\.outputs)
        XCTAssertEqual(Set(produced).count, produced.count, "every value has one producer")
        XCTAssertEqual(g.initializer(named: "c1.weight")?.tensor.shape, [4, 3, 3, 3])
        XCTAssertEqual(g.initializer(named: "fc.weight")?.tensor.shape, [2, 4])
        XCTAssertEqual(g.nodes[0].ints("pads"), [1, 1, 1, 1])
        XCTAssertEqual(g.nodes.last?.int("transB"), 1)
        XCTAssertEqual(m.opset(), 17)

        // Uniform in ±sqrt(3 / fan_in), fan_in = 27.
        let bound = (3 / Float(27)).squareRoot()
        let w = g.initializer(named: "c1.weight")!.tensor.scalars(as: Float.self)
        XCTAssertTrue(w.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(Set(w).count, 100, "random weights are not constant")

        // Same seed, same weights; serializes and reads back unchanged.
        let again = GraphBuilder(name: "tiny", seed: 3)
        _ = again.conv(again.input("x", .float32, [.fixed(1), .fixed(3), .fixed(8), .fixed(8)]), 3, 4, kernel: 3, pad: 1, bias: true, name: "c1")
        XCTAssertTrue(again.graph.initializer(named: "c1.weight")!.tensor.isBitwiseEqual(to: g.initializer(named: "c1.weight")!.tensor))
        let back = try ModelReader.read(bytes: try ModelWriter.serialize(m))
        XCTAssertEqual(back.graph.nodes.map(\.name), g.nodes.map(\.name))
        XCTAssertEqual(back.graph.inputs.first?.type?.shape, [.symbolic("N"), .fixed(3), .fixed(8), .fixed(8)])
        for i in g.initializers {
            XCTAssertTrue(back.graph.initializer(named: i.name)!.tensor.isBitwiseEqual(to: i.tensor), i.name)
        }
    }

    /// Learnable parameter counts equal torchvision's (`sum(p.numel() for p in model.parameters())`):
    /// BatchNormalization's running mean and variance are buffers there, not parameters, and
    /// ReLU6's Clip bounds (scalar initializers here) do not exist. The export-style models are
    /// counted on their BN-kept build (their scalars live in Constant nodes, not initializers).
    func testReferenceArchitectureParameterCounts() {
        let torchvision: [(ReferenceArchitecture, Int)] = [
            (.resnet18, 11_689_512), (.resnet50, 25_557_032), (.mobilenetV2, 3_504_872), (.squeezenet1_1, 1_235_496),
            (.mobilenetV3Small, 2_542_856), (.mobilenetV3Large, 5_483_032), (.efficientnetB0, 5_288_548),
        ]
        for (arch, expected) in torchvision {
            let m = arch.build(randomWeights: false, batchNorm: .kept)
            let params = m.graph.initializers.filter { !$0.name.hasSuffix(".mean") && !$0.name.hasSuffix(".var") && !$0.name.hasPrefix("clip_") }
                .reduce(0) { $0 + $1.tensor.count }
            XCTAssertEqual(params, expected, arch.rawValue)
            XCTAssertNoThrow(try m.graph.checkTopologicalOrder(), arch.rawValue)
            XCTAssertEqual(m.graph.outputs.map(\.name), ["logits"])
        }
    }

    /// `_make_divisible` as torchvision computes it, on the channel counts its models use.
    func testMakeDivisible() {
        XCTAssertEqual(ReferenceArchitecture.makeDivisible(16 / 4), 8)
        XCTAssertEqual(ReferenceArchitecture.makeDivisible(72 / 4), 24)
        XCTAssertEqual(ReferenceArchitecture.makeDivisible(120 / 4), 32)
        XCTAssertEqual(ReferenceArchitecture.makeDivisible(960 / 4), 240)
        XCTAssertEqual(ReferenceArchitecture.makeDivisible(96 / 4), 24)
        XCTAssertEqual(ReferenceArchitecture.makeDivisible(13), 16)
        XCTAssertEqual(ReferenceArchitecture.makeDivisible(11), 16, "8 would be below 90 % of 11")
    }

    /// Same seed, same bytes; the export-style models read one weight through an Identity
    /// placed first, and every node's inputs are defined before it.
    func testExportStyleBuildsAreDeterministic() throws {
        for arch in ReferenceArchitecture.allCases where arch.isExportStyle {
            let a = arch.build(seed: 7), b = arch.build(seed: 7), c = arch.build(seed: 8)
            XCTAssertEqual(a.graph.nodes.map(\.name), b.graph.nodes.map(\.name))
            for i in a.graph.initializers {
                XCTAssertTrue(b.graph.initializer(named: i.name)!.tensor.isBitwiseEqual(to: i.tensor), i.name)
            }
            let w = try XCTUnwrap(a.graph.initializers.first { $0.name.hasSuffix(".weight") && $0.tensor.shape.count == 4 })
            XCTAssertFalse(c.graph.initializer(named: w.name)!.tensor.isBitwiseEqual(to: w.tensor), "another seed, other weights")
            XCTAssertEqual(a.graph.nodes.first?.opType, "Identity")
            XCTAssertNoThrow(try a.graph.checkTopologicalOrder(), arch.rawValue)
        }
    }
}
