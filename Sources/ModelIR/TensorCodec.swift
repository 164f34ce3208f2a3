import Foundation
import ONNXProto
import TensorCore

/// Conversion between ONNX `TensorProto` messages and `Tensor`s.
///
/// Reading accepts raw_data (little-endian) and every typed field ONNX defines: float_data
/// (float, complex64), double_data (double, complex128), int64_data (int64), uint64_data
/// (uint32, uint64) and int32_data (int32 and every narrower type, float16/bfloat16/float8 as
/// bit patterns). Writing always uses raw_data.
public enum TensorCodec {
    /// Element count of `dims`, rejecting negative dims and products that overflow.
    static func elementCount(_ dims: [Int64], tensor: String, path: String) throws -> Int {
        var n = 1
        for d in dims {
            guard d >= 0 else { throw ModelError(path, "tensor '\(tensor)' has a negative dimension \(d) in \(dims)") }
            let (r, o) = n.multipliedReportingOverflow(by: Int(d))
            guard !o, r <= Int(Int32.max) * 64 else { throw ModelError(path, "tensor '\(tensor)' dims \(dims) overflow") }
            n = r
        }
        return n
    }

    static func dtype(_ code: Int32, tensor: String, path: String) throws -> DType {
        guard let d = DType(rawValue: code) else { throw ModelError(path, "tensor '\(tensor)' has unknown data_type \(code)") }
        return d
    }

