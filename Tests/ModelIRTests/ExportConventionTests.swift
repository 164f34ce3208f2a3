import Foundation
import XCTest
@testable import ModelIR
import TensorCore

/// Conventions real exporters write that builder-made models never show: paddle2onnx's
/// `dim_value: -1` and weights kept in `Constant` nodes.
final class ExportConventionTests: XCTestCase {
    /// The paddle2onnx-style fixture: -1 dims read as dynamic, written back as -1, byte for byte.
    func testNegativeDimValueIsDynamicAndRoundTrips() throws {
        let path = fixture("digits_cnn_paddle.onnx")
        let m = try ModelReader.read(path: path)
        XCTAssertEqual(m.graph.inputs[0].type?.shape, [.unknown, .fixed(1), .fixed(8), .fixed(8)])
        XCTAssertEqual(m.graph.outputs[0].type?.shape, [.unknown, .fixed(10)])
        XCTAssertFalse(m.graph.valueInfo.isEmpty)
        for v in m.graph.valueInfo { XCTAssertEqual(v.type?.shape?.first, .unknown, v.name) }
        let dir = try makeTemporaryFolder(self)
        let out = dir.appendingPathComponent("paddle.onnx")
        try ModelWriter.write(m, to: out)
        XCTAssertEqual(try Data(contentsOf: out), try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// An edited value_info next to an untouched -1 one: the untouched one still says -1.
    func testNegativeDimSurvivesAnEditElsewhere() throws {
        var m = try ModelReader.read(path: fixture("digits_cnn_paddle.onnx"))
        m.graph.valueInfo[0].type = TensorType(.float32, [1, 8, 8, 8])
        let back = try ModelReader.read(bytes: try ModelWriter.serialize(m))
        XCTAssertEqual(back.graph.valueInfo[0].type?.shape, [.fixed(1), .fixed(8), .fixed(8), .fixed(8)])
        XCTAssertEqual(back.graph.valueInfo[1].type?.shape?.first, .unknown)
        XCTAssertEqual(back.graph.inputs[0].type?.shape?.first, .unknown)
    }

    /// Constant-node weights answer `constantTensor(named:)` like initializers do.
    func testConstantNodeTensorsAreWeights() throws {
        let paddle = try ModelReader.read(path: fixture("digits_cnn_paddle.onnx")).graph
        let plain = try ModelReader.read(path: fixture("digits_cnn_bn.onnx")).graph
        XCTAssertTrue(paddle.initializers.isEmpty)
        XCTAssertEqual(paddle.constantNodeTensors.count, plain.initializers.count + 1)  // + Reshape's shape
        for ini in plain.initializers {
            let t = try XCTUnwrap(paddle.constantTensor(named: ini.name), ini.name)
            XCTAssertEqual(t.shape, ini.tensor.shape, ini.name)
            XCTAssertEqual(t.scalars(as: Float.self), ini.tensor.scalars(as: Float.self), ini.name)
            XCTAssertEqual(plain.constantTensor(named: ini.name)?.scalars(as: Float.self), ini.tensor.scalars(as: Float.self))
        }
        XCTAssertEqual(paddle.constantTensor(named: "flatten/shape")?.scalars(as: Int64.self), [0, -1])
        XCTAssertNil(paddle.constantTensor(named: "input"), "a graph input is not constant")
        XCTAssertNil(paddle.constantTensor(named: "logits"), "a computed value is not constant")
    }

    /// Constant-12's scalar and list attributes, and an initializer shadowed by a graph input.
    func testConstantAttributeFormsAndOverridableInitializers() {
        func constant(_ name: String, _ attr: String, _ value: AttributeValue) -> Node {
            Node(name: name, opType: "Constant", inputs: [], outputs: [name], attributes: [Attribute(name: attr, value: value)])
        }
        var g = Graph(nodes: [constant("f", "value_float", .float(2.5)), constant("fs", "value_floats", .floats([1, 2])),
                              constant("i", "value_int", .int(-3)), constant("is", "value_ints", .ints([4, 5, 6])),
                              constant("s", "value_string", .string("text"))],
                      inputs: [ValueInfo("w", .float32, [.fixed(1)])],
                      initializers: [Initializer(name: "w", tensor: Tensor(shape: [1], scalars: [Float(1)]))])
        XCTAssertEqual(g.constantTensor(named: "f")?.scalars(as: Float.self), [2.5])
        XCTAssertEqual(g.constantTensor(named: "f")?.shape, [])
        XCTAssertEqual(g.constantTensor(named: "fs")?.scalars(as: Float.self), [1, 2])
        XCTAssertEqual(g.constantTensor(named: "i")?.scalars(as: Int64.self), [-3])
        XCTAssertEqual(g.constantTensor(named: "is")?.shape, [3])
        XCTAssertNil(g.constantTensor(named: "s"), "string constants are not tensors compress models")
        XCTAssertNil(g.constantTensor(named: "w"), "an initializer that is also a graph input can be fed")
        g.inputs = []
        XCTAssertEqual(g.constantTensor(named: "w")?.scalars(as: Float.self), [1])
        XCTAssertEqual(g.constantNodeTensors.map(\.name), ["f", "fs", "i", "is"])
    }
}
