import Foundation
import XCTest
@testable import ModelIR
import TensorCore
import ONNXProto

/// The zero-copy reader: typed TensorProto fields, raw_data borrowed from the map at any offset,
/// the wire scanner, bad input, and the lossless writer.
final class ModelReaderTests: XCTestCase {
    /// Fixtures/typed_fields.onnx stores every initializer in typed fields, not raw_data.
    /// Expected values: `numpy_helper.to_array(t)` for each initializer (onnx 1.22).
    func testTypedFieldsFixture() throws {
        let m = try ModelReader.read(path: fixture("typed_fields.onnx"))
        let g = m.graph
        func ini(_ n: String) throws -> Tensor { try XCTUnwrap(g.initializer(named: n), n).tensor }
        XCTAssertEqual(try ini("w_f32").shape, [2, 3])
        XCTAssertEqual(try ini("w_f32").scalars(as: Float.self), [0.5, -1, 2, 1.5, 0.25, -0.75])
        XCTAssertEqual(try ini("w_i64").scalars(as: Int64.self), [1, -2, 3_000_000_000])
        XCTAssertEqual(try ini("w_i8").scalars(as: Int8.self), [-128, 5, 127])
        XCTAssertEqual(try ini("w_u8").scalars(as: UInt8.self), [0, 200, 255])
        XCTAssertEqual(try ini("w_i32").scalars(as: Int32.self), [7, -8, 9])
        XCTAssertEqual(try ini("w_f64").scalars(as: Double.self), [0.125, 0.001, -4.5])
        // float16 bit patterns in int32_data: 0.5, -2, 1.25 = 0x3800, 0xC000, 0x3D00
        try ini("w_f16").withUnsafeBufferPointer(as: UInt16.self) { XCTAssertEqual(Array($0), [0x3800, 0xC000, 0x3D00]) }
        XCTAssertEqual(try ini("w_f16").floatValues(), [0.5, -2, 1.25])
        XCTAssertEqual(g.initializers.map(\.location), Array(repeating: "inline", count: 7))
    }

    /// raw_data is borrowed from the memory map, wherever protobuf put it. Names of different
    /// lengths shift the payload to every offset modulo 8; each must read back exactly.
    func testRawDataAtUnalignedOffsetsIsBorrowedAndReadExactly() throws {
        let dir = try makeTemporaryFolder(self)
        var misaligned = 0
        for nameLength in 1...8 {
            let name = String(repeating: "w", count: nameLength)
            let model = smallDenseModel(weightName: name)
            let url = dir.appendingPathComponent("m\(nameLength).onnx")
            try ModelWriter.write(model, to: url)
            let back = try ModelReader.read(path: url.path)
            let t = try XCTUnwrap(back.graph.initializer(named: name)).tensor
            XCTAssertFalse(t.storage.isOwned, "raw_data must be borrowed from the map, not copied")
            if Int(bitPattern: t.storage.base) % 4 != 0 { misaligned += 1 }
            XCTAssertEqual(t.scalars(as: Float.self), [1, -2, 3, -4, 5, -6])
            XCTAssertEqual(t.floatValues(), [1, -2, 3, -4, 5, -6])
        }
        XCTAssertGreaterThan(misaligned, 0, "no name length put raw_data at an unaligned offset")
    }

    /// The scanner on hand-encoded protobuf: ModelProto.graph (7) → GraphProto.initializer (5) →
    /// TensorProto { dims (1) = 2, data_type (2) = 1, float_data (4) packed, raw_data (9) }.
    func testWireScannerFindsRawDataAndTypedFields() throws {
        // initializer A: dims 2, data_type 1, raw_data 8 bytes
        let a: [UInt8] = [0x08, 0x02, 0x10, 0x01, 0x4A, 0x08] + [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]
        // initializer B: data_type 1, float_data packed [1.0]
        let b: [UInt8] = [0x10, 0x01, 0x22, 0x04, 0, 0, 0x80, 0x3F]
        let graph: [UInt8] = [0x2A, UInt8(a.count)] + a + [0x12, 0x01, 0x67] /* name (2) "g" */ + [0x2A, UInt8(b.count)] + b
        let model: [UInt8] = [0x08, 0x08] /* ir_version 8 */ + [0x3A, UInt8(graph.count)] + graph
        let ranges = try model.withUnsafeBufferPointer { p in
            try WireScanner(base: p.baseAddress!, count: p.count).initializers()
        }
        XCTAssertEqual(ranges.count, 2)
        let rawStart = 2 + 2 + 2 + 6
        XCTAssertEqual(ranges[0].rawData, rawStart..<(rawStart + 8))
        XCTAssertFalse(ranges[0].hasTypedData)
        XCTAssertNil(ranges[1].rawData)
        XCTAssertTrue(ranges[1].hasTypedData)

        // Cut short anywhere inside the graph: malformed, never a crash.
        for cut in 5..<model.count - 1 {
            let short = Array(model[..<cut])
            XCTAssertThrowsError(try short.withUnsafeBufferPointer { p in
                try WireScanner(base: p.baseAddress!, count: p.count).initializers()
            }, "cut at \(cut)")
        }
    }

