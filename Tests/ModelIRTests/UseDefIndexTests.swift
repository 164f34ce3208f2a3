import XCTest
@testable import ModelIR
import TensorCore

/// The use-def index: producers, readers by slot, reads from inside subgraph bodies.
final class UseDefIndexTests: XCTestCase {
    /// x → A(x, W) → a; If(cond) whose then-branch reads `a` and W from the outer scope and whose
    /// else-branch holds a Loop body reading `x`; B(a, a) → y.
    static func graphWithBodies() -> Graph {
        var inner = Graph(name: "loop_body")
        inner.inputs = [ValueInfo("i", .int64, []), ValueInfo("c", .bool, [])]
        inner.outputs = [ValueInfo("c", .bool, []), ValueInfo("lx", .float32, [])]
        inner.nodes = [Node(opType: "Neg", inputs: ["x"], outputs: ["lx"])]
        var thenBranch = Graph(name: "then")
        thenBranch.outputs = [ValueInfo("t", .float32, [])]
        thenBranch.nodes = [Node(opType: "Add", inputs: ["a", "W"], outputs: ["t"])]
        var elseBranch = Graph(name: "else")
        elseBranch.outputs = [ValueInfo("e", .float32, [])]
        elseBranch.nodes = [Node(opType: "Loop", inputs: ["", ""], outputs: ["e"],
                                 attributes: [Attribute(name: "body", value: .graph(inner))])]
        var g = Graph(name: "bodies")
        g.inputs = [ValueInfo("x", .float32, [.fixed(2)]), ValueInfo("cond", .bool, [])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(2)]), ValueInfo("z", .float32, [.fixed(2)])]
        g.addInitializer(Initializer(name: "W", tensor: Tensor(shape: [2], scalars: [Float(1), 2])))
        g.nodes = [
            Node(name: "A", opType: "Add", inputs: ["x", "W"], outputs: ["a"]),
            Node(name: "If", opType: "If", inputs: ["cond"], outputs: ["z"],
                 attributes: [Attribute(name: "then_branch", value: .graph(thenBranch)),
                              Attribute(name: "else_branch", value: .graph(elseBranch))]),
            Node(name: "B", opType: "Mul", inputs: ["a", "a"], outputs: ["y"]),
        ]
        return g
    }

    func testSubgraphReadsAreOuterNamesOnly() {
        let g = Self.graphWithBodies()
        XCTAssertEqual(g.nodes[1].subgraphReads(), ["a", "W", "x"], "nested Loop body reads x; body-local names are not listed")
        XCTAssertEqual(g.nodes[0].subgraphReads(), [])
        XCTAssertTrue(g.nodes[1].hasSubgraphs)
    }

    func testProducersReadersAndOutputs() {
        let g = Self.graphWithBodies()
        let ix = UseDefIndex(g)
        XCTAssertEqual(ix.producer(of: "a"), 0)
        XCTAssertNil(ix.producer(of: "x"), "graph inputs have no producer")
        XCTAssertNil(ix.producer(of: "W"), "initializers have no producer")
        XCTAssertEqual(ix.readers(of: "a"), [ValueUse(node: 1, slot: nil), ValueUse(node: 2, slot: 0), ValueUse(node: 2, slot: 1)])
        XCTAssertEqual(ix.readCount(of: "a"), 3)
        XCTAssertEqual(ix.readingNodes(of: "a"), [1, 2])
        XCTAssertEqual(ix.readingNodes(of: "x"), [0, 1])
        XCTAssertEqual(ix.readingNodes(of: "W"), [0, 1])
        XCTAssertTrue(ix.isGraphOutput("y"))
        XCTAssertFalse(ix.isGraphOutput("a"))
        XCTAssertTrue(ix.isLive("z"))
        XCTAssertNil(ix.hasSingleDirectReader("a"))
        XCTAssertEqual(ix.hasSingleDirectReader("cond"), ValueUse(node: 1, slot: 0))
        XCTAssertNil(ix.hasSingleDirectReader("y"), "a graph output is never a single-reader value")
        XCTAssertEqual(g.consumers(of: "x"), [0, 1], "Graph.consumers counts subgraph reads")
    }

    /// Built in one pass: 100k nodes index well under a second.
    func testLinearBuild() {
        var g = Graph()
        g.inputs = [ValueInfo("v0", .float32, [])]
        g.nodes = (0..<100_000).map { Node(opType: "Relu", inputs: ["v\($0)"], outputs: ["v\($0 + 1)"]) }
        let t0 = Date()
        let ix = UseDefIndex(g)
        XCTAssertEqual(ix.producer(of: "v100000"), 99_999)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1.0)
    }
}
