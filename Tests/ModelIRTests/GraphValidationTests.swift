import Foundation
import XCTest
@testable import ModelIR
import TensorCore

/// `Graph.validate`: ONNX's graph rules (onnx.proto: single static assignment, nodes in
/// topological order, every read defined), each refusal naming the node and the value.
final class GraphValidationTests: XCTestCase {
    /// x → A(x, W) → a → B → y.
    func chain() -> Graph {
        var g = Graph(name: "chain")
        g.inputs = [ValueInfo("x", .float32, [.fixed(2)])]
        g.outputs = [ValueInfo("y", .float32, [.fixed(2)])]
        g.addInitializer(Initializer(name: "W", tensor: Tensor(shape: [2], scalars: [Float](arrayLiteral: 1, 2))))
        g.nodes = [
            Node(name: "A", opType: "Add", inputs: ["x", "W"], outputs: ["a"]),
            Node(name: "B", opType: "Relu", inputs: ["a"], outputs: ["y"]),
        ]
        return g
    }

    func problem(_ g: Graph) -> String { g.validationProblem() ?? "" }

    func testValidGraphsPass() throws {
        XCTAssertNil(chain().validationProblem())
        // An initializer also listed as a graph input (IR < 4) and omitted optional inputs.
        var g = chain()
        g.inputs.append(ValueInfo("W", .float32, [.fixed(2)]))
        g.nodes[1].inputs.append("")
        XCTAssertNil(g.validationProblem())
        XCTAssertNoThrow(try g.validate(path: "m.onnx"))
    }

    func testCycleNamesTheNode() {
        // The case: A reads x, B writes x, no graph input.
        var g = chain()
        g.inputs = []
        g.nodes[1].outputs = ["x"]
        g.outputs = [ValueInfo(name: "a", type: nil)]
        let p = problem(g)
        XCTAssertTrue(p.contains("node 'A' (Add) reads 'x'") && p.contains("cycle"), p)
        XCTAssertThrowsError(try g.validate(path: "m.onnx")) { e in
            XCTAssertTrue("\(e)".hasPrefix("m.onnx: node 'A'"), "\(e)")
        }
    }

    func testDanglingInputAndMissingInitializer() {
        var g = chain()
        g.nodes[1].inputs = ["nowhere"]
        XCTAssertTrue(problem(g).contains("node 'B' (Relu) reads 'nowhere', which no node produces"), problem(g))
        g = chain()
        g.removeInitializer("W")
        XCTAssertTrue(problem(g).contains("node 'A' (Add) reads 'W', which no node produces and which is not a graph input or an initializer"), problem(g))
    }

    func testOrderSelfLoopAndDuplicates() {
        var g = chain()
        g.nodes.reverse()
        XCTAssertTrue(problem(g).contains("topological order"), problem(g))
        g = chain()
        g.nodes[1].inputs = ["y"]
        XCTAssertTrue(problem(g).contains("node 'B' (Relu) reads its own output 'y'"), problem(g))
        g = chain()
        g.nodes.append(Node(name: "C", opType: "Neg", inputs: ["x"], outputs: ["a"]))
        XCTAssertTrue(problem(g).contains("node 'C' (Neg) writes 'a', which node 'A' (Add) also writes"), problem(g))
        g = chain()
        g.nodes[1].outputs = ["W"]
        XCTAssertTrue(problem(g).contains("also an initializer"), problem(g))
        g = chain()
        g.outputs.append(g.outputs[0])
        XCTAssertTrue(problem(g).contains("graph output 'y' is listed twice"), problem(g))
        g = chain()
        g.outputs = [ValueInfo(name: "q", type: nil)]
        XCTAssertTrue(problem(g).contains("graph output 'q' is not produced"), problem(g))
    }

    func testBodiesSeeOuterValuesDefinedBeforeTheirNode() {
        // The body reads outer `a` (defined before the If) and its own input: valid.
        var body = Graph(name: "then")
        body.nodes = [Node(name: "in", opType: "Neg", inputs: ["a"], outputs: ["t"]),
                      Node(name: "dup", opType: "Neg", inputs: ["t"], outputs: ["u"])]
        body.outputs = [ValueInfo(name: "u", type: nil)]
        var g = chain()
        g.inputs.append(ValueInfo("c", .bool, []))
        g.nodes.append(Node(name: "If", opType: "If", inputs: ["c"], outputs: ["z"],
                            attributes: [Attribute(name: "then_branch", value: .graph(body)),
                                         Attribute(name: "else_branch", value: .graph(body))]))
        XCTAssertNil(g.validationProblem())
        // A value written twice inside the body is found and the body named.
        body.nodes[1].outputs = ["t"]
        body.outputs = [ValueInfo(name: "t", type: nil)]
        g.nodes[2].attributes = [Attribute(name: "then_branch", value: .graph(body))]
        let p = problem(g)
        XCTAssertTrue(p.hasPrefix("in body 'then_branch' of node 'If' (If): node 'dup' (Neg) writes 't'"), p)
    }
}
