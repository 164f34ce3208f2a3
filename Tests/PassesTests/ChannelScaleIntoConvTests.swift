import XCTest
import ModelIR
@testable import Passes
import Runtime
@testable import TensorCore

final class ChannelScaleIntoConvTests: XCTestCase {
    /// A squeeze-and-excitation block as exported: `g = GlobalAveragePool(x)`, `s = Sigmoid(Conv(g))`,
    /// `m = Mul(x, s)` (or `Mul(s, x)`), `y = Conv(m, W, B)` with a 1×1 weight of `outChannels` rows.
    static func seBlock(_ data: inout PassCheck, batch: Int, channels: Int, outChannels: Int, height: Int, width: Int,
                        scaleFirst: Bool = false, project: [Attribute] = [], weight: [Int]? = nil) -> Graph {
        var g = Graph(name: "se")
        let dims: [Dim] = [batch, channels, height, width].map { .fixed($0) }
        g.inputs = [ValueInfo("x", .float32, dims)]
        g.outputs = [ValueInfo("y", .float32, [])]
        g.addInitializer(Initializer(name: "Wfc", tensor: data.random([channels, channels, 1, 1])))
        g.addInitializer(Initializer(name: "Bfc", tensor: data.random([channels])))
        g.addInitializer(Initializer(name: "W", tensor: data.random(weight ?? [outChannels, channels, 1, 1])))
        g.addInitializer(Initializer(name: "B", tensor: data.random([outChannels])))
        g.nodes = [
            Node(name: "gap", opType: "GlobalAveragePool", inputs: ["x"], outputs: ["g"]),
            conv("fc", ["g", "Wfc", "Bfc"], "f"),
            Node(name: "gate", opType: "Sigmoid", inputs: ["f"], outputs: ["s"]),
            Node(name: "scale", opType: "Mul", inputs: scaleFirst ? ["s", "x"] : ["x", "s"], outputs: ["m"]),
            Node(name: "project", opType: "Conv", inputs: ["m", "W", "B"], outputs: ["y"], attributes: project),
        ]
        return g
    }

    /// Everything the executor applies but this pass: the reference whose bits the fused plan must equal.
    static let withoutScale = PassPipeline(PassPipeline.executorDefault.passes.filter { !($0 is ChannelScaleIntoConv) })

