import ModelIR
import TensorCore

extension StandardOps {
    /// QuantizeLinear / DequantizeLinear (opsets 10, 13, 19, 21, 23, 24, 25), DynamicQuantizeLinear
    /// (11) and, in QuantizationInteger.swift, MatMulInteger, ConvInteger, QLinearMatMul and
    /// QLinearConv. The element arithmetic is in TensorCore/Kernels/Quantize.swift.
    ///
    /// What each version added (ONNX Changelog.md): 13 per-axis scales (`axis`); 19 float8
    /// outputs, float16/bfloat16 scales, `saturate`; 21 blocked quantization (`block_size`),
    /// `output_dtype`, int4/uint4/int16/uint16; 23 float4e2m1 and `precision`; 25 int2/uint2.
    static func registerQuantization(_ r: OpRegistry) {
        for v in [10, 13, 19, 21, 23, 24, 25] {
            r.register("QuantizeLinear", since: v, kernel: LinearQuantization.quantize, infer: LinearQuantization.quantizeType)
            r.register("DequantizeLinear", since: v, kernel: LinearQuantization.dequantize, infer: LinearQuantization.dequantizeType)
        }
        r.register("DynamicQuantizeLinear", since: 11, kernel: LinearQuantization.dynamicQuantize, infer: LinearQuantization.dynamicQuantizeType)
        registerQuantizedIntegerOps(r)
    }
}

/// QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.
enum LinearQuantization {
    /// Quantized element types each opset admits (Changelog: QuantizeLinear/DequantizeLinear).
    static func quantizedTypes(opset: Int) -> Set<DType> {
        var s: Set<DType> = [.uint8, .int8]
        if opset >= 19 { s.formUnion([.float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz]) }
        if opset >= 21 { s.formUnion([.int4, .uint4, .int16, .uint16]) }
        if opset >= 23 { s.insert(.float4e2m1) }
        if opset >= 25 { s.formUnion([.int2, .uint2]) }
        return s
    }

    /// Scale types this implementation reads (float8e8m0 scales of opset 24 are not supported).
    static let scaleTypes: Set<DType> = [.float32, .float16, .bfloat16]

    static func typeList(_ s: Set<DType>) -> String { s.map(\.description).sorted().joined(separator: ", ") }

    /// The scale/zero-point layout over `shape`: per tensor (a scalar or one-element scale),
    /// per axis (a 1-D scale as long as the axis) or blocked (`block_size` > 0: the scale has
    /// x's shape with `ceil(D / block_size)` on the axis). Zero point, when given, must have the
    /// scale's shape.
    static func layout(shape: [Int], scale: [Int], zeroPoint: [Int]?, _ ctx: KernelContext) throws -> QuantizationLayout {
        func text(_ s: [Int]) -> String { QuantizationText.shape(s) }
        if let z = zeroPoint, z != scale, !(z.reduce(1, *) == 1 && scale.reduce(1, *) == 1) {
            throw ctx.error("zero point has shape \(text(z)) but the scale has \(text(scale)); they must match")
        }
        let count = shape.reduce(1, *)
        let blockSize = ctx.opset >= 21 ? Int(ctx.node.int("block_size") ?? 0) : 0
        guard blockSize >= 0 else { throw ctx.error("block_size \(blockSize) must not be negative") }
        if scale.reduce(1, *) == 1 && blockSize == 0 { return .perTensor(count: count) }
        var axis = Int(ctx.node.int("axis") ?? 1)
        if axis < 0 { axis += shape.count }
        guard axis >= 0 && axis < shape.count else {
            throw ctx.error("axis \(ctx.node.int("axis") ?? 1) is out of range for input shape \(text(shape))")
        }
        let outer = shape[..<axis].reduce(1, *), dim = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        if blockSize == 0 {
            guard ctx.opset >= 13 || scale.count <= 1 else { throw ctx.error("opset \(ctx.opset) takes a per-tensor scale only; got \(text(scale))") }
            guard scale == [dim] else {
                throw ctx.error("scale has shape \(text(scale)); per-axis quantization along axis \(axis) of \(text(shape)) needs [\(dim)]")
            }
            return QuantizationLayout(outer: outer, dim: dim, inner: inner, granularity: .perAxis)
        }
        var want = shape
        want[axis] = (dim + blockSize - 1) / blockSize
        guard scale == want else {
            throw ctx.error("scale has shape \(text(scale)); blocked quantization (block_size \(blockSize), axis \(axis)) of \(text(shape)) needs \(text(want))")
        }
        return QuantizationLayout(outer: outer, dim: dim, inner: inner, granularity: .blocked(blockSize))
    }