    /// The pread-based walk finds the same initializer ranges as a walk over the whole file in
    /// memory, and its compact image decodes (full schema) to the same model less the payloads.
    func testCompactImageKeepsEverythingButPayloads() throws {
        for name in ["digits_cnn_bn.onnx", "typed_fields.onnx", "custom_if.onnx"] {
            let path = fixture(name)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            let inMemory = try bytes.withUnsafeBytes { p in
                try WireScanner(base: p.bindMemory(to: UInt8.self).baseAddress!, count: p.count).initializers()
            }
            let (image, ranges) = try WireScanner(source: FileWindowSource(path: path)).compactImage()
            XCTAssertEqual(ranges, inMemory, name)
            XCTAssertLessThan(image.count, bytes.count, name)
            var original = try Onnx_ModelProto(serializedBytes: bytes)
            let compact = try Onnx_ModelProto(serializedBytes: image)
            for i in original.graph.initializer.indices {
                original.graph.initializer[i].clearRawData()
                original.graph.initializer[i].floatData = []
                original.graph.initializer[i].int32Data = []
                original.graph.initializer[i].stringData = []
                original.graph.initializer[i].int64Data = []
                original.graph.initializer[i].doubleData = []
                original.graph.initializer[i].uint64Data = []
            }
            XCTAssertEqual(compact, original, name)
        }
    }

    func testBadBytesGiveOneLineErrors() {
        assertModelError(["empty file"]) { _ = try ModelReader.read(bytes: Data(), name: "e.onnx") }
        assertModelError(["x.onnx", "not an ONNX model"]) { _ = try ModelReader.read(bytes: Data([0xFF, 0xFF, 0xFF, 0x0F]), name: "x.onnx") }
        // ir_version only, no graph
        assertModelError(["no graph"]) { _ = try ModelReader.read(bytes: Data([0x08, 0x08]), name: "g.onnx") }
        // a graph but no opset_import (what a model cut right after its graph looks like)
        assertModelError(["opset_import"]) { _ = try ModelReader.read(bytes: Data([0x08, 0x08, 0x3A, 0x03, 0x12, 0x01, 0x67]), name: "o.onnx") }
        assertModelError(["missing.onnx", "No such file"]) { _ = try ModelReader.read(path: "/nonexistent/missing.onnx") }
        assertModelError(["is a directory"]) { _ = try ModelReader.read(path: NSTemporaryDirectory()) }
    }

