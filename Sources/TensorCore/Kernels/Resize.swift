import Foundation

/// Resampling of N-d tensors: ONNX Resize (opsets 10–19) and Upsample.
///
/// Interpolation is separable, so the tensor is resampled one axis at a time. For every output
/// coordinate `y` along an axis, the source coordinate `x` follows
/// `coordinate_transformation_mode` (ONNX Resize-19, with `s` the scale, `n`/`m` the input and
/// output lengths):
///
/// | mode | x |
/// |---|---|
/// | half_pixel | (y + ½)/s − ½ |
/// | half_pixel_symmetric | n/2·(1 − m/w) + (y + ½)/s − ½ |
/// | pytorch_half_pixel | w ≠ 1 ? (y + ½)/s − ½ : −½ |
/// | align_corners | w ≠ 1 ? y·(n − 1)/(w − 1) : 0 |
/// | asymmetric | y/s |
/// | tf_crop_and_resize | r₀(n−1) + (w ≠ 1 ? y·(r₁ − r₀)(n − 1)/(w − 1) : (r₁ − r₀)(n − 1)/2) |
///
/// where `w = s·n` is the unrounded output length (`m = ⌊w⌋` with scales).
///
/// The output value is `Σₜ w(t − ρ)·in[clamp(b + t)]` over the filter taps `t`, where `b` is
/// ⌊x⌋ (x − 1 when x is an integer, so that ρ = x − b ∈ (0, 1]) — the ONNX reference
/// implementation's tie rule — and indices outside the input repeat the edge (or get weight 0
/// and the rest is renormalized with `exclude_outside`). The filters:
/// - nearest: one tap, chosen by `nearest_mode` (round_prefer_floor, round_prefer_ceil, floor,
///   ceil; Resize-10 and Upsample use ⌊x⌋ when upsampling and ⌈x⌉ when downsampling).
/// - linear: the triangle `w(d) = max(0, 1 − |d|)`, taps t ∈ {0, 1}.
/// - cubic: Keys' kernel with coefficient `A` (`cubic_coeff_a`), taps t ∈ {−1, 0, 1, 2}:
///   `w(d) = (A+2)|d|³ − (A+3)|d|² + 1` for |d| ≤ 1, `A|d|³ − 5A|d|² + 8A|d| − 4A` for 1 < |d| < 2.
/// - antialias (Resize-18, linear/cubic, downsampling only): the filter is stretched by 1/s,
///   `w_s(d) = w(s·d)`, over taps ⌊−R/s⌋ + 1 … ⌊R/s⌋ (R the filter radius), normalized to sum 1.
///
/// With tf_crop_and_resize a source coordinate outside [0, n − 1] yields `extrapolation_value`.
/// Nearest sampling copies elements (any dtype, bit-exact); linear and cubic compute in Float
/// and round integer outputs to nearest even, saturating (as the reference's `saturate_cast`).
public enum Resampling {
    public enum Mode: String, Sendable { case nearest, linear, cubic }

    public enum CoordinateTransform: String, Sendable, CaseIterable {
        case halfPixel = "half_pixel"
        case halfPixelSymmetric = "half_pixel_symmetric"
        case pytorchHalfPixel = "pytorch_half_pixel"
        case alignCorners = "align_corners"
        case asymmetric
        case tfCropAndResize = "tf_crop_and_resize"
    }

    public enum NearestRounding: String, Sendable, CaseIterable {
        case roundPreferFloor = "round_prefer_floor"
        case roundPreferCeil = "round_prefer_ceil"
        case floor
        case ceil
        /// Resize-10 and Upsample: ⌊x⌋ when upsampling, ⌈x⌉ when downsampling (ONNX Runtime's
        /// behaviour for the opsets that had no `nearest_mode`).
        case legacy
    }

    public struct Options: Sendable {
        public var mode: Mode = .nearest
        public var coordinateTransform: CoordinateTransform = .halfPixel
        public var nearestRounding: NearestRounding = .roundPreferFloor
        public var cubicCoefficient: Double = -0.75
        public var excludeOutside = false
        public var extrapolationValue: Float = 0
        public var antialias = false
        public init() {}
    }

    /// How one axis is sampled: for output coordinate `y`, `taps` (index, weight) pairs at
    /// `indices[y·taps ..< (y+1)·taps]`, or the extrapolation value where `extrapolated[y]`.
    public struct AxisPlan: Sendable {
        public let inputLength: Int
        public let outputLength: Int
        public let taps: Int
        public let indices: [Int]
        public let weights: [Float]
        public let extrapolated: [Bool]

        /// Whether the axis is left as it is (same length, each output reads its own input).
        public var isIdentity: Bool {
            inputLength == outputLength && !extrapolated.contains(true)
                && (0..<outputLength).allSatisfy { y in
                    (0..<taps).allSatisfy { t in weights[y * taps + t] == 0 || (indices[y * taps + t] == y && weights[y * taps + t] == 1) }
                }
        }
    }

