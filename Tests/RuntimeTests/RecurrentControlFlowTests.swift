import XCTest
import ModelIR
@testable import Runtime
import TensorCore

/// If / Loop / Scan through the executor (bodies run with `runSubgraph`) and shape inference.
final class RecurrentControlFlowTests: XCTestCase {
    private func vi(_ name: String, _ dtype: DType, _ dims: [Int]) -> ValueInfo { ValueInfo(name, dtype, dims.map { .fixed($0) }) }

    /// y = If(c) then x + x else x (Identity), both branches declaring float[3].
    private func ifModel(thenShape: [Int] = [3]) -> Model {
        let thenG = Graph(name: "then", nodes: [Node(opType: "Add", inputs: ["x", "x"], outputs: ["t"])], outputs: [vi("t", .float32, thenShape)])
        let elseG = Graph(name: "else", nodes: [Node(opType: "Identity", inputs: ["x"], outputs: ["e"])], outputs: [vi("e", .float32, [3])])
        let n = Node(opType: "If", inputs: ["c"], outputs: ["y"],
                     attributes: [Attribute(name: "then_branch", value: .graph(thenG)), Attribute(name: "else_branch", value: .graph(elseG))])
        let g = Graph(nodes: [n], inputs: [vi("c", .bool, []), vi("x", .float32, [3])], outputs: [vi("y", .float32, [3])])
        return Model(graph: g, opsetImports: [OpsetImport(domain: "", version: 17)])
    }

    func testIfRunsTheSelectedBranch() throws {
        let exec = try Executor(model: ifModel())
        let x = Tensor(shape: [3], scalars: [Float(1), 2, 3])
        XCTAssertEqual(try exec.run(["c": Tensor(scalar: true), "x": x])["y"]?.scalars(as: Float.self), [2, 4, 6])
        XCTAssertEqual(try exec.run(["c": Tensor(scalar: false), "x": x])["y"]?.scalars(as: Float.self), [1, 2, 3])
    }

    func testIfShapeInference() throws {
        // Unknown condition, same declared branch types: resolved.
        let si = try ShapeInference(model: ifModel())
        XCTAssertEqual(si.types["y"], TensorInfo(.float32, [3]))
        // Different branch types and an unknown condition: unresolved, with the reason.
        let loose = try ShapeInference(model: ifModel(thenShape: [1, 3]), strict: false)
        XCTAssertEqual(loose.unresolved.count, 1)
        XCTAssertTrue(loose.unresolved[0].reason.contains("condition only known at run time"), loose.unresolved[0].reason)
    }

    /// Loop(M, cond="", acc): acc_out = acc_in + i (as float); scan output acc_out.
    private func loopModel() -> Model {
        let body = Graph(name: "body", nodes: [
            Node(opType: "Cast", inputs: ["i"], outputs: ["fi"], attributes: [Attribute(name: "to", value: .int(1))]),
            Node(opType: "Add", inputs: ["acc_in", "fi"], outputs: ["acc_out"]),
            Node(opType: "Identity", inputs: ["acc_out"], outputs: ["scan"]),
            Node(opType: "Identity", inputs: ["c_in"], outputs: ["c_out"]),
        ], inputs: [vi("i", .int64, []), vi("c_in", .bool, []), vi("acc_in", .float32, [2])],
           outputs: [vi("c_out", .bool, []), vi("acc_out", .float32, [2]), vi("scan", .float32, [2])])
        let n = Node(opType: "Loop", inputs: ["M", "", "acc"], outputs: ["acc_final", "scans"], attributes: [Attribute(name: "body", value: .graph(body))])
        let g = Graph(nodes: [n], inputs: [vi("M", .int64, []), vi("acc", .float32, [2])],
                      outputs: [ValueInfo(name: "acc_final", type: nil), ValueInfo(name: "scans", type: nil)])
        return Model(graph: g, opsetImports: [OpsetImport(domain: "", version: 17)])
    }

