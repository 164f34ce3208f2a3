import ModelIR
import TensorCore

extension StandardOps {
    /// The com.microsoft quantized operators ONNX Runtime's quantizers write (QOperator format and
    /// dynamic quantization), all at since-version 1 of that domain. ONNX Runtime's CPU kernels are
    /// the reference: each kernel below states the arithmetic it reproduces (float32 operations in
    /// ONNX Runtime's order, round half to even, saturation) and where the result may differ.
    /// Element-wise, concat and pooling ops are here; the matrix products and DynamicQuantizeLSTM
    /// are in QuantizationMicrosoftMatMul.swift.
    static func registerMicrosoftQuantization(_ r: OpRegistry) {
        let ms = MicrosoftQuant.domain
        r.register("QLinearAdd", domain: ms, since: 1, kernel: { i, c in try MicrosoftQuant.binary(i, c, add: true) }, infer: MicrosoftQuant.binaryType)
        r.register("QLinearMul", domain: ms, since: 1, kernel: { i, c in try MicrosoftQuant.binary(i, c, add: false) }, infer: MicrosoftQuant.binaryType)
        r.register("QLinearSigmoid", domain: ms, since: 1, kernel: { i, c in try MicrosoftQuant.lookup(i, c, MicrosoftQuant.logistic) }, infer: MicrosoftQuant.lookupType)
        r.register("QLinearLeakyRelu", domain: ms, since: 1, kernel: { i, c in
            let alpha = c.node.float("alpha") ?? 0.01
            return try MicrosoftQuant.lookup(i, c) { $0 >= 0 ? $0 : alpha * $0 }
        }, infer: MicrosoftQuant.lookupType)
        r.register("QLinearConcat", domain: ms, since: 1, kernel: MicrosoftQuant.concat, infer: MicrosoftQuant.concatType)
        r.register("QLinearGlobalAveragePool", domain: ms, since: 1, kernel: MicrosoftQuant.globalAveragePool, infer: MicrosoftQuant.globalAveragePoolType)
        r.register("QLinearAveragePool", domain: ms, since: 1, kernel: MicrosoftQuant.averagePool, infer: MicrosoftQuant.averagePoolType)
        registerMicrosoftQuantizedProducts(r)
    }
}

/// Shared pieces of the com.microsoft quantized kernels.
enum MicrosoftQuant {
    static let domain = "com.microsoft"

    static func text(_ s: [Int]) -> String { QuantizationText.shape(s) }

    /// A per-tensor float32 scale (a scalar or one-element tensor), as ONNX Runtime requires.
    static func scale(_ inputs: [Tensor?], _ i: Int, _ what: String, _ ctx: KernelContext) throws -> Float {
        let t = try ctx.required(inputs, i)
        guard t.dtype == .float32 else { throw ctx.error("\(what) is \(t.dtype); expected float32") }
        guard t.count == 1 else { throw ctx.error("\(what) has shape \(text(t.shape)); expected a scalar or one-element tensor") }
        return t.scalars(as: Float.self)[0]
    }

    /// A per-tensor zero point (absent = 0) that must have the data's type.
    static func zeroPoint(_ inputs: [Tensor?], _ i: Int, _ type: DType, _ what: String, _ ctx: KernelContext) throws -> Int32 {
        guard i < inputs.count, let t = inputs[i] else { return 0 }
        guard t.dtype == type else { throw ctx.error("\(what) is \(t.dtype); expected \(type) like its data") }
        guard t.count == 1 else { throw ctx.error("\(what) has shape \(text(t.shape)); expected a scalar or one-element tensor") }
        return Quantization.intValues(t)[0]
    }

    static func checkEightBit(_ t: TensorInfo, _ what: String, _ ctx: KernelContext) throws {
        guard t.dtype == .uint8 || t.dtype == .int8 else { throw ctx.error("\(what) is \(t.dtype); expected uint8 or int8") }
    }

