import Foundation

/// The resampling filters behind `--resize`, each written to reproduce one library's rule:
///
/// - `bilinear`: OpenCV's `INTER_LINEAR` (half-pixel centres, two taps, no antialiasing).
/// - `nearest`: Pillow's `NEAREST`, `src = min(⌊(dst + 0.5)·in/out⌋, in − 1)`.
/// - `pil-bilinear`: Pillow's `Image.resize(BILINEAR)` (what torchvision's `Resize` calls on
///   PIL images): a triangle filter whose support grows with the shrink factor (antialiasing),
///   22-bit fixed-point coefficients, the result rounded to 8 bits after each pass, the passes
///   in Pillow 13's order — integer arithmetic, so the output equals Pillow's exactly.
/// - `area`: OpenCV's `INTER_AREA`: when both axes shrink, each output pixel is the
///   area-weighted mean of the source pixels its cell covers; when either axis grows, OpenCV's
///   "area" variant of bilinear on both axes.
///
/// Every filter is separable. `AxisTaps` holds, per output coordinate, the first source index
/// and the weights of consecutive source pixels; `resample` runs the horizontal pass over the
/// source rows the vertical pass reads, then the vertical pass.
enum ImageResize {
    /// Per output coordinate `i`: source pixels `first[i] ..< first[i] + count[i]` with weights
    /// `weights[i * width ..< i * width + count[i]]`.
    struct AxisTaps: Equatable {
        var first: [Int] = []
        var count: [Int] = []
        var weights: [Double] = []
        var width: Int

        init(width: Int) { self.width = width }

        mutating func add(first f: Int, _ w: [Double]) {
            first.append(f)
            count.append(w.count)
            weights.append(contentsOf: w)
            weights.append(contentsOf: repeatElement(0, count: width - w.count))
        }

        var outputs: Int { first.count }
    }

    /// Taps along one axis for output coordinates `range` of an `n → m` resize.
    /// `areaShrinks`: whether OpenCV's `INTER_AREA` shrinks on both axes (it then averages cells;
    /// otherwise it uses its bilinear variant on both).
    static func taps(_ filter: ImagePreprocessing.Resize, in n: Int, out m: Int, range: Range<Int>, areaShrinks: Bool) -> AxisTaps {
        switch filter {
        case .nearest:
            var t = AxisTaps(width: 1)
            let ratio = Double(n) / Double(m)
            for d in range { t.add(first: min(Int(((Double(d) + 0.5) * ratio).rounded(.down)), n - 1), [1]) }
            return t
        case .bilinear:
            var t = AxisTaps(width: 2)
            let ratio = Double(n) / Double(m)
            for d in range {
                let s = max((Double(d) + 0.5) * ratio - 0.5, 0)
                let lo = min(Int(s.rounded(.down)), n - 1)
                let w = Double(Float(s - Double(lo)))
                if lo + 1 >= n || w == 0 { t.add(first: lo, [1]) } else { t.add(first: lo, [1 - w, w]) }
            }
            return t
        case .pilBilinear:
            return pillowTaps(in: n, out: m, range: range)
        case .area:
            return areaShrinks ? areaTaps(in: n, out: m, range: range) : areaLinearTaps(in: n, out: m, range: range)
        }
    }

