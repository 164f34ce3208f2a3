import Foundation
import XCTest
@testable import ModelIR
import TensorCore

/// The repository's Fixtures folder (found from this file's path, so tests run from any folder).
let fixturesURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

func fixture(_ name: String) -> String { fixturesURL.appendingPathComponent(name).path }

/// A fresh folder under the system temporary directory, removed when the test ends.
func makeTemporaryFolder(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("compress-modelir-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Asserts that `body` throws a `ModelError` whose one-line message contains every fragment.
func assertModelError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                      _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an error mentioning \(fragments)", file: file, line: line)
    } catch let e as ModelError {
        let text = e.description
        XCTAssertFalse(text.contains("\n"), "message spans lines: \(text)", file: file, line: line)
        for f in fragments { XCTAssertTrue(text.contains(f), "'\(text)' does not mention '\(f)'", file: file, line: line) }
    } catch {
        XCTFail("expected a ModelError, got \(type(of: error)): \(error)", file: file, line: line)
    }
}

/// A small runnable model: y = Relu(x · W + b) with W [3, 2], b [2].
func smallDenseModel(weightName: String = "W") -> Model {
    let b = GraphBuilder(name: "dense", seed: 1)
    let x = b.input("x", .float32, [.fixed(1), .fixed(3)])
    let w = b.initializer(weightName, Tensor(shape: [3, 2], scalars: [Float](arrayLiteral: 1, -2, 3, -4, 5, -6)))
    let bias = b.initializer("bias", Tensor(shape: [2], scalars: [Float](arrayLiteral: 0.5, -0.5)))
    let mm = b.op("MatMul", [x, w], name: "mm")
    let add = b.op("Add", [mm, bias], name: "add")
    b.graph.nodes.append(Node(name: "relu", opType: "Relu", inputs: [add], outputs: ["y"]))
    b.output("y", .float32, [.fixed(1), .fixed(2)])
    return b.build(opset: 13)
}
