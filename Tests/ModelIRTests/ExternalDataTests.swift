import Foundation
import XCTest
@testable import ModelIR
import TensorCore

/// External data (onnx.proto `data_location = EXTERNAL`, keys location/offset/length): ranges,
/// missing files and every way a location could reach outside the model's folder.
final class ExternalDataTests: XCTestCase {
    var dir: URL!
    var resolver: ExternalDataResolver!

    override func setUpWithError() throws {
        dir = try makeTemporaryFolder(self)
        // 16 bytes: floats 1, 2, 3, 4
        try Data([Float](arrayLiteral: 1, 2, 3, 4).withUnsafeBytes { Array($0) }).write(to: dir.appendingPathComponent("w.bin"))
        resolver = ExternalDataResolver(directory: dir, modelPath: dir.appendingPathComponent("m.onnx").path)
    }

    private func ref(_ entries: [(String, String)]) throws -> ExternalDataResolver.Reference {
        try ExternalDataResolver.parse(entries, tensor: "w", path: "m.onnx")
    }

    private func floats(_ s: TensorStorage, _ n: Int) -> [Float] {
        Tensor(dtype: .float32, shape: [n], storage: s).scalars(as: Float.self)
    }

    func testOffsetAndLength() throws {
        let whole = try resolver.storage(try ref([("location", "w.bin")]), tensor: "w", byteCount: 16)
        XCTAssertEqual(floats(whole, 4), [1, 2, 3, 4])
        XCTAssertFalse(whole.isOwned, "external data is borrowed from a map")
        let tail = try resolver.storage(try ref([("location", "w.bin"), ("offset", "8"), ("length", "8")]), tensor: "w", byteCount: 8)
        XCTAssertEqual(floats(tail, 2), [3, 4])
        // An odd offset is legal; typed access then reads an aligned copy.
        let odd = try resolver.storage(try ref([("location", "./w.bin"), ("offset", "1"), ("length", "2")]), tensor: "w", byteCount: 2)
        XCTAssertEqual(odd.byteCount, 2)
        XCTAssertEqual(resolver.usedFiles, ["w.bin"], "one map per file, listed once")
    }

    func testRangeErrors() throws {
        assertModelError(["'w'", "length 12", "16 bytes"]) {
            _ = try resolver.storage(try ref([("location", "w.bin"), ("length", "12")]), tensor: "w", byteCount: 16)
        }
        assertModelError(["'w'", "past the end", "w.bin"]) {
            _ = try resolver.storage(try ref([("location", "w.bin"), ("offset", "12")]), tensor: "w", byteCount: 8)
        }
        assertModelError(["past the end"]) {
            _ = try resolver.storage(try ref([("location", "w.bin"), ("offset", "17")]), tensor: "w", byteCount: 0)
        }
        assertModelError(["offset '-4'"]) { _ = try ref([("location", "w.bin"), ("offset", "-4")]) }
        assertModelError(["length 'x'"]) { _ = try ref([("location", "w.bin"), ("length", "x")]) }
        assertModelError(["offset '99999999999999999999999'"]) { _ = try ref([("location", "w.bin"), ("offset", "99999999999999999999999")]) }
        assertModelError(["no 'location'"]) { _ = try ref([("offset", "0")]) }
    }

    func testMissingFile() throws {
        assertModelError(["m.onnx", "'w'", "'nope.bin' not found"]) {
            _ = try resolver.storage(try ref([("location", "nope.bin")]), tensor: "w", byteCount: 4)
        }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        assertModelError(["'w'", "is a directory"]) {
            _ = try resolver.storage(try ref([("location", "sub")]), tensor: "w", byteCount: 4)
        }
    }

    func testTraversalIsRejected() throws {
        // A real file outside the folder, so a rejection is not just "not found".
        let outside = dir.deletingLastPathComponent().appendingPathComponent("outside-\(UUID().uuidString).bin")
        try Data(count: 16).write(to: outside)
        addTeardownBlock { try? FileManager.default.removeItem(at: outside) }
        let name = outside.lastPathComponent
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("a"), withIntermediateDirectories: true)

        assertModelError(["'\(outside.path)'", "is absolute"]) {
            _ = try resolver.storage(try ref([("location", outside.path)]), tensor: "w", byteCount: 4)
        }
        assertModelError(["is absolute"]) { _ = try resolver.safeURL("C:\\weights.bin", tensor: "w") }
        assertModelError(["'../\(name)'", "escapes the model's folder"]) {
            _ = try resolver.storage(try ref([("location", "../\(name)")]), tensor: "w", byteCount: 4)
        }
        assertModelError(["'a/../../\(name)'", "escapes"]) {
            _ = try resolver.storage(try ref([("location", "a/../../\(name)")]), tensor: "w", byteCount: 4)
        }
        assertModelError(["escapes"]) { _ = try resolver.safeURL("a\\..\\..\\\(name)", tensor: "w") }
        // Climbing inside the folder is fine: a/../w.bin is w.bin.
        XCTAssertEqual(floats(try resolver.storage(try ref([("location", "a/../w.bin")]), tensor: "w", byteCount: 16), 4), [1, 2, 3, 4])