    /// Every prefix of real models is rejected with a ModelError, or — when the cut falls on a
    /// field boundary after the graph (opset_import, metadata_props and functions follow it in
    /// field order) — decodes with the complete graph. A partial graph is never returned.
    func testEveryPrefixFailsCleanlyOrKeepsTheWholeGraph() throws {
        for name in ["custom_if.onnx", "typed_fields.onnx"] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: fixture(name)))
            let full = try ModelReader.read(bytes: bytes)
            var decoded: [Int] = []
            // Every cut near both ends (headers, opset_import, functions), every 5th in between
            // (a debug-build read takes milliseconds; this keeps the test to a few seconds).
            let cuts = (0..<bytes.count).filter { $0 < 96 || $0 >= bytes.count - 400 || $0 % 5 == 0 }
            for cut in cuts {
                do {
                    let m = try ModelReader.read(bytes: bytes.prefix(cut), name: "\(name)[..<\(cut)]")
                    decoded.append(cut)
                    XCTAssertEqual(m.graph.nodes.map(\.name), full.graph.nodes.map(\.name), "\(name) cut at \(cut)")
                    XCTAssertEqual(m.graph.initializers.map(\.name), full.graph.initializers.map(\.name), "\(name) cut at \(cut)")
                    XCTAssertEqual(m.graph.outputs.map(\.name), full.graph.outputs.map(\.name), "\(name) cut at \(cut)")
                    XCTAssertFalse(m.opsetImports.isEmpty)
                } catch {
                    XCTAssertTrue(error is ModelError, "\(name) cut at \(cut): \(type(of: error)) \(error)")
                }
            }
            XCTAssertLessThan(decoded.count, 10, "\(name): prefixes that decode: \(decoded)")
        }
    }

    /// Random byte changes to a real model never crash the reader: each mutant is read or
    /// rejected with a ModelError. (Seeded, so a failure reproduces.)
    func testMutatedModelsNeverCrash() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: fixture("custom_if.onnx")))
        var rng = SplitMix64(seed: 2024)
        var rejected = 0
        for _ in 0..<400 {
            var bytes = [UInt8](original)
            for _ in 0..<Int(rng.next() % 4 + 1) {
                let i = Int(rng.next() % UInt64(bytes.count))
                bytes[i] = rng.next() % 3 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : bytes[i] ^ (1 << UInt8(rng.next() % 8))
            }
            do {
                let m = try ModelReader.read(bytes: Data(bytes))
                for i in m.graph.initializers { _ = i.tensor.byteCount }
                _ = try ModelWriter.serialize(m)
            } catch is ModelError {
                rejected += 1
            } catch {
                // The writer may refuse what it cannot re-encode; any other error type is a bug.
                XCTFail("unexpected \(type(of: error)): \(error)")
            }
        }
        XCTAssertGreaterThan(rejected, 0)
    }

    func testErrorsEscapeControlCharacters() {
        let e = ModelError("m.onnx", "tensor 'a\nb\u{1B}[31m' is bad")
        XCTAssertEqual(e.description, "m.onnx: tensor 'a\\nb\\u{1B}[31m' is bad")
    }

    /// Every fixture is written back byte for byte (the writer starts from the messages read).
    func testFixturesRoundTripByteForByte() throws {
        let dir = try makeTemporaryFolder(self)
        for name in ["digits_cnn.onnx", "digits_cnn_bn.onnx", "custom_if.onnx", "typed_fields.onnx"] {
            let m = try ModelReader.read(path: fixture(name))
            let out = dir.appendingPathComponent(name)
            try ModelWriter.write(m, to: out)
            XCTAssertEqual(try Data(contentsOf: out), try Data(contentsOf: URL(fileURLWithPath: fixture(name))), name)
        }
    }

    /// A changed initializer is written as raw_data; the others keep their original encoding.
    func testChangedInitializerIsRewrittenOthersKept() throws {
        var m = try ModelReader.read(path: fixture("typed_fields.onnx"))
        try m.graph.replaceInitializer("w_f32", with: Tensor(shape: [2, 3], scalars: [Float](repeating: 2, count: 6)))
        let back = try ModelReader.read(bytes: try ModelWriter.serialize(m))
        XCTAssertEqual(back.graph.initializer(named: "w_f32")?.tensor.scalars(as: Float.self), [2, 2, 2, 2, 2, 2])
        XCTAssertEqual(back.graph.initializer(named: "w_i64")?.tensor.scalars(as: Int64.self), [1, -2, 3_000_000_000])
        XCTAssertEqual(back.graph.nodes.map(\.opType), m.graph.nodes.map(\.opType))
    }

    /// What info reports: opsets, I/O types with symbolic dims, subgraphs and functions kept.
    func testStructureOfCustomIfFixture() throws {
        let m = try ModelReader.read(path: fixture("custom_if.onnx"))
        XCTAssertEqual(m.graph.runtimeInputs.map(\.name), ["x", "cond"])
        XCTAssertEqual(m.graph.outputs.map(\.name), ["if_out", "loop_scan", "fn_out"])
        XCTAssertEqual(m.graph.outputs[1].type?.shape, [.unknown, .fixed(2), .fixed(3)])
        XCTAssertEqual(m.functionCount, 1)
        let ifNode = try XCTUnwrap(m.graph.nodes.first { $0.opType == "If" })
        XCTAssertNotNil(ifNode.graph("then_branch"))
        XCTAssertNotNil(ifNode.graph("else_branch"))
        let custom = try XCTUnwrap(m.graph.nodes.first { $0.opType == "MyOp" })
        XCTAssertEqual(custom.domain, "com.example")
    }
}
