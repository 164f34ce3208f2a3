import ModelIR
import TensorCore

/// A model input as data loading sees it: its name, element type and resolved shape
/// (`InputShapes.resolve`), and whether its batch dimension may take any size.
public struct DataInput: Equatable, Sendable {
    public let name: String
    public let dtype: DType
    /// The resolved shape: pins from `--input`, declared fixed dims, and 1 for an unpinned
    /// dynamic batch.
    public let shape: [Int]
    /// True when the declared first dimension is dynamic and `--input` did not pin it: a data
    /// file may then carry any batch size B ≥ 1.
    public let flexibleBatch: Bool
    /// True when `--input` pinned this input's shape.
    public let pinned: Bool

    public init(name: String, dtype: DType, shape: [Int], flexibleBatch: Bool, pinned: Bool) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.flexibleBatch = flexibleBatch
        self.pinned = pinned
    }

    /// The graph's runtime inputs, in order, resolved with the `--input` rule.
    /// - Throws: `RuntimeError.badInput` from `InputShapes.resolve` (an unknown dimension, a pin
    ///   that contradicts the model).
    public static func resolve(graph: Graph, pins: [String: [Int]]) throws -> [DataInput] {
        let resolved = try InputShapes.resolve(graph: graph, pins: pins)
        return graph.runtimeInputs.map { v in
            let info = resolved[v.name]!
            let dynamicBatch = v.type?.shape?.first.map { $0.value == nil } ?? false
            return DataInput(name: v.name, dtype: info.dtype, shape: info.shape,
                             flexibleBatch: dynamicBatch && pins[v.name] == nil, pinned: pins[v.name] != nil)
        }
    }

    var shapeText: String { shape.isEmpty ? "scalar" : shape.map(String.init).joined(separator: "x") }

    /// Makes a tensor read from `path` fit this input.
    ///
    /// Element type: equal types pass; float64/float16/bfloat16 data for a float input (and
    /// float32 data for a float16/float64 input) is converted, rounding to nearest even;
    /// integer data for an integer input is converted when every value fits the target type;
    /// any other pairing (integer data for a float input, float for an integer one, bool with
    /// anything else) is an error naming the file, the input and both types.
    ///
    /// Shape: the resolved shape passes; a file without the leading batch dimension gets it
    /// (`[1,8,8]` for `[1,1,8,8]`); when the batch is flexible, any batch B ≥ 1 passes.
    /// - Throws: `DataError` naming `path`.
    public func conform(_ tensor: Tensor, path: String) throws -> Tensor {
        let t = try convertElements(tensor, path: path)
        if t.shape == shape { return t }
        if !shape.isEmpty {
            let rest = Array(shape.dropFirst())
            if t.shape == rest && (shape[0] == 1 || flexibleBatch) {
                return t.reshaped([1] + rest)
            }
            if flexibleBatch && t.rank == shape.count && Array(t.shape.dropFirst()) == rest && t.shape[0] >= 1 {
                return t
            }
        }
        let origin = pinned ? "as pinned by --input" : flexibleBatch ? "any batch" : "as declared by the model"
        let have = t.shape.isEmpty ? "scalar" : t.shape.map(String.init).joined(separator: "x")
        throw DataError(path, "shape \(have) does not fit input '\(name)' \(shapeText) (\(origin)); give the input's shape with or without the leading batch dimension")
    }

    func convertElements(_ t: Tensor, path: String) throws -> Tensor {
        if t.dtype == dtype { return t }
        func refuse(_ why: String) -> DataError {
            DataError(path, "dtype \(t.dtype.name) cannot feed input '\(name)' (\(dtype.name)): \(why)")
        }
        let floats: Set<DType> = [.float16, .bfloat16, .float32, .float64]
        let ints: Set<DType> = [.int8, .uint8, .int16, .uint16, .int32, .uint32, .int64, .uint64]
        if floats.contains(dtype) {
            if floats.contains(t.dtype) { return t.converted(to: dtype) }
            if ints.contains(t.dtype) { throw refuse("integer data for a float input; convert it with .astype(np.\(dtype.numpyName)) and scale it as the model expects") }
            throw refuse("save the data as \(dtype.name)")
        }
        if ints.contains(dtype) && ints.contains(t.dtype) {
            let (lo, hi) = dtype.integerRange
            let unsignedSource = t.dtype == .uint64
            for (i, v) in t.int64Values().enumerated() {
                // int64Values reinterprets uint64 bits; read them back unsigned.
                let fits = unsignedSource ? hi.map { UInt64(bitPattern: v) <= $0 } ?? true
                                          : v >= lo && (v < 0 || hi.map { UInt64(v) <= $0 } ?? true)
                if !fits {
                    let shown = unsignedSource ? String(UInt64(bitPattern: v)) : String(v)
                    throw refuse("element \(i) (\(shown)) is out of range for \(dtype.name)")
                }
            }
            return t.converted(to: dtype)
        }
        if ints.contains(dtype) && floats.contains(t.dtype) { throw refuse("float data for an integer input") }
        throw refuse("save the data as \(dtype.name)")
    }
}

extension DType {
    /// The NumPy scalar type name (`float32`, `int64`, `bool_`).
    var numpyName: String { self == .bool ? "bool_" : name }

    /// The smallest value and (for types whose maximum fits UInt64) the largest, as used by
    /// the range check in `DataInput.conform`.
    var integerRange: (Int64, UInt64?) {
        switch self {
        case .int8: return (Int64(Int8.min), UInt64(Int8.max))
        case .uint8: return (0, UInt64(UInt8.max))
        case .int16: return (Int64(Int16.min), UInt64(Int16.max))
        case .uint16: return (0, UInt64(UInt16.max))
        case .int32: return (Int64(Int32.min), UInt64(Int32.max))
        case .uint32: return (0, UInt64(UInt32.max))
        case .int64: return (Int64.min, UInt64(Int64.max))
        case .uint64: return (0, nil)
        default: return (Int64.min, nil)
        }
    }
}