        // A symlink inside the folder pointing outside, to a file or through a linked folder.
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("link.bin").path, withDestinationPath: outside.path)
        assertModelError(["'link.bin'", "resolves outside the model's folder"]) {
            _ = try resolver.storage(try ref([("location", "link.bin")]), tensor: "w", byteCount: 4)
        }
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("up").path, withDestinationPath: "..")
        assertModelError(["'up/\(name)'", "resolves outside"]) {
            _ = try resolver.storage(try ref([("location", "up/\(name)")]), tensor: "w", byteCount: 4)
        }
        // A symlink that stays inside is followed.
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("inside.bin").path, withDestinationPath: "w.bin")
        XCTAssertEqual(floats(try resolver.storage(try ref([("location", "inside.bin")]), tensor: "w", byteCount: 16), 4), [1, 2, 3, 4])
    }

    /// ModelWriter's external layout: payloads of at least `threshold` bytes go to one side file
    /// at 64-byte aligned offsets; the model reads back with the same values and locations.
    func testWriterExternalLayoutRoundTrip() throws {
        let m = smallDenseModel()
        let url = dir.appendingPathComponent("dense.onnx")
        try ModelWriter.write(m, to: url, layout: .external(location: nil, threshold: 9))
        let back = try ModelReader.read(path: url.path)
        XCTAssertEqual(back.externalDataFiles, ["dense.onnx.data"])
        XCTAssertEqual(back.graph.initializer(named: "W")?.location, "dense.onnx.data", "24 bytes ≥ 9: external")
        XCTAssertEqual(back.graph.initializer(named: "bias")?.location, "inline", "8 bytes < 9: inline")
        XCTAssertEqual(back.graph.initializer(named: "W")?.tensor.scalars(as: Float.self), [1, -2, 3, -4, 5, -6])
        XCTAssertEqual(back.graph.initializer(named: "bias")?.tensor.scalars(as: Float.self), [0.5, -0.5])
        XCTAssertEqual(Int(bitPattern: back.graph.initializer(named: "W")!.tensor.storage.base) % 64, 0, "mapped payloads are aligned")

        // Back to inline: no data file referenced, same values.
        let inline = dir.appendingPathComponent("inline.onnx")
        try ModelWriter.write(back, to: inline)
        let again = try ModelReader.read(path: inline.path)
        XCTAssertEqual(again.externalDataFiles, [])
        XCTAssertEqual(again.graph.initializer(named: "W")?.tensor.scalars(as: Float.self), [1, -2, 3, -4, 5, -6])
        XCTAssertEqual(try ModelWriter.serialize(again), try ModelWriter.serialize(m))
    }

    /// Tensors read from typed fields stay inline even below the threshold (as onnx's
    /// convert_model_to_external_data, which moves only raw_data), so the round trip is exact.
    func testTypedFieldTensorsStayInline() throws {
        let m = try ModelReader.read(path: fixture("typed_fields.onnx"))
        let url = dir.appendingPathComponent("typed.onnx")
        try ModelWriter.write(m, to: url, layout: .external(location: "typed.bin", threshold: 0))
        let back = try ModelReader.read(path: url.path)
        XCTAssertEqual(back.graph.initializers.map(\.location), Array(repeating: "inline", count: 7))
        XCTAssertEqual(try Data(contentsOf: url), try Data(contentsOf: URL(fileURLWithPath: fixture("typed_fields.onnx"))))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("typed.bin").path),
                       "no side file when no tensor moves")
    }

    /// The fixture's external file: conv.weight and fc.weight live in model.onnx.data.
    func testExternalFixture() throws {
        let m = try ModelReader.read(path: fixture("external/model.onnx"))
        XCTAssertEqual(m.externalDataFiles, ["model.onnx.data"])
        let external = m.graph.initializers.filter { $0.location != "inline" }.map(\.name).sorted()
        XCTAssertEqual(external, ["conv.weight", "fc.weight"])
        XCTAssertEqual(m.graph.initializer(named: "conv.weight")?.tensor.shape, [4, 1, 3, 3])
        XCTAssertEqual(m.graph.initializer(named: "fc.weight")?.tensor.shape, [3, 64])
    }

    /// No temporary file is left behind when writing fails.
    func testFailedWriteLeavesNothing() throws {
        var m = smallDenseModel()
        // A string tensor built in code cannot be serialized (its strings are not modeled).
        m.graph.addInitializer(Initializer(name: "s", tensor: Tensor(dtype: .string, shape: [1])))
        let url = dir.appendingPathComponent("fail.onnx")
        XCTAssertThrowsError(try ModelWriter.write(m, to: url, layout: .external(location: nil, threshold: 0)))
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != "w.bin" }
        XCTAssertEqual(left, [], "files left behind: \(left)")
    }
}