    /// Output type of QuantizeLinear: the zero point's type, else `output_dtype`, else uint8.
    static func outputType(_ zeroPoint: DType?, _ ctx: KernelContext) throws -> DType {
        var out = zeroPoint ?? .uint8
        if ctx.opset >= 21, let code = ctx.node.int("output_dtype"), code != 0 {
            guard let d = DType(rawValue: Int32(code)) else { throw ctx.error("output_dtype \(code) is not an ONNX element type") }
            if let z = zeroPoint, z != d { throw ctx.error("output_dtype \(d) differs from the zero point's type \(z)") }
            out = d
        }
        let allowed = quantizedTypes(opset: ctx.opset)
        guard allowed.contains(out) else {
            throw ctx.error("cannot quantize to \(out) at opset \(ctx.opset); supported: \(typeList(allowed))")
        }
        return out
    }

    static func checkScale(_ s: TensorInfo, _ ctx: KernelContext) throws {
        guard scaleTypes.contains(s.dtype) else {
            throw ctx.error("scale is \(s.dtype); supported scale types: \(typeList(scaleTypes))")
        }
        if ctx.opset < 19 && s.dtype != .float32 { throw ctx.error("scale is \(s.dtype); opset \(ctx.opset) takes float32 scales") }
    }

    /// The division's precision: the `precision` attribute (opset 23), else NumPy's promotion of
    /// x and scale, as ONNX's reference implementation divides.
    static func divisionPrecision(x: DType, scale: DType, _ ctx: KernelContext) throws -> DivisionPrecision {
        if ctx.opset >= 23, let code = ctx.node.int("precision"), code != 0 {
            switch DType(rawValue: Int32(code)) {
            case .float32?: return .float32
            case .float16?: return .float16
            case .bfloat16?: return .bfloat16
            case .float64?: return .float64
            default: throw ctx.error("precision \(code) is not float32, float16, bfloat16 or float64")
            }
        }
        if x == .int32 { return .float64 }
        if x == scale && x == .float16 { return .float16 }
        if x == scale && x == .bfloat16 { return .bfloat16 }
        return .float32
    }