    func testSqueezeExcitationMulMovesIntoTheConvWithTheSameBits() throws {
        // (batch, channels, out, height, width): one image (the scale applied as the input is
        // packed), a 7×7 plane over many channels (the transposed product with AVX-512: the
        // scaled input made first), two images (made first), a plane wider than one panel.
        let shapes = [(1, 24, 16, 6, 5), (1, 64, 96, 7, 7), (2, 16, 8, 4, 4), (1, 40, 20, 9, 11)]
        XCTAssertTrue(!DirectGemm.usesAVX512 || DirectGemm.prefersTransposed(m: 96, n: 49), "the 7×7 case takes the transposed product")
        defer { DirectGemm.force(nil) }
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            for (n, c, o, h, w) in shapes {
                for scaleFirst in [false, true] {
                    let why = "\(variant) N\(n) C\(c) M\(o) \(h)×\(w) scale first \(scaleFirst)"
                    var data = PassCheck()
                    let g = Self.seBlock(&data, batch: n, channels: c, outChannels: o, height: h, width: w, scaleFirst: scaleFirst)
                    let model = Model(graph: g)
                    let fused = try Executor(model: model)
                    let project = try XCTUnwrap(fused.optimizedGraph.nodes.first { $0.name == "project" }, why)
                    XCTAssertFalse(fused.optimizedGraph.nodes.contains { $0.opType == "Mul" }, why)
                    XCTAssertEqual(project.inputs, scaleFirst ? ["s", "W", "B", "x"] : ["x", "W", "B", "s"], why)
                    XCTAssertTrue(project.hasFusedInputScale, why)
                    XCTAssertEqual(fused.removedValues["m"], "multiplied into Conv 'project' as it reads its input (channel scale)")
                    let reference = try Executor(model: model, passes: Self.withoutScale)
                    XCTAssertTrue(reference.optimizedGraph.nodes.contains { $0.opType == "Mul" }, why)
                    let feeds = ["x": data.random([n, c, h, w])]
                    let transposedBefore = DirectGemm.transposedRuns
                    let got = try XCTUnwrap(try fused.run(feeds)["y"])
                    let transposed = DirectGemm.transposedRuns - transposedBefore
                    let want = try XCTUnwrap(try reference.run(feeds)["y"])
                    // One image with AVX-512: the SE block's first Conv (one position) and, in the
                    // 7×7 case, the project Conv run transposed.
                    let expected = variant == .avx512 && n == 1
                        ? [DirectGemm.prefersTransposed(m: c, n: 1), DirectGemm.prefersTransposed(m: o, n: h * w)].filter { $0 }.count : 0
                    XCTAssertEqual(transposed, expected, why)
                    if variant == .avx512 && (h, w) == (7, 7) { XCTAssertEqual(transposed, 2, why) }
                    XCTAssertEqual(got.shape, [n, o, h, w], why)
                    XCTAssertTrue(got.isBitwiseEqual(to: want), why)
                    // And within rounding of the graph as written.
                    try PassCheck.assertSameOutputs(g, fused.optimizedGraph, feeds)
                }
            }
        }
    }

    /// A Conv with a fused input scale whose operands are not a tensor and its per-channel scale
    /// multiplies them out as Mul does (broadcasting), then convolves.
    func testOtherOperandShapesAreMultipliedOutFirst() throws {
        var data = PassCheck()
        for scaleShape in [[1, 1, 5, 6], [6], [1, 3, 5, 1], [1, 3, 5, 6]] {
            var g = Graph(name: "scaled")
            g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(3), .fixed(5), .fixed(6)]), ValueInfo("t", .float32, scaleShape.map { .fixed($0) })]
            g.outputs = [ValueInfo("y", .float32, [])]
            g.addInitializer(Initializer(name: "W", tensor: data.random([4, 3, 1, 1])))
            var written = g
            written.nodes = [Node(name: "mul", opType: "Mul", inputs: ["t", "x"], outputs: ["m"]), conv("p", ["m", "W"], "y")]
            var scaled = g
            scaled.nodes = [Node(name: "p", opType: "Conv", inputs: ["t", "W", "", "x"], outputs: ["y"],
                                 attributes: [Attribute(name: ChannelScaleIntoConv.attribute, value: .int(1))])]
            let feeds = ["x": data.random([1, 3, 5, 6]), "t": data.random(scaleShape)]
            let want = try Executor(model: Model(graph: written), passes: .none).run(feeds)["y"]!
            let got = try Executor(model: Model(graph: scaled), passes: .none).run(feeds)["y"]!
            XCTAssertEqual(got.shape, [1, 4, 5, 6], "\(scaleShape)")
            XCTAssertTrue(got.isBitwiseEqual(to: want), "\(scaleShape)")
        }
    }

    func testGuards() throws {
        var data = PassCheck()
        func block(_ edit: (inout Graph) -> Void = { _ in }, project: [Attribute] = [], weight: [Int]? = nil) -> Graph {
            var g = Self.seBlock(&data, batch: 1, channels: 4, outChannels: 4, height: 3, width: 3, project: project, weight: weight)
            edit(&g)
            return g
        }
        let cases: [(String, Graph)] = [
            ("Mul read twice", block { $0.nodes.append(Node(opType: "Neg", inputs: ["m"], outputs: ["n"])); $0.outputs.append(ValueInfo("n", .float32, [])) }),
            ("Mul output is a graph output", block { $0.outputs.append(ValueInfo("m", .float32, [])) }),
            ("constant scale", block { $0.addInitializer(Initializer(name: "k", tensor: data.random([1, 4, 1, 1]))); $0.nodes[3].inputs = ["x", "k"] }),
            ("x · x", block { $0.nodes[3].inputs = ["x", "x"] }),
            ("legacy broadcast attribute", block { $0.nodes[3][attribute: "broadcast"] = .int(1) }),
            ("3×3 weight", block(weight: [4, 4, 3, 3])),
            ("legacy axis attribute", block { $0.nodes[3][attribute: "axis"] = .int(1) }),
            ("Conv already scaled", block { $0.nodes[4][attribute: ChannelScaleIntoConv.attribute] = .int(1) }),
            ("group 2", block(project: [Attribute(name: "group", value: .int(2))], weight: [4, 2, 1, 1])),
            ("stride 2", block(project: [Attribute(name: "strides", value: .ints([2, 2]))])),
            ("padded", block(project: [Attribute(name: "pads", value: .ints([1, 0, 1, 0]))])),
            ("SAME_UPPER", block(project: [Attribute(name: "auto_pad", value: .string("SAME_UPPER"))])),
            ("weight fed at run time", block { $0.inputs.append(ValueInfo("Wr", .float32, [])); $0.nodes[4].inputs[1] = "Wr" }),
            ("Conv reads it as its weight", block {
                $0.inputs.append(ValueInfo("Wr", .float32, []))
                $0.nodes[4].inputs = ["Wr", "m"]
            }),
        ]
        for (why, g) in cases {
            let (h, r) = try g.applying(ChannelScaleIntoConv())
            XCTAssertEqual(r.rewrites, 0, why)
            XCTAssertEqual(h.nodes.map(\.opType), g.nodes.map(\.opType), why)
            XCTAssertEqual(h.nodes.map(\.inputs), g.nodes.map(\.inputs), why)
        }
        // The unguarded block does move (so the guards above are what stop it).
        let (h, r) = try block().applying(ChannelScaleIntoConv())
        XCTAssertEqual(r.rewrites, 1)
        XCTAssertEqual(h.nodes.map(\.opType), ["GlobalAveragePool", "Conv", "Sigmoid", "Conv"])
    }

    /// Hooks asking for the product are refused by the default plan, naming where it went, and
    /// `Executor.observing` keeps it while still fusing the rest.
    func testObservingKeepsTheProduct() throws {
        var data = PassCheck()
        let model = Model(graph: Self.seBlock(&data, batch: 1, channels: 8, outChannels: 4, height: 5, width: 5))
        let feeds = ["x": data.random([1, 8, 5, 5])]
        let fast = try Executor(model: model)
        XCTAssertThrowsError(try fast.run(feeds, hooks: ExecutionHooks(names: ["m"]) { _, _ in })) { e in
            XCTAssertTrue("\(e)".contains("multiplied into Conv 'project'"), "\(e)")
        }
        let observing = try Executor.observing(model, names: ["m"])
        XCTAssertTrue(observing.optimizedGraph.nodes.contains { $0.opType == "Mul" })
        XCTAssertNotNil(observing.optimizedGraph.nodes.first { $0.name == "fc" }?.fusedActivation, "Sigmoid still fused")
        var seen: Tensor?
        let out = try observing.run(feeds, hooks: ExecutionHooks(names: ["m"]) { _, t in seen = t })
        XCTAssertEqual(seen?.shape, [1, 8, 5, 5])
        XCTAssertTrue(out["y"]!.isBitwiseEqual(to: try fast.run(feeds)["y"]!))
        // Names the passes keep: the fast plan itself.
        XCTAssertTrue(try Executor.observing(model, names: ["s"]).optimizedGraph.nodes.allSatisfy { $0.opType != "Mul" })
    }
}
