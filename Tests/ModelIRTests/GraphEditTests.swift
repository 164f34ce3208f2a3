import Foundation
import XCTest
@testable import ModelIR
import TensorCore

/// Graph edits: uniqueName, renameValue, sortTopologically, sliceInitializer and friends.
final class GraphEditTests: XCTestCase {
    /// x → A → a → B → b → C → y, with W read by A and C.
    func chain() -> Graph {
        var g = Graph(name: "chain")
        g.inputs = [ValueInfo("x", .float32, [.fixed(2)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(2)])]
        g.valueInfo = [ValueInfo("a", .float32, [.fixed(2)])]
        g.addInitializer(Initializer(name: "W", tensor: Tensor(shape: [2], scalars: [Float](arrayLiteral: 1, 2))))
        g.nodes = [
            Node(name: "A", opType: "Add", inputs: ["x", "W"], outputs: ["a"]),
            Node(name: "B", opType: "Relu", inputs: ["a"], outputs: ["b"]),
            Node(name: "C", opType: "Mul", inputs: ["b", "W"], outputs: ["y"]),
        ]
        return g
    }

    func testUniqueName() {
        var g = chain()
        XCTAssertEqual(g.uniqueName("fresh"), "fresh")
        XCTAssertEqual(g.uniqueName("a"), "a_1", "value names are taken")
        XCTAssertEqual(g.uniqueName("B"), "B_1", "node names are taken")
        XCTAssertEqual(g.uniqueName("W"), "W_1", "initializer names are taken")
        g.nodes.append(Node(name: "D", opType: "Identity", inputs: ["y"], outputs: ["a_1"]))
        XCTAssertEqual(g.uniqueName("a"), "a_2")
    }

    func testRenameValueRewritesEveryReference() throws {
        var g = chain()
        try g.renameValue("W", to: "weight")
        XCTAssertNil(g.initializer(named: "W"))
        XCTAssertEqual(g.initializer(named: "weight")?.tensor.scalars(as: Float.self), [1, 2])
        XCTAssertEqual(g.nodes[0].inputs, ["x", "weight"])
        XCTAssertEqual(g.nodes[2].inputs, ["b", "weight"])
        try g.renameValue("a", to: "sum")
        XCTAssertEqual(g.nodes[0].outputs, ["sum"])
        XCTAssertEqual(g.nodes[1].inputs, ["sum"])
        XCTAssertEqual(g.valueInfo.map(\.name), ["sum"])
        try g.renameValue("x", to: "input")
        try g.renameValue("y", to: "output")
        XCTAssertEqual(g.inputs.map(\.name), ["input"])
        XCTAssertEqual(g.outputs.map(\.name), ["output"])
        XCTAssertEqual(g.nodes[2].outputs, ["output"])
        XCTAssertNoThrow(try g.checkTopologicalOrder())
        XCTAssertThrowsError(try g.renameValue("b", to: "sum")) { e in
            XCTAssertEqual("\(e)", "name 'sum' is already in use")
        }
        XCTAssertNoThrow(try g.renameValue("b", to: "b"), "renaming to itself is a no-op")
    }

    func testSortTopologically() throws {
        var g = chain()
        g.nodes.reverse()
        XCTAssertThrowsError(try g.checkTopologicalOrder()) { e in
            XCTAssertEqual("\(e)", "node 'C' reads 'b' before any node produces it")
        }
        try g.sortTopologically()
        XCTAssertEqual(g.nodes.map(\.name), ["A", "B", "C"])
        XCTAssertNoThrow(try g.checkTopologicalOrder())

        // Stable: independent nodes keep their relative order.
        var h = Graph()
        h.inputs = [ValueInfo("x", .float32, [])]
        h.nodes = [
            Node(name: "late", opType: "Relu", inputs: ["p"], outputs: ["q"]),
            Node(name: "i1", opType: "Relu", inputs: ["x"], outputs: ["i1o"]),
            Node(name: "i2", opType: "Relu", inputs: ["x"], outputs: ["i2o"]),
            Node(name: "p", opType: "Relu", inputs: ["x"], outputs: ["p"]),
            Node(name: "opt", opType: "Clip", inputs: ["x", "", "i1o"], outputs: ["c"]),
        ]
        try h.sortTopologically()
        XCTAssertEqual(h.nodes.map(\.name), ["i1", "i2", "p", "opt", "late"])

        // A cycle, or a value nobody produces, cannot be sorted.
        var cyc = chain()
        cyc.nodes[0].inputs = ["x", "b"]
        XCTAssertThrowsError(try cyc.sortTopologically())
        // Subgraphs may read outer values.
        var sub = Graph()
        sub.nodes = [Node(name: "n", opType: "Relu", inputs: ["outer"], outputs: ["o"])]
        XCTAssertThrowsError(try sub.sortTopologically())
        XCTAssertNoThrow(try sub.sortTopologically(outer: ["outer"]))
    }

