import ModelIR
import TensorCore

// Resize-10/11/13/18/19 and Upsample-7/9 (sampling math in TensorCore `Resampling`).

extension StandardOps {
    static func registerResizeOps(_ r: OpRegistry) {
        // Resize-10: inputs (X, scales); asymmetric coordinates, legacy nearest rounding.
        // Resize-11: (X, roi, scales, sizes) and every coordinate/nearest/cubic attribute.
        // Resize-13: roi and scales optional. Resize-18: axes, antialias, keep_aspect_ratio_policy.
        // Resize-19: half_pixel_symmetric.
        for since in [10, 11, 13, 18, 19] {
            r.register("Resize", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let plan = try ResizeRules.plan(TensorInfo(x), inputs, since: since, ctx)
                if plan.outShape == x.shape && plan.scales.allSatisfy({ $0 == 1 }) && plan.options.coordinateTransform != .tfCropAndResize { return [x] }
                return [try Resampling.resize(x, outShape: plan.outShape, scales: plan.scales, roi: plan.roi, options: plan.options)]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                var known: [Tensor?] = [nil]
                for i in 1..<max(inputs.count, 1) {
                    // roi only matters for the values, not the shape.
                    known.append(i == 1 && since >= 11 ? nil : try TensorOperands.knownOptional(inputs, values, i, "input \(i)", ctx))
                }
                return [TensorInfo(x.dtype, try ResizeRules.plan(x, known, since: since, needsRoi: false, ctx).outShape)]
            })
        }

        // Upsample-7 (scales attribute) and Upsample-9/10 (scales input): asymmetric coordinates.
        for since in [7, 9] {
            r.register("Upsample", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let scales = try ResizeRules.upsampleScales(since: since, inputs.count > 1 ? inputs[1] : nil, rank: x.rank, ctx)
                let (out, options) = try ResizeRules.upsample(x.shape, scales, ctx)
                return [try Resampling.resize(x, outShape: out, scales: scales, roi: nil, options: options)]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let s = since < 9 ? nil : try TensorOperands.known(values, 1, "input 'scales'", ctx)
                let scales = try ResizeRules.upsampleScales(since: since, s, rank: x.shape.count, ctx)
                return [TensorInfo(x.dtype, try ResizeRules.upsample(x.shape, scales, ctx).0)]
            })
        }
    }
}

private enum ResizeRules {
    struct Plan {
        var outShape: [Int]
        var scales: [Double]
        var roi: [Double]?
        var options: Resampling.Options
    }

