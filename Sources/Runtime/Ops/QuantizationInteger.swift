import ModelIR
import TensorCore

extension StandardOps {
    /// MatMulInteger, ConvInteger (10), QLinearMatMul (10, 21: float16/bfloat16 scales) and
    /// QLinearConv (10). Operands have their zero points subtracted into Int32, products
    /// accumulate in Int32, and the QLinear ops requantize with ONNX's reference arithmetic:
    /// `y = saturate(round_half_even(acc · (s_a·s_b / s_y) + z_y))`, the multiplier computed in
    /// the scales' type and the product in float64 (NumPy's int32 × float promotion). The zero
    /// point is added before rounding, as ONNX's reference does (it differs from rounding first
    /// only on exact ties).
    static func registerQuantizedIntegerOps(_ r: OpRegistry) {
        r.register("MatMulInteger", since: 10, kernel: IntegerOps.matMulInteger, infer: IntegerOps.matMulIntegerType)
        for v in [10, 21] {
            r.register("QLinearMatMul", since: v, kernel: IntegerOps.qlinearMatMul, infer: IntegerOps.qlinearMatMulType)
        }
        r.register("ConvInteger", since: 10, kernel: IntegerOps.convInteger, infer: IntegerOps.convIntegerType)
        r.register("QLinearConv", since: 10, kernel: IntegerOps.qlinearConv, infer: IntegerOps.qlinearConvType)
    }
}

enum IntegerOps {
    static let eightBit: Set<DType> = [.int8, .uint8]

    static func text(_ s: [Int]) -> String { QuantizationText.shape(s) }

    static func checkEightBit(_ t: TensorInfo, _ what: String, _ ctx: KernelContext) throws {
        guard eightBit.contains(t.dtype) else { throw ctx.error("\(what) is \(t.dtype); expected int8 or uint8") }
    }

    // MARK: Matrix products

    /// NumPy matmul shapes: a 1-D A is a row, a 1-D B a column (both removed from the result);
    /// batch dims broadcast.
    struct MatMulShape {
        var m: Int, k: Int, n: Int
        var batch: [Int]
        var aBatchStrides: [Int], bBatchStrides: [Int]
        var output: [Int]
        /// A and B seen as at least 2-D.
        var a: [Int], b: [Int]
    }

    static func matmulShape(_ a0: [Int], _ b0: [Int], _ ctx: KernelContext) throws -> MatMulShape {
        guard !a0.isEmpty, !b0.isEmpty else { throw ctx.error("MatMul operands must have rank ≥ 1; got \(text(a0)) and \(text(b0))") }
        let a = a0.count == 1 ? [1] + a0 : a0, b = b0.count == 1 ? b0 + [1] : b0
        let m = a[a.count - 2], k = a[a.count - 1], n = b[b.count - 1]
        guard b[b.count - 2] == k else { throw ctx.error("A has shape \(text(a0)) and B \(text(b0)); inner dimensions \(k) and \(b[b.count - 2]) differ") }
        let ab = Array(a.dropLast(2)), bb = Array(b.dropLast(2))
        guard let batch = Broadcast.shape(ab, bb) else { throw ctx.error("batch dimensions of \(text(a0)) and \(text(b0)) do not broadcast") }
        var out = batch
        if a0.count > 1 { out.append(m) }
        if b0.count > 1 { out.append(n) }
        return MatMulShape(m: m, k: k, n: n, batch: batch, aBatchStrides: Broadcast.strides(of: ab, in: batch),
                           bBatchStrides: Broadcast.strides(of: bb, in: batch), output: out, a: a, b: b)
    }

