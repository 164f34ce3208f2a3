import ModelIR
import TensorCore

// Cast, CastLike, Clip, Identity and Dropout (inference).

extension StandardOps {
    static func registerConversions(_ r: OpRegistry) {
        // Cast: ONNX Cast semantics as implemented by `Tensor.converted(to:)` (float → integer
        // truncates toward zero, any nonzero or NaN → true, narrowing floats round to nearest
        // even). The `saturate` attribute (opset 19) only concerns 8-bit float targets.
        r.register("Cast", kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            return [try cast(x, to: try castTarget(ctx), ctx)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [TensorInfo(try castTarget(ctx), x.shape)]
        })
        r.register("CastLike", since: 15, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0), like = try ctx.required(inputs, 1)
            return [try cast(x, to: like.dtype, ctx)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0), like = try ctx.required(inputs, 1)
            return [TensorInfo(like.dtype, x.shape)]
        })

        r.register("Identity", kernel: { inputs, ctx in [try ctx.required(inputs, 0)] }, infer: ElementwiseShapes.same())

        // Clip: bounds are attributes `min`/`max` before opset 11 and optional scalar inputs from
        // 11 (integer types from 12). y = min(max(x, lo), hi), so lo > hi gives hi everywhere
        // (NumPy `clip`, test_clip_min_greater_than_max); NaN stays NaN.
        r.register("Clip", kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            let lo = ctx.node.float("min").map { Tensor(scalar: $0) }
            let hi = ctx.node.float("max").map { Tensor(scalar: $0) }
            return [try clip(x, lo?.converted(to: x.dtype), hi?.converted(to: x.dtype), ctx)]
        }, infer: ElementwiseShapes.same())
        r.register("Clip", since: 11, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            let lo = inputs.count > 1 ? inputs[1] : nil, hi = inputs.count > 2 ? inputs[2] : nil
            for (k, b) in [(1, lo), (2, hi)] {
                guard let b else { continue }
                guard b.count == 1 else { throw ctx.error("input \(k) must be a scalar, got shape \(b.shape)") }
                guard b.dtype == x.dtype else { throw ctx.error("input \(k) is \(b.dtype) but the input is \(x.dtype)") }
            }
            return [try clip(x, lo, hi, ctx)]
        }, infer: ElementwiseShapes.same())

        // Dropout in inference: the output is the input, the optional mask all true (bool from
        // opset 10, the input's type before). Opset 12 moved ratio to an input and added
        // training_mode; training with a nonzero ratio draws random numbers, which compress does
        // not reproduce, so it is an error.
        let dropout: KernelFunction = { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            if ctx.opset >= 12, inputs.count > 2, let t = inputs[2], t.count == 1, t.int64Values()[0] != 0 {
                let ratio = inputs.count > 1 ? inputs[1].map { $0.doubleValues().first ?? 0.5 } ?? 0.5 : 0.5
                if ratio != 0 {
                    throw ctx.error("training_mode is true with ratio \(ratio): random dropout is not supported (inference only)")
                }
            }
            guard ctx.node.outputs.count > 1, !ctx.node.outputs[1].isEmpty else { return [x] }
            return [x, dropoutMask(x.shape, dtype: ctx.opset >= 10 ? .bool : x.dtype)]
        }
        let dropoutShapes: ShapeFunction = { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [x, TensorInfo(ctx.opset >= 10 ? .bool : x.dtype, x.shape)]
        }
        for since in [1, 10, 12] { r.register("Dropout", since: since, kernel: dropout, infer: dropoutShapes) }
    }

    /// The `to` attribute of a Cast node as a supported dtype.
    static func castTarget(_ ctx: KernelContext) throws -> DType {
        guard let code = ctx.node.int("to") else { throw ctx.error("attribute 'to' is required") }
        guard let d = DType(rawValue: Int32(truncatingIfNeeded: code)) else { throw ctx.error("attribute 'to' = \(code) is not an ONNX element type") }
        return d
    }

    /// `x` converted to `target` (ONNX Cast). Byte-sized numeric types use
    /// `Tensor.converted(to:)`; the packed and 8-bit float types (int4/uint4/int2/uint2, float8
    /// E4M3FN/E4M3FNUZ/E5M2/E5M2FNUZ/E8M0, float4 E2M1) are widened to float32 or int32 first
    /// and narrowed with the spec's rules: float8 rounds to nearest even and, with `saturate`,
    /// clamps out-of-range values (±inf included) to ±max; E8M0 keeps the exponent, rounded per
    /// `round_mode`; integers wrap (discard high bits: 9 → int4 -7) after truncation toward zero.
    static func cast(_ x: Tensor, to target: DType, _ ctx: KernelContext) throws -> Tensor {
        if x.dtype == target { return x }
        guard x.dtype != .string && target != .string else { throw ctx.error("cannot cast \(x.dtype) to \(target): string tensors are not supported") }
        guard x.dtype != .complex64 && x.dtype != .complex128 && target != .complex64 && target != .complex128 else {
            throw ctx.error("cannot cast \(x.dtype) to \(target): complex tensors are not supported")
        }
        let src = widened(x)
        if src.dtype == target { return src }
        if Tensor.isNumericType(target) { return src.converted(to: target) }
        let saturate = ctx.intAttribute("saturate", default: 1) != 0
        let n = src.count
        var out = Tensor(dtype: target, shape: src.shape)
        if let f = Minifloat.format(of: target) {
            let v = src.floatValues()
            out.withUnsafeMutableBytes { raw in
                let p = raw.baseAddress!
                for i in 0..<n {
                    let code = encode(f, v[i], saturate: saturate)
                    if target == .float4e2m1 {
                        let old = p.load(fromByteOffset: i / 2, as: UInt8.self)
                        p.storeBytes(of: old | (code & 0xF) << UInt8((i % 2) * 4), toByteOffset: i / 2, as: UInt8.self)
                    } else {
                        p.storeBytes(of: code, toByteOffset: i, as: UInt8.self)
                    }
                }
            }
            return out
        }
        if target == .float8e8m0 {
            let mode = ctx.node.string("round_mode") ?? "up"
            guard ["up", "down", "nearest"].contains(mode) else { throw ctx.error("round_mode must be up, down or nearest, got \"\(mode)\"") }
            let v = src.floatValues()
            out.withUnsafeMutableBytes { raw in
                for i in 0..<n { raw[i] = E8M0.encode(v[i], saturate: saturate, roundMode: mode) }
            }
            return out
        }
        if Quantization.integerRange(of: target) != nil {
            let v = src.int64Values()
            out.withUnsafeMutableBytes { raw in
                for i in 0..<n { Quantization.storeInt(Int32(truncatingIfNeeded: v[i]), raw.baseAddress!, i, target) }
            }
            return out
        }
        throw ctx.error("cannot cast \(x.dtype) to \(target): unsupported element type")
    }

    /// `x` in the small float format `f`, per the Cast spec's tables (see `Minifloat.encode`).
    static func encode(_ f: Minifloat, _ x: Float, saturate: Bool) -> UInt8 {
        f.encode(x, saturate: saturate)
    }

    /// A tensor of a packed or 8-bit float type as float32 (small floats) or int32 (packed
    /// integers); any other tensor unchanged.
    static func widened(_ x: Tensor) -> Tensor {
        switch x.dtype {
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1:
            return Tensor(shape: x.shape, scalars: Quantization.floatValues(x))
        case .float8e8m0:
            return Tensor(shape: x.shape, scalars: x.withUnsafeBytes { raw in raw.map { E8M0.decode($0) } })
        case .int4, .uint4, .int2, .uint2:
            return Tensor(shape: x.shape, scalars: Quantization.intValues(x))
        default:
            return x
        }
    }

    /// An all-true Dropout mask.
    static func dropoutMask(_ shape: [Int], dtype: DType) -> Tensor {
        let one = Tensor(scalar: Float(1)).converted(to: dtype)
        var m = Tensor(uninitialized: dtype, shape: shape)
        let size = dtype.size, n = m.count
        one.withUnsafeBytes { src in
            m.withUnsafeMutableBytes { dst in
                for i in 0..<n { (dst.baseAddress! + i * size).copyMemory(from: src.baseAddress!, byteCount: size) }
            }
        }
        return m
    }

    /// Clip with optional bounds of `x`'s dtype.
    static func clip(_ x: Tensor, _ lo: Tensor?, _ hi: Tensor?, _ ctx: KernelContext) throws -> Tensor {
        if ElementDispatch.widens(x.dtype) {
            return try clip(x.converted(to: .float32), lo?.converted(to: .float32), hi?.converted(to: .float32), ctx).converted(to: x.dtype)
        }
        struct Visit: ArithmeticTypeVisitor {
            let x: Tensor, lo: Tensor?, hi: Tensor?
            func visit<T: ArithmeticScalar>(_: T.Type) throws -> Tensor {
                let l = lo?.scalars(as: T.self)[0], h = hi?.scalars(as: T.self)[0]
                switch (l, h) {
                case let (l?, h?): return x.mapped(ClipFunction(lo: l, hi: h), into: x.dtype)
                case let (l?, nil): return x.mapped(ClipFunction(lo: l, hi: nil), into: x.dtype)
                case let (nil, h?): return x.mapped(ClipFunction(lo: nil, hi: h), into: x.dtype)
                case (nil, nil): return x
                }
            }
        }
        guard let y = try ElementDispatch.arithmetic(x.dtype, Visit(x: x, lo: lo, hi: hi)) else { throw ctx.unsupportedElementType(x.dtype) }
        return y
    }
}

