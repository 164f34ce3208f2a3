import Foundation
import XCTest
@testable import Runtime
import TensorCore

/// `.npy` reading and writing. Files NumPy itself writes (every dtype, both byte orders, all
/// three format versions) are checked in Tests/Interop/test_data_loading.py; these cases pin
/// the header grammar and the error messages.
final class DataNPYTests: XCTestCase {
    /// Builds a `.npy` byte string by hand: `version`, a header text and payload bytes.
    func npy(_ header: String, version: UInt8 = 1, payload: [UInt8]) -> [UInt8] {
        var h = Array(header.utf8)
        let prefix = version == 1 ? 10 : 12
        while (prefix + h.count + 1) % 64 != 0 { h.append(0x20) }
        h.append(0x0A)
        var out: [UInt8] = NPYFile.magic + [version, 0]
        if version == 1 { out += [UInt8(h.count & 0xFF), UInt8(h.count >> 8)] } else { out += (0..<4).map { UInt8((h.count >> (8 * $0)) & 0xFF) } }
        return out + h + payload
    }

    func decode(_ bytes: [UInt8]) throws -> Tensor {
        try bytes.withUnsafeBytes { try NPYFile.decode($0, path: "x.npy") }
    }

    func assertError(_ bytes: [UInt8], contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(bytes), file: file, line: line) { e in
            let d = "\(e)"
            XCTAssertTrue(d.hasPrefix("x.npy: "), d, file: file, line: line)
            XCTAssertTrue(d.contains(text), "'\(d)' lacks '\(text)'", file: file, line: line)
        }
    }

    func testRoundTripEveryDType() throws {
        let cases: [Tensor] = [
            Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 1, -2, 3.5, .infinity, -0.0, 1e-30)),
            Tensor(shape: [3], scalars: [Double](arrayLiteral: 1e300, -1, 0.1)),
            Tensor(shape: [2], scalars: [Int8](arrayLiteral: -128, 127)),
            Tensor(shape: [2], scalars: [UInt8](arrayLiteral: 0, 255)),
            Tensor(shape: [2], scalars: [Int16](arrayLiteral: -32768, 7)),
            Tensor(shape: [1, 1], scalars: [Int32](arrayLiteral: -5)),
            Tensor(shape: [2], scalars: [Int64](arrayLiteral: .min, .max)),
            Tensor(shape: [], scalars: [Float](arrayLiteral: 42)),
            Tensor(shape: [0, 4], scalars: [Float]()),
        ]
        for t in cases {
            let data = try NPYFile.encode(t)
            let back = try data.withUnsafeBytes { try NPYFile.decode($0, path: "t.npy") }
            XCTAssertTrue(back.isBitwiseEqual(to: t), "\(t)")
            // Data starts on a 64-byte boundary, as NumPy writes it.
            let headerLength = Int(data[8]) | Int(data[9]) << 8
            XCTAssertEqual((10 + headerLength) % 64, 0)
        }
        var h = Tensor(dtype: .float16, shape: [2])
        h.withUnsafeMutableBufferPointer(as: UInt16.self) { $0[0] = 0x3C00; $0[1] = 0xC000 }
        let back = try NPYFile.encode(h).withUnsafeBytes { try NPYFile.decode($0, path: "h.npy") }
        XCTAssertTrue(back.isBitwiseEqual(to: h))
        var b = Tensor(dtype: .bool, shape: [3])
        b.withUnsafeMutableBufferPointer(as: UInt8.self) { $0[0] = 1; $0[2] = 1 }
        XCTAssertTrue(try NPYFile.encode(b).withUnsafeBytes { try NPYFile.decode($0, path: "b.npy") }.isBitwiseEqual(to: b))
    }

    func testHeaderVariants() throws {
        // Big-endian int32 1 and 256, version 2.0, keys in another order, no trailing comma.
        let be = npy("{'shape': (2,), 'fortran_order': False, 'descr': '>i4'}", version: 2, payload: [0, 0, 0, 1, 0, 0, 1, 0])
        XCTAssertEqual(try decode(be).scalars(as: Int32.self), [1, 256])
        // Version 3.0 with double quotes; Python 2's long suffix.
        let v3 = npy("{\"descr\": \"<u2\", \"fortran_order\": False, \"shape\": (1L, 2L), }", version: 3, payload: [1, 0, 0, 1])
        let t = try decode(v3)
        XCTAssertEqual(t.shape, [1, 2])
        XCTAssertEqual(t.scalars(as: UInt16.self), [1, 256])
        // Big-endian float64.
        let f = npy("{'descr': '>f8', 'fortran_order': False, 'shape': (), }", payload: [0x3F, 0xF0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try decode(f).scalars(as: Double.self), [1.0])
    }

    func testBadFiles() {
        assertError([1, 2, 3], contains: "not a .npy file")
        assertError(Array("\u{93}NUMPX".utf8) + [1, 0, 0, 0], contains: "not a .npy file")
        assertError(NPYFile.magic + [4, 0, 10, 0], contains: "version 4.0")
        assertError(NPYFile.magic + [1, 0, 200, 0] + Array("{'descr'".utf8), contains: "truncated .npy header")
        assertError(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", payload: [UInt8](repeating: 0, count: 16)), contains: "Fortran order")
        assertError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", payload: [UInt8](repeating: 0, count: 15)), contains: "truncated: shape [2, 2] of float32 needs 16 data bytes, the file has 15")
        assertError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", payload: [UInt8](repeating: 0, count: 8)), contains: "trailing bytes")
        assertError(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", payload: []), contains: "unsupported dtype '<c8'")
        assertError(npy("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", payload: []), contains: "unsupported dtype '<U3'")
        assertError(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", payload: []), contains: "structured")
        assertError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", payload: []), contains: "non-negative integers")
        assertError(npy("{'descr': '<f4', 'fortran_order': False, }", payload: []), contains: "no 'shape'")
        assertError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", payload: [0, 0, 0, 0]), contains: "unexpected")
        assertError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", payload: []), contains: "overflows")
        assertError(npy("not a dict", payload: []), contains: "bad .npy header")
    }

    func testReadFromDiskNamesTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.npy").path
        let t = Tensor(shape: [2, 2], scalars: [Float](arrayLiteral: 1, 2, 3, 4))
        try NPYFile.write(t, to: path)
        XCTAssertTrue(try NPYFile.read(path: path).isBitwiseEqual(to: t))
        XCTAssertThrowsError(try NPYFile.read(path: dir.appendingPathComponent("missing.npy").path)) { e in
            XCTAssertTrue("\(e)".contains("missing.npy: cannot open"), "\(e)")
        }
        _ = FileManager.default.createFile(atPath: dir.appendingPathComponent("empty.npy").path, contents: Data())
        XCTAssertThrowsError(try NPYFile.read(path: dir.appendingPathComponent("empty.npy").path)) { e in
            XCTAssertTrue("\(e)".contains("empty.npy: empty file"), "\(e)")
        }
        XCTAssertThrowsError(try NPYFile.encode(Tensor(dtype: .bfloat16, shape: [1]), path: "o.npy")) { e in
            XCTAssertEqual("\(e)", "o.npy: bfloat16 has no NumPy dtype; cannot write it as .npy")
        }
    }
}
