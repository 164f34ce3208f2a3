import XCTest
import ModelIR
@testable import Passes
import Runtime
import TensorCore

final class ResidualAddIntoConvTests: XCTestCase {
    /// `c = Conv(x, W, B)` (3×3, padded, `channels` → `channels`), optionally `Relu`, then
    /// `y = Add(c, x)` or `Add(x, c)`.
    static func block(_ data: inout PassCheck, channels: Int = 8, size: Int = 6, relu: Bool = false, residualFirst: Bool = false,
                      kernel: Int = 3) -> Graph {
        var g = Graph(name: "residual")
        let dims: [Dim] = [1, channels, size, size].map { .fixed($0) }
        g.inputs = [ValueInfo("x", .float32, dims)]
        g.outputs = [ValueInfo("y", .float32, [])]
        g.addInitializer(Initializer(name: "W", tensor: data.random([channels, channels, kernel, kernel])))
        g.addInitializer(Initializer(name: "B", tensor: data.random([channels])))
        let p = Int64(kernel / 2)
        g.nodes = [conv("c1", ["x", "W", "B"], "c", pads: [p, p, p, p])]
        var sum = "c"
        if relu {
            g.nodes.append(Node(name: "act", opType: "Relu", inputs: ["c"], outputs: ["a"]))
            sum = "a"
        }
        g.nodes.append(Node(name: "add", opType: "Add", inputs: residualFirst ? ["x", sum] : [sum, "x"], outputs: ["y"]))
        return g
    }

    func testSkipConnectionAddMovesIntoTheConvWithTheSameBits() throws {
        for (relu, residualFirst, kernel) in [(false, false, 3), (true, false, 3), (false, true, 1), (true, true, 1), (false, false, 5)] {
            let why = "relu \(relu) residual first \(residualFirst) \(kernel)×\(kernel)"
            var data = PassCheck()
            let g = Self.block(&data, relu: relu, residualFirst: residualFirst, kernel: kernel)
            let model = Model(graph: g)
            let fused = try Executor(model: model)
            XCTAssertEqual(fused.optimizedGraph.nodes.map(\.opType), ["Conv"], why)
            let c1 = fused.optimizedGraph.nodes[0]
            XCTAssertEqual(c1.inputs, ["x", "W", "B", "", "x"], why)
            XCTAssertEqual(c1.outputs, ["y"], why)
            XCTAssertTrue(c1.hasFusedResidual, why)
            XCTAssertEqual(c1.fusedActivation, relu ? .relu : nil, why)
            XCTAssertEqual(fused.removedValues[relu ? "a" : "c"], "added to the residual inside Conv 'c1'", why)
            let reference = try Executor(model: model, passes: .executorObservable)
            XCTAssertEqual(reference.optimizedGraph.nodes.map(\.opType), ["Conv", "Add"], why)
            let feeds = ["x": data.random([1, 8, 6, 6])]
            let got = try fused.run(feeds)["y"]!, want = try reference.run(feeds)["y"]!
            XCTAssertEqual(got.shape, [1, 8, 6, 6], why)
            XCTAssertTrue(got.isBitwiseEqual(to: want), why)
            try PassCheck.assertSameOutputs(g, fused.optimizedGraph, feeds)
        }
    }

    /// A squeeze-and-excitation block with a skip connection: the project Conv takes both the
    /// channel scale and the residual (five inputs).
    func testWithAChannelScale() throws {
        var data = PassCheck()
        var g = ChannelScaleIntoConvTests.seBlock(&data, batch: 1, channels: 12, outChannels: 12, height: 5, width: 7)
        g.nodes[4].outputs = ["p"]
        g.nodes.append(Node(name: "skip", opType: "Add", inputs: ["p", "x"], outputs: ["y"]))
        let model = Model(graph: g)
        let fused = try Executor(model: model)
        let project = try XCTUnwrap(fused.optimizedGraph.nodes.first { $0.name == "project" })
        XCTAssertEqual(project.inputs, ["x", "W", "B", "s", "x"])
        XCTAssertTrue(project.hasFusedInputScale && project.hasFusedResidual)
        XCTAssertFalse(fused.optimizedGraph.nodes.contains { $0.opType == "Add" || $0.opType == "Mul" })
        let feeds = ["x": data.random([1, 12, 5, 7])]
        let reference = try Executor(model: model, passes: .executorObservable)
        XCTAssertTrue(try fused.run(feeds)["y"]!.isBitwiseEqual(to: try reference.run(feeds)["y"]!))
    }

