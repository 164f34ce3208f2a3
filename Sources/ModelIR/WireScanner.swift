import Foundation

/// Bytes a `WireScanner` walks: a memory range, or a file read through a small window.
protocol WireSource {
    var count: Int { get }
    /// The byte at absolute offset `i` (`0 ≤ i < count`).
    func byte(_ i: Int) throws -> UInt8
    /// Appends bytes `range` to `out`.
    func append(_ range: Range<Int>, to out: inout [UInt8]) throws
}

/// A memory range (tests, and files already mapped).
struct MemorySource: WireSource {
    let base: UnsafePointer<UInt8>
    let count: Int
    func byte(_ i: Int) -> UInt8 { base[i] }
    func append(_ range: Range<Int>, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: base + range.lowerBound, count: range.count))
    }
}

/// A file read with `pread` through a window of up to 64 KiB. Reading a model's structure this way,
/// instead of through its memory map, keeps the weights' pages out of the process: touching a
/// mapped page makes the kernel map the cached pages around it too (fault-around, 64 KiB), so
/// walking the tensor headers of a page-cached 100 MB model through the map made about half of
/// it resident.
final class FileWindowSource: WireSource {
    let path: String
    let count: Int
    private let fd: Int32
    private var window = [UInt8](repeating: 0, count: 1 << 16)
    private var windowStart = 0
    private var windowCount = 0
    /// Bytes the next read asks for: 4 KiB after a jump (past a payload), doubling while the
    /// walk goes on sequentially, so skipped weights are not read either.
    private var readSize = 4096

    struct Failure: Error { let reason: String }

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Failure(reason: "cannot open: \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw Failure(reason: "cannot open: \(why)")
        }
        count = Int(st.st_size)
    }

    deinit { close(fd) }

    func byte(_ i: Int) throws -> UInt8 {
        if i < windowStart || i >= windowStart + windowCount {
            readSize = i == windowStart + windowCount ? min(window.count, readSize * 2) : 4096
            let start = i, want = min(readSize, count - start)
            let got = window.withUnsafeMutableBytes { readFully(into: $0.baseAddress!, count: want, at: start) }
            guard got > i - start else { throw Failure(reason: "read failed at byte \(i): \(lastReadError ?? "unexpected end of file (was it changed while being read?)")") }
            windowStart = start
            windowCount = got
        }
        return window[i - windowStart]
    }

    func append(_ range: Range<Int>, to out: inout [UInt8]) throws {
        if range.lowerBound >= windowStart && range.upperBound <= windowStart + windowCount {
            out.append(contentsOf: window[(range.lowerBound - windowStart)..<(range.upperBound - windowStart)])
            return
        }
        let old = out.count
        out.append(contentsOf: repeatElement(0, count: range.count))
        let got = out.withUnsafeMutableBytes { readFully(into: $0.baseAddress! + old, count: range.count, at: range.lowerBound) }
        guard got == range.count else {
            throw Failure(reason: "read failed at byte \(range.lowerBound + got): \(lastReadError ?? "unexpected end of file (was it changed while being read?)")")
        }
    }

    /// The error of the last failed pread; nil when it stopped at the end of the file.
    private var lastReadError: String?

    private func readFully(into p: UnsafeMutableRawPointer, count n: Int, at offset: Int) -> Int {
        var done = 0
        lastReadError = nil
        while done < n {
            let r = pread(fd, p + done, n - done, off_t(offset + done))
            if r < 0 && errno == EINTR { continue }
            if r < 0 { lastReadError = String(cString: strerror(errno)); break }
            if r == 0 { break }
            done += r
        }
        return done
    }
}

/// Where one top-level graph initializer lies in a model file.
struct WireInitializerRange: Equatable {
    /// The TensorProto message bytes, relative to the start of the file.
    var message: Range<Int>
    /// The raw_data bytes (the last occurrence wins, as in protobuf's merge rule).
    var rawData: Range<Int>?
    /// Whether a typed payload field (float_data, int32_data, …) is present.
    var hasTypedData: Bool
}

