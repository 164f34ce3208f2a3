import Foundation
import ModelIR
import TensorCore

// Operators that make tensors from attributes or shapes: Constant, ConstantOfShape, Range, EyeLike.

extension StandardOps {
    static func registerConstantOps(_ r: OpRegistry) {
        // Constant-1/9 (value), -11 (sparse_value), -12 (value_float(s), value_int(s), value_string(s)).
        r.register("Constant", since: 1, kernel: { _, ctx in
            [try ConstantRules.constant(ctx)]
        }, infer: { _, _, ctx in
            [TensorInfo(try ConstantRules.constant(ctx))]
        })

        // ConstantOfShape-9/20: a tensor of the given shape filled with `value` (default float 0).
        r.register("ConstantOfShape", since: 9, kernel: { inputs, ctx in
            let shape = try ConstantRules.shape(ctx.required(inputs, 0), ctx)
            let (dtype, fill) = try ConstantRules.fill(ctx)
            var out = Tensor(uninitialized: dtype, shape: shape)
            out.withUnsafeMutableBytes { d in
                let es = fill.count
                fill.withUnsafeBytes { f in
                    if fill.allSatisfy({ $0 == 0 }) { d.initializeMemory(as: UInt8.self, repeating: 0); return }
                    for i in 0..<(d.count / es) { (d.baseAddress! + i * es).copyMemory(from: f.baseAddress!, byteCount: es) }
                }
            }
            return [out]
        }, infer: { _, values, ctx in
            let shape = try ConstantRules.shape(TensorOperands.known(values, 0, "input 'input'", ctx), ctx)
            return [TensorInfo(try ConstantRules.fill(ctx).0, shape)]
        })

        // Range-11: start + i·delta for i < max(⌈(limit − start)/delta⌉, 0).
        r.register("Range", since: 11, kernel: { inputs, ctx in
            [try ConstantRules.range(ctx.required(inputs, 0), ctx.required(inputs, 1), ctx.required(inputs, 2), ctx)]
        }, infer: { inputs, values, ctx in
            let s = try TensorOperands.known(values, 0, "input 'start'", ctx), l = try TensorOperands.known(values, 1, "input 'limit'", ctx)
            let d = try TensorOperands.known(values, 2, "input 'delta'", ctx)
            return [TensorInfo(try ConstantRules.range(s, l, d, ctx))]
        })

        // EyeLike-9/22: a 2-D tensor with ones on diagonal k (the `dtype` attribute or the input's).
        r.register("EyeLike", since: 9, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            let dtype = try ConstantRules.eyeType(TensorInfo(x), ctx)
            var out = Tensor(dtype: dtype, shape: x.shape)
            let one = try TensorOperands.elementBytes(1, dtype, ctx)
            let k = Int(ctx.node.int("k") ?? 0), rows = x.shape[0], cols = x.shape[1]
            out.withUnsafeMutableBytes { d in
                for i in 0..<rows where i + k >= 0 && i + k < cols {
                    one.withUnsafeBytes { (d.baseAddress! + (i * cols + i + k) * one.count).copyMemory(from: $0.baseAddress!, byteCount: one.count) }
                }
            }
            return [out]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [TensorInfo(try ConstantRules.eyeType(x, ctx), x.shape)]
        })
    }
}

private enum ConstantRules {
    static func constant(_ ctx: KernelContext) throws -> Tensor {
        let n = ctx.node
        if let t = n.constantValue { return t }
        if n.tensor("value") != nil || n[attribute: "value_string"] != nil || n[attribute: "value_strings"] != nil {
            throw ctx.error("string constants are not supported")
        }
        if n[attribute: "sparse_value"] != nil { throw ctx.error("sparse constants (sparse_value) are not supported") }
        throw ctx.error("has no value attribute")
    }

    static func shape(_ t: Tensor, _ ctx: KernelContext) throws -> [Int] {
        guard t.dtype == .int64 else { throw ctx.error("the shape input must be int64, got \(t.dtype)") }
        guard t.rank == 1 else { throw ctx.error("the shape input must be 1-D, got shape \(t.shape)") }
        return try TensorOperands.checkedShape(t.int64Values().map { Int($0) }, ctx)
    }

    /// ConstantOfShape's element type and the bytes of its fill value.
    static func fill(_ ctx: KernelContext) throws -> (DType, [UInt8]) {
        guard let v = ctx.node.tensor("value") else { return (.float32, [0, 0, 0, 0]) }
        guard v.count == 1 else { throw ctx.error("attribute 'value' must hold one element, got \(v.count)") }
        guard v.dtype.size > 0 else { throw ctx.error("\(v.dtype) values are not supported") }
        return (v.dtype, v.withUnsafeBytes { Array($0) })
    }

    static func range(_ start: Tensor, _ limit: Tensor, _ delta: Tensor, _ ctx: KernelContext) throws -> Tensor {
        guard start.count == 1, limit.count == 1, delta.count == 1 else { throw ctx.error("start, limit and delta must be scalars") }
        guard start.dtype == limit.dtype, start.dtype == delta.dtype else {
            throw ctx.error("start, limit and delta mix \(start.dtype), \(limit.dtype) and \(delta.dtype)")
        }
        let dtype = start.dtype
        switch dtype {
        case .int16, .int32, .int64:
            let s = start.int64Values()[0], l = limit.int64Values()[0], d = delta.int64Values()[0]
            guard d != 0 else { throw ctx.error("delta is 0") }
            // The count in Double first, so extreme arguments are an error rather than an overflow.
            let n = try TensorOperands.length(max(0, ((Double(l) - Double(s)) / Double(d)).rounded(.up)), "Range length", ctx)
            _ = try TensorOperands.checkedShape([n], ctx)
            var out = Tensor(uninitialized: dtype, shape: [n])
            out.withUnsafeMutableBytes { p in
                for i in 0..<n {
                    let v = s + Int64(i) * d
                    switch dtype {
                    case .int16: p.storeBytes(of: Int16(truncatingIfNeeded: v), toByteOffset: i * 2, as: Int16.self)
                    case .int32: p.storeBytes(of: Int32(truncatingIfNeeded: v), toByteOffset: i * 4, as: Int32.self)
                    default: p.storeBytes(of: v, toByteOffset: i * 8, as: Int64.self)
                    }
                }
            }
            return out
        case .float32, .float64, .float16, .bfloat16:
            let s = start.doubleValues()[0], l = limit.doubleValues()[0], d = delta.doubleValues()[0]
            guard d != 0, s.isFinite, l.isFinite, d.isFinite else { throw ctx.error("start \(s), limit \(l), delta \(d) do not make a finite range") }
            let n = try TensorOperands.length(max(0, ((l - s) / d).rounded(.up)), "Range length", ctx)
            _ = try TensorOperands.checkedShape([n], ctx)
            let values = (0..<n).map { s + Double($0) * d }
            let t = Tensor(shape: [n], scalars: values)
            return dtype == .float64 ? t : t.converted(to: dtype)
        default:
            throw ctx.error("Range of \(dtype) is not supported")
        }
    }

    static func eyeType(_ x: TensorInfo, _ ctx: KernelContext) throws -> DType {
        guard x.shape.count == 2 else { throw ctx.error("input must be 2-D, got shape \(x.shape)") }
        guard let code = ctx.node.int("dtype") else { return x.dtype }
        guard let d = DType(rawValue: Int32(truncatingIfNeeded: code)), d.size > 0 else { throw ctx.error("dtype \(code) is not supported") }
        return d
    }
}
