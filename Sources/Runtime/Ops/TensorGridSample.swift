import Foundation
import ModelIR
import TensorCore

// GridSample-16 (4-D X; modes bilinear, nearest, bicubic), GridSample-20 (N-D X; modes renamed
// linear, nearest, cubic) and GridSample-22 (bfloat16 added), as in
// onnx/reference/ops/op_grid_sample.py (PyTorch's grid_sampler).
//
// Every output location becomes a list of taps (a flat offset into one channel plane and a
// weight), computed once and applied to every channel: 1 tap for nearest, 2^r for linear and
// 4^r for cubic, less the taps that fall on zero padding. Coordinates are float32 and computed
// in the reference's order, so nearest rounding ties land on the same pixel.

extension StandardOps {
    static func registerGridSample(_ r: OpRegistry) {
        for since in [16, 20, 22] {
            r.register("GridSample", since: since, kernel: { inputs, ctx in
                try NNSupport.asFloat32(inputs, ctx) { inputs in
                    let x = try ctx.required(inputs, 0), grid = try ctx.required(inputs, 1)
                    return [try GridSampleOp.run(x, grid, try GridSampleOp.Options(ctx, since: since), ctx)]
                }
            }, infer: { inputs, _, ctx in
                let x = try ctx.required(inputs, 0), grid = try ctx.required(inputs, 1)
                try NNSupport.checkFloat(x, "input X", ctx)
                _ = try GridSampleOp.Options(ctx, since: since)
                return [TensorInfo(x.dtype, try GridSampleOp.outputShape(x.shape, grid.shape, since: since, ctx))]
            })
        }
    }
}

enum GridSampleOp {
    enum Mode { case nearest, linear, cubic }
    enum Padding: String { case zeros, border, reflection }

    struct Options {
        var mode: Mode, padding: Padding, alignCorners: Bool

        init(_ ctx: KernelContext, since: Int) throws {
            let names: [String: Mode] = since >= 20 ? ["linear": .linear, "nearest": .nearest, "cubic": .cubic]
                                                    : ["bilinear": .linear, "nearest": .nearest, "bicubic": .cubic]
            let m = ctx.node.string("mode") ?? (since >= 20 ? "linear" : "bilinear")
            guard let mode = names[m] else { throw ctx.error("mode '\(m)' is not one of \(names.keys.sorted().joined(separator: ", ")) (opset \(ctx.opset))") }
            self.mode = mode
            let p = ctx.node.string("padding_mode") ?? "zeros"
            guard let padding = Padding(rawValue: p) else { throw ctx.error("padding_mode '\(p)' is not zeros, border or reflection") }
            self.padding = padding
            alignCorners = ctx.intAttribute("align_corners", default: 0) != 0
        }
    }

    static func outputShape(_ x: [Int], _ grid: [Int], since: Int, _ ctx: KernelContext) throws -> [Int] {
        let r = x.count - 2
        guard since >= 20 ? r >= 1 : r == 2 else {
            throw ctx.error("X must be \(since >= 20 ? "at least 3-D [N, C, D1, ...]" : "4-D [N, C, H, W] before opset 20"), got \(NNSupport.shapeText(x))")
        }
        guard grid.count == x.count, grid[0] == x[0], grid.last == r else {
            throw ctx.error("grid must be [\(x[0]), out dims..., \(r)] for X \(NNSupport.shapeText(x)), got \(NNSupport.shapeText(grid))")
        }
        return [x[0], x[1]] + grid[1..<(grid.count - 1)]
    }