    /// `values − zeroPoint`, with the zero point per tensor (one element), per row / column of
    /// the matrix (`vectorAxis` −2 for A's rows, −1 for B's columns, a 1-D zero point of that
    /// length) or any shape that broadcasts to the operand's.
    static func subtractZeroPoint(_ values: [Int32], shape: [Int], _ zp: Tensor?, vectorAxis: Int, what: String, _ ctx: KernelContext) throws -> [Int32] {
        guard let zp else { return values }
        let z = Quantization.intValues(zp)
        if z.count == 1 { return z[0] == 0 ? values : values.map { $0 &- z[0] } }
        var zShape = zp.shape
        if zShape.count == 1 {
            let axis = shape.count + vectorAxis
            guard axis >= 0, shape[axis] == z.count else {
                throw ctx.error("\(what) has \(z.count) values; expected 1 or \(axis >= 0 ? shape[axis] : 1) for shape \(text(shape))")
            }
            zShape = vectorAxis == -2 ? [z.count, 1] : [z.count]
        }
        guard Broadcast.isUnidirectional(zShape, to: shape) else {
            throw ctx.error("\(what) has shape \(text(zp.shape)), which does not broadcast to \(text(shape))")
        }
        let strides = Broadcast.strides(of: zShape, in: shape)
        var out = values
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<values.count {
            var off = 0
            for d in 0..<shape.count { off += index[d] * strides[d] }
            out[i] = values[i] &- z[off]
            var d = shape.count - 1
            while d >= 0 { index[d] += 1; if index[d] < shape[d] { break }; index[d] = 0; d -= 1 }
        }
        return out
    }