    /// x86 `cvtps2dq` followed by the saturating packs of ONNX Runtime's vector kernels: round half
    /// to even; NaN and values outside int32 become INT32_MIN, so they saturate to the type's
    /// minimum (ONNX Runtime's behaviour, not a clamp of the float).
    @inline(__always)
    static func packRound(_ t: Float, _ range: ClosedRange<Int32>) -> Int32 {
        guard t >= -2_147_483_648, t < 2_147_483_648 else { return range.lowerBound }
        let v = Int64(t.rounded(.toNearestOrEven))
        return Int32(min(max(v, Int64(range.lowerBound)), Int64(range.upperBound)))
    }

    /// MLAS's float → 8-bit step (MlasQuantizeLinear, MlasRequantizeOutput): clamp `v` to
    /// `[qmin − zp, qmax − zp]` (NaN becomes the lower bound, as MAXPS returns its second operand),
    /// round half to even, add the zero point.
    @inline(__always)
    static func requantize(_ v: Float, zeroPoint zp: Int32, _ range: ClosedRange<Int32>) -> Int32 {
        let lo = Float(range.lowerBound - zp), hi = Float(range.upperBound - zp)
        var c = v > lo ? v : lo
        c = c < hi ? c : hi
        return Int32(c.rounded(.toNearestOrEven)) + zp
    }

    // MARK: QLinearAdd, QLinearMul