    /// sliceInitializer is numpy's take along an axis:
    ///   np.arange(24, dtype=np.float32).reshape(4,3,2).take([3,1], axis=0).ravel()
    ///   -> [18 19 20 21 22 23  6  7  8  9 10 11]
    ///   np.arange(24).reshape(4,3,2).take([2,0], axis=1).ravel()
    ///   -> [4 5 0 1 10 11 6 7 16 17 12 13 22 23 18 19]
    func testSliceInitializer() throws {
        var g = Graph()
        g.addInitializer(Initializer(name: "w", tensor: Tensor(shape: [4, 3, 2], scalars: (0..<24).map(Float.init))))
        g.addInitializer(Initializer(name: "i", tensor: Tensor(shape: [4, 3, 2], scalars: (0..<24).map(Int64.init))))
        let before = g.initializer(named: "w")!.tensor
        try g.sliceInitializer("w", axis: 0, keep: [3, 1])
        XCTAssertEqual(g.initializer(named: "w")?.tensor.shape, [2, 3, 2])
        XCTAssertEqual(g.initializer(named: "w")?.tensor.scalars(as: Float.self), [18, 19, 20, 21, 22, 23, 6, 7, 8, 9, 10, 11])
        XCTAssertEqual(before.count, 24, "the old tensor value is untouched")
        try g.sliceInitializer("i", axis: 1, keep: [2, 0])
        XCTAssertEqual(g.initializer(named: "i")?.tensor.scalars(as: Int64.self), [4, 5, 0, 1, 10, 11, 6, 7, 16, 17, 12, 13, 22, 23, 18, 19])
        XCTAssertThrowsError(try g.sliceInitializer("nope", axis: 0, keep: [0])) { e in
            XCTAssertEqual("\(e)", "no value named 'nope'")
        }
    }

    /// A sliced initializer of a model read from disk is written as new raw_data and reads back.
    func testSlicedInitializerSurvivesWriteAndRead() throws {
        var m = try ModelReader.read(path: fixture("digits_cnn.onnx"))
        let name = try XCTUnwrap(m.graph.initializers.first { $0.tensor.rank == 4 }).name
        let original = m.graph.initializer(named: name)!.tensor
        try m.graph.sliceInitializer(name, axis: 0, keep: [1, 0])
        let back = try ModelReader.read(bytes: try ModelWriter.serialize(m))
        let t = try XCTUnwrap(back.graph.initializer(named: name)).tensor
        XCTAssertTrue(t.isBitwiseEqual(to: original.selecting([1, 0], alongAxis: 0)))
    }

    func testInsertRemoveReplace() throws {
        var g = chain()
        XCTAssertThrowsError(try g.insertNode(Node(opType: "Relu", inputs: ["x"], outputs: ["a"]), at: 0)) { e in
            XCTAssertEqual("\(e)", "name 'a' is already in use")
        }
        // B will read "na"; the new node producing it goes right before B.
        g.nodes[1].inputs = ["na"]
        try g.insertNodeBeforeFirstConsumer(Node(name: "N", opType: "Neg", inputs: ["a"], outputs: ["na"]))
        XCTAssertEqual(g.nodes.map(\.name), ["A", "N", "B", "C"])
        XCTAssertNoThrow(try g.checkTopologicalOrder())
        // A node nobody reads goes last.
        try g.insertNodeBeforeFirstConsumer(Node(name: "T", opType: "Identity", inputs: ["y"], outputs: ["t"]))
        XCTAssertEqual(g.nodes.last?.name, "T")
        // replaceUses redirects consumers and graph outputs, never producers.
        g.replaceUses(of: "y", with: "b")
        XCTAssertEqual(g.nodes.last?.inputs, ["b"])
        XCTAssertEqual(g.outputs.map(\.name), ["b"])
        XCTAssertEqual(g.nodes[3].outputs, ["y"])
        let removed = try g.removeNode(named: "N")
        XCTAssertEqual(removed.opType, "Neg")
        XCTAssertThrowsError(try g.removeNode(named: "N")) { e in XCTAssertEqual("\(e)", "no node named 'N'") }
        XCTAssertEqual(g.producer(of: "b"), 1)
        XCTAssertEqual(g.consumers(of: "W"), [0, 2])
        XCTAssertEqual(g.type(of: "W"), TensorType(.float32, [2]))
        XCTAssertEqual(g.type(of: "a"), TensorType(.float32, [2]))
    }
}
