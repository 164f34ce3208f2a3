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
        // replaceUses redirects readers; the graph output keeps its name: B's output "b" takes
        // the name "y", and C's former output becomes an unread "y_replaced".
        g.replaceUses(of: "y", with: "b")
        XCTAssertEqual(g.nodes.last?.inputs, ["y"])
        XCTAssertEqual(g.outputs.map(\.name), ["y"])
        XCTAssertEqual(g.nodes[2].outputs, ["y"])
        XCTAssertEqual(g.nodes[3].outputs, ["y_replaced"])
        XCTAssertEqual(g.nodes[3].inputs, ["y", "W"])
        let removed = try g.removeNode(named: "N")
        XCTAssertEqual(removed.opType, "Neg")
        XCTAssertThrowsError(try g.removeNode(named: "N")) { e in XCTAssertEqual("\(e)", "no node named 'N'") }
        XCTAssertEqual(g.producer(of: "y"), 1)
        XCTAssertEqual(g.consumers(of: "W"), [0, 2])
        XCTAssertEqual(g.type(of: "W"), TensorType(.float32, [2]))
        XCTAssertEqual(g.type(of: "a"), TensorType(.float32, [2]))
    }

    /// A graph output replaced by a graph input keeps its name through an appended Identity.
    func testReplaceUsesOfOutputByInputAddsIdentity() throws {
        var g = chain()
        g.replaceUses(of: "y", with: "x")
        XCTAssertEqual(g.outputs.map(\.name), ["y"])
        XCTAssertEqual(g.nodes.last?.opType, "Identity")
        XCTAssertEqual(g.nodes.last?.inputs, ["x"])
        XCTAssertEqual(g.nodes.last?.outputs, ["y"])
        XCTAssertEqual(g.nodes[2].outputs, ["y_replaced"])
        XCTAssertNoThrow(try g.checkTopologicalOrder())
        XCTAssertEqual(g.cleanup().nodes, 3, "Add, Relu and Mul no longer feed anything")
        XCTAssertEqual(g.nodes.map(\.opType), ["Identity"])
    }

    /// renameValue and replaceUses rewrite the reads inside If/Loop bodies; body-local names stay.
    func testEditsReachIntoSubgraphBodies() throws {
        var g = UseDefIndexTests.graphWithBodies()
        try g.renameValue("a", to: "sum")
        XCTAssertEqual(g.nodes[1].subgraphReads(), ["sum", "W", "x"])
        g.replaceUses(of: "x", with: "W")
        XCTAssertEqual(g.nodes[1].subgraphReads(), ["sum", "W"], "the nested Loop body now reads W")
        XCTAssertEqual(g.nodes[0].inputs, ["W", "W"])
        XCTAssertThrowsError(try g.renameValue("W", to: "lx")) { e in
            XCTAssertEqual("\(e)", "name 'lx' is already in use", "names inside bodies are taken too")
        }
        // The If reads "sum" inside a body: moving it before the producer breaks the order.
        g.nodes.swapAt(0, 1)
        XCTAssertThrowsError(try g.checkTopologicalOrder()) { e in
            XCTAssertEqual("\(e)", "node 'If' reads 'sum' before any node produces it")
        }
        try g.sortTopologically()
        XCTAssertEqual(g.nodes.map(\.name), ["A", "B", "If"], "stable: B was ready in the same sweep")
        // A producer of a value only a body reads goes right before that node.
        var h = UseDefIndexTests.graphWithBodies()
        h.nodes[0].outputs = ["a0"]
        try h.insertNodeBeforeFirstConsumer(Node(name: "P", opType: "Identity", inputs: ["a0"], outputs: ["a"]))
        XCTAssertEqual(h.nodes.map(\.name), ["A", "P", "If", "B"])
    }

    func testSliceUpdatesValueInfoAndRefusesSharedInitializers() throws {
        var g = chain()
        g.valueInfo.append(ValueInfo("W", .float32, [.fixed(2)]))
        XCTAssertThrowsError(try g.sliceInitializer("W", axis: 0, keep: [1])) { e in
            XCTAssertEqual("\(e)", "initializer 'W' is read by 2 nodes (A, C); slicing it changes all of them (pass allowShared: true to do so)")
        }
        XCTAssertEqual(g.initializer(named: "W")?.tensor.shape, [2], "a refused slice changes nothing")
        try g.sliceInitializer("W", axis: 0, keep: [1], allowShared: true)
        XCTAssertEqual(g.initializer(named: "W")?.tensor.scalars(as: Float.self), [2])
        XCTAssertEqual(g.valueInfo.first { $0.name == "W" }?.type, TensorType(.float32, [1]))
        g.addInitializer(Initializer(name: "V", tensor: Tensor(shape: [3], scalars: [Float(1), 2, 3])))
        g.inputs.append(ValueInfo("V", .float32, [.fixed(3)]))
        g.nodes[1].inputs = ["a", "V"]
        try g.sliceInitializer("V", axis: 0, keep: [0, 2])
        XCTAssertEqual(g.inputs.last?.type, TensorType(.float32, [2]), "an initializer listed as a graph input is retyped too")
    }

    func testCleanupRemovesDeadNodesInitializersAndValueInfo() {
        var g = chain()
        g.addInitializer(Initializer(name: "unused", tensor: Tensor(scalar: Float(0))))
        g.inputs.append(ValueInfo("unused", .float32, []))
        g.nodes.insert(Node(name: "D1", opType: "Neg", inputs: ["a"], outputs: ["d1"]), at: 1)
        g.nodes.insert(Node(name: "D2", opType: "Neg", inputs: ["d1"], outputs: ["d2"]), at: 2)
        g.valueInfo.append(ValueInfo("gone", .float32, []))
        let r = g.cleanup()
        XCTAssertEqual(r.nodes, 2, "a dead chain goes in one pass")
        XCTAssertEqual(r.initializers, ["unused"])
        XCTAssertEqual(r.valueInfo, ["gone"])
        XCTAssertEqual(g.nodes.map(\.name), ["A", "B", "C"])
        XCTAssertEqual(g.inputs.map(\.name), ["x"])
        XCTAssertEqual(g.valueInfo.map(\.name), ["a"])
        XCTAssertNotNil(g.initializer(named: "W"))
        XCTAssertNil(g.initializer(named: "unused"))
    }

    func testRecordTypes() {
        var g = chain()
        g.outputs = [ValueInfo(name: "y", type: nil)]
        g.recordTypes(["a": (.float32, [1, 2]), "b": (.float32, [2]), "y": (.float32, [2])])
        XCTAssertEqual(g.type(of: "a"), TensorType(.float32, [1, 2]), "an existing entry is replaced")
        XCTAssertEqual(g.type(of: "b"), TensorType(.float32, [2]), "a missing entry is added")
        XCTAssertEqual(g.outputs[0].type, TensorType(.float32, [2]), "an untyped graph output is filled in")
        XCTAssertEqual(g.valueInfo.map(\.name), ["a", "b"], "graph outputs get no value_info entry")
    }

    /// Batched insertion and name allocation are linear: 10k nodes well under a second.
    func testBatchedInsertionIsLinear() throws {
        var g = Graph()
        g.inputs = [ValueInfo("x", .float32, [])]
        g.outputs = [ValueInfo("v10000", .float32, [])]
        g.nodes = (0..<10_000).map { Node(name: "n\($0)", opType: "Relu", inputs: ["v\($0)"], outputs: ["v\($0 + 1)"]) }
        g.nodes[0].inputs = ["x"]
        let t0 = Date()
        var names = NameAllocator(g)
        var batch: [(Node, before: Int)] = []
        for i in 0..<10_000 {
            let q = names.fresh("v\(i)_q")
            batch.append((Node(name: names.fresh("Q"), opType: "Identity", inputs: ["v\(i + 1)"], outputs: [q]), before: i + 1))
        }
        try g.insertNodes(batch)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1.0)
        XCTAssertEqual(g.nodes.count, 20_000)
        XCTAssertEqual(g.nodes[1].name, "Q")
        XCTAssertEqual(g.nodes[3].name, "Q_1")
        XCTAssertEqual(g.nodes[3].inputs, ["v2"])
        XCTAssertNoThrow(try g.checkTopologicalOrder())
        XCTAssertThrowsError(try g.insertNodes([(Node(opType: "Relu", inputs: ["x"], outputs: ["z"]), before: 0),
                                                (Node(opType: "Relu", inputs: ["x"], outputs: ["z"]), before: 1)])) { e in
            XCTAssertEqual("\(e)", "name 'z' is already in use", "single assignment holds within a batch")
        }
    }
}
