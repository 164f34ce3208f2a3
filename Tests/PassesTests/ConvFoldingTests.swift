import XCTest
import ModelIR
@testable import Passes
import Runtime
import TensorCore

final class BatchNormIntoConvTests: XCTestCase {
    /// x -> Conv(W, b) -> c -> BN -> y, float32 parameters as initializers.
    static func convBN(_ data: inout PassCheck, bias: Bool = true, group: Int64 = 1) -> Graph {
        var g = Graph(name: "convbn")
        g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(4), .fixed(5), .fixed(5)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(1), .fixed(4), .fixed(5), .fixed(5)])]
        g.addInitializer(Initializer(name: "W", tensor: data.random([4, 4 / Int(group), 3, 3])))
        if bias { g.addInitializer(Initializer(name: "b", tensor: data.random([4]))) }
        g.addInitializer(Initializer(name: "gamma", tensor: data.positive([4])))
        g.addInitializer(Initializer(name: "beta", tensor: data.random([4])))
        g.addInitializer(Initializer(name: "mean", tensor: data.random([4])))
        g.addInitializer(Initializer(name: "var", tensor: data.positive([4])))
        var c = conv("conv", bias ? ["x", "W", "b"] : ["x", "W"], "c", pads: [1, 1, 1, 1])
        c[attribute: "group"] = .int(group)
        g.nodes = [c, Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "gamma", "beta", "mean", "var"], outputs: ["y"],
                           attributes: [Attribute(name: "epsilon", value: .float(1e-3))])]
        return g
    }

    func testFoldsWithTheSameNumbers() throws {
        for (bias, group) in [(true, Int64(1)), (false, 1), (true, 2)] {
            var data = PassCheck()
            let g = Self.convBN(&data, bias: bias, group: group)
            let (h, r) = try g.applying(BatchNormIntoConv())
            XCTAssertEqual(h.nodes.map(\.opType), ["Conv"])
            XCTAssertEqual(h.nodes[0].outputs, ["y"])
            XCTAssertEqual(h.nodes[0].inputs, ["x", "W#bnfolded", "bn#foldedbias"])
            XCTAssertEqual(r.removedValues, ["c": "folded into Conv 'conv' with BatchNormalization 'bn'"])
            try PassCheck.assertSameOutputs(g, h, ["x": data.random([1, 4, 5, 5])])
        }
    }

    func testGuards() throws {
        var data = PassCheck()
        let base = Self.convBN(&data)
        var twoReaders = base
        twoReaders.nodes.append(Node(opType: "Relu", inputs: ["c"], outputs: ["r"]))
        var output = base
        output.outputs.append(ValueInfo("c", .float32, []))
        var training = base
        training.nodes[1][attribute: "training_mode"] = .int(1)
        var runtimeScale = base
        runtimeScale.removeInitializer("gamma")
        runtimeScale.inputs.append(ValueInfo("gamma", .float32, [.fixed(4)]))
        var bodyReader = base
        var body = Graph(name: "b")
        body.outputs = [ValueInfo("c", .float32, [])]
        bodyReader.inputs.append(ValueInfo("cond", .bool, []))
        bodyReader.nodes.append(Node(opType: "If", inputs: ["cond"], outputs: ["o"],
                                     attributes: [Attribute(name: "then_branch", value: .graph(body)), Attribute(name: "else_branch", value: .graph(body))]))
        for (why, g) in [("second reader", twoReaders), ("graph output", output), ("training mode", training),
                         ("non-constant scale", runtimeScale), ("read inside a body", bodyReader)] {
            let (h, r) = try g.applying(BatchNormIntoConv())
            XCTAssertEqual(r.rewrites, 0, why)
            XCTAssertEqual(h.nodes.map(\.opType), g.nodes.map(\.opType), why)
        }
    }
}