    /// Batched Int32 matrix product over broadcast batch dims.
    static func batchedProduct(_ a: [Int32], _ b: [Int32], _ s: MatMulShape) -> [Int32] {
        let batches = s.batch.reduce(1, *)
        var out = [Int32](repeating: 0, count: batches * s.m * s.n)
        var index = [Int](repeating: 0, count: s.batch.count)
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    for bi in 0..<batches {
                        var ao = 0, bo = 0
                        for d in 0..<s.batch.count { ao += index[d] * s.aBatchStrides[d]; bo += index[d] * s.bBatchStrides[d] }
                        IntegerKernels.gemm(m: s.m, n: s.n, k: s.k, a: ap.baseAddress! + ao * s.m * s.k,
                                            b: bp.baseAddress! + bo * s.k * s.n, c: op.baseAddress! + bi * s.m * s.n)
                        var d = s.batch.count - 1
                        while d >= 0 { index[d] += 1; if index[d] < s.batch[d] { break }; index[d] = 0; d -= 1 }
                    }
                }
            }
        }
        return out
    }

    static func matMulIntegerType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let a = try ctx.required(types, 0), b = try ctx.required(types, 1)
        try checkEightBit(a, "A", ctx)
        try checkEightBit(b, "B", ctx)
        for (i, name, of) in [(2, "a_zero_point", a), (3, "b_zero_point", b)] where i < types.count {
            if let z = types[i], z.dtype != of.dtype { throw ctx.error("\(name) is \(z.dtype) but its operand is \(of.dtype)") }
        }
        return [TensorInfo(.int32, try matmulShape(a.shape, b.shape, ctx).output)]
    }

    /// MatMulInteger: `Y = (A − a_zero_point) · (B − b_zero_point)` in int32.
    static func matMulInteger(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let outType = try matMulIntegerType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)[0]
        let a = inputs[0]!, b = inputs[1]!
        let s = try matmulShape(a.shape, b.shape, ctx)
        let av = try subtractZeroPoint(Quantization.intValues(a), shape: s.a, inputs.count > 2 ? inputs[2] : nil, vectorAxis: -2, what: "a_zero_point", ctx)
        let bv = try subtractZeroPoint(Quantization.intValues(b), shape: s.b, inputs.count > 3 ? inputs[3] : nil, vectorAxis: -1, what: "b_zero_point", ctx)
        return [Tensor(shape: outType.shape, scalars: batchedProduct(av, bv, s))]
    }

    /// The requantization multiplier `s_a · s_b / s_y`, rounded after each operation to the
    /// scales' type (float32, or float16/bfloat16 at opset 21), as NumPy evaluates it.
    @inline(__always)
    static func multiplier(_ sa: Float, _ sb: Float, _ sy: Float, _ type: DType) -> Float {
        func r(_ v: Float) -> Float {
            switch type {
            case .float16: return Float(Float16(v))
            case .bfloat16: return HalfConversion.float(fromBFloat16Bits: HalfConversion.bfloat16Bits(from: v))
            default: return v
            }
        }
        return r(r(sa * sb) / sy)
    }

    static func checkScales(_ types: [TensorInfo?], _ indices: [Int], _ ctx: KernelContext) throws -> DType {
        let allowed: Set<DType> = ctx.opset >= 21 ? [.float32, .float16, .bfloat16] : [.float32]
        let first = try ctx.required(types, indices[0]).dtype
        for i in indices {
            let s = try ctx.required(types, i)
            guard allowed.contains(s.dtype), s.dtype == first else {
                throw ctx.error("input \(i) (a scale) is \(s.dtype); expected \(first) like the other scales, one of \(LinearQuantization.typeList(allowed))")
            }
        }
        return first
    }

    static func qlinearMatMulType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let a = try ctx.required(types, 0), b = try ctx.required(types, 3)
        try checkEightBit(a, "a", ctx)
        try checkEightBit(b, "b", ctx)
        _ = try checkScales(types, [1, 4, 6], ctx)
        let out = types.count > 7 ? types[7]?.dtype ?? a.dtype : a.dtype
        try checkEightBit(TensorInfo(out, []), "y_zero_point", ctx)
        return [TensorInfo(out, try matmulShape(a.shape, b.shape, ctx).output)]
    }

    /// One scale value per row (`rows`) or per column, or a single one.
    static func perIndex(_ t: Tensor, count: Int, what: String, _ ctx: KernelContext) throws -> (Int) -> Float {
        let v = t.floatValues()
        if v.count == 1 { return { _ in v[0] } }
        guard v.count == count else { throw ctx.error("\(what) has \(v.count) values; expected 1 or \(count)") }
        return { v[$0] }
    }

    /// QLinearMatMul: `y = saturate(round((a − z_a)·(b − z_b) · s_a·s_b/s_y + z_y))`; scales per
    /// tensor, or per row of a / column of b / row of y.
    static func qlinearMatMul(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let types = inputs.map { $0.map(TensorInfo.init) }
        let outType = try qlinearMatMulType(types, [], ctx)[0]
        let scaleType = try checkScales(types, [1, 4, 6], ctx)
        let a = inputs[0]!, b = inputs[3]!
        let s = try matmulShape(a.shape, b.shape, ctx)
        let av = try subtractZeroPoint(Quantization.intValues(a), shape: s.a, inputs[2], vectorAxis: -2, what: "a_zero_point", ctx)
        let bv = try subtractZeroPoint(Quantization.intValues(b), shape: s.b, inputs[5], vectorAxis: -1, what: "b_zero_point", ctx)
        let acc = batchedProduct(av, bv, s)
        let sa = try perIndex(inputs[1]!, count: s.m, what: "a_scale", ctx)
        let sb = try perIndex(inputs[4]!, count: s.n, what: "b_scale", ctx)
        let sy = try perIndex(inputs[6]!, count: s.m, what: "y_scale", ctx)
        let zy: Int32 = inputs.count > 7 ? inputs[7].map { Quantization.intValues($0) }.map { z -> Int32 in z.first ?? 0 } ?? 0 : 0
        if inputs.count > 7, let z = inputs[7], z.count != 1 { throw ctx.error("y_zero_point must be a single value; got shape \(text(z.shape))") }
        let range = Quantization.integerRange(of: outType.dtype)!
        var out = Tensor(dtype: outType.dtype, shape: outType.shape)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            for i in 0..<acc.count {
                let row = (i / s.n) % s.m, col = i % s.n
                let mult = multiplier(sa(row), sb(col), sy(row), scaleType)
                Quantization.storeInt(Quantization.saturate(Double(acc[i]) * Double(mult) + Double(zy), zeroPoint: 0, range: range), p, i, outType.dtype)
            }
        }
        return [out]
    }

    // MARK: Convolutions

    struct ConvSetup {
        var batch: Int, channels: Int, outChannels: Int, group: Int
        var window: WindowGeometry
        var output: [Int]
    }

    /// Checks X `[N, C, spatial…]` and W `[M, C/group, kernel…]` and computes the window.
    static func convSetup(x: [Int], w: [Int], _ ctx: KernelContext) throws -> ConvSetup {
        guard x.count >= 3 else { throw ctx.error("X has shape \(text(x)); expected [N, C, spatial…]") }
        guard w.count == x.count else { throw ctx.error("W has shape \(text(w)); expected rank \(x.count) like X") }
        let group = Int(ctx.node.int("group") ?? 1)
        guard group >= 1, x[1] % group == 0, w[0] % group == 0 else {
            throw ctx.error("group \(group) does not divide the input channels \(x[1]) and output channels \(w[0])")
        }
        guard w[1] * group == x[1] else { throw ctx.error("W has shape \(text(w)); \(x[1]) input channels in \(group) group(s) need W[1] = \(x[1] / group)") }
        let kernel = ctx.node.ints("kernel_shape")?.map { Int($0) } ?? Array(w[2...])
        guard kernel == Array(w[2...]) else { throw ctx.error("kernel_shape \(text(kernel)) differs from W's spatial dims \(text(Array(w[2...])))") }
        let autoPadText = ctx.node.string("auto_pad") ?? "NOTSET"
        guard let autoPad = AutoPad(rawValue: autoPadText) else {
            throw ctx.error("auto_pad '\(autoPadText)' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        }
        let window: WindowGeometry
        do {
            window = try WindowGeometry.forward(input: Array(x[2...]), kernel: kernel,
                                                strides: ctx.node.ints("strides")?.map { Int($0) } ?? [],
                                                dilations: ctx.node.ints("dilations")?.map { Int($0) } ?? [],
                                                pads: ctx.node.ints("pads")?.map { Int($0) } ?? [], autoPad: autoPad)
        } catch let f as WindowGeometry.Failure {
            throw ctx.error(f.description)
        }
        return ConvSetup(batch: x[0], channels: x[1], outChannels: w[0], group: group, window: window,
                         output: [x[0], w[0]] + window.output)
    }

    /// W − w_zero_point with the zero point per tensor or per output channel (`[M]`).
    static func weightsMinusZeroPoint(_ w: Tensor, _ zp: Tensor?, _ ctx: KernelContext) throws -> [Int32] {
        var v = Quantization.intValues(w)
        guard let zp else { return v }
        let z = Quantization.intValues(zp)
        let m = w.shape[0], per = w.count / max(m, 1)
        if z.count == 1 { return z[0] == 0 ? v : v.map { $0 &- z[0] } }
        guard z.count == m else { throw ctx.error("w_zero_point has \(z.count) values; expected 1 or \(m) (one per output channel)") }
        for i in 0..<v.count { v[i] = v[i] &- z[i / per] }
        return v
    }

    static func xMinusZeroPoint(_ x: Tensor, _ zp: Tensor?, _ ctx: KernelContext) throws -> [Int32] {
        let v = Quantization.intValues(x)
        guard let zp else { return v }
        guard zp.count == 1 else { throw ctx.error("x_zero_point must be a single value; got shape \(text(zp.shape))") }
        let z = Quantization.intValues(zp)[0]
        return z == 0 ? v : v.map { $0 &- z }
    }

    static func convIntegerType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0), w = try ctx.required(types, 1)
        try checkEightBit(x, "x", ctx)
        try checkEightBit(w, "w", ctx)
        return [TensorInfo(.int32, try convSetup(x: x.shape, w: w.shape, ctx).output)]
    }

    /// ConvInteger: `Y = conv(X − x_zero_point, W − w_zero_point)` in int32, zero padding.
    static func convInteger(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        _ = try convIntegerType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)
        let x = inputs[0]!, w = inputs[1]!
        let setup = try convSetup(x: x.shape, w: w.shape, ctx)
        let xv = try xMinusZeroPoint(x, inputs.count > 2 ? inputs[2] : nil, ctx)
        let wv = try weightsMinusZeroPoint(w, inputs.count > 3 ? inputs[3] : nil, ctx)
        let y = IntegerKernels.conv(x: xv, batch: setup.batch, channels: setup.channels, w: wv, outChannels: setup.outChannels,
                                    group: setup.group, geometry: setup.window)
        return [Tensor(shape: setup.output, scalars: y)]
    }

    static func qlinearConvType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(types, 0), w = try ctx.required(types, 3)
        try checkEightBit(x, "x", ctx)
        try checkEightBit(w, "w", ctx)
        _ = try checkScales(types, [1, 4, 6], ctx)
        let out = types.count > 7 ? types[7]?.dtype ?? x.dtype : x.dtype
        try checkEightBit(TensorInfo(out, []), "y_zero_point", ctx)
        if types.count > 8, let b = types[8] {
            guard b.dtype == .int32, b.shape == [w.shape[0]] else { throw ctx.error("B is \(b.dtype)\(text(b.shape)); expected int32 [\(w.shape[0])]") }
        }
        return [TensorInfo(out, try convSetup(x: x.shape, w: w.shape, ctx).output)]
    }

    /// QLinearConv: `y = saturate(round((conv(x − z_x, w − z_w) + B) · s_x·s_w/s_y + z_y))`,
    /// with w's scale and zero point per tensor or per output channel.
    static func qlinearConv(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let types = inputs.map { $0.map(TensorInfo.init) }
        let outType = try qlinearConvType(types, [], ctx)[0]
        let x = inputs[0]!, w = inputs[3]!
        let setup = try convSetup(x: x.shape, w: w.shape, ctx)
        let xv = try xMinusZeroPoint(x, inputs[2], ctx)
        let wv = try weightsMinusZeroPoint(w, inputs[5], ctx)
        var acc = IntegerKernels.conv(x: xv, batch: setup.batch, channels: setup.channels, w: wv, outChannels: setup.outChannels,
                                      group: setup.group, geometry: setup.window)
        let spatial = setup.window.outputCount, m = setup.outChannels
        if inputs.count > 8, let b = inputs[8] {
            let bias = b.scalars(as: Int32.self)
            for i in 0..<acc.count { acc[i] = acc[i] &+ bias[(i / spatial) % m] }
        }
        let scaleType = try checkScales(types, [1, 4, 6], ctx)
        let sx = try perIndex(inputs[1]!, count: 1, what: "x_scale", ctx)(0)
        let sw = try perIndex(inputs[4]!, count: m, what: "w_scale", ctx)
        let sy = try perIndex(inputs[6]!, count: 1, what: "y_scale", ctx)(0)
        var zy: Int32 = 0
        if inputs.count > 7, let z = inputs[7] {
            guard z.count == 1 else { throw ctx.error("y_zero_point must be a single value; got shape \(text(z.shape))") }
            zy = Quantization.intValues(z)[0]
        }
        let multipliers = (0..<m).map { multiplier(sx, sw($0), sy, scaleType) }
        let range = Quantization.integerRange(of: outType.dtype)!
        var out = Tensor(dtype: outType.dtype, shape: outType.shape)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            for i in 0..<acc.count {
                let q = Double(acc[i]) * Double(multipliers[(i / spatial) % m])
                Quantization.storeInt(Quantization.saturate(q + Double(zy), zeroPoint: 0, range: range), p, i, outType.dtype)
            }
        }
        return [out]
    }
}
