import Foundation
import ModelIR
import TensorCore

/// NumPy's `.npy` format (numpy.lib.format, "A Simple File Format for NumPy Arrays", NEP 1).
///
/// Layout: the magic `\x93NUMPY`, a major and minor version byte, the header length (2 bytes
/// little-endian for version 1.0, 4 bytes for 2.0 and 3.0), the header — a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (1, 8, 8), }` in latin-1 (1.0, 2.0) or
/// UTF-8 (3.0), padded with spaces and ending in a newline — and then the array bytes.
///
/// Reading accepts every version, both byte orders (`<`, `>`, `=` native, `|` not applicable)
/// and the dtypes float16/32/64, int8/16/32/64, uint8/16/32/64 and bool, in C order; Fortran
/// order, structured and object dtypes are rejected with an error naming the file. Writing
/// produces version 1.0 (2.0 when the header would pass 65535 bytes), little-endian, C order,
/// the header padded so the data starts at a multiple of 64 bytes, as NumPy ≥ 1.14 does.
public enum NPYFile {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    // MARK: Reading

    /// Reads a `.npy` file into a tensor (converted to little-endian).
    /// - Throws: `DataError` naming `path` and what is wrong (truncated, bad header, dtype, order).
    public static func read(path: String) throws -> Tensor {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as MappedFile.Failure {
            throw DataError("", e.description)
        }
        guard let base = file.base else { throw DataError(path, "empty file, not a .npy array") }
        return try withExtendedLifetime(file) {
            try decode(UnsafeRawBufferPointer(start: base, count: file.count), path: path)
        }
    }

