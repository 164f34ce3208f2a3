import ModelIR
import TensorCore

// RoiAlign-10/16/22 as in onnx/reference/ops/op_roi_align.py (the onnxruntime CPU kernel):
// RoiAlign-10 has no coordinate_transformation_mode (it behaves as output_half_pixel);
// RoiAlign-16 adds it with default half_pixel; RoiAlign-22 only widens the types (bfloat16).

extension StandardOps {
    static func registerRoiAlign(_ r: OpRegistry) {
        for since in [10, 16, 22] {
            r.register("RoiAlign", since: since, kernel: { inputs, ctx in
                try NNSupport.asFloat32(inputs, ctx) { inputs in
                    [try RoiAlignOp.run(try ctx.required(inputs, 0), try ctx.required(inputs, 1), try ctx.required(inputs, 2),
                                        RoiAlignOp.Options(ctx, since: since), ctx)]
                }
            }, infer: { inputs, _, ctx in
                let x = try ctx.required(inputs, 0), rois = try ctx.required(inputs, 1), idx = try ctx.required(inputs, 2)
                try NNSupport.checkFloat(x, "input X", ctx)
                let o = try RoiAlignOp.Options(ctx, since: since)
                try RoiAlignOp.check(x.shape, rois.shape, idx.shape, ctx)
                return [TensorInfo(x.dtype, [rois.shape[0], x.shape[1], o.outH, o.outW])]
            })
        }
    }
}

enum RoiAlignOp {
    struct Options {
        var outH: Int, outW: Int, samplingRatio: Int, spatialScale: Double
        var max: Bool, halfPixel: Bool

        init(_ ctx: KernelContext, since: Int) throws {
            outH = ctx.intAttribute("output_height", default: 1)
            outW = ctx.intAttribute("output_width", default: 1)
            samplingRatio = ctx.intAttribute("sampling_ratio", default: 0)
            spatialScale = Double(ctx.floatAttribute("spatial_scale", default: 1))
            guard outH > 0, outW > 0 else { throw ctx.error("output_height and output_width must be positive, got \(outH) and \(outW)") }
            guard samplingRatio >= 0 else { throw ctx.error("sampling_ratio must be >= 0, got \(samplingRatio)") }
            let mode = ctx.node.string("mode") ?? "avg"
            guard mode == "avg" || mode == "max" else { throw ctx.error("mode '\(mode)' is not avg or max") }
            max = mode == "max"
            let ct = since >= 16 ? ctx.node.string("coordinate_transformation_mode") ?? "half_pixel" : "output_half_pixel"
            guard ct == "half_pixel" || ct == "output_half_pixel" else {
                throw ctx.error("coordinate_transformation_mode '\(ct)' is not half_pixel or output_half_pixel")
            }
            halfPixel = ct == "half_pixel"
        }
    }

    static func check(_ x: [Int], _ rois: [Int], _ idx: [Int], _ ctx: KernelContext) throws {
        guard x.count == 4 else { throw ctx.error("X must be 4-D [N, C, H, W], got \(NNSupport.shapeText(x))") }
        guard rois.count == 2, rois[1] == 4 else { throw ctx.error("rois must be [num_rois, 4], got \(NNSupport.shapeText(rois))") }
        guard idx.count == 1, idx[0] == rois[0] else {
            throw ctx.error("batch_indices must be [\(rois[0])] (one per roi), got \(NNSupport.shapeText(idx))")
        }
    }

    /// One bilinear sample: four flat offsets into a plane and their weights (all zero for a
    /// sample outside [-1, H] × [-1, W]).
    struct Sample { var p: (Int, Int, Int, Int) = (0, 0, 0, 0); var w: (Float, Float, Float, Float) = (0, 0, 0, 0) }