    static func quantizeType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0), s = try ctx.required(types, 1)
        let z = types.count > 2 ? types[2] : nil
        try checkQuantizeInput(x, ctx)
        try checkScale(s, ctx)
        _ = try layout(shape: x.shape, scale: s.shape, zeroPoint: z?.shape, ctx)
        return [TensorInfo(try outputType(z?.dtype, ctx), x.shape)]
    }

    static func checkQuantizeInput(_ x: TensorInfo, _ ctx: KernelContext) throws {
        let allowed: Set<DType> = ctx.opset >= 19 ? [.float32, .float16, .bfloat16, .int32] : [.float32, .int32]
        guard allowed.contains(x.dtype) else { throw ctx.error("input is \(x.dtype); QuantizeLinear-\(ctx.opset) takes \(typeList(allowed))") }
    }

    /// `y = saturate(round_half_even(x / scale) + zero_point)` (float8: `cast(x / scale)`).
    static func quantize(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0), s = try ctx.required(inputs, 1)
        let z = inputs.count > 2 ? inputs[2] : nil
        try checkQuantizeInput(TensorInfo(x), ctx)
        try checkScale(TensorInfo(s), ctx)
        let lay = try layout(shape: x.shape, scale: s.shape, zeroPoint: z?.shape, ctx)
        let out = try outputType(z?.dtype, ctx)
        let precision = try divisionPrecision(x: x.dtype, scale: s.dtype, ctx)
        // Float8 ignores the zero point (ONNX requires it to be 0); float4 adds it as a float.
        var zero: [Float] = []
        if let z {
            if out == .float4e2m1 { zero = Quantization.floatValues(z) } else if Minifloat.format(of: out) == nil { zero = Quantization.intValues(z).map(Float.init) }
        }
        let xv: [Float] = x.dtype == .int32 ? x.scalars(as: Int32.self).map(Float.init) : x.floatValues()
        if x.dtype == .int32, xv.contains(where: { abs($0) > 16_777_216 }) {
            throw ctx.error("int32 input values beyond ±2^24 are not supported (they do not fit float32 exactly)")
        }
        let saturate = ctx.opset >= 19 ? (ctx.node.int("saturate") ?? 1) != 0 : true
        return [Quantization.quantize(xv, layout: lay, scale: s.floatValues(), zeroPoint: zero, precision: precision,
                                      output: out, saturate: saturate, shape: x.shape)]
    }

    static func dequantizeOutput(scale: DType, _ ctx: KernelContext) throws -> DType {
        if ctx.opset >= 23, let code = ctx.node.int("output_dtype"), code != 0 {
            guard let d = DType(rawValue: Int32(code)), scaleTypes.contains(d) else {
                throw ctx.error("output_dtype \(code) is not float32, float16 or bfloat16")
            }
            return d
        }
        return scale
    }

    static func checkDequantizeInput(_ x: TensorInfo, zeroPoint: TensorInfo?, _ ctx: KernelContext) throws {
        let allowed = quantizedTypes(opset: ctx.opset).union([.int32])
        guard allowed.contains(x.dtype) else {
            throw ctx.error("input is \(x.dtype); DequantizeLinear-\(ctx.opset) takes \(typeList(allowed))")
        }
        if let z = zeroPoint, z.dtype != x.dtype { throw ctx.error("zero point is \(z.dtype) but the input is \(x.dtype)") }
    }

    static func dequantizeType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0), s = try ctx.required(types, 1)
        let z = types.count > 2 ? types[2] : nil
        try checkDequantizeInput(x, zeroPoint: z, ctx)
        try checkScale(s, ctx)
        _ = try layout(shape: x.shape, scale: s.shape, zeroPoint: z?.shape, ctx)
        return [TensorInfo(try dequantizeOutput(scale: s.dtype, ctx), x.shape)]
    }

    /// `y = (x - zero_point) * scale`.
    static func dequantize(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0), s = try ctx.required(inputs, 1)
        let z = inputs.count > 2 ? inputs[2] : nil
        try checkDequantizeInput(TensorInfo(x), zeroPoint: z.map(TensorInfo.init), ctx)
        try checkScale(TensorInfo(s), ctx)
        let lay = try layout(shape: x.shape, scale: s.shape, zeroPoint: z?.shape, ctx)
        var zero: [Float] = []
        if let z {
            if Minifloat.format(of: x.dtype) != nil {
                // ONNX: the zero point of float8/float4 data must be zero and is not applied.
                guard Quantization.floatValues(z).allSatisfy({ $0 == 0 }) else {
                    throw ctx.error("the zero point of \(x.dtype) data must be 0")
                }
            } else {
                zero = Quantization.intValues(z).map(Float.init)
            }
        }
        let y = Quantization.dequantize(x, layout: lay, scale: s.floatValues(), zeroPoint: zero)
        let out = try dequantizeOutput(scale: s.dtype, ctx)
        let t = Tensor(shape: x.shape, scalars: y)
        return [out == .float32 ? t : t.converted(to: out)]
    }

    static func dynamicQuantizeType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0)
        guard x.dtype == .float32 else { throw ctx.error("input is \(x.dtype); DynamicQuantizeLinear takes float32") }
        return [TensorInfo(.uint8, x.shape), TensorInfo(.float32, []), TensorInfo(.uint8, [])]
    }

    /// DynamicQuantizeLinear: uint8 quantization with the scale and zero point computed from the
    /// data's range (see `Quantization.dynamicParameters`), then `y = saturate(round(x / scale)
    /// + zero_point)`.
    static func dynamicQuantize(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0)
        _ = try dynamicQuantizeType([TensorInfo(x)], [], ctx)
        let v = x.scalars(as: Float.self)
        var lo: Float = 0, hi: Float = 0
        for e in v where !e.isNaN { lo = min(lo, e); hi = max(hi, e) }
        let (scale, zp) = Quantization.dynamicParameters(minValue: lo, maxValue: hi)
        let y = Quantization.quantize(v, layout: .perTensor(count: v.count), scale: [scale], zeroPoint: [Float(zp)],
                                      precision: .float32, output: .uint8, shape: x.shape)
        return [y, Tensor(scalar: scale), Tensor(scalar: zp)]
    }
}

/// Shape text for messages.
enum QuantizationText {
    static func shape(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }
}