final class PadIntoConvTests: XCTestCase {
    static func padConv(_ data: inout PassCheck, pads: [Int64], convPads: [Int64]? = [1, 0, 0, 1], mode: String? = nil,
                        fill: Float? = nil, attributeForm: Bool = false) -> Graph {
        var g = Graph(name: "padconv")
        g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(2), .fixed(5), .fixed(6)])]
        g.outputs = [ValueInfo("y", .float32, [])]
        g.addInitializer(Initializer(name: "W", tensor: data.random([3, 2, 3, 3])))
        var pad: Node
        if attributeForm {
            pad = Node(name: "pad", opType: "Pad", inputs: ["x"], outputs: ["p"], attributes: [Attribute(name: "pads", value: .ints(pads))])
            if let fill { pad[attribute: "value"] = .float(fill) }
        } else {
            g.addInitializer(Initializer(name: "pads", tensor: Tensor(shape: [pads.count], scalars: pads)))
            var ins = ["x", "pads"]
            if let fill { g.addInitializer(Initializer(name: "fill", tensor: Tensor(scalar: fill))); ins.append("fill") }
            pad = Node(name: "pad", opType: "Pad", inputs: ins, outputs: ["p"])
        }
        if let mode { pad[attribute: "mode"] = .string(mode) }
        g.nodes = [pad, conv("conv", ["p", "W"], "y", pads: convPads)]
        return g
    }

    func testFoldsSpatialZeroPadding() throws {
        for attributeForm in [false, true] {
            var data = PassCheck()
            let g = Self.padConv(&data, pads: [0, 0, 1, 2, 0, 0, 3, 0], fill: 0, attributeForm: attributeForm)
            let (h, r) = try g.applying(PadIntoConv())
            XCTAssertEqual(h.nodes.map(\.opType), ["Conv"])
            XCTAssertEqual(h.nodes[0].inputs, ["x", "W"])
            XCTAssertEqual(h.nodes[0].ints("pads"), [2, 2, 3, 1], "Conv pads [1,0,0,1] + Pad's spatial [1,2 | 3,0]")
            XCTAssertEqual(r.removedValues["p"], "folded into Conv 'conv' as padding")
            try PassCheck.assertSameOutputs(g, h, ["x": data.random([1, 2, 5, 6])], opset: attributeForm ? 10 : 17)
        }
        var data = PassCheck()
        // pads from a Constant node, as exporters write them.
        var fromConstant = Self.padConv(&data, pads: [0, 0, 0, 1, 0, 0, 2, 0])
        fromConstant.removeInitializer("pads")
        fromConstant.nodes.insert(constant("pads", .ints([0, 0, 0, 1, 0, 0, 2, 0]), attribute: "value_ints"), at: 0)
        let (folded, _) = try fromConstant.applying(PadIntoConv())
        XCTAssertEqual(folded.nodes.map(\.opType), ["Constant", "Conv"])
        XCTAssertEqual(folded.nodes[1].ints("pads"), [1, 1, 2, 1])
        try PassCheck.assertSameOutputs(fromConstant, folded, ["x": data.random([1, 2, 5, 6])])
        let noConvPads = Self.padConv(&data, pads: [0, 0, 1, 1, 0, 0, 1, 1], convPads: nil)
        let (h, _) = try noConvPads.applying(PadIntoConv())
        XCTAssertEqual(h.nodes[0].ints("pads"), [1, 1, 1, 1])
        try PassCheck.assertSameOutputs(noConvPads, h, ["x": data.random([1, 2, 5, 6])])
    }

    func testGuards() throws {
        var data = PassCheck()
        var twoReaders = Self.padConv(&data, pads: [0, 0, 1, 1, 0, 0, 1, 1])
        twoReaders.nodes.append(Node(opType: "Relu", inputs: ["p"], outputs: ["r"]))
        var autoPad = Self.padConv(&data, pads: [0, 0, 1, 1, 0, 0, 1, 1], convPads: nil)
        autoPad.nodes[1][attribute: "auto_pad"] = .string("SAME_UPPER")
        let cases: [(String, Graph)] = [
            ("reflect mode", Self.padConv(&data, pads: [0, 0, 1, 1, 0, 0, 1, 1], mode: "reflect")),
            ("nonzero fill", Self.padConv(&data, pads: [0, 0, 1, 1, 0, 0, 1, 1], fill: 1)),
            ("channel padding", Self.padConv(&data, pads: [0, 1, 1, 1, 0, 0, 1, 1])),
            ("cropping", Self.padConv(&data, pads: [0, 0, -1, 1, 0, 0, 1, 1])),
            ("second reader", twoReaders),
            ("auto_pad", autoPad),
        ]
        for (why, g) in cases {
            let (h, r) = try g.applying(PadIntoConv())
            XCTAssertEqual(r.rewrites, 0, why)
            XCTAssertEqual(h.nodes.map(\.opType), ["Pad", "Conv"] + (why == "second reader" ? ["Relu"] : []), why)
        }
    }
}