    static func binaryType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let a = try ctx.required(types, 0), b = try ctx.required(types, 3)
        try checkEightBit(a, "A", ctx)
        guard b.dtype == a.dtype else { throw ctx.error("B is \(b.dtype) but A is \(a.dtype)") }
        for i in [1, 4, 6] { _ = try ctx.required(types, i) }
        guard let shape = Broadcast.shape(a.shape, b.shape) else {
            throw ctx.error("A \(text(a.shape)) and B \(text(b.shape)) do not broadcast")
        }
        return [TensorInfo(a.dtype, shape)]
    }

    /// QLinearAdd / QLinearMul as ONNX Runtime's x86 MLAS kernels compute them (AVX2 QLinearAdd,
    /// SSE2 QLinearMul), a, b the raw stored integers:
    /// - Add: `r_a = s_a/s_c`, `r_b = s_b/s_c`, `F = z_c − fma(r_a, z_a, r_b·z_b)`,
    ///   `c = sat(rint(fma(a, r_a, fma(b, r_b, F))))`. Where a broadcast makes A one value per
    ///   innermost span ONNX Runtime swaps the operands (B becomes the vector), so the roles of
    ///   a and b in F and in the nested fma swap too.
    /// - Mul: `r = (s_a·s_b)/s_c`, `c = sat(rint(float((a − z_a)(b − z_b))·r + z_c))`.
    /// Every step is float32 (fma: one rounding). ARM builds of ONNX Runtime use a fixed-point
    /// QLinearAdd and can differ by one step; the x86 results are matched bit for bit.
    static func binary(_ inputs: [Tensor?], _ ctx: KernelContext, add: Bool) throws -> [Tensor] {
        let out = try binaryType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)[0]
        let a = inputs[0]!, b = inputs[3]!
        let type = a.dtype
        let sa = try scale(inputs, 1, "A_scale", ctx), sb = try scale(inputs, 4, "B_scale", ctx), sc = try scale(inputs, 6, "C_scale", ctx)
        let za = try zeroPoint(inputs, 2, type, "A_zero_point", ctx), zb = try zeroPoint(inputs, 5, type, "B_zero_point", ctx)
        let zc = try zeroPoint(inputs, 7, type, "C_zero_point", ctx)
        let av = Quantization.intValues(a), bv = Quantization.intValues(b)
        let rank = out.shape.count
        let aStrides = Broadcast.strides(of: a.shape, in: out.shape), bStrides = Broadcast.strides(of: b.shape, in: out.shape)
        let range = Quantization.integerRange(of: type)!
        // ONNX Runtime's broadcaster gives each span of the innermost output dimension larger than
        // one to one of three loops; A is the per-span scalar when A is a single value, or when
        // B is not and A is broadcast along that dimension.
        var swap = a.count == 1
        if !swap && b.count != 1, let d = out.shape.lastIndex(where: { $0 > 1 }) {
            let ad = d - (rank - a.shape.count)
            swap = ad < 0 || a.shape[ad] == 1
        }
        let ra = sa / sc, rb = sb / sc
        let fAdd: Float = swap ? Float(zc) - (ra * Float(za)).addingProduct(rb, Float(zb))
                               : Float(zc) - (rb * Float(zb)).addingProduct(ra, Float(za))
        let mulRatio = sa * sb / sc
        var y = Tensor(dtype: type, shape: out.shape)
        let n = out.count
        y.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            var index = [Int](repeating: 0, count: rank)
            var ao = 0, bo = 0
            for i in 0..<n {
                let x = Float(av[ao]), w = Float(bv[bo])
                let q: Int32
                if add {
                    let t = swap ? fAdd.addingProduct(x, ra).addingProduct(w, rb) : fAdd.addingProduct(w, rb).addingProduct(x, ra)
                    q = packRound(t, range)
                } else {
                    let prod = (av[ao] - za) * (bv[bo] - zb)
                    q = packRound(Float(prod) * mulRatio + Float(zc), range)
                }
                Quantization.storeInt(q, p, i, type)
                var d = rank - 1
                while d >= 0 {
                    index[d] += 1; ao += aStrides[d]; bo += bStrides[d]
                    if index[d] < out.shape[d] { break }
                    ao -= aStrides[d] * index[d]; bo -= bStrides[d] * index[d]; index[d] = 0; d -= 1
                }
            }
        }
        return [y]
    }

    // MARK: Lookup-table ops (QLinearSigmoid, QLinearLeakyRelu) and QLinearConcat

    static func lookupType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0)
        try checkEightBit(x, "X", ctx)
        _ = try ctx.required(types, 1)
        _ = try ctx.required(types, 3)
        return [x]
    }

    /// ONNX Runtime's 256-entry table (QlinearBuildLookupTable): for every stored byte i,
    /// `x = s_x · (T(i) − z_x)` in float32, `y = f(x)`, then MlasQuantizeLinear:
    /// `clamp(y / s_y, qmin − z_y, qmax − z_y)` rounded half to even, plus z_y.
    static func table(type: DType, sx: Float, zx: Int32, sy: Float, zy: Int32, _ f: (Float) -> Float) -> [Int32] {
        let range = Quantization.integerRange(of: type)!
        return (0..<256).map { i -> Int32 in
            let stored = type == .int8 ? Int32(Int8(truncatingIfNeeded: i)) : Int32(i)
            let x = sx * Float(stored - zx)
            return requantize(f(x) / sy, zeroPoint: zy, range)
        }
    }

    /// Applies a byte-indexed table to every element.
    static func applyTable(_ x: Tensor, _ table: [Int32], output type: DType) -> Tensor {
        var y = Tensor(dtype: type, shape: x.shape)
        x.withUnsafeBytes { xs in
            y.withUnsafeMutableBytes { raw in
                let p = raw.baseAddress!
                for i in 0..<x.count { Quantization.storeInt(table[Int(xs[i])], p, i, type) }
            }
        }
        return y
    }

    static func lookup(_ inputs: [Tensor?], _ ctx: KernelContext, _ f: (Float) -> Float) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0)
        _ = try lookupType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)
        let t = table(type: x.dtype, sx: try scale(inputs, 1, "X_scale", ctx), zx: try zeroPoint(inputs, 2, x.dtype, "X_zero_point", ctx),
                      sy: try scale(inputs, 3, "Y_scale", ctx), zy: try zeroPoint(inputs, 4, x.dtype, "Y_zero_point", ctx), f)
        return [applyTable(x, t, output: x.dtype)]
    }

    /// MLAS's logistic (MlasComputeLogisticF32KernelFma3, the x86 AVX2 kernel; Eigen's rational
    /// approximation): x clamped to ±18, `p = x·(((α9x²+α7)x²+α5)x²+α3)x²+α1)`,
    /// `q = ((((β10x²+β8)x²+β6)x²+β4)x²+β2)x²+β0`, each step one fma, result `clamp(p/q + ½, 0, 1)`.
    /// It is within a few ulp of 1/(1+e^−x); the quantized table matches ONNX Runtime unless a value
    /// lands within those ulp of a rounding midpoint.
    static func logistic(_ v: Float) -> Float {
        if v.isNaN { return v }
        let x = min(max(v, -18), 18), x2 = x * x
        var p: Float = Float(1.15627324459942e-07).addingProduct(x2, 4.37031012579801e-11)
        p = Float(6.08574864600143e-05).addingProduct(p, x2)
        p = Float(8.51377133304701e-03).addingProduct(p, x2)
        p = Float(2.48287947061529e-01).addingProduct(p, x2)
        p = p * x
        var q: Float = Float(5.76102136993427e-09).addingProduct(x2, 6.10247389755681e-13)
        q = Float(6.29106785017040e-06).addingProduct(q, x2)
        q = Float(1.70198817374094e-03).addingProduct(q, x2)
        q = Float(1.16817656904453e-01).addingProduct(q, x2)
        q = Float(9.93151921023180e-01).addingProduct(q, x2)
        return min(max(p / q + 0.5, 0), 1)
    }

    static func concatType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        guard types.count >= 5, (types.count - 2) % 3 == 0 else {
            throw ctx.error("expects Y_scale, Y_zero_point and then (X, X_scale, X_zero_point) triples; got \(types.count) inputs")
        }
        let yz = try ctx.required(types, 1)
        try checkEightBit(yz, "Y_zero_point", ctx)
        let xs = try stride(from: 2, to: types.count, by: 3).map { try ctx.required(types, $0) }
        for x in xs where x.dtype != yz.dtype { throw ctx.error("input is \(x.dtype); expected \(yz.dtype) like Y_zero_point") }
        let rank = xs[0].shape.count
        var axis = Int(ctx.node.int("axis") ?? 0)
        if axis < 0 { axis += rank }
        guard axis >= 0, axis < rank else { throw ctx.error("axis \(ctx.node.int("axis") ?? 0) is out of range for rank \(rank)") }
        var shape = xs[0].shape
        shape[axis] = 0
        for x in xs {
            guard x.shape.count == rank, (0..<rank).allSatisfy({ $0 == axis || x.shape[$0] == xs[0].shape[$0] }) else {
                throw ctx.error("input shapes \(xs.map { text($0.shape) }.joined(separator: ", ")) differ outside axis \(axis)")
            }
            shape[axis] += x.shape[axis]
        }
        return [TensorInfo(yz.dtype, shape)]
    }

    /// QLinearConcat: an input whose scale and zero point equal the output's is copied; any other
    /// goes through the identity table of `table(…)` (dequantize, requantize), as ONNX Runtime does.
    static func concat(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let out = try concatType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)[0]
        let type = out.dtype
        let sy = try scale(inputs, 0, "Y_scale", ctx), zy = try zeroPoint(inputs, 1, type, "Y_zero_point", ctx)
        var axis = Int(ctx.node.int("axis") ?? 0)
        if axis < 0 { axis += out.shape.count }
        let outer = out.shape[..<axis].reduce(1, *), inner = out.shape[(axis + 1)...].reduce(1, *)
        let outRow = out.shape[axis] * inner
        var y = Tensor(dtype: type, shape: out.shape)
        var offset = 0
        for k in stride(from: 2, to: inputs.count, by: 3) {
            let x = inputs[k]!
            let sx = try scale(inputs, k + 1, "X_scale", ctx), zx = try zeroPoint(inputs, k + 2, type, "X_zero_point", ctx)
            let identity = sx == sy && zx == zy
            let t = identity ? [] : table(type: type, sx: sx, zx: zx, sy: sy, zy: zy) { $0 }
            let row = x.shape[axis] * inner
            x.withUnsafeBytes { xs in
                y.withUnsafeMutableBytes { ys in
                    for o in 0..<outer {
                        for j in 0..<row {
                            let byte = xs[o * row + j]
                            ys[o * outRow + offset + j] = identity ? byte : UInt8(truncatingIfNeeded: t[Int(byte)])
                        }
                    }
                }
            }
            offset += row
        }
        return [y]
    }

    // MARK: Pooling

    static func poolScales(_ inputs: [Tensor?], _ type: DType, _ ctx: KernelContext) throws -> (sx: Float, zx: Int32, sy: Float, zy: Int32) {
        (try scale(inputs, 1, "x_scale", ctx), try zeroPoint(inputs, 2, type, "x_zero_point", ctx),
         try scale(inputs, 3, "y_scale", ctx), try zeroPoint(inputs, 4, type, "y_zero_point", ctx))
    }

    static func channelsLast(_ ctx: KernelContext) -> Bool { (ctx.node.int("channels_last") ?? 0) != 0 }

    static func globalAveragePoolType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0)
        try checkEightBit(x, "X", ctx)
        guard x.shape.count >= 3 else { throw ctx.error("X has shape \(text(x.shape)); expected rank ≥ 3") }
        var shape = x.shape
        let first = channelsLast(ctx) ? 1 : 2
        for d in first..<(first + x.shape.count - 2) { shape[d] = 1 }
        return [TensorInfo(x.dtype, shape)]
    }

    /// QLinearGlobalAveragePool (MLAS): per channel `acc = Σx − z_x·S` in int32 (S the image size),
    /// `m = s_x / (s_y · float(S))`, `y = requantize(float(acc) · m)` (clamp, round half to even,
    /// + z_y). ONNX Runtime refuses `m` outside [2^−32, 256) and S ≥ 2^24; so does this kernel.
    static func globalAveragePool(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0)
        let out = try globalAveragePoolType([TensorInfo(x)], [], ctx)[0]
        let (sx, zx, sy, zy) = try poolScales(inputs, x.dtype, ctx)
        let last = channelsLast(ctx)
        let batch = x.shape[0], channels = last ? x.shape[x.shape.count - 1] : x.shape[1]
        let image = x.count / max(batch * channels, 1)
        guard image < 0x100_0000 else { throw ctx.error("image size \(image) is too large (ONNX Runtime allows < 2^24)") }
        let m = sx / (sy * Float(image))
        guard m >= 0x1p-32, m < 256 else { throw ctx.error("x_scale / (y_scale · image size) = \(m) is outside [2^-32, 256), which ONNX Runtime refuses") }
        let xv = Quantization.intValues(x)
        let range = Quantization.integerRange(of: x.dtype)!
        var y = Tensor(dtype: x.dtype, shape: out.shape)
        y.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            for nIdx in 0..<batch {
                for c in 0..<channels {
                    var acc = -zx &* Int32(image)
                    for s in 0..<image {
                        acc &+= xv[last ? (nIdx * image + s) * channels + c : (nIdx * channels + c) * image + s]
                    }
                    Quantization.storeInt(requantize(Float(acc) * m, zeroPoint: zy, range), p, nIdx * channels + c, x.dtype)
                }
            }
        }
        return [y]
    }

    static func averagePoolGeometry(_ x: [Int], _ ctx: KernelContext) throws -> (WindowGeometry, nchw: [Int]) {
        guard x.count >= 3 else { throw ctx.error("X has shape \(text(x)); expected rank ≥ 3") }
        let nchw = channelsLast(ctx) ? [x[0], x[x.count - 1]] + Array(x[1..<(x.count - 1)]) : x
        let kernel = NNSupport.ints(ctx, "kernel_shape")
        guard kernel.count == x.count - 2 else { throw ctx.error("kernel_shape \(text(kernel)) needs \(x.count - 2) values") }
        let g = try NNSupport.window(ctx, spatial: Array(nchw[2...]), kernel: kernel,
                                     ceilMode: NNSupport.int(ctx, "ceil_mode", 0) != 0, dilations: false)
        return (g, nchw)
    }

    static func averagePoolType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0)
        try checkEightBit(x, "X", ctx)
        let (g, nchw) = try averagePoolGeometry(x.shape, ctx)
        let shape = channelsLast(ctx) ? [nchw[0]] + g.output + [nchw[1]] : Array(nchw[0..<2]) + g.output
        return [TensorInfo(x.dtype, shape)]
    }

    /// QLinearAveragePool (ONNX Runtime's qlinear_pool.cc): each element dequantized in float32
    /// (`s_x · (x − z_x)`), summed in float32 over the window in row-major order, divided by the
    /// count (the kernel size with count_include_pad, else the window clipped to the input; a
    /// window is clipped at the end to the input, never to the padding), then
    /// `y = sat(rint(sum / count / s_y + z_y))`.
    static func averagePool(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0)
        let out = try averagePoolType([TensorInfo(x)], [], ctx)[0]
        let (g, nchw) = try averagePoolGeometry(x.shape, ctx)
        let (sx, zx, sy, zy) = try poolScales(inputs, x.dtype, ctx)
        let last = channelsLast(ctx)
        let includePad = NNSupport.int(ctx, "count_include_pad", 0) != 0
        let xv = Quantization.intValues(x)
        let planes = nchw[0] * nchw[1], channels = nchw[1]
        let inSize = g.inputCount, outSize = g.outputCount, rank = g.rank
        let range = Quantization.integerRange(of: x.dtype)!
        var y = Tensor(dtype: x.dtype, shape: out.shape)
        y.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            var o = [Int](repeating: 0, count: rank), lo = o, hi = o, pos = o
            for plane in 0..<planes {
                let n = plane / channels, c = plane % channels
                func xIndex(_ s: Int) -> Int { last ? (n * inSize + s) * channels + c : plane * inSize + s }
                for oi in 0..<outSize {
                    var rem = oi
                    for d in stride(from: rank - 1, through: 0, by: -1) { o[d] = rem % g.output[d]; rem /= g.output[d] }
                    var count = 1
                    for d in 0..<rank {
                        let start = o[d] * g.strides[d] - g.padsBegin[d]
                        hi[d] = min(start + g.kernel[d], g.input[d]); lo[d] = max(start, 0)
                        count *= hi[d] - lo[d]
                    }
                    if includePad { count = g.kernelCount }
                    var sum: Float = 0
                    if (0..<rank).allSatisfy({ hi[$0] > lo[$0] }) {
                        pos = lo
                        while true {
                            var s = 0
                            for d in 0..<rank { s = s * g.input[d] + pos[d] }
                            sum += sx * Float(xv[xIndex(s)] - zx)
                            var d = rank - 1
                            while d >= 0 { pos[d] += 1; if pos[d] < hi[d] { break }; pos[d] = lo[d]; d -= 1 }
                            if d < 0 { break }
                        }
                    }
                    let avg = sum / Float(count)
                    let q = packRound(avg / sy + Float(zy), range)
                    Quantization.storeInt(q, p, last ? (n * outSize + oi) * channels + c : plane * outSize + oi, x.dtype)
                }
            }
        }
        return [y]
    }
}