    func testLoopCarriesAndStacks() throws {
        let exec = try Executor(model: loopModel())
        let acc = Tensor(shape: [2], scalars: [Float(0), 10])
        let out = try exec.run(["M": Tensor(scalar: Int64(3)), "acc": acc])
        XCTAssertEqual(out["acc_final"]?.scalars(as: Float.self), [3, 13])                // + 0 + 1 + 2
        XCTAssertEqual(out["scans"]?.shape, [3, 2])
        XCTAssertEqual(out["scans"]?.scalars(as: Float.self), [0, 10, 1, 11, 3, 13])
        // Zero trips: carried values pass through, scan outputs are empty with the declared shape.
        let none = try exec.run(["M": Tensor(scalar: Int64(0)), "acc": acc])
        XCTAssertEqual(none["acc_final"]?.scalars(as: Float.self), [0, 10])
        XCTAssertEqual(none["scans"]?.shape, [0, 2])
    }

    func testLoopShapeInferenceNeedsAKnownTripCount() throws {
        let loose = try ShapeInference(model: loopModel(), strict: false)
        XCTAssertTrue(loose.unresolved.first?.reason.contains("trip count M is not known") ?? false, "\(loose.unresolved)")
        // With M a constant initializer the scan output has M rows.
        var m = loopModel()
        m.graph.inputs.removeAll { $0.name == "M" }
        m.graph.addInitializer(Initializer(name: "M", tensor: Tensor(scalar: Int64(4))))
        let si = try ShapeInference(model: m)
        XCTAssertEqual(si.types["scans"], TensorInfo(.float32, [4, 2]))
        XCTAssertEqual(si.types["acc_final"], TensorInfo(.float32, [2]))
    }

    func testLoopWithoutBoundIsRefused() throws {
        var m = loopModel()
        m.graph.nodes[0].inputs[0] = ""
        m.graph.inputs.removeAll { $0.name == "M" }
        let exec = try Executor(model: m)
        XCTAssertThrowsError(try exec.run(["acc": Tensor(shape: [2], scalars: [Float(0), 0])])) { e in
            XCTAssertTrue("\(e)".contains("never ends"), "\(e)")
        }
    }

    func testScanReverseInputAndOutputAxis() throws {
        // Running sum over the columns of x [2, 3], read right to left, stacked on axis 1.
        let body = Graph(name: "body", nodes: [
            Node(opType: "Add", inputs: ["s_in", "x_t"], outputs: ["s_out"]),
            Node(opType: "Identity", inputs: ["s_out"], outputs: ["y_t"]),
        ], inputs: [vi("s_in", .float32, [2]), vi("x_t", .float32, [2])], outputs: [vi("s_out", .float32, [2]), vi("y_t", .float32, [2])])
        let n = Node(opType: "Scan", inputs: ["s", "x"], outputs: ["s_final", "ys"], attributes: [
            Attribute(name: "body", value: .graph(body)), Attribute(name: "num_scan_inputs", value: .int(1)),
            Attribute(name: "scan_input_axes", value: .ints([1])), Attribute(name: "scan_input_directions", value: .ints([1])),
            Attribute(name: "scan_output_axes", value: .ints([1])),
        ])
        let g = Graph(nodes: [n], inputs: [vi("s", .float32, [2]), vi("x", .float32, [2, 3])],
                      outputs: [vi("s_final", .float32, [2]), vi("ys", .float32, [2, 3])])
        let model = Model(graph: g, opsetImports: [OpsetImport(domain: "", version: 17)])
        let out = try Executor(model: model).run(["s": Tensor(shape: [2], scalars: [Float(0), 100]),
                                                  "x": Tensor(shape: [2, 3], scalars: [Float(1), 2, 3, 4, 5, 6])])
        XCTAssertEqual(out["s_final"]?.scalars(as: Float.self), [6, 115])
        // Iterations see columns 2, 1, 0: sums [3, 106], [5, 111], [6, 115].
        XCTAssertEqual(out["ys"]?.scalars(as: Float.self), [3, 5, 6, 106, 111, 115])
        XCTAssertEqual(try ShapeInference(model: model).types["ys"], TensorInfo(.float32, [2, 3]))
    }
}
