/// Element types, numbered as ONNX's `TensorProto.DataType` so a code read from a model maps
/// to a case directly.
public enum DType: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case float32 = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7
    case string = 8, bool = 9, float16 = 10, float64 = 11, uint32 = 12, uint64 = 13
    case complex64 = 14, complex128 = 15, bfloat16 = 16
    case float8e4m3fn = 17, float8e4m3fnuz = 18, float8e5m2 = 19, float8e5m2fnuz = 20
    case uint4 = 21, int4 = 22, float4e2m1 = 23, float8e8m0 = 24, uint2 = 25, int2 = 26

    /// Bits one element occupies in ONNX's raw_data layout; `nil` for strings, which have none.
    public var bitWidth: Int? {
        switch self {
        case .string: return nil
        case .bool, .uint8, .int8, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0: return 8
        case .uint16, .int16, .float16, .bfloat16: return 16
        case .float32, .int32, .uint32: return 32
        case .float64, .int64, .uint64, .complex64: return 64
        case .complex128: return 128
        case .uint4, .int4, .float4e2m1: return 4
        case .uint2, .int2: return 2
        }
    }

    /// Bytes per element for byte-aligned types (0 for sub-byte and string types).
    public var size: Int { guard let b = bitWidth, b >= 8 else { return 0 }; return b / 8 }

    /// Bytes that `count` elements occupy in raw_data (sub-byte types are packed, rounded up).
    public func byteCount(elements count: Int) -> Int {
        guard let b = bitWidth else { return 0 }
        return (count * b + 7) / 8
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2,
             .float8e5m2fnuz, .float4e2m1, .float8e8m0: return true
        default: return false
        }
    }

    /// The name ONNX uses in type strings, e.g. `tensor(float)`.
    public var onnxName: String {
        switch self {
        case .float32: return "float"
        case .float64: return "double"
        default: return name
        }
    }

    /// The case name: float32, float16, int8, …
    public var name: String {
        switch self {
        case .float32: return "float32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .string: return "string"
        case .bool: return "bool"
        case .float16: return "float16"
        case .float64: return "float64"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .complex64: return "complex64"
        case .complex128: return "complex128"
        case .bfloat16: return "bfloat16"
        case .float8e4m3fn: return "float8e4m3fn"
        case .float8e4m3fnuz: return "float8e4m3fnuz"
        case .float8e5m2: return "float8e5m2"
        case .float8e5m2fnuz: return "float8e5m2fnuz"
        case .uint4: return "uint4"
        case .int4: return "int4"
        case .float4e2m1: return "float4e2m1"
        case .float8e8m0: return "float8e8m0"
        case .uint2: return "uint2"
        case .int2: return "int2"
        }
    }

    public var description: String { onnxName }

    /// Parses a user-facing name (`float32`, `float`, `fp16`, `int8`, …).
    public init?(name: String) {
        switch name.lowercased() {
        case "float", "float32", "fp32", "f32": self = .float32
        case "float16", "fp16", "half", "f16": self = .float16
        case "bfloat16", "bf16": self = .bfloat16
        case "double", "float64", "fp64", "f64": self = .float64
        default:
            guard let d = DType.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
            self = d
        }
    }
}