    /// Decodes the bytes of a `.npy` file; `path` only names the file in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Tensor {
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw DataError(path, "not a .npy file (no \\x93NUMPY magic)")
        }
        let major = bytes[6], minor = bytes[7]
        let headerStart: Int, headerLength: Int
        switch major {
        case 1:
            headerStart = 10
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        case 2, 3:
            guard bytes.count >= 12 else { throw DataError(path, "truncated .npy header") }
            headerStart = 12
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        default:
            throw DataError(path, ".npy format version \(major).\(minor) is not supported (1.0, 2.0 and 3.0 are)")
        }
        guard headerStart + headerLength <= bytes.count else {
            throw DataError(path, "truncated .npy header (\(headerLength) bytes declared, \(bytes.count - headerStart) present)")
        }
        let headerBytes = Array(bytes[headerStart..<(headerStart + headerLength)])
        // Version 3.0 allows UTF-8 (field names of structured dtypes); 1.0/2.0 are latin-1.
        let text = major == 3 ? String(decoding: headerBytes, as: UTF8.self)
                              : String(headerBytes.map { Character(Unicode.Scalar($0)) })
        let header = try Header.parse(text, path: path)
        guard !header.fortranOrder else {
            throw DataError(path, "array is in Fortran order; save it in C order (np.ascontiguousarray) before use")
        }
        let (dtype, bigEndian) = try elementType(header.descr, path: path)
        var count = 1
        for d in header.shape {
            let (r, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw DataError(path, "shape \(header.shape) overflows") }
            count = r
        }
        let dataStart = headerStart + headerLength
        let need = count.multipliedReportingOverflow(by: dtype.size)
        guard !need.overflow else { throw DataError(path, "shape \(header.shape) overflows") }
        let have = bytes.count - dataStart
        guard have == need.partialValue else {
            let what = have < need.partialValue ? "truncated" : "has trailing bytes"
            throw DataError(path, "\(what): shape \(header.shape) of \(dtype.name) needs \(need.partialValue) data bytes, the file has \(have)")
        }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[dataStart...])
        var t = Tensor(dtype: dtype, shape: header.shape, bytes: payload)
        if bigEndian && dtype.size > 1 {
            let size = dtype.size
            t.withUnsafeMutableBytes { raw in
                var i = 0
                while i < raw.count {
                    var lo = i, hi = i + size - 1
                    while lo < hi { raw.swapAt(lo, hi); lo += 1; hi -= 1 }
                    i += size
                }
            }
        }
        return t
    }

    /// The tensor dtype and byte order of a NumPy `descr` string such as `<f4` or `|b1`.
    static func elementType(_ descr: String, path: String) throws -> (DType, bigEndian: Bool) {
        guard let order = descr.first, descr.count >= 3 else {
            throw DataError(path, "unsupported dtype '\(descr)'")
        }
        let bigEndian: Bool
        switch order {
        case "<", "|": bigEndian = false
        case ">": bigEndian = true
        case "=": bigEndian = UInt16(littleEndian: 1) != 1
        default: throw DataError(path, "unsupported dtype '\(descr)' (no byte-order mark)")
        }
        let code = String(descr.dropFirst())
        let types: [String: DType] = [
            "f2": .float16, "f4": .float32, "f8": .float64,
            "i1": .int8, "i2": .int16, "i4": .int32, "i8": .int64,
            "u1": .uint8, "u2": .uint16, "u4": .uint32, "u8": .uint64, "b1": .bool,
        ]
        guard let d = types[code] else {
            throw DataError(path, "unsupported dtype '\(descr)' (supported: float16/32/64, int8/16/32/64, uint8/16/32/64, bool)")
        }
        return (d, bigEndian)
    }

    /// The `descr` NumPy writes for `dtype` (little-endian).
    static func descr(_ dtype: DType) -> String? {
        switch dtype {
        case .float16: return "<f2"
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .int8: return "|i1"
        case .int16: return "<i2"
        case .int32: return "<i4"
        case .int64: return "<i8"
        case .uint8: return "|u1"
        case .uint16: return "<u2"
        case .uint32: return "<u4"
        case .uint64: return "<u8"
        case .bool: return "|b1"
        default: return nil
        }
    }

    /// The parsed header dict.
    struct Header: Equatable {
        var descr: String
        var fortranOrder: Bool
        var shape: [Int]

        /// Parses the header's Python dict literal: string keys, and values that are strings,
        /// `True`/`False` or tuples of non-negative integers (`(3,)`, `()`, Python 2's `3L`).
        static func parse(_ text: String, path: String) throws -> Header {
            var s = Substring(text)
            func fail(_ why: String) -> DataError { DataError(path, "bad .npy header (\(why)): \(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(120))") }
            func skipSpace() { while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeFirst() } }
            func expect(_ c: Character) throws {
                skipSpace()
                guard s.first == c else { throw fail("expected '\(c)'") }
                s.removeFirst()
            }
            func string() throws -> String {
                skipSpace()
                guard let q = s.first, q == "'" || q == "\"" else { throw fail("expected a quoted string") }
                s.removeFirst()
                guard let end = s.firstIndex(of: q) else { throw fail("unterminated string") }
                let v = String(s[..<end])
                s = s[s.index(after: end)...]
                return v
            }
            enum Value { case string(String), bool(Bool), tuple([Int]), other }
            func value() throws -> Value {
                skipSpace()
                guard let c = s.first else { throw fail("missing value") }
                if c == "'" || c == "\"" { return .string(try string()) }
                if s.hasPrefix("True") { s.removeFirst(4); return .bool(true) }
                if s.hasPrefix("False") { s.removeFirst(5); return .bool(false) }
                if c == "(" {
                    s.removeFirst()
                    var dims: [Int] = []
                    while true {
                        skipSpace()
                        if s.first == ")" { s.removeFirst(); return .tuple(dims) }
                        let digits = s.prefix { $0.isASCII && $0.isNumber }
                        guard !digits.isEmpty, let d = Int(digits) else { throw fail("shape entries must be non-negative integers") }
                        dims.append(d)
                        s.removeFirst(digits.count)
                        if s.first == "L" { s.removeFirst() }
                        skipSpace()
                        if s.first == "," { s.removeFirst() } else if s.first != ")" { throw fail("expected ',' or ')' in shape") }
                    }
                }
                if c == "[" { return .other }
                throw fail("unexpected value")
            }
            try expect("{")
            var descr: String?, fortran: Bool?, shape: [Int]?
            while true {
                skipSpace()
                if s.first == "}" { break }
                let key = try string()
                try expect(":")
                let v = try value()
                switch (key, v) {
                case ("descr", .string(let d)): descr = d
                case ("descr", .other): throw DataError(path, "structured (record) dtypes are not supported; save a plain numeric array")
                case ("fortran_order", .bool(let b)): fortran = b
                case ("shape", .tuple(let t)): shape = t
                case ("descr", _), ("fortran_order", _), ("shape", _): throw fail("'\(key)' has the wrong type")
                default: throw fail("unexpected key '\(key)'")
                }
                skipSpace()
                if s.first == "," { s.removeFirst() } else if s.first != "}" { throw fail("expected ',' or '}'") }
            }
            guard let descr else { throw fail("no 'descr'") }
            guard let fortran else { throw fail("no 'fortran_order'") }
            guard let shape else { throw fail("no 'shape'") }
            return Header(descr: descr, fortranOrder: fortran, shape: shape)
        }
    }

    // MARK: Writing

    /// The `.npy` bytes of `tensor`.
    /// - Throws: `DataError` when the dtype has no NumPy equivalent (bfloat16, float8, int4, …).
    public static func encode(_ tensor: Tensor, path: String = "") throws -> Data {
        guard let descr = descr(tensor.dtype) else {
            throw DataError(path, "\(tensor.dtype.name) has no NumPy dtype; cannot write it as .npy")
        }
        let shapeText = tensor.shape.isEmpty ? "()" : tensor.shape.count == 1 ? "(\(tensor.shape[0]),)"
                      : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        // Pad with spaces so magic + version + length + header (ending in '\n') is a multiple of 64.
        var prefix = 10
        var total = prefix + header.utf8.count + 1
        if total + (64 - total % 64) % 64 - prefix > 65535 { prefix = 12; total = prefix + header.utf8.count + 1 }
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var out = Data(magic)
        let length = header.utf8.count
        if prefix == 10 {
            out.append(contentsOf: [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)])
        } else {
            out.append(contentsOf: [2, 0] + (0..<4).map { UInt8((length >> (8 * $0)) & 0xFF) })
        }
        out.append(contentsOf: Array(header.utf8))
        tensor.withUnsafeBytes { out.append(contentsOf: $0) }
        return out
    }

    /// Writes `tensor` to `path` as `.npy`, atomically (temporary file + rename, `AtomicFile`);
    /// `durable: false` skips the fsync (see `AtomicFile.write`).
    public static func write(_ tensor: Tensor, to path: String, durable: Bool = true) throws {
        try AtomicFile.write(try encode(tensor, path: path), to: URL(fileURLWithPath: path), durable: durable)
    }
}