    static func options(since: Int, _ ctx: KernelContext) throws -> Resampling.Options {
        let n = ctx.node
        var o = Resampling.Options()
        let mode = n.string("mode") ?? "nearest"
        switch mode {
        case "nearest": o.mode = .nearest
        case "linear", "bilinear", "trilinear": o.mode = .linear
        case "cubic" where since >= 11, "bicubic" where since >= 11: o.mode = .cubic
        default: throw ctx.error("mode '\(mode)' is not \(since >= 11 ? "nearest, linear or cubic" : "nearest or linear")")
        }
        if since < 11 {
            o.coordinateTransform = .asymmetric
            o.nearestRounding = .legacy
            return o
        }
        let ct = n.string("coordinate_transformation_mode") ?? "half_pixel"
        guard let t = Resampling.CoordinateTransform(rawValue: ct) else {
            throw ctx.error("coordinate_transformation_mode '\(ct)' is not one of \(Resampling.CoordinateTransform.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        o.coordinateTransform = t
        let nm = n.string("nearest_mode") ?? "round_prefer_floor"
        guard let r = Resampling.NearestRounding(rawValue: nm), r != .legacy else { throw ctx.error("nearest_mode '\(nm)' is not round_prefer_floor, round_prefer_ceil, floor or ceil") }
        o.nearestRounding = r
        o.cubicCoefficient = Double(n.float("cubic_coeff_a") ?? -0.75)
        o.excludeOutside = (n.int("exclude_outside") ?? 0) != 0
        o.extrapolationValue = n.float("extrapolation_value") ?? 0
        o.antialias = since >= 18 && (n.int("antialias") ?? 0) != 0 && o.mode != .nearest
        return o
    }

    /// Output shape, per-axis scales and roi from the inputs. Scales give
    /// `out = ⌊in·scale⌋`; sizes give `scale = out/in`, or with keep_aspect_ratio_policy
    /// not_larger/not_smaller one scale (the min/max of out/in over the axes) and
    /// `out = ⌊scale·in + ½⌋` (ONNX Resize-18).
    /// - Parameter needsRoi: false for shape inference, which needs no roi values.
    static func plan(_ x: TensorInfo, _ inputs: [Tensor?], since: Int, needsRoi: Bool = true, _ ctx: KernelContext) throws -> Plan {
        let r = x.shape.count
        let o = try options(since: since, ctx)
        func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i].flatMap { $0.count == 0 ? nil : $0 } : nil }
        let roiT = since >= 11 ? input(1) : nil
        let scalesT = input(since >= 11 ? 2 : 1)
        let sizesT = since >= 11 ? input(3) : nil
        var axes = Array(0..<r)
        if since >= 18, let a = ctx.node.ints("axes") { axes = try TensorOperands.axes(a, rank: r, ctx) }
        var out = x.shape
        var scales = [Double](repeating: 1, count: r)
        if let s = scalesT {
            guard sizesT == nil else { throw ctx.error("only one of scales and sizes may be given") }
            guard s.dtype.isFloatingPoint else { throw ctx.error("scales must be floating point, got \(s.dtype)") }
            let v = s.floatValues().map(Double.init)
            guard v.count == axes.count else { throw ctx.error("scales \(v) must hold one value per resized axis (\(axes.count))") }
            for (i, a) in axes.enumerated() {
                guard v[i] > 0, v[i].isFinite else { throw ctx.error("scale \(v[i]) is not a positive number") }
                scales[a] = v[i]
                out[a] = try TensorOperands.length(Double(x.shape[a]) * v[i], "output length", ctx)
            }
        } else if let s = sizesT {
            let v = try TensorOperands.ints(s, "sizes", ctx)
            guard v.count == axes.count, v.allSatisfy({ $0 >= 0 }) else { throw ctx.error("sizes \(v) must hold one non-negative size per resized axis (\(axes.count))") }
            for a in axes where x.shape[a] == 0 { throw ctx.error("cannot resize axis \(a) of length 0 to a size") }
            let policy = since >= 18 ? (ctx.node.string("keep_aspect_ratio_policy") ?? "stretch") : "stretch"
            switch policy {
            case "stretch":
                for (i, a) in axes.enumerated() {
                    out[a] = v[i]
                    scales[a] = Double(v[i]) / Double(x.shape[a])
                }
            case "not_larger", "not_smaller":
                let ratios = axes.enumerated().map { Double(v[$0.offset]) / Double(x.shape[$0.element]) }
                let scale = policy == "not_larger" ? ratios.min()! : ratios.max()!
                for a in axes {
                    scales[a] = scale
                    out[a] = try TensorOperands.length(scale * Double(x.shape[a]) + 0.5, "output length", ctx)
                }
            default: throw ctx.error("keep_aspect_ratio_policy '\(policy)' is not stretch, not_larger or not_smaller")
            }
        } else {
            throw ctx.error("one of scales and sizes is required")
        }
        var roi: [Double]?
        if o.coordinateTransform == .tfCropAndResize && needsRoi {
            guard let t = roiT else { throw ctx.error("tf_crop_and_resize needs the roi input") }
            let v = t.floatValues().map(Double.init)
            guard v.allSatisfy(\.isFinite) else { throw ctx.error("roi \(v) is not finite") }
            guard v.count == 2 * axes.count else { throw ctx.error("roi \(v) must hold a start and an end per resized axis (\(axes.count))") }
            var full = [Double](repeating: 0, count: r) + [Double](repeating: 1, count: r)
            for (i, a) in axes.enumerated() {
                full[a] = v[i]
                full[r + a] = v[axes.count + i]
            }
            roi = full
        }
        return Plan(outShape: try TensorOperands.checkedShape(out, ctx), scales: scales, roi: roi, options: o)
    }

    static func upsampleScales(since: Int, _ t: Tensor?, rank: Int, _ ctx: KernelContext) throws -> [Double] {
        let v: [Double]
        if since < 9 {
            guard let s = ctx.node.floats("scales") else { throw ctx.error("attribute 'scales' is required") }
            v = s.map(Double.init)
        } else {
            guard let t else { throw ctx.error("input 'scales' is required") }
            v = t.floatValues().map(Double.init)
        }
        guard v.count == rank, v.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw ctx.error("scales \(v) must hold one positive value per axis (rank \(rank))") }
        return v
    }

    static func upsample(_ shape: [Int], _ scales: [Double], _ ctx: KernelContext) throws -> ([Int], Resampling.Options) {
        let o = try options(since: 10, ctx)
        let out = try zip(shape, scales).map { try TensorOperands.length(Double($0) * $1, "output length", ctx) }
        return (try TensorOperands.checkedShape(out, ctx), o)
    }
}
