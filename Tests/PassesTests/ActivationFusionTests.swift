import XCTest
import ModelIR
@testable import Passes
import Runtime
import TensorCore

final class ActivationFusionTests: XCTestCase {
    /// x -> producer -> c -> (activation nodes) -> y, with a Constant node between the two as
    /// exporters write it.
    static func graph(_ data: inout PassCheck, producer: String = "Conv", tail: [Node], extraInits: [Initializer] = []) -> Graph {
        var g = Graph(name: "fuse")
        g.outputs = [ValueInfo("y", .float32, [])]
        switch producer {
        case "Conv":
            g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(3), .fixed(6), .fixed(6)])]
            g.addInitializer(Initializer(name: "W", tensor: data.random([4, 3, 3, 3])))
            g.addInitializer(Initializer(name: "B", tensor: data.random([4])))
            g.nodes = [conv("p", ["x", "W", "B"], "c", pads: [1, 1, 1, 1])]
        case "Gemm":
            g.inputs = [ValueInfo("x", .float32, [.fixed(3), .fixed(5)])]
            g.addInitializer(Initializer(name: "W", tensor: data.random([5, 4])))
            g.addInitializer(Initializer(name: "B", tensor: data.random([4])))
            g.nodes = [Node(name: "p", opType: "Gemm", inputs: ["x", "W", "B"], outputs: ["c"])]
        default:
            g.inputs = [ValueInfo("x", .float32, [.fixed(2), .fixed(3), .fixed(5)])]
            g.addInitializer(Initializer(name: "W", tensor: data.random([5, 4])))
            g.nodes = [Node(name: "p", opType: "MatMul", inputs: ["x", "W"], outputs: ["c"])]
        }
        g.nodes.append(constant("unrelated", .float(1), attribute: "value_float"))
        g.nodes += tail
        for i in extraInits { g.addInitializer(i) }
        return g
    }

    static func feed(_ producer: String, _ data: inout PassCheck) -> [String: Tensor] {
        switch producer {
        case "Conv": return ["x": data.random([1, 3, 6, 6])]
        case "Gemm": return ["x": data.random([3, 5])]
        default: return ["x": data.random([2, 3, 5])]
        }
    }

    static let hardSwishConstants = [Initializer(name: "three", tensor: Tensor(scalar: Float(3))),
                                     Initializer(name: "zero", tensor: Tensor(scalar: Float(0))),
                                     Initializer(name: "six", tensor: Tensor(scalar: Float(6)))]

    func testEachActivationFusesByDataflow() throws {
        let cases: [(String, [Node], [Initializer], FusableActivation)] = [
            ("Relu", [Node(opType: "Relu", inputs: ["c"], outputs: ["y"])], [], .relu),
            ("LeakyRelu", [Node(opType: "LeakyRelu", inputs: ["c"], outputs: ["y"], attributes: [Attribute(name: "alpha", value: .float(0.2))])],
             [], .leakyRelu(alpha: 0.2)),
            ("HardSigmoid", [Node(opType: "HardSigmoid", inputs: ["c"], outputs: ["y"])], [], .hardSigmoid(alpha: 0.2, beta: 0.5)),
            ("HardSwish", [Node(opType: "HardSwish", inputs: ["c"], outputs: ["y"])], [], .hardSwish),
            ("Sigmoid", [Node(opType: "Sigmoid", inputs: ["c"], outputs: ["y"])], [], .sigmoid),
            ("SiLU", [Node(opType: "Sigmoid", inputs: ["c"], outputs: ["s"]), Node(opType: "Mul", inputs: ["c", "s"], outputs: ["y"])], [], .silu),
            ("HardSwish as x · HardSigmoid(x)", [Node(opType: "HardSigmoid", inputs: ["c"], outputs: ["s"],
                                                      attributes: [Attribute(name: "alpha", value: .float(Float(1) / 6)),
                                                                   Attribute(name: "beta", value: .float(0.5))]),
                                                 Node(opType: "Mul", inputs: ["s", "c"], outputs: ["y"])], [], .hardSwish),
            ("HardSwish as Mul(x, Div(relu6(x + 3), 6))", [Node(opType: "Add", inputs: ["three", "c"], outputs: ["a"]),
                                                           Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
                                                           Node(opType: "Div", inputs: ["k", "six"], outputs: ["d"]),
                                                           Node(opType: "Mul", inputs: ["c", "d"], outputs: ["y"])],
             Self.hardSwishConstants, .hardSwish),
            ("HardSwish as Div(Mul(x, relu6(x + 3)), 6), Constant nodes", [
                constant("three", .tensor(Tensor(scalar: Float(3)))), constant("six", .tensor(Tensor(scalar: Float(6)))),
                constant("zero", .tensor(Tensor(scalar: Float(0)))),
                Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]),
                Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
                Node(opType: "Mul", inputs: ["k", "c"], outputs: ["m"]),
                Node(opType: "Div", inputs: ["m", "six"], outputs: ["y"])], [], .hardSwish),
            ("HardSigmoid as Div(relu6(x + 3), 6)", [Node(opType: "Add", inputs: ["three", "c"], outputs: ["a"]),
                                                      Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
                                                      Node(opType: "Div", inputs: ["k", "six"], outputs: ["y"])],
             Self.hardSwishConstants, .hardSigmoid(alpha: Float(1) / 6, beta: 0.5)),
            ("HardSigmoid as Div(relu6(x + 3), 6), Constant nodes", [
                constant("three", .tensor(Tensor(scalar: Float(3)))), constant("six", .tensor(Tensor(scalar: Float(6)))),
                constant("zero", .tensor(Tensor(scalar: Float(0)))),
                Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]),
                Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
                Node(opType: "Div", inputs: ["k", "six"], outputs: ["y"])], [], .hardSigmoid(alpha: Float(1) / 6, beta: 0.5)),
            ("Clip from Constant nodes", [constant("lo", .tensor(Tensor(scalar: Float(0)))), constant("hi", .tensor(Tensor(scalar: Float(0.5)))),
                                          Node(opType: "Clip", inputs: ["c", "lo", "hi"], outputs: ["y"])], [], .clip(min: 0, max: 0.5)),
            ("Clip from initializers, no min", [Node(opType: "Clip", inputs: ["c", "", "hi"], outputs: ["y"])],
             [Initializer(name: "hi", tensor: Tensor(scalar: Float(1)))], .clip(min: -Float.greatestFiniteMagnitude, max: 1)),
        ]
        for producer in ["Conv", "Gemm", "MatMul"] {
            for (why, tail, inits, act) in cases {
                var data = PassCheck()
                let g = Self.graph(&data, producer: producer, tail: tail, extraInits: inits)
                var (h, r) = try g.applying(ActivationFusion())
                let fused = h.nodes.first { $0.opType == producer }
                XCTAssertEqual(fused?.fusedActivation, act, "\(producer) + \(why)")
                XCTAssertEqual(fused?.outputs, ["y"], "\(producer) + \(why)")
                XCTAssertEqual(r.removedValues["c"], "fused into \(producer) 'p' (\(act.onnxName) applied in its store)")
                XCTAssertFalse(h.nodes.contains { ["Relu", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Mul", "Clip", "Add", "Div"].contains($0.opType) },
                               "\(producer) + \(why)")
                _ = try DeadCodeElimination().apply(to: &h)
                XCTAssertEqual(h.nodes.map(\.opType), [producer], "\(producer) + \(why): Constants left unread are removed")
                try PassCheck.assertSameOutputs(g, h, Self.feed(producer, &data))
            }
        }
    }

    /// Clip-6: bounds as attributes.
    func testClipAttributeForm() throws {
        var data = PassCheck()
        let g = Self.graph(&data, tail: [Node(opType: "Clip", inputs: ["c"], outputs: ["y"],
                                              attributes: [Attribute(name: "min", value: .float(-0.5)), Attribute(name: "max", value: .float(6))])])
        let (h, _) = try g.applying(ActivationFusion())
        XCTAssertEqual(h.nodes[0].fusedActivation, .clip(min: -0.5, max: 6))
        try PassCheck.assertSameOutputs(g, h, Self.feed("Conv", &data), opset: 10)
        // relu6(x + 3) / 6 with a Clip-6.
        let chain = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]),
            Node(opType: "Clip", inputs: ["a"], outputs: ["k"], attributes: [Attribute(name: "min", value: .float(0)),
                                                                             Attribute(name: "max", value: .float(6))]),
            Node(opType: "Div", inputs: ["k", "six"], outputs: ["y"])], extraInits: Self.hardSwishConstants)
        let (fused, r) = try chain.applying(ActivationFusion())
        XCTAssertEqual(fused.nodes[0].fusedActivation, .hardSigmoid(alpha: Float(1) / 6, beta: 0.5))
        XCTAssertEqual(fused.nodes[0].outputs, ["y"])
        XCTAssertEqual(r.removedValues["k"], "fused into Conv 'p' (HardSigmoid)")
        try PassCheck.assertSameOutputs(chain, fused, Self.feed("Conv", &data), opset: 10)
    }

    func testGuards() throws {
        var data = PassCheck()
        let relu = Node(opType: "Relu", inputs: ["c"], outputs: ["y"])
        var twoReaders = Self.graph(&data, tail: [relu, Node(opType: "Neg", inputs: ["c"], outputs: ["n"])])
        twoReaders.outputs.append(ValueInfo("n", .float32, []))
        var output = Self.graph(&data, tail: [relu])
        output.outputs.append(ValueInfo("c", .float32, []))
        var runtimeBound = Self.graph(&data, tail: [Node(opType: "Clip", inputs: ["c", "lo"], outputs: ["y"])])
        runtimeBound.inputs.append(ValueInfo("lo", .float32, []))
        let notFirstInput = Self.graph(&data, tail: [Node(opType: "Clip", inputs: ["k", "c"], outputs: ["y"])],
                                       extraInits: [Initializer(name: "k", tensor: Tensor(scalar: Float(0)))])
        let siluWithSecondSigmoidReader = Self.graph(&data, tail: [
            Node(opType: "Sigmoid", inputs: ["c"], outputs: ["s"]), Node(opType: "Mul", inputs: ["c", "s"], outputs: ["y"]),
            Node(opType: "Neg", inputs: ["s"], outputs: ["n"]),
        ])
        let hardSigmoidNotOneSixth = Self.graph(&data, tail: [
            Node(opType: "HardSigmoid", inputs: ["c"], outputs: ["s"]), Node(opType: "Mul", inputs: ["c", "s"], outputs: ["y"]),
        ])
        let addTwoNotThree = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "zero"], outputs: ["a"]), Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
            Node(opType: "Div", inputs: ["k", "six"], outputs: ["d"]), Node(opType: "Mul", inputs: ["c", "d"], outputs: ["y"]),
        ], extraInits: Self.hardSwishConstants)
        var divReadTwice = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]), Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
            Node(opType: "Div", inputs: ["k", "six"], outputs: ["d"]), Node(opType: "Mul", inputs: ["c", "d"], outputs: ["y"]),
        ], extraInits: Self.hardSwishConstants)
        divReadTwice.outputs.append(ValueInfo("d", .float32, []))
        let hardSigmoidDivByThree = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]), Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
            Node(opType: "Div", inputs: ["k", "three"], outputs: ["y"]),
        ], extraInits: Self.hardSwishConstants)
        let hardSigmoidClipToThree = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]), Node(opType: "Clip", inputs: ["a", "zero", "three"], outputs: ["k"]),
            Node(opType: "Div", inputs: ["k", "six"], outputs: ["y"]),
        ], extraInits: Self.hardSwishConstants)
        var hardSigmoidClipReadTwice = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]), Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
            Node(opType: "Div", inputs: ["k", "six"], outputs: ["y"]),
        ], extraInits: Self.hardSwishConstants)
        hardSigmoidClipReadTwice.outputs.append(ValueInfo("k", .float32, []))
        var hardSigmoidAddOfInput = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "t"], outputs: ["a"]), Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
            Node(opType: "Div", inputs: ["k", "six"], outputs: ["y"]),
        ], extraInits: Self.hardSwishConstants)
        hardSigmoidAddOfInput.inputs.append(ValueInfo("t", .float32, []))
        let hardSigmoidDivisorFirst = Self.graph(&data, tail: [
            Node(opType: "Add", inputs: ["c", "three"], outputs: ["a"]), Node(opType: "Clip", inputs: ["a", "zero", "six"], outputs: ["k"]),
            Node(opType: "Div", inputs: ["six", "k"], outputs: ["y"]),
        ], extraInits: Self.hardSwishConstants)
        let notAnActivation = Self.graph(&data, tail: [Node(opType: "Tanh", inputs: ["c"], outputs: ["y"])])
        var alreadyFused = Self.graph(&data, tail: [relu])
        alreadyFused.nodes[0].fusedActivation = .sigmoid
        for (why, g) in [("second reader", twoReaders), ("graph output", output), ("bound fed at run time", runtimeBound),
                         ("activation reads it through input 1", notFirstInput), ("Sigmoid read twice", siluWithSecondSigmoidReader),
                         ("HardSigmoid with α = 0.2 times its input", hardSigmoidNotOneSixth),
                         ("Add of 0, not 3", addTwoNotThree), ("Div's output also a graph output", divReadTwice),
                         ("relu6(x + 3) / 3", hardSigmoidDivByThree), ("relu6 clipped at 3", hardSigmoidClipToThree),
                         ("relu6(x + 3) also a graph output", hardSigmoidClipReadTwice),
                         ("x + t, t fed at run time", hardSigmoidAddOfInput), ("6 / relu6(x + 3)", hardSigmoidDivisorFirst),
                         ("Tanh", notAnActivation), ("already fused", alreadyFused)] {
            let (h, r) = try g.applying(ActivationFusion())
            XCTAssertEqual(r.rewrites, 0, why)
            XCTAssertEqual(h.nodes.map(\.opType), g.nodes.map(\.opType), why)
        }
    }
}