    /// Pillow's `precompute_coeffs` for the bilinear (triangle) filter, support 1: the filter is
    /// stretched by the shrink factor, centred at `(d + 0.5)·scale`, cut to the image and
    /// normalized to sum 1.
    static func pillowTaps(in n: Int, out m: Int, range: Range<Int>) -> AxisTaps {
        let scale = Double(n) / Double(m)
        let filterscale = max(scale, 1)
        let support = 1.0 * filterscale
        var t = AxisTaps(width: Int(support.rounded(.up)) * 2 + 1)
        let ss = 1.0 / filterscale
        for d in range {
            let center = (Double(d) + 0.5) * scale
            // C's (int) cast truncates toward zero.
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), n) - xmin
            var w = [Double](repeating: 0, count: max(xmax, 0))
            var sum = 0.0
            for x in 0..<max(xmax, 0) {
                var v = abs((Double(x + xmin) - center + 0.5) * ss)
                v = v < 1 ? 1 - v : 0
                w[x] = v
                sum += v
            }
            if sum != 0 { for x in w.indices { w[x] /= sum } }
            t.add(first: xmin, w)
        }
        return t
    }

    /// Pillow's 8-bit coefficients: `round(k · 2²²)`, halves away from zero.
    static let pillowPrecisionBits = 22
    static func pillowFixed(_ k: Double) -> Int32 {
        let v = k * Double(1 << pillowPrecisionBits)
        return Int32(k < 0 ? v - 0.5 : v + 0.5)  // truncation toward zero, as C's (int)
    }

    /// OpenCV's `computeResizeAreaTab`: output cell `[d·scale, (d+1)·scale)` of a shrinking axis,
    /// each source pixel weighted by the part of it the cell covers (edges below 1e-3 dropped),
    /// divided by the cell width. An integer factor (OpenCV's `is_area_fast`) is a plain mean.
    static func areaTaps(in n: Int, out m: Int, range: Range<Int>) -> AxisTaps {
        let scale = 1.0 / (Double(m) / Double(n))
        let iscale = Int(scale.rounded())
        if abs(scale - Double(iscale)) < Double.ulpOfOne {
            var t = AxisTaps(width: iscale)
            let w = [Double](repeating: Double(Float(1.0 / Double(iscale))), count: iscale)
            for d in range { t.add(first: min(d * iscale, n - iscale), w) }
            return t
        }
        var t = AxisTaps(width: Int(scale.rounded(.up)) + 2)
        for d in range {
            let fsx1 = Double(d) * scale, fsx2 = fsx1 + scale
            let cellWidth = min(scale, Double(n) - fsx1)
            var sx2 = Int(fsx2.rounded(.down))
            sx2 = min(sx2, n - 1)
            let sx1 = min(Int(fsx1.rounded(.up)), sx2)
            var first = sx1
            var w: [Double] = []
            if Double(sx1) - fsx1 > 1e-3 {
                first = sx1 - 1
                w.append(Double(Float((Double(sx1) - fsx1) / cellWidth)))
            }
            for _ in sx1..<sx2 { w.append(Double(Float(1.0 / cellWidth))) }
            if fsx2 - Double(sx2) > 1e-3 {
                w.append(Double(Float(min(min(fsx2 - Double(sx2), 1), cellWidth) / cellWidth)))
            }
            if w.isEmpty { w = [1] }
            t.add(first: first, w)
        }
        return t
    }

    /// OpenCV's `INTER_AREA` when an axis grows: `sx = ⌊d·scale⌋`,
    /// `fx = (d + 1) − (sx + 1)·m/n`, kept only when positive (its fraction), then bilinear.
    static func areaLinearTaps(in n: Int, out m: Int, range: Range<Int>) -> AxisTaps {
        let inv = Double(m) / Double(n), scale = 1.0 / inv
        var t = AxisTaps(width: 2)
        for d in range {
            var sx = Int((Double(d) * scale).rounded(.down))
            var fx = Float(Double(d + 1) - Double(sx + 1) * inv)
            fx = fx <= 0 ? 0 : fx - fx.rounded(.down)
            if sx < 0 { fx = 0; sx = 0 }
            if sx >= n - 1 { fx = 0; sx = n - 1 }
            if fx == 0 { t.add(first: sx, [1]) } else { t.add(first: sx, [Double(1 - fx), Double(fx)]) }
        }
        return t
    }

    /// The source indices the taps read (rows, or columns), sorted, and each one's position in
    /// that list.
    static func usedRows(_ rows: AxisTaps, height: Int) -> (list: [Int], index: [Int]) {
        var used = [Bool](repeating: false, count: height)
        for i in 0..<rows.outputs { for k in 0..<rows.count[i] { used[rows.first[i] + k] = true } }
        var list: [Int] = [], index = [Int](repeating: -1, count: height)
        for r in 0..<height where used[r] { index[r] = list.count; list.append(r) }
        return (list, index)
    }

    /// Float two-pass resample: `rows.outputs × cols.outputs × channels`, HWC, unrounded.
    static func resample(_ img: DecodedImage, rows: AxisTaps, cols: AxisTaps) -> [Float] {
        let C = img.channels, outW = cols.outputs, outH = rows.outputs
        let (srcRows, rowIndex) = usedRows(rows, height: img.height)
        let cw = cols.weights.map { Float($0) }, rw = rows.weights.map { Float($0) }
        var tmp = [Float](repeating: 0, count: srcRows.count * outW * C)
        var out = [Float](repeating: 0, count: outH * outW * C)
        img.pixels.withUnsafeBufferPointer { px in
            tmp.withUnsafeMutableBufferPointer { tb in
                for (ri, r) in srcRows.enumerated() {
                    let src = r * img.width * C, dst = ri * outW * C
                    for j in 0..<outW {
                        let f = cols.first[j], n = cols.count[j], wb = j * cols.width
                        for c in 0..<C {
                            var s: Float = 0
                            for k in 0..<n { s += Float(px[src + (f + k) * C + c]) * cw[wb + k] }
                            tb[dst + j * C + c] = s
                        }
                    }
                }
            }
        }
        tmp.withUnsafeBufferPointer { tb in
            out.withUnsafeMutableBufferPointer { ob in
                let rowLen = outW * C
                for i in 0..<outH {
                    let f = rows.first[i], n = rows.count[i], wb = i * rows.width
                    let dst = i * rowLen
                    if n == 1 {
                        let src = rowIndex[f] * rowLen
                        let w = rw[wb]
                        for e in 0..<rowLen { ob[dst + e] = tb[src + e] * w }
                        continue
                    }
                    for k in 0..<n {
                        let src = rowIndex[f + k] * rowLen, w = rw[wb + k]
                        if k == 0 {
                            for e in 0..<rowLen { ob[dst + e] = tb[src + e] * w }
                        } else {
                            for e in 0..<rowLen { ob[dst + e] += tb[src + e] * w }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Whether Pillow (13.0 and later) runs the vertical pass first for an `h × w → H × W`
    /// resize: when the height shrinks by more than twice as many pixels as the width
    /// (`ImagingResampleInner`). Pillow 12 and earlier always ran the horizontal pass first;
    /// the order changes some pixels by one level, as the result is rounded between passes.
    static func pillowVerticalFirst(height h: Int, width w: Int, outHeight H: Int, outWidth W: Int) -> Bool {
        h - H > 0 && h - H > (w - W) * 2
    }

    /// Pillow's 8-bit two-pass resample (`ImagingResampleHorizontal_8bpc`,
    /// `ImagingResampleVertical_8bpc`, in the order `verticalFirst` says): integer sums from
    /// `2²¹`, shifted right by 22 and clamped to [0, 255] after each pass.
    static func resamplePillow(_ img: DecodedImage, rows: AxisTaps, cols: AxisTaps, verticalFirst: Bool) -> [UInt8] {
        let C = img.channels, outW = cols.outputs, outH = rows.outputs
        let cw = cols.weights.map(pillowFixed), rw = rows.weights.map(pillowFixed)
        let half = Int32(1) << Int32(pillowPrecisionBits - 1), shift = Int32(pillowPrecisionBits)
        @inline(__always) func clip8(_ v: Int32) -> UInt8 { UInt8(clamping: v >> shift) }
        var out = [UInt8](repeating: 0, count: outH * outW * C)
        if verticalFirst {
            // Vertical pass over the source columns the horizontal taps read, then horizontal.
            let (srcCols, colIndex) = usedRows(cols, height: img.width)
            let tmpW = srcCols.count
            var tmp = [UInt8](repeating: 0, count: outH * tmpW * C)
            img.pixels.withUnsafeBufferPointer { px in
                tmp.withUnsafeMutableBufferPointer { tb in
                    for i in 0..<outH {
                        let f = rows.first[i], n = rows.count[i], wb = i * rows.width
                        for (ci, x) in srcCols.enumerated() {
                            for c in 0..<C {
                                var s = half
                                for k in 0..<n { s &+= Int32(px[((f + k) * img.width + x) * C + c]) &* rw[wb + k] }
                                tb[(i * tmpW + ci) * C + c] = clip8(s)
                            }
                        }
                    }
                }
            }
            tmp.withUnsafeBufferPointer { tb in
                out.withUnsafeMutableBufferPointer { ob in
                    for i in 0..<outH {
                        for j in 0..<outW {
                            let f = cols.first[j], n = cols.count[j], wb = j * cols.width
                            for c in 0..<C {
                                var s = half
                                for k in 0..<n { s &+= Int32(tb[(i * tmpW + colIndex[f + k]) * C + c]) &* cw[wb + k] }
                                ob[(i * outW + j) * C + c] = clip8(s)
                            }
                        }
                    }
                }
            }
            return out
        }
        let (srcRows, rowIndex) = usedRows(rows, height: img.height)
        var tmp = [UInt8](repeating: 0, count: srcRows.count * outW * C)
        img.pixels.withUnsafeBufferPointer { px in
            tmp.withUnsafeMutableBufferPointer { tb in
                for (ri, r) in srcRows.enumerated() {
                    let src = r * img.width * C, dst = ri * outW * C
                    for j in 0..<outW {
                        let f = cols.first[j], n = cols.count[j], wb = j * cols.width
                        for c in 0..<C {
                            var s = half
                            for k in 0..<n { s &+= Int32(px[src + (f + k) * C + c]) &* cw[wb + k] }
                            tb[dst + j * C + c] = clip8(s)
                        }
                    }
                }
            }
        }
        tmp.withUnsafeBufferPointer { tb in
            out.withUnsafeMutableBufferPointer { ob in
                let rowLen = outW * C
                var acc = [Int32](repeating: 0, count: rowLen)
                for i in 0..<outH {
                    let f = rows.first[i], n = rows.count[i], wb = i * rows.width
                    for e in 0..<rowLen { acc[e] = half }
                    for k in 0..<n {
                        let src = rowIndex[f + k] * rowLen, w = rw[wb + k]
                        for e in 0..<rowLen { acc[e] &+= Int32(tb[src + e]) &* w }
                    }
                    let dst = i * rowLen
                    for e in 0..<rowLen { ob[dst + e] = clip8(acc[e]) }
                }
            }
        }
        return out
    }
}