    /// A residual of another shape broadcasts as Add does, the output taking the broadcast shape.
    func testOtherResidualShapesBroadcast() throws {
        var data = PassCheck()
        for (xShape, rShape) in [([1, 3, 4, 5], [1, 3, 1, 1]), ([1, 3, 1, 1], [1, 3, 4, 5]), ([1, 3, 4, 5], [5])] {
            var g = Graph(name: "broadcast")
            g.inputs = [ValueInfo("x", .float32, xShape.map { .fixed($0) }), ValueInfo("r", .float32, rShape.map { .fixed($0) })]
            g.outputs = [ValueInfo("y", .float32, [])]
            g.addInitializer(Initializer(name: "W", tensor: data.random([3, 3, 1, 1])))
            g.nodes = [conv("c1", ["x", "W"], "c"), Node(name: "add", opType: "Add", inputs: ["r", "c"], outputs: ["y"])]
            let model = Model(graph: g)
            let fused = try Executor(model: model)
            XCTAssertEqual(fused.optimizedGraph.nodes.map(\.opType), ["Conv"], "\(rShape)")
            let feeds = ["x": data.random(xShape), "r": data.random(rShape)]
            let got = try fused.run(feeds)["y"]!, want = try Executor(model: model, passes: .none).run(feeds)["y"]!
            XCTAssertEqual(got.shape, want.shape, "\(xShape) + \(rShape)")
            XCTAssertTrue(got.isBitwiseEqual(to: want), "\(xShape) + \(rShape)")
        }
    }

    func testGuards() throws {
        var data = PassCheck()
        func block(_ edit: (inout Graph) -> Void) -> Graph {
            var g = Self.block(&data)
            edit(&g)
            return g
        }
        let cases: [(String, Graph)] = [
            ("Conv output read twice", block { $0.nodes.append(Node(opType: "Neg", inputs: ["c"], outputs: ["n"])); $0.outputs.append(ValueInfo("n", .float32, [])) }),
            ("Conv output is a graph output", block { $0.outputs.append(ValueInfo("c", .float32, [])) }),
            ("constant residual", block { $0.addInitializer(Initializer(name: "k", tensor: data.random([1, 8, 6, 6]))); $0.nodes[1].inputs = ["c", "k"] }),
            ("c + c", block { $0.nodes[1].inputs = ["c", "c"] }),
            ("legacy broadcast attribute", block { $0.nodes[1][attribute: "broadcast"] = .int(1) }),
            ("residual made after the Conv", block {
                $0.nodes.insert(Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["nx"]), at: 1)
                $0.nodes[2].inputs = ["c", "nx"]
            }),
            ("not a Conv", block { $0.nodes[0] = Node(name: "c1", opType: "Relu", inputs: ["x"], outputs: ["c"]) }),
            ("Conv already has a residual", block { $0.nodes[0][attribute: ResidualAddIntoConv.attribute] = .int(1) }),
            ("Conv with five inputs", block { $0.nodes[0].inputs += ["", "x"] }),
            ("legacy axis attribute", block { $0.nodes[1][attribute: "axis"] = .int(1) }),
        ]
        for (why, g) in cases {
            let (h, r) = try g.applying(ResidualAddIntoConv())
            XCTAssertEqual(r.rewrites, 0, why)
            XCTAssertEqual(h.nodes.map(\.opType), g.nodes.map(\.opType), why)
            XCTAssertEqual(h.nodes.map(\.inputs), g.nodes.map(\.inputs), why)
        }
        // The residual may come first in node order from a node before the Conv.
        var early = Self.block(&data)
        early.nodes.insert(Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["nx"]), at: 0)
        early.nodes[2].inputs = ["nx", "c"]
        let (h, r) = try early.applying(ResidualAddIntoConv())
        XCTAssertEqual(r.rewrites, 1)
        XCTAssertEqual(h.nodes.map(\.opType), ["Neg", "Conv"])
    }

    /// ResNet's `Relu(Add(conv, r))`: the Add moves into the Conv, the Relu stays after it (the
    /// Conv's fused activation would apply before the sum), and the pipeline run twice keeps it so.
    func testActivationAfterTheSumStaysApart() throws {
        var data = PassCheck()
        var g = Self.block(&data)
        g.nodes[1].outputs = ["s"]
        g.nodes.append(Node(name: "relu", opType: "Relu", inputs: ["s"], outputs: ["y"]))
        var h = g
        _ = try PassPipeline.executorDefault.run(on: &h)
        _ = try PassPipeline.executorDefault.run(on: &h)
        XCTAssertEqual(h.nodes.map(\.opType), ["Conv", "Relu"])
        XCTAssertNil(h.nodes[0].fusedActivation)
        XCTAssertTrue(h.nodes[0].hasFusedResidual)
        try PassCheck.assertSameOutputs(g, h, ["x": data.random([1, 8, 6, 6])])
    }

    /// Hooks on the Conv's output before the Add: `Executor.observing` keeps the Add.
    func testObservingKeepsTheConvOutput() throws {
        var data = PassCheck()
        let model = Model(graph: Self.block(&data, relu: true))
        let observing = try Executor.observing(model, names: ["a"])
        XCTAssertEqual(observing.optimizedGraph.nodes.map(\.opType), ["Conv", "Add"])
        XCTAssertEqual(observing.optimizedGraph.nodes[0].fusedActivation, .relu)
        var seen: Tensor?
        _ = try observing.run(["x": data.random([1, 8, 6, 6])], hooks: ExecutionHooks(names: ["a"]) { _, t in seen = t })
        XCTAssertEqual(seen?.shape, [1, 8, 6, 6])
    }
}