/// min(max(x, lo), hi) with optional bounds; NaN stays NaN.
struct ClipFunction<T: ArithmeticScalar>: UnaryElementFunction {
    let lo: T?, hi: T?
    @inline(__always) func callAsFunction(_ x: T) -> T {
        var y = x
        if let lo, y < lo { y = lo }
        if let hi, y > hi { y = hi }
        return y
    }
}

/// float8 E8M0 (OCP Microscaling): an unsigned power of two 2^(code − 127), code 0xFF = NaN.
/// Encoding follows `onnx.numpy_helper.to_float8e8m0`: the float32 exponent field, rounded up
/// when any mantissa bit is set (`up`), never (`down`), or by guard/round/sticky bits
/// (`nearest`); with `saturate` rounding never passes 0xFE. NaN and ±inf give 0xFF; the sign is
/// ignored.
enum E8M0 {
    static func decode(_ code: UInt8) -> Float {
        code == 0xFF ? .nan : Float(sign: .plus, exponent: Int(code) - 127, significand: 1)
    }

    static func encode(_ x: Float, saturate: Bool, roundMode: String) -> UInt8 {
        let bits = x.bitPattern
        var e = UInt16((bits >> 23) & 0xFF)
        if e == 0xFF { return 0xFF }
        var up = false
        switch roundMode {
        case "up": up = bits & 0x7F_FFFF != 0
        case "nearest":
            let g = bits & 0x40_0000 != 0, r = bits & 0x20_0000 != 0, s = bits & 0x1F_FFFF != 0
            up = g && (r || s || e > 0)
        default: up = false
        }
        if up && saturate && e == 0xFE { up = false }
        if up { e += 1 }
        return UInt8(truncatingIfNeeded: e)
    }
}
