import XCTest
import ModelIR
@testable import Passes
import Runtime
import TensorCore

final class ConstantToInitializerTests: XCTestCase {
    func testEveryTensorFormIsLifted() throws {
        var g = Graph(name: "consts")
        g.inputs = [ValueInfo("x", .float32, [.fixed(3)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(3)]), ValueInfo("k", .int64, [])]
        g.nodes = [
            constant("t", .tensor(Tensor(shape: [3], scalars: [Float(1), 2, 3]))),
            constant("f", .float(0.5), attribute: "value_float"),
            constant("fs", .floats([1, 1, 1]), attribute: "value_floats"),
            constant("i", .int(7), attribute: "value_int"),
            constant("is", .ints([1, 2]), attribute: "value_ints"),
            constant("s", .string("text"), attribute: "value_string"),
            constant("k", .int(3), attribute: "value_int"),
            Node(opType: "Add", inputs: ["x", "t"], outputs: ["a"]),
            Node(opType: "Mul", inputs: ["a", "f"], outputs: ["m"]),
            Node(opType: "Add", inputs: ["m", "fs"], outputs: ["y"]),
        ]
        let (h, r) = try g.applying(ConstantToInitializer())
        XCTAssertEqual(r.rewrites, 5)
        XCTAssertEqual(h.initializer(named: "f")?.tensor.shape, [])
        XCTAssertEqual(h.initializer(named: "fs")?.tensor.scalars(as: Float.self), [1, 1, 1])
        XCTAssertEqual(h.initializer(named: "i")?.tensor.scalars(as: Int64.self), [7])
        XCTAssertEqual(h.initializer(named: "is")?.tensor.scalars(as: Int64.self), [1, 2])
        XCTAssertNil(h.initializer(named: "s"), "value_string is not lifted")
        XCTAssertNil(h.initializer(named: "k"), "a Constant writing a graph output stays")
        XCTAssertEqual(h.nodes.filter { $0.opType == "Constant" }.map { $0.outputs[0] }, ["s", "k"])
        var data = PassCheck()
        var before = g, after = h
        before.nodes.removeAll { $0.outputs == ["s"] }
        after.nodes.removeAll { $0.outputs == ["s"] }
        try PassCheck.assertSameOutputs(before, after, ["x": data.random([3])])
    }
}

final class IdentityEliminationTests: XCTestCase {
    /// W -> Identity -> w1 -> Identity -> w2, read by two Convs (shared weights as exported), one
    /// Identity on an activation, and an If body that reads an Identity's output.
    func testReadersReadTheIdentityInput() throws {
        var data = PassCheck()
        var g = Graph(name: "ids")
        g.inputs = [ValueInfo("x", .float32, [.fixed(1), .fixed(2), .fixed(4), .fixed(4)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(1), .fixed(2), .fixed(4), .fixed(4)])]
        g.addInitializer(Initializer(name: "W", tensor: data.random([2, 2, 1, 1])))
        g.nodes = [
            Node(name: "id1", opType: "Identity", inputs: ["W"], outputs: ["w1"]),
            Node(name: "id2", opType: "Identity", inputs: ["w1"], outputs: ["w2"]),
            conv("c1", ["x", "w1"], "a"),
            Node(name: "id3", opType: "Identity", inputs: ["a"], outputs: ["a2"]),
            conv("c2", ["a2", "w2"], "y"),
        ]
        let (h, r) = try g.applying(IdentityElimination())
        XCTAssertEqual(h.nodes.map(\.name), ["c1", "c2"])
        XCTAssertEqual(h.nodes[0].inputs, ["x", "W"])
        XCTAssertEqual(h.nodes[1].inputs, ["a", "W"], "a chain collapses to its first input")
        XCTAssertEqual(r.removedValues["a2"], "removed with Identity 'id3': read 'a' instead")
        try PassCheck.assertSameOutputs(g, h, ["x": data.random([1, 2, 4, 4])])
    }

    func testGraphOutputKeepsItsName() throws {
        var g = Graph(name: "out")
        g.inputs = [ValueInfo("x", .float32, [.fixed(2)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(2)]), ValueInfo("z", .float32, [.fixed(2)])]
        g.nodes = [
            Node(name: "r", opType: "Relu", inputs: ["x"], outputs: ["a"]),
            Node(name: "n", opType: "Neg", inputs: ["a"], outputs: ["b"]),
            Node(name: "idy", opType: "Identity", inputs: ["a"], outputs: ["y"]),
            Node(name: "idz", opType: "Identity", inputs: ["x"], outputs: ["z"]),
            Node(name: "m", opType: "Add", inputs: ["b", "y"], outputs: ["unused"]),
        ]
        let (h, r) = try g.applying(IdentityElimination())
        XCTAssertEqual(h.outputs.map(\.name), ["y", "z"])
        XCTAssertEqual(h.nodes.map(\.name), ["r", "n", "idz", "m"], "the Identity of a graph input stays")
        XCTAssertEqual(h.nodes[0].outputs, ["y"], "the producer writes the graph output's name")
        XCTAssertEqual(h.nodes[1].inputs, ["y"])
        XCTAssertEqual(h.nodes[3].inputs, ["b", "y"])
        XCTAssertEqual(r.removedValues["a"], "renamed to graph output 'y' (Identity 'idy' removed)")
        // An initializer written out through an Identity keeps its Identity too.
        var k = g
        k.addInitializer(Initializer(name: "K", tensor: Tensor(shape: [2], scalars: [Float(1), 2])))
        k.nodes[3].inputs = ["K"]
        XCTAssertEqual(try k.applying(IdentityElimination()).0.nodes.map(\.name), ["r", "n", "idz", "m"])
        XCTAssertNoThrow(try h.checkTopologicalOrder())
        var data = PassCheck()
        try PassCheck.assertSameOutputs(g, h, ["x": data.random([2])])
    }

    func testReadsInsideBodiesAreRedirected() throws {
        var then = Graph(name: "then")
        then.outputs = [ValueInfo("t", .float32, [])]
        then.nodes = [Node(opType: "Neg", inputs: ["a2"], outputs: ["t"])]
        var other = Graph(name: "else")
        other.outputs = [ValueInfo("a2", .float32, [])]
        var g = Graph(name: "if")
        g.inputs = [ValueInfo("x", .float32, [.fixed(2)]), ValueInfo("c", .bool, [])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(2)])]
        g.nodes = [
            Node(name: "r", opType: "Relu", inputs: ["x"], outputs: ["a"]),
            Node(name: "id", opType: "Identity", inputs: ["a"], outputs: ["a2"]),
            Node(name: "if", opType: "If", inputs: ["c"], outputs: ["y"],
                 attributes: [Attribute(name: "then_branch", value: .graph(then)), Attribute(name: "else_branch", value: .graph(other))]),
        ]
        let (h, _) = try g.applying(IdentityElimination())
        XCTAssertEqual(h.nodes.map(\.name), ["r", "if"])
        XCTAssertEqual(h.nodes[1].subgraphReads(), ["a"], "both bodies now read 'a' (the else body returns it as its output)")
        var data = PassCheck()
        let x = data.random([2])
        for c in [true, false] {
            try PassCheck.assertSameOutputs(g, h, ["x": x, "c": Tensor(scalar: c)])
        }
    }
}
