import ModelIR
import TensorCore

extension StandardOps {
    /// Shape and data-movement operators, constants, Resize, TopK, NonZero and Einsum.
    ///
    /// Each family registers in its own file: TensorShape.swift (Flatten, Reshape, Transpose,
    /// Squeeze, Unsqueeze, Expand, DepthToSpace, SpaceToDepth, Shape, Size), TensorSlice.swift
    /// (Concat, Split, Slice, Tile, Pad), TensorIndex.swift (Gather, GatherElements, ScatterND,
    /// NonZero, TopK), TensorConstant.swift (Constant, ConstantOfShape, Range, EyeLike),
    /// TensorResize.swift (Resize, Upsample), TensorEinsum.swift (Einsum) and TensorTrilu.swift (Trilu). Movement kernels
    /// work on raw bytes (TensorCore `Movement`), so they serve every byte-sized dtype.
    static func registerTensorOps(_ r: OpRegistry) {
        registerShapeOps(r)
        registerSliceOps(r)
        registerIndexOps(r)
        registerConstantOps(r)
        registerResizeOps(r)
        registerEinsum(r)
        registerTrilu(r)       // TensorTrilu.swift: Trilu
    }
}

/// Decoding of the operands shape and movement operators share (axes, integer lists, known
/// values), with errors that name the node.
enum TensorOperands {
    /// `axis` normalized into `0 ..< rank` (or `0 ... rank` when `inclusive`), accepting negative
    /// values counted from the back as every opset since 11 does.
    static func axis(_ a: Int64, rank: Int, _ ctx: KernelContext, inclusive: Bool = false) throws -> Int {
        let upper = inclusive ? rank : rank - 1
        let v = a < 0 ? Int(a) + rank : Int(a)
        guard v >= 0 && v <= upper else {
            throw ctx.error("axis \(a) is out of range for rank \(rank) (accepted: \(-rank)...\(upper))")
        }
        return v
    }

    /// Distinct axes normalized into `0 ..< rank`.
    static func axes(_ list: [Int64], rank: Int, _ ctx: KernelContext) throws -> [Int] {
        let out = try list.map { try axis($0, rank: rank, ctx) }
        guard Set(out).count == out.count else { throw ctx.error("axes \(list) repeat an axis") }
        return out
    }

    /// The elements of an integer tensor (int32 or int64) as `Int`.
    static func ints(_ t: Tensor, _ what: String, _ ctx: KernelContext) throws -> [Int] {
        guard t.dtype == .int64 || t.dtype == .int32 else { throw ctx.error("\(what) must be int64 or int32, got \(t.dtype)") }
        return t.int64Values().map { Int($0) }
    }

    /// The integer list of optional input `i`, nil when the input is omitted (or empty when
    /// `emptyIsAbsent`).
    static func optionalInts(_ inputs: [Tensor?], _ i: Int, _ what: String, _ ctx: KernelContext) throws -> [Int]? {
        guard i < inputs.count, let t = inputs[i] else { return nil }
        return try ints(t, what, ctx)
    }

    /// The known value of input `i` during shape inference, or an error saying the output shape
    /// needs it.
    static func known(_ values: [Tensor?], _ i: Int, _ what: String, _ ctx: KernelContext) throws -> Tensor {
        guard i < values.count, let v = values[i] else {
            throw ctx.error("the output shape depends on the value of \(what) ('\(i < ctx.node.inputs.count ? ctx.node.inputs[i] : "")'), which is not known before running")
        }
        return v
    }

    /// The value of an optional input during shape inference: nil when omitted, an error when
    /// present but unknown.
    static func knownOptional(_ inputs: [TensorInfo?], _ values: [Tensor?], _ i: Int, _ what: String, _ ctx: KernelContext) throws -> Tensor? {
        guard i < inputs.count, inputs[i] != nil else { return nil }
        return try known(values, i, what, ctx)
    }

    /// The bytes of one element of `dtype` holding `value` (a fill value for Pad, Resize).
    static func elementBytes(_ value: Double, _ dtype: DType, _ ctx: KernelContext) throws -> [UInt8] {
        guard dtype.size > 0, dtype != .string else { throw ctx.error("\(dtype) tensors are not supported") }
        if dtype == .complex64 || dtype == .complex128 || !isNumeric(dtype) {
            guard value == 0 else { throw ctx.error("a nonzero fill value for \(dtype) is not supported") }
            return [UInt8](repeating: 0, count: dtype.size)
        }
        return Tensor(scalar: value).converted(to: dtype).withUnsafeBytes { Array($0) }
    }

    /// Largest element count an output may have; larger (or overflowing) shapes computed from
    /// tensor contents are refused with an error instead of failing the allocation.
    static let maxElements = 1 << 34

    /// `shape` when every dimension is non-negative and the element count stays within
    /// `maxElements`.
    static func checkedShape(_ shape: [Int], _ ctx: KernelContext) throws -> [Int] {
        var n = 1
        for d in shape {
            guard d >= 0 else { throw ctx.error("output shape \(shape) has a negative dimension") }
            let (r, o) = n.multipliedReportingOverflow(by: d)
            guard !o, r <= maxElements else { throw ctx.error("output shape \(shape) is too large (more than \(maxElements) elements)") }
            n = r
        }
        return shape
    }

    /// ⌊v⌋ as a dimension length, or an error when `v` is not finite or too large.
    static func length(_ v: Double, _ what: String, _ ctx: KernelContext) throws -> Int {
        guard v.isFinite, v >= 0, v <= Double(maxElements) else { throw ctx.error("\(what) \(v) is not a valid length") }
        return Int(v.rounded(.down))
    }

    /// Checks that `dtype` can be moved element by element.
    static func checkMovable(_ dtype: DType, _ ctx: KernelContext) throws {
        guard dtype.size > 0 else { throw ctx.error("\(dtype) tensors are not supported") }
    }

    /// Whether `Tensor.converted(to:)` handles `dtype` (the numeric types and bool).
    static func isNumeric(_ d: DType) -> Bool {
        switch d {
        case .float32, .float64, .float16, .bfloat16, .int8, .uint8, .bool, .int16, .uint16, .int32, .uint32, .int64, .uint64: return true
        default: return false
        }
    }
}