    static func run(_ x: Tensor, _ grid: Tensor, _ o: Options, _ ctx: KernelContext) throws -> Tensor {
        guard grid.dtype == .float32 else { throw ctx.error("grid must have X's float type, got \(grid.dtype)") }
        let outShape = try outputShape(x.shape, grid.shape, since: ctx.opset >= 20 ? 20 : 16, ctx)
        var y = Tensor(dtype: .float32, shape: outShape)
        if y.count == 0 || x.count == 0 { return y }
        let r = x.rank - 2
        let dims = Array(x.shape[2...])
        let planeIn = dims.reduce(1, *)
        let planeOut = outShape[2...].reduce(1, *)
        let (n, c) = (x.shape[0], x.shape[1])
        // Element strides of the spatial axes inside one plane.
        var strides = [Int](repeating: 1, count: r)
        for a in stride(from: r - 2, through: 0, by: -1) { strides[a] = strides[a + 1] * dims[a + 1] }
        let lo = dims.map { _ in o.alignCorners ? Float(0) : Float(-0.5) }
        let hi = dims.map { o.alignCorners ? Float($0 - 1) : Float($0) - 0.5 }

        grid.withUnsafeBufferPointer(as: Float.self) { gp in
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    var taps: [(Int, Float)] = [], scratch: [(Int, Float)] = []
                    var axisTaps = [[(Int, Float)]](repeating: [], count: r)
                    var offsets: [Int] = [], weights: [Float] = []
                    var starts = [Int](repeating: 0, count: planeOut + 1)
                    for b in 0..<n {
                        // Taps of every output location of this image, then every channel.
                        offsets.removeAll(keepingCapacity: true)
                        weights.removeAll(keepingCapacity: true)
                        for q in 0..<planeOut {
                            let g = gp.baseAddress! + (b * planeOut + q) * r
                            for a in 0..<r {
                                // The grid's last axis lists x (the innermost spatial axis) first.
                                axis(g[r - 1 - a], length: dims[a], lo: lo[a], hi: hi[a], o, into: &axisTaps[a])
                            }
                            product(axisTaps, strides, into: &taps, scratch: &scratch)
                            for (off, w) in taps { offsets.append(off); weights.append(w) }
                            starts[q + 1] = offsets.count
                        }
                        let (offs, ws, st) = (offsets, weights, starts)
                        Parallel.forRanges(count: c, workPerItem: 2 * offs.count) { range in
                            for ch in range {
                                let src = xp.baseAddress! + (b * c + ch) * planeIn
                                let dst = yp.baseAddress! + (b * c + ch) * planeOut
                                for q in 0..<planeOut {
                                    var acc: Float = 0
                                    for t in st[q]..<st[q + 1] { acc += ws[t] * src[offs[t]] }
                                    dst[q] = acc
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// The taps along one axis for normalized coordinate `g`: (index, weight) pairs with the
    /// padding applied to each index; indices that fall on zero padding are left out.
    static func axis(_ g: Float, length d: Int, lo: Float, hi: Float, _ o: Options, into out: inout [(Int, Float)]) {
        out.removeAll(keepingCapacity: true)
        var x = o.alignCorners ? (g + 1) / 2 * Float(d - 1) : ((g + 1) * Float(d) - 1) / 2
        if o.mode == .nearest { x = x.rounded(.toNearestOrEven) }  // PyTorch rounds half to even
        if x < lo || x > hi {
            switch o.padding {
            case .border: x = min(max(x, 0), Float(d - 1))
            case .reflection: x = reflect(x, lo, hi)
            case .zeros: break
            }
        }
        guard x.isFinite else {
            if o.padding != .zeros { out.append((0, 1)) }
            return
        }
        // Far outside, every tap is padding; clamping keeps the integer conversion in range.
        x = min(max(x, -8), Float(d + 8))
        func tap(_ i: Int, _ w: Float) {
            switch o.padding {
            case .zeros: if i >= 0 && i < d { out.append((i, w)) }
            case .border: out.append((min(max(i, 0), d - 1), w))
            case .reflection: out.append((min(max(Int(reflect(Float(i), lo, hi)), 0), d - 1), w))
            }
        }
        switch o.mode {
        case .nearest:
            tap(Int(x), 1)  // truncation toward zero, as astype(int32)
        case .linear:
            let x0 = Int(x.rounded(.down)), t = abs(x - Float(x0))
            tap(x0, 1 - t)
            tap(x0 + 1, t)
        case .cubic:
            let x0 = Int(x.rounded(.down))
            let w = cubicCoefficients(x - Float(x0))
            tap(x0 - 1, w.0)
            tap(x0, w.1)
            tap(x0 + 1, w.2)
            tap(x0 + 2, w.3)
        }
    }

    /// Every combination of one tap per axis: flat offset and product of weights.
    /// `scratch` is a second buffer the expansion alternates with.
    static func product(_ axes: [[(Int, Float)]], _ strides: [Int], into out: inout [(Int, Float)], scratch: inout [(Int, Float)]) {
        out.removeAll(keepingCapacity: true)
        out.append((0, 1))
        for (a, list) in axes.enumerated() {
            swap(&out, &scratch)
            out.removeAll(keepingCapacity: true)
            for (off, w) in scratch {
                for (i, wi) in list { out.append((off + i * strides[a], w * wi)) }
            }
        }
    }

    /// Reflects `x` by the nearer border until it lies in [lo, hi] (the reference's _gs_reflect).
    static func reflect(_ x: Float, _ lo: Float, _ hi: Float) -> Float {
        let range = Double(hi - lo)
        guard range > 0, x.isFinite else { return lo }
        let v = Double(x), l = Double(lo), h = Double(hi)
        if v < l || v > h {
            let dx = v < l ? l - v : v - h
            let k = (dx / range).rounded(.towardZero)
            let rem = dx - k * range
            let even = k.truncatingRemainder(dividingBy: 2) == 0
            return Float(v < l ? (even ? l + rem : h - rem) : (even ? h - rem : l + rem))
        }
        return x
    }

    /// Keys' cubic convolution weights (a = -0.75) for the four taps around a point at fraction t.
    static func cubicCoefficients(_ t: Float) -> (Float, Float, Float, Float) {
        let a: Float = -0.75
        let x = abs(t)
        return (((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a,
                ((a + 2) * x - (a + 3)) * x * x + 1,
                ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1,
                ((a * (2 - x) - 5 * a) * (2 - x) + 8 * a) * (2 - x) - 4 * a)
    }
}