    /// Decodes a full `TensorProto` (external data resolved through `resolver`, if any).
    static func tensor(from p: Onnx_TensorProto, path: String, resolver: ExternalDataResolver?) throws -> Tensor {
        let name = p.name
        let dtype = try dtype(p.dataType, tensor: name, path: path)
        let n = try elementCount(p.dims, tensor: name, path: path)
        let shape = p.dims.map { Int($0) }
        let bytes = dtype.byteCount(elements: n)
        if p.hasDataLocation && p.dataLocation == .external {
            guard let resolver else { throw ModelError(path, "tensor '\(name)' uses external data, which is not available here") }
            let ref = try ExternalDataResolver.parse(p.externalData.map { ($0.key, $0.value) }, tensor: name, path: path)
            return Tensor(dtype: dtype, shape: shape, storage: try resolver.storage(ref, tensor: name, byteCount: bytes))
        }
        if dtype == .string {
            guard p.stringData.count == n else { throw ModelError(path, "tensor '\(name)' holds \(p.stringData.count) strings for \(n) elements") }
            return Tensor(dtype: .string, shape: shape)
        }
        if p.hasRawData {
            guard p.rawData.count == bytes else {
                throw ModelError(path, "tensor '\(name)': raw_data has \(p.rawData.count) bytes but dims \(shape) of \(dtype) need \(bytes)")
            }
            return p.rawData.withUnsafeBytes { Tensor(dtype: dtype, shape: shape, bytes: $0) }
        }
        func check(_ have: Int, _ field: String, _ want: Int) throws {
            guard have == want else { throw ModelError(path, "tensor '\(name)': \(field) has \(have) values but dims \(shape) of \(dtype) need \(want)") }
        }
        if n == 0 { return Tensor(dtype: dtype, shape: shape) }
        let anyTyped = !p.floatData.isEmpty || !p.int32Data.isEmpty || !p.int64Data.isEmpty || !p.doubleData.isEmpty || !p.uint64Data.isEmpty
        guard anyTyped else { throw ModelError(path, "tensor '\(name)' has dims \(shape) but no data") }
        // The value count is checked before the tensor is allocated, so dims claiming far more
        // elements than the message holds are refused without allocating them.
        let (field, have, want) = typedField(p, dtype: dtype, elements: n)
        try check(have, field, want)
        var t = Tensor(dtype: dtype, shape: shape)
        try t.withUnsafeMutableBytes { raw in
            let d = raw.baseAddress!
            switch dtype {
            case .float32, .complex64:
                try check(p.floatData.count, "float_data", dtype == .float32 ? n : 2 * n)
                p.floatData.withUnsafeBytes { d.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            case .float64, .complex128:
                try check(p.doubleData.count, "double_data", dtype == .float64 ? n : 2 * n)
                p.doubleData.withUnsafeBytes { d.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            case .int64:
                try check(p.int64Data.count, "int64_data", n)
                p.int64Data.withUnsafeBytes { d.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            case .uint64:
                try check(p.uint64Data.count, "uint64_data", n)
                p.uint64Data.withUnsafeBytes { d.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            case .uint32:
                try check(p.uint64Data.count, "uint64_data", n)
                for (i, v) in p.uint64Data.enumerated() { d.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: i * 4, as: UInt32.self) }
            case .int32:
                try check(p.int32Data.count, "int32_data", n)
                p.int32Data.withUnsafeBytes { d.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            case .int16, .uint16, .float16, .bfloat16:
                try check(p.int32Data.count, "int32_data", n)
                for (i, v) in p.int32Data.enumerated() { d.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: i * 2, as: UInt16.self) }
            case .int8, .uint8, .bool, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0:
                try check(p.int32Data.count, "int32_data", n)
                for (i, v) in p.int32Data.enumerated() { d.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self) }
            case .uint4, .int4, .float4e2m1, .uint2, .int2:
                // Sub-byte types: int32_data holds one packed byte per value (ONNX IR spec, "int32_data").
                let packed = dtype.byteCount(elements: n)
                try check(p.int32Data.count, "int32_data", packed)
                for (i, v) in p.int32Data.enumerated() { d.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self) }
            case .string:
                break
            }
        }
        return t
    }

    /// The typed field that holds `dtype`'s values, how many values it has and how many
    /// `elements` elements need (ONNX IR spec: two per complex element, one packed byte per
    /// value for the sub-byte types).
    static func typedField(_ p: Onnx_TensorProto, dtype: DType, elements n: Int) -> (String, Int, Int) {
        switch dtype {
        case .float32: return ("float_data", p.floatData.count, n)
        case .complex64: return ("float_data", p.floatData.count, 2 * n)
        case .float64: return ("double_data", p.doubleData.count, n)
        case .complex128: return ("double_data", p.doubleData.count, 2 * n)
        case .int64: return ("int64_data", p.int64Data.count, n)
        case .uint64, .uint32: return ("uint64_data", p.uint64Data.count, n)
        case .uint4, .int4, .float4e2m1, .uint2, .int2: return ("int32_data", p.int32Data.count, dtype.byteCount(elements: n))
        case .string: return ("string_data", p.stringData.count, n)
        default: return ("int32_data", p.int32Data.count, n)
        }
    }

    /// A `TensorProto` holding `tensor` as raw_data.
    static func proto(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        var p = Onnx_TensorProto()
        p.name = name
        p.dims = tensor.shape.map { Int64($0) }
        p.dataType = tensor.dtype.rawValue
        p.rawData = tensor.withUnsafeBytes { Data($0) }
        return p
    }

    /// Reads a single serialized `TensorProto` file (ONNX test data `input_0.pb`, calibration `.pb`).
    /// - Returns: the tensor and the name stored in the file (often empty).
    public static func readTensorFile(_ path: String) throws -> (name: String, tensor: Tensor) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let f as MappedFile.Failure { throw ModelError(path, f.reason) }
        let p: Onnx_TensorProto
        do { p = try Onnx_TensorProto(serializedBytes: file.data) } catch {
            throw ModelError(path, "not a serialized ONNX TensorProto (\(error))")
        }
        guard p.hasDataType, p.dataType != 0 else { throw ModelError(path, "not a serialized ONNX TensorProto (no data_type)") }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        return (p.name, try tensor(from: p, path: path, resolver: ExternalDataResolver(directory: dir, modelPath: path)))
    }

    /// Serializes `tensor` as a `TensorProto` file.
    public static func writeTensorFile(_ tensor: Tensor, name: String = "", to path: String) throws {
        let data: Data = try proto(tensor, name: name).serializedBytes()
        try AtomicFile.write(data, to: URL(fileURLWithPath: path))
    }
}