    static func run(_ x: Tensor, _ rois: Tensor, _ batchIndices: Tensor, _ o: Options, _ ctx: KernelContext) throws -> Tensor {
        try check(x.shape, rois.shape, batchIndices.shape, ctx)
        guard rois.dtype == .float32 else { throw ctx.error("rois must have X's float type, got \(rois.dtype)") }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let nr = rois.shape[0]
        let bi = try TensorOperands.ints(batchIndices, "batch_indices", ctx)
        for b in bi where b < 0 || b >= n { throw ctx.error("batch index \(b) is out of range for \(n) images") }
        var y = Tensor(dtype: .float32, shape: [nr, c, o.outH, o.outW])
        // An empty image has nothing to sample: every bin is 0 (the zero-weight samples).
        if y.count == 0 || h == 0 || w == 0 { return y }
        let box = rois.floatValues()
        // Sampling grids, checked before any work: finite boxes and a bounded sample count.
        var grids: [(Int, Int)] = []
        for r in 0..<nr {
            let v = (0..<4).map { Double(box[4 * r + $0]) * o.spatialScale }
            guard v.allSatisfy(\.isFinite) else { throw ctx.error("roi \(r) \(Array(box[4 * r ..< 4 * r + 4])) is not finite at spatial_scale \(o.spatialScale)") }
            var roiW = v[2] - v[0], roiH = v[3] - v[1]
            if !o.halfPixel { roiW = Swift.max(roiW, 1); roiH = Swift.max(roiH, 1) }  // malformed rois become 1×1
            // A negative grid (a reversed half_pixel box) samples nothing.
            let gh = o.samplingRatio > 0 ? Double(o.samplingRatio) : Swift.max((roiH / Double(o.outH)).rounded(.up), 0)
            let gw = o.samplingRatio > 0 ? Double(o.samplingRatio) : Swift.max((roiW / Double(o.outW)).rounded(.up), 0)
            guard gh * gw * Double(o.outH * o.outW) <= Double(1 << 26) else {
                throw ctx.error("roi \(r) \(Array(box[4 * r ..< 4 * r + 4])) needs \(gh)×\(gw) samples per bin, too many to sample")
            }
            grids.append((Int(gh), Int(gw)))
        }
        let plane = o.outH * o.outW
        x.withUnsafeBufferPointer(as: Float.self) { xp in
            y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                for r in 0..<nr {
                    // No rounding of the box: the "align" of RoiAlign.
                    let offset = o.halfPixel ? 0.5 : 0
                    let x0 = Double(box[4 * r]) * o.spatialScale - offset, y0 = Double(box[4 * r + 1]) * o.spatialScale - offset
                    let x1 = Double(box[4 * r + 2]) * o.spatialScale - offset, y1 = Double(box[4 * r + 3]) * o.spatialScale - offset
                    var roiW = x1 - x0, roiH = y1 - y0
                    if !o.halfPixel { roiW = Swift.max(roiW, 1); roiH = Swift.max(roiH, 1) }
                    let binH = roiH / Double(o.outH), binW = roiW / Double(o.outW)
                    let (gridH, gridW) = grids[r]
                    let count = Float(Swift.max(gridH * gridW, 1))
                    let samples = Self.samples(h: h, w: w, o, y0: y0, x0: x0, binH: binH, binW: binW, gridH: gridH, gridW: gridW)
                    let perBin = gridH * gridW
                    Parallel.forRanges(count: c, workPerItem: 4 * plane * Swift.max(perBin, 1)) { range in
                        for ch in range {
                            let src = xp.baseAddress! + (bi[r] * c + ch) * h * w
                            let dst = yp.baseAddress! + (r * c + ch) * plane
                            for bin in 0..<plane {
                                var acc: Float = 0
                                for k in 0..<perBin {
                                    let s = samples[bin * perBin + k]
                                    if o.max {
                                        // The reference's max mode: the largest weighted corner, not the interpolated value.
                                        let v = Swift.max(Swift.max(s.w.0 * src[s.p.0], s.w.1 * src[s.p.1]), Swift.max(s.w.2 * src[s.p.2], s.w.3 * src[s.p.3]))
                                        acc = k == 0 ? v : Swift.max(acc, v)
                                    } else {
                                        acc += s.w.0 * src[s.p.0] + s.w.1 * src[s.p.1] + s.w.2 * src[s.p.2] + s.w.3 * src[s.p.3]
                                    }
                                }
                                dst[bin] = o.max ? acc : acc / count
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// The bilinear samples of every bin of one roi (shared by all channels), bin-major.
    static func samples(h: Int, w: Int, _ o: Options, y0: Double, x0: Double, binH: Double, binW: Double, gridH: Int, gridW: Int) -> [Sample] {
        var out: [Sample] = []
        out.reserveCapacity(o.outH * o.outW * gridH * gridW)
        for ph in 0..<o.outH {
            for pw in 0..<o.outW {
                for iy in 0..<gridH {
                    let yy = y0 + Double(ph) * binH + (Double(iy) + 0.5) * binH / Double(gridH)
                    for ix in 0..<gridW {
                        let xx = x0 + Double(pw) * binW + (Double(ix) + 0.5) * binW / Double(gridW)
                        if yy < -1 || yy > Double(h) || xx < -1 || xx > Double(w) { out.append(Sample()); continue }
                        var yv = Swift.max(yy, 0), xv = Swift.max(xx, 0)
                        var yl = Int(yv), xl = Int(xv), yh: Int, xh: Int
                        if yl >= h - 1 { yl = h - 1; yh = yl; yv = Double(yl) } else { yh = yl + 1 }
                        if xl >= w - 1 { xl = w - 1; xh = xl; xv = Double(xl) } else { xh = xl + 1 }
                        let ly = yv - Double(yl), lx = xv - Double(xl), hy = 1 - ly, hx = 1 - lx
                        out.append(Sample(p: (yl * w + xl, yl * w + xh, yh * w + xl, yh * w + xh),
                                          w: (Float(hy * hx), Float(hy * lx), Float(ly * hx), Float(ly * lx))))
                    }
                }
            }
        }
        return out
    }
}
