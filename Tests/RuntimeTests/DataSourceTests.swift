import Foundation
import XCTest
import ModelIR
@testable import Runtime
import TensorCore

/// Folder layouts, labels and the one-line errors of `DataSource`.
final class DataSourceTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func path(_ parts: String...) -> String { parts.reduce(root.path) { ($0 as NSString).appendingPathComponent($1) } }

    func mkdir(_ parts: String...) throws {
        try FileManager.default.createDirectory(atPath: parts.reduce(root.path) { ($0 as NSString).appendingPathComponent($1) }, withIntermediateDirectories: true)
    }

    func write(_ t: Tensor, _ parts: String...) throws {
        try NPYFile.write(t, to: parts.reduce(root.path) { ($0 as NSString).appendingPathComponent($1) })
    }

    func text(_ s: String, _ parts: String...) {
        _ = FileManager.default.createFile(atPath: parts.reduce(root.path) { ($0 as NSString).appendingPathComponent($1) }, contents: Data(s.utf8))
    }

    let one = [DataInput(name: "x", dtype: .float32, shape: [1, 2], flexibleBatch: true, pinned: false)]
    let two = [DataInput(name: "a", dtype: .float32, shape: [1, 2], flexibleBatch: true, pinned: false),
               DataInput(name: "b", dtype: .int64, shape: [1], flexibleBatch: false, pinned: false)]

    func v(_ a: Float, _ b: Float) -> Tensor { Tensor(shape: [2], scalars: [a, b]) }

    func assertError(_ body: @autoclosure () throws -> Any, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            let d = "\(e)".replacingOccurrences(of: root.path, with: "ROOT")
            XCTAssertTrue(d.contains(expected), "'\(d)' lacks '\(expected)'", file: file, line: line)
            XCTAssertFalse(d.contains("\n"), "one line", file: file, line: line)
        }
    }

    func testFlatFolderWithLabels() throws {
        try write(v(1, 2), "b.npy")
        try write(v(3, 4), "a.npy")
        try TensorCodec.writeTensorFile(Tensor(shape: [1, 2], scalars: [Float](arrayLiteral: 5, 6)), to: path("c.pb"))
        text("# name label\na.npy 3\nb 1\n\n", "labels.txt")
        text("", ".hidden")
        let s = try DataSource(directory: root.path, inputs: one)
        XCTAssertEqual(s.layout, .files)
        XCTAssertEqual(s.entries.map(\.id), ["a", "b", "c"])
        XCTAssertEqual(s.entries.map(\.label), [3, 1, nil])
        var seen: [[Float]] = []
        try s.forEachSample { sample in
            XCTAssertEqual(sample.inputs["x"]!.shape, [1, 2])
            seen.append(sample.inputs["x"]!.scalars(as: Float.self))
        }
        XCTAssertEqual(seen, [[3, 4], [1, 2], [5, 6]])
    }

    func testClassFolders() throws {
        try mkdir("dog"); try mkdir("cat")
        try write(v(1, 1), "dog", "d1.npy")
        try write(v(2, 2), "cat", "c1.npy")
        try write(v(3, 3), "cat", "c2.npy")
        let s = try DataSource(directory: root.path + "/", inputs: one)
        XCTAssertEqual(s.layout, .classFolders)
        XCTAssertEqual(s.classNames, ["cat", "dog"])
        XCTAssertEqual(s.entries.map(\.id), ["cat/c1", "cat/c2", "dog/d1"])
        XCTAssertEqual(s.entries.map(\.label), [0, 0, 1])
        XCTAssertEqual(s.directory, root.path)
    }

    func testTestDataSets() throws {
        for n in [0, 1, 10, 2] {
            try mkdir("test_data_set_\(n)")
            try TensorCodec.writeTensorFile(Tensor(shape: [1, 2], scalars: [Float(n), 0]), to: path("test_data_set_\(n)", "input_0.pb"))
            try write(Tensor(shape: [1], scalars: [Int64(n)]), "test_data_set_\(n)", "input_1.npy")
            try TensorCodec.writeTensorFile(Tensor(shape: [1], scalars: [Float(0)]), to: path("test_data_set_\(n)", "output_0.pb"))
        }
        text("not a model", "model.onnx")
        let s = try DataSource(directory: root.path, inputs: two)
        XCTAssertEqual(s.layout, .testDataSets)
        XCTAssertEqual(s.entries.map(\.id), ["test_data_set_0", "test_data_set_1", "test_data_set_2", "test_data_set_10"])
        var it = s.makeIterator()
        _ = try it.next()
        let second = try it.next()!
        XCTAssertEqual(second.inputs["a"]!.scalars(as: Float.self), [1, 0])
        XCTAssertEqual(second.inputs["b"]!.scalars(as: Int64.self), [1])
        // A single set given directly.
        let one = try DataSource(directory: path("test_data_set_2"), inputs: two)
        XCTAssertEqual(one.entries.map(\.id), ["test_data_set_2"])
        // A missing input file.
        try FileManager.default.removeItem(atPath: path("test_data_set_1", "input_1.npy"))
        assertError(try DataSource(directory: root.path, inputs: two), "ROOT/test_data_set_1: no input_1.pb for model input 1 ('b')")
    }

    func testErrors() throws {
        assertError(try DataSource(directory: path("nope"), inputs: one), "ROOT/nope: no such folder")
        assertError(try DataSource(directory: root.path, inputs: one), "ROOT: no samples")
        text("x", "notes.md")
        assertError(try DataSource(directory: root.path, inputs: one), "ROOT/notes.md: not a data file")
        try FileManager.default.removeItem(atPath: path("notes.md"))
        try write(v(1, 2), "a.npy")
        assertError(try DataSource(directory: path("a.npy"), inputs: one), "ROOT/a.npy: not a folder")
        assertError(try DataSource(directory: root.path, inputs: two), "ROOT: the model has 2 inputs (a, b); plain files feed single-input models only. Use one folder per sample in ONNX's test-data layout: ROOT/test_data_set_0/input_0.pb … input_1.pb")
        text("x", "a.png")
        assertError(try DataSource(directory: root.path, inputs: one), "ROOT/a.png: has the same stem as a.npy")
        try FileManager.default.removeItem(atPath: path("a.png"))
        text("a.npy seven\n", "labels.txt")
        assertError(try DataSource(directory: root.path, inputs: one), "ROOT/labels.txt:1: expected 'NAME LABEL'")
        text("a.npy 1\nzz.npy 2\n", "labels.txt")
        assertError(try DataSource(directory: root.path, inputs: one), "ROOT/labels.txt:2: no sample 'zz.npy' in the folder")
        text("a.npy 1\na 2\n", "labels.txt")
        assertError(try DataSource(directory: root.path, inputs: one), "ROOT/labels.txt:2: 'a' already has a label on line 1")
        try FileManager.default.removeItem(atPath: path("labels.txt"))
        try mkdir("sub")
        assertError(try DataSource(directory: root.path, inputs: one), "ROOT: mixes data files (a.npy) with subfolders (sub)")
        try FileManager.default.removeItem(atPath: path("sub"))
        // Load-time errors name the file.
        try write(Tensor(shape: [3], scalars: [Float](arrayLiteral: 1, 2, 3)), "a.npy")
        text("garbage", "b.npy")
        let s = try DataSource(directory: root.path, inputs: one)
        assertError(try s.load(s.entries[0]), "ROOT/a.npy: shape 3 does not fit input 'x' 1x2")
        assertError(try s.load(s.entries[1]), "ROOT/b.npy: not a .npy file")
        var it = s.makeIterator()
        XCTAssertThrowsError(try it.next())
        XCTAssertThrowsError(try it.next())
        XCTAssertNil(try it.next())
    }

    /// The samples feed an `Executor` as they come (an Identity model with its own registry).
    func testFeedsTheExecutor() throws {
        let b = GraphBuilder(name: "id")
        let x = b.input("x", .float32, [.symbolic("N"), .fixed(2)])
        let y = b.op("Identity", [x], name: "id")
        b.output(y)
        let model = b.build()
        let registry = OpRegistry()
        registry.register("Identity", kernel: { inputs, _ in [inputs[0]!] }, infer: { infos, _, _ in [infos[0]!] })
        try write(Tensor(shape: [3, 2], scalars: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6)), "batch.npy")
        try write(v(7, 8), "single.npy")
        let s = try DataSource(directory: root.path, graph: model.graph, pins: [:])
        let exec = try Executor(model: model, registry: registry)
        var shapes: [[Int]] = []
        try s.forEachSample { sample in shapes.append(try exec.run(sample.inputs)[y]!.shape) }
        XCTAssertEqual(shapes, [[3, 2], [1, 2]])
    }
}