    /// The source coordinate of output coordinate `y` (see the table above). As in the ONNX
    /// reference implementation, `m` in the align_corners, pytorch_half_pixel, tf_crop_and_resize
    /// and half_pixel_symmetric formulas is the unrounded output length `s·n`, so a downsampling
    /// scale that floors to an integer length still maps the corners by the scale.
    public static func sourceCoordinate(_ y: Int, inputLength n: Int, outputLength m: Int, scale s: Double,
                                        transform: CoordinateTransform, roi: (Double, Double)) -> Double {
        let y = Double(y), nd = Double(n), w = s * nd
        switch transform {
        case .halfPixel: return (y + 0.5) / s - 0.5
        case .halfPixelSymmetric:
            let adjustment = Double(m) / w
            return nd / 2 * (1 - adjustment) + (y + 0.5) / s - 0.5
        case .pytorchHalfPixel: return w == 1 ? -0.5 : (y + 0.5) / s - 0.5
        case .alignCorners: return w == 1 ? 0 : y * (nd - 1) / (w - 1)
        case .asymmetric: return y / s
        case .tfCropAndResize:
            let span = (roi.1 - roi.0) * (nd - 1)
            return roi.0 * (nd - 1) + (w == 1 ? span / 2 : y * span / (w - 1))
        }
    }

    /// Plans the sampling of one axis of length `n` resized to `m` with scale `s`.
    public static func plan(inputLength n: Int, outputLength m: Int, scale s: Double, roi: (Double, Double) = (0, 1),
                            options o: Options) -> AxisPlan {
        var extrapolated = [Bool](repeating: false, count: m)
        // Far-outside coordinates (extreme roi) only ever clamp to the edge; bounding them keeps
        // the integer conversions below exact.
        let bound = Double(n) + 1e9
        if o.mode == .nearest {
            var indices = [Int](repeating: 0, count: m)
            for y in 0..<m {
                let x0 = sourceCoordinate(y, inputLength: n, outputLength: m, scale: s, transform: o.coordinateTransform, roi: roi)
                if o.coordinateTransform == .tfCropAndResize && (x0 < 0 || x0 > Double(n - 1)) { extrapolated[y] = true }
                let x = min(max(x0, -bound), bound)
                let i: Double
                if x == x.rounded(.down) {
                    i = x
                } else {
                    let f = x.rounded(.down), r = x - f
                    switch o.nearestRounding {
                    case .roundPreferFloor: i = r <= 0.5 ? f : f + 1
                    case .roundPreferCeil: i = r < 0.5 ? f : f + 1
                    case .floor: i = f
                    case .ceil: i = f + 1
                    case .legacy: i = s < 1 ? f + 1 : f
                    }
                }
                indices[y] = min(max(Int(i), 0), n - 1)
            }
            return AxisPlan(inputLength: n, outputLength: m, taps: 1, indices: indices,
                            weights: [Float](repeating: 1, count: m), extrapolated: extrapolated)
        }
        let a = o.cubicCoefficient
        let radius = o.mode == .linear ? 1.0 : 2.0
        // Antialiasing stretches the filter when downsampling.
        let stretch = o.antialias ? min(s, 1) : 1
        let first = Int((-radius / stretch).rounded(.down)) + 1
        let taps = 2 - 2 * first
        func kernel(_ d: Double) -> Double {
            let d = abs(d)
            if o.mode == .linear { return max(0, 1 - d) }
            if d <= 1 { return ((a + 2) * d - (a + 3)) * d * d + 1 }
            if d < 2 { return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a }
            return 0
        }
        var indices = [Int](repeating: 0, count: m * taps)
        var weights = [Float](repeating: 0, count: m * taps)
        var w = [Double](repeating: 0, count: taps)
        for y in 0..<m {
            let x0 = sourceCoordinate(y, inputLength: n, outputLength: m, scale: s, transform: o.coordinateTransform, roi: roi)
            if o.coordinateTransform == .tfCropAndResize && (x0 < 0 || x0 > Double(n - 1)) { extrapolated[y] = true }
            let x = min(max(x0, -bound), bound)
            var b = x.rounded(.down)
            if b == x { b -= 1 }
            let rho = x - b
            var sum = 0.0
            for t in 0..<taps {
                w[t] = kernel(stretch * (Double(first + t) - rho))
                sum += w[t]
            }
            if o.antialias && sum != 0 { for t in 0..<taps { w[t] /= sum } }
            let base = Int(b) + first
            if o.excludeOutside {
                var kept = 0.0
                for t in 0..<taps {
                    let i = base + t
                    if i < 0 || i >= n { w[t] = 0 } else { kept += w[t] }
                }
                if kept != 0 { for t in 0..<taps { w[t] /= kept } }
            }
            for t in 0..<taps {
                indices[y * taps + t] = min(max(base + t, 0), n - 1)
                weights[y * taps + t] = Float(w[t])
            }
        }
        return AxisPlan(inputLength: n, outputLength: m, taps: taps, indices: indices, weights: weights, extrapolated: extrapolated)
    }

