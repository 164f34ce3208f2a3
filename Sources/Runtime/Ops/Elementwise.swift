import ModelIR
import TensorCore

// The elementwise family: unary math and activations (ElementwiseUnary.swift), broadcasting
// binary arithmetic, comparison and logic, Where, PRelu (ElementwiseBinary.swift), and the type
// and identity ops Cast, CastLike, Clip, Identity, Dropout (ElementwiseConversion.swift).
// Compute loops live in TensorCore (Kernels/Elementwise.swift, Kernels/Broadcast.swift); this
// layer reads attributes, picks the element type and states the output types.

extension StandardOps {
    static func registerElementwise(_ r: OpRegistry) {
        registerUnaryMath(r)
        registerActivations(r)
        registerBinaryArithmetic(r)
        registerComparisonAndLogic(r)
        registerConversions(r)
    }
}

// MARK: - Element-type dispatch

/// Something to run for one Swift element type, chosen at run time from a `DType`.
protocol ArithmeticTypeVisitor {
    associatedtype Output
    func visit<T: ArithmeticScalar>(_: T.Type) throws -> Output
}

/// A visitor for the comparable element types (every arithmetic type, and bool read as 0/1).
protocol ComparableTypeVisitor {
    associatedtype Output
    func visit<T: TensorScalar & Comparable>(_: T.Type, dtype: DType) throws -> Output
}

enum ElementDispatch {
    /// Runs `v` with the Swift type of `dtype`; nil for types without native arithmetic
    /// (bfloat16, bool, string, sub-byte and 8-bit float types).
    static func arithmetic<V: ArithmeticTypeVisitor>(_ dtype: DType, _ v: V) throws -> V.Output? {
        switch dtype {
        case .float32: return try v.visit(Float.self)
        case .float64: return try v.visit(Double.self)
        case .float16: return try v.visit(Float16.self)
        case .int8: return try v.visit(Int8.self)
        case .uint8: return try v.visit(UInt8.self)
        case .int16: return try v.visit(Int16.self)
        case .uint16: return try v.visit(UInt16.self)
        case .int32: return try v.visit(Int32.self)
        case .uint32: return try v.visit(UInt32.self)
        case .int64: return try v.visit(Int64.self)
        case .uint64: return try v.visit(UInt64.self)
        default: return nil
        }
    }

    static func comparable<V: ComparableTypeVisitor>(_ dtype: DType, _ v: V) throws -> V.Output? {
        switch dtype {
        case .float32: return try v.visit(Float.self, dtype: dtype)
        case .float64: return try v.visit(Double.self, dtype: dtype)
        case .float16: return try v.visit(Float16.self, dtype: dtype)
        case .int8: return try v.visit(Int8.self, dtype: dtype)
        case .uint8, .bool: return try v.visit(UInt8.self, dtype: dtype)
        case .int16: return try v.visit(Int16.self, dtype: dtype)
        case .uint16: return try v.visit(UInt16.self, dtype: dtype)
        case .int32: return try v.visit(Int32.self, dtype: dtype)
        case .uint32: return try v.visit(UInt32.self, dtype: dtype)
        case .int64: return try v.visit(Int64.self, dtype: dtype)
        case .uint64: return try v.visit(UInt64.self, dtype: dtype)
        default: return nil
        }
    }

    /// Whether `dtype` is computed by widening to float32 and rounding back (bfloat16 has no
    /// Swift type; rounding once from float32 is what ONNX Runtime does too).
    static func widens(_ dtype: DType) -> Bool { dtype == .bfloat16 }
}

// MARK: - Shape functions

enum ElementwiseShapes {
    /// One output with input 0's shape and dtype (or `dtype` when given).
    static func same(_ dtype: DType? = nil) -> ShapeFunction {
        { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [TensorInfo(dtype ?? x.dtype, x.shape)]
        }
    }

    /// One output over the broadcast shape of every present input, in input 0's dtype (or
    /// `dtype`). Legacy (opset < 7) `broadcast`/`axis` attributes are honoured.
    static func broadcast(_ dtype: DType? = nil) -> ShapeFunction {
        { inputs, _, ctx in
            let present = inputs.compactMap { $0 }
            guard let first = present.first else { throw ctx.error("no inputs") }
            var shapes = present.map(\.shape)
            if shapes.count == 2, let b = LegacyBroadcast.alignedShape(shapes[1], against: shapes[0], ctx) { shapes[1] = b }
            guard let shape = Broadcast.shape(shapes) else { throw ctx.error(BroadcastError(shapes: shapes).description) }
            return [TensorInfo(dtype ?? first.dtype, shape)]
        }
    }
}

/// Opset 1–6 broadcasting of the binary operators: with `broadcast = 1`, B's shape must match a
/// contiguous run of A's dims starting at `axis` (default: A's trailing dims). B is reshaped
/// with trailing 1s so that NumPy broadcasting then gives the same result.
enum LegacyBroadcast {
    static func alignedShape(_ b: [Int], against a: [Int], _ ctx: KernelContext) -> [Int]? {
        guard ctx.opset < 7, ctx.node.int("broadcast") == 1, let axis64 = ctx.node.int("axis") else { return nil }
        let axis = Int(axis64) < 0 ? Int(axis64) + a.count : Int(axis64)
        let trailing = a.count - axis - b.count
        guard axis >= 0, trailing > 0 else { return nil }
        return b + Array(repeating: 1, count: trailing)
    }

    static func aligned(_ b: Tensor, against a: Tensor, _ ctx: KernelContext) -> Tensor {
        guard let s = alignedShape(b.shape, against: a.shape, ctx) else { return b }
        return b.reshaped(s)
    }
}

extension KernelContext {
    /// An error for an input whose element type the op does not support.
    func unsupportedElementType(_ dtype: DType, input: Int = 0) -> RuntimeError {
        error("input \(input) has element type \(dtype), which this operator does not support here")
    }

    /// The integer attribute `name` as an Int, or `default`.
    func intAttribute(_ name: String, default d: Int) -> Int { node.int(name).map { Int($0) } ?? d }
    /// The float attribute `name`, or `default`.
    func floatAttribute(_ name: String, default d: Float) -> Float { node.float(name) ?? d }

    /// `axis` normalized into 0..<rank, or an error naming it.
    func normalizedAxisIndex(_ axis: Int, rank: Int, name: String = "axis") throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0 && a < max(rank, 1) else { throw error("\(name) \(axis) is out of range for rank \(rank)") }
        return a
    }
}