/// A minimal protobuf wire-format walker that locates, without decoding or copying, the byte
/// range of each top-level graph initializer and of its raw_data payload; and that can write a
/// compact copy of the model without those payloads.
///
/// The payload-free schema (onnx-light.proto) reads a model's structure; this scanner supplies
/// the one thing that schema drops on purpose: where each initializer's bytes are, so tensors can
/// borrow them from the memory map. Field numbers (onnx-ml.proto): ModelProto.graph = 7,
/// GraphProto.initializer = 5, TensorProto.raw_data = 9; typed payload fields 4, 5, 6, 7, 10, 11.
struct WireScanner<Source: WireSource> {
    typealias InitializerRange = WireInitializerRange

    struct Malformed: Error {}

    let source: Source

    /// Initializer ranges of every occurrence of ModelProto.graph, in order (repeated fields of
    /// several occurrences of a message field concatenate, so the order matches the decoded list).
    func initializers() throws -> [InitializerRange] {
        var sink: [UInt8]? = nil
        return try scan(&sink)
    }

    /// The model re-encoded without its initializers' payloads (raw_data and the typed data
    /// fields), which the payload-free schema ignores anyway, and the initializer ranges in the
    /// original file. Everything else is copied byte for byte.
    func compactImage() throws -> (bytes: [UInt8], initializers: [InitializerRange]) {
        var sink: [UInt8]? = []
        let ranges = try scan(&sink)
        return (sink!, ranges)
    }

    private func scan(_ out: inout [UInt8]?) throws -> [InitializerRange] {
        var found: [InitializerRange] = []
        try fields(0..<source.count) { field, wire, keyStart, range in
            guard field == 7, wire == 2 else {
                if out != nil { try source.append(keyStart..<range.upperBound, to: &out!) }
                return
            }
            var graph: [UInt8]? = out == nil ? nil : []
            try fields(range) { gf, gw, gKey, grange in
                guard gf == 5, gw == 2 else {
                    if graph != nil { try source.append(gKey..<grange.upperBound, to: &graph!) }
                    return
                }
                var item = InitializerRange(message: grange, rawData: nil, hasTypedData: false)
                var tensor: [UInt8]? = graph == nil ? nil : []
                try fields(grange) { tf, tw, tKey, trange in
                    switch tf {
                    case 9 where tw == 2: item.rawData = trange
                    case 4, 5, 6, 7, 10, 11: item.hasTypedData = true
                    default: if tensor != nil { try source.append(tKey..<trange.upperBound, to: &tensor!) }
                    }
                }
                found.append(item)
                if graph != nil { Self.appendField(5, tensor!, to: &graph!) }
            }
            if out != nil { Self.appendField(7, graph!, to: &out!) }
        }
        return found
    }

    /// Appends a length-delimited field.
    private static func appendField(_ field: Int, _ payload: [UInt8], to out: inout [UInt8]) {
        appendVarint(UInt64(field << 3 | 2), to: &out)
        appendVarint(UInt64(payload.count), to: &out)
        out.append(contentsOf: payload)
    }

    private static func appendVarint(_ v: UInt64, to out: inout [UInt8]) {
        var v = v
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    /// Calls `body(fieldNumber, wireType, keyStart, payloadRange)` for each field in `range`;
    /// for varint and fixed fields the range covers the encoded value.
    private func fields(_ range: Range<Int>, _ body: (Int, Int, Int, Range<Int>) throws -> Void) throws {
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            let keyStart = i
            let key = try varint(&i, end)
            let field = Int(key >> 3), wire = Int(key & 7)
            guard field > 0 else { throw Malformed() }
            let start = i
            switch wire {
            case 0: _ = try varint(&i, end)
            case 1: i += 8
            case 5: i += 4
            case 2:
                let len = try varint(&i, end)
                guard len <= UInt64(end - i) else { throw Malformed() }
                i += Int(len)
                try body(field, wire, keyStart, (i - Int(len))..<i)
                continue
            default: throw Malformed()  // groups (3, 4) do not occur in onnx.proto
            }
            guard i <= end else { throw Malformed() }
            try body(field, wire, keyStart, start..<i)
        }
    }

    private func varint(_ i: inout Int, _ end: Int) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while i < end {
            let b = try source.byte(i)
            i += 1
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift >= 64 { throw Malformed() }
        }
        throw Malformed()
    }
}

extension WireScanner where Source == MemorySource {
    init(base: UnsafePointer<UInt8>, count: Int) { self.init(source: MemorySource(base: base, count: count)) }
}