final class DeadCodeEliminationTests: XCTestCase {
    func testRemovesWhatNoOutputDependsOn() throws {
        var g = Graph(name: "dead")
        g.inputs = [ValueInfo("x", .float32, [.fixed(2)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(2)])]
        g.addInitializer(Initializer(name: "k", tensor: Tensor(shape: [2], scalars: [Float(1), 2])))
        g.valueInfo = [ValueInfo("d", .float32, [.fixed(2)])]
        g.nodes = [Node(opType: "Relu", inputs: ["x"], outputs: ["y"]), Node(opType: "Add", inputs: ["x", "k"], outputs: ["d"]),
                   Node(opType: "Neg", inputs: ["d"], outputs: ["e"])]
        let (h, r) = try g.applying(DeadCodeElimination())
        XCTAssertEqual(h.nodes.map(\.opType), ["Relu"])
        XCTAssertTrue(h.initializers.isEmpty)
        XCTAssertTrue(h.valueInfo.isEmpty)
        XCTAssertEqual(r.removedValues, ["d": "removed: no graph output depends on it", "e": "removed: no graph output depends on it"])
        var data = PassCheck()
        try PassCheck.assertSameOutputs(g, h, ["x": data.random([2])])
    }
}

final class PassPipelineTests: XCTestCase {
    func testExecutorDefaultOrder() {
        XCTAssertEqual(PassPipeline.executorDefault.names,
                       ["ConstantToInitializer", "IdentityElimination", "BatchNormIntoConv", "PadIntoConv", "ActivationFusion",
                        "ChannelScaleIntoConv", "ResidualAddIntoConv", "DeadCodeElimination"])
        XCTAssertEqual(PassPipeline.executorObservable.names,
                       ["ConstantToInitializer", "IdentityElimination", "BatchNormIntoConv", "PadIntoConv", "ActivationFusion", "DeadCodeElimination"])
        for pass in ["ActivationFusion", "ChannelScaleIntoConv", "ResidualAddIntoConv"] {
            XCTAssertFalse(PassPipeline.exportable.names.contains(pass), "\(pass): its attributes are not standard ONNX")
        }
    }

