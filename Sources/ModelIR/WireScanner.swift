import Foundation

/// A minimal protobuf wire-format walker that locates, without decoding or copying, the byte
/// range of each top-level graph initializer and of its raw_data payload.
///
/// The payload-free schema (onnx-light.proto) reads a model's structure; this scanner supplies
/// the one thing that schema drops on purpose: where each initializer's bytes are, so tensors can
/// borrow them from the memory map. Field numbers (onnx-ml.proto): ModelProto.graph = 7,
/// GraphProto.initializer = 5, TensorProto.raw_data = 9; typed payload fields 4, 5, 6, 7, 10, 11.
struct WireScanner {
    struct InitializerRange {
        /// The TensorProto message bytes, relative to the start of the file.
        var message: Range<Int>
        /// The raw_data bytes (the last occurrence wins, as in protobuf's merge rule).
        var rawData: Range<Int>?
        /// Whether a typed payload field (float_data, int32_data, …) is present.
        var hasTypedData: Bool
    }

    struct Malformed: Error {}

    let base: UnsafePointer<UInt8>
    let count: Int

    /// Initializer ranges of every occurrence of ModelProto.graph, in order (repeated fields of
    /// several occurrences of a message field concatenate, so the order matches the decoded list).
    func initializers() throws -> [InitializerRange] {
        var out: [InitializerRange] = []
        try fields(0..<count) { field, wire, range in
            guard field == 7, wire == 2 else { return }
            try fields(range) { gf, gw, grange in
                guard gf == 5, gw == 2 else { return }
                var item = InitializerRange(message: grange, rawData: nil, hasTypedData: false)
                try fields(grange) { tf, tw, trange in
                    switch tf {
                    case 9 where tw == 2: item.rawData = trange
                    case 4, 5, 6, 7, 10, 11: item.hasTypedData = true
                    default: break
                    }
                }
                out.append(item)
            }
        }
        return out
    }

    /// Calls `body(fieldNumber, wireType, payloadRange)` for each field in `range`; for varint and
    /// fixed fields the range covers the encoded value.
    private func fields(_ range: Range<Int>, _ body: (Int, Int, Range<Int>) throws -> Void) throws {
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
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
                try body(field, wire, (i - Int(len))..<i)
                continue
            default: throw Malformed()  // groups (3, 4) do not occur in onnx.proto
            }
            guard i <= end else { throw Malformed() }
            try body(field, wire, start..<i)
        }
    }

    private func varint(_ i: inout Int, _ end: Int) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while i < end {
            let b = base[i]
            i += 1
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift >= 64 { throw Malformed() }
        }
        throw Malformed()
    }
}