    /// Resamples `x` to `outShape` with one scale per axis (`roi` as [starts…, ends…] over all
    /// axes, used by tf_crop_and_resize only).
    public static func resize(_ x: Tensor, outShape: [Int], scales: [Double], roi: [Double]?, options o: Options) throws -> Tensor {
        precondition(outShape.count == x.rank && scales.count == x.rank, "one size and scale per axis")
        let r = x.rank
        let plans = (0..<r).map { k in
            plan(inputLength: x.shape[k], outputLength: outShape[k], scale: scales[k],
                 roi: roi.map { ($0[k], $0[r + k]) } ?? (0, 1), options: o)
        }
        if x.count == 0 || outShape.contains(0) { return Tensor(dtype: x.dtype, shape: outShape) }
        if o.mode == .nearest {
            let maps = plans.map { p in zip(p.indices, p.extrapolated).map { $1 ? -1 : $0 } }
            var fill = [UInt8](repeating: 0, count: try Movement.elementSize(x.dtype))
            if Tensor.isNumeric(x.dtype) {
                fill = Tensor(scalar: o.extrapolationValue).converted(to: x.dtype).withUnsafeBytes { Array($0) }
            } else if o.extrapolationValue != 0 && maps.contains(where: { $0.contains(-1) }) {
                throw Movement.Failure("extrapolation_value \(o.extrapolationValue) cannot be written as \(x.dtype)")
            }
            return try Movement.gather(x, maps: maps, fill: fill)
        }
        guard Tensor.isNumeric(x.dtype) else { throw Movement.Failure("\(o.mode.rawValue) resize of \(x.dtype) tensors is not supported") }
        // Axes are independent; an upsampled last axis goes first, so the pass that walks
        // single elements (inner length 1) runs on the smaller tensor.
        var order = (0..<r).filter { !plans[$0].isIdentity }
        if let lastAxis = order.last, lastAxis == r - 1, plans[lastAxis].outputLength > plans[lastAxis].inputLength {
            order = [lastAxis] + order.dropLast()
        }
        var cur = x.dtype == .float32 ? x : x.converted(to: .float32)
        for axis in order {
            var shape = cur.shape
            shape[axis] = plans[axis].outputLength
            var next = Tensor(uninitialized: .float32, shape: shape)
            cur.withUnsafeBufferPointer(as: Float.self) { src in
                next.withUnsafeMutableBufferPointer(as: Float.self) { dst in
                    resample(src.baseAddress!, into: dst.baseAddress!, shape: cur.shape, axis: axis, plan: plans[axis], extrapolation: o.extrapolationValue)
                }
            }
            cur = next
        }
        if x.dtype == .float32 { return cur }
        if !x.dtype.isFloatingPoint && x.dtype != .bool {
            cur.withUnsafeMutableBufferPointer(as: Float.self) { p in for i in p.indices { p[i] = p[i].rounded(.toNearestOrEven) } }
        }
        return cur.converted(to: x.dtype)
    }

    /// One separable pass: `out[o, y, i] = Σₜ w[y,t]·in[o, idx[y,t], i]` over `shape` with
    /// `axis` resampled.
    static func resample(_ sp: UnsafePointer<Float>, into dp: UnsafeMutablePointer<Float>, shape: [Int], axis: Int,
                         plan p: AxisPlan, extrapolation: Float) {
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        let n = p.inputLength, m = p.outputLength, taps = p.taps
        p.indices.withUnsafeBufferPointer { ix in
            p.weights.withUnsafeBufferPointer { wt in
                p.extrapolated.withUnsafeBufferPointer { ex in
                    Parallel.forRanges(count: outer, workPerItem: m * inner * taps) { range in
                        for o in range {
                            let s = sp + o * n * inner
                            if inner == 1 {
                                // Last axis: one weighted sum per output element.
                                let d = dp + o * m
                                for y in 0..<m {
                                    if ex[y] { d[y] = extrapolation; continue }
                                    var acc: Float = 0
                                    for t in 0..<taps { acc += wt[y * taps + t] * s[ix[y * taps + t]] }
                                    d[y] = acc
                                }
                                continue
                            }
                            for y in 0..<m {
                                let row = dp + (o * m + y) * inner
                                if ex[y] {
                                    row.update(repeating: extrapolation, count: inner)
                                    continue
                                }
                                let w0 = wt[y * taps], r0 = s + ix[y * taps] * inner
                                for i in 0..<inner { row[i] = w0 * r0[i] }
                                for t in 1..<max(taps, 1) {
                                    let w = wt[y * taps + t]
                                    let r = s + ix[y * taps + t] * inner
                                    for i in 0..<inner { row[i] += w * r[i] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