    /// Export-style block: Constant-weighted Conv via an Identity, BN, Constant bounds, Clip.
    func testPipelineOnExportStyleBlock() throws {
        var data = PassCheck()
        var g = BatchNormIntoConvTests.convBN(&data)
        g.nodes[0].inputs[1] = "Wshared"
        g.nodes.insert(Node(name: "id", opType: "Identity", inputs: ["W"], outputs: ["Wshared"]), at: 0)
        g.nodes[2].outputs = ["bn_out"]
        g.nodes += [constant("lo", .tensor(Tensor(scalar: Float(0)))), constant("hi", .tensor(Tensor(scalar: Float(6)))),
                    Node(opType: "Clip", inputs: ["bn_out", "lo", "hi"], outputs: ["y"])]
        var h = g
        let r = try PassPipeline.executorDefault.run(on: &h)
        XCTAssertEqual(h.nodes.map(\.opType), ["Conv"])
        XCTAssertEqual(h.nodes[0].fusedActivation, .clip(min: 0, max: 6))
        XCTAssertEqual(h.initializers.map(\.name).sorted(), ["W#bnfolded", "bn#foldedbias"], "unread initializers are dropped")
        XCTAssertEqual(Set(r.removedValues.keys), ["Wshared", "c", "bn_out"])
        try PassCheck.assertSameOutputs(g, h, ["x": data.random([1, 4, 5, 5])])
    }
}
