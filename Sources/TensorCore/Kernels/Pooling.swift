import Foundation

/// Pooling kernels over NC[D][H]W planes (ONNX MaxPool, AveragePool, GlobalMaxPool,
/// GlobalAveragePool). A "plane" is one (n, c) slice; planes run in parallel. Spatial ranks 1–3
/// are handled as rank 3 with leading unit axes.
///
/// - Max: `Y[p, o] = max_{k, in bounds} X[p, o·stride − padBegin + k·dilation]`; padding never
///   wins (a window entirely in padding gives the type's lowest value, as ONNX Runtime does);
///   NaN inputs are skipped (comparison `>` is false for NaN).
/// - Average: the sum of the in-bounds taps divided by their count, or, with
///   `countIncludePad`, by the number of taps inside the padded input `[−padBegin, in + padEnd)`
///   (taps of a ceil-mode window that run past the end padding are not counted).
public enum Pooling {
    /// Max pooling of float32 planes.
    /// - Parameters:
    ///   - indices: when given, receives for each output the flat index of the maximum in the whole
    ///     input `[N, C, spatial…]` (ONNX MaxPool's `Indices`); `columnMajor` (storage_order 1)
    ///     numbers the spatial position with the first axis fastest.
    public static func maxPool(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, planes: Int, window: WindowGeometry,
                               indices: UnsafeMutablePointer<Int64>? = nil, columnMajor: Bool = false) {
        if let indices {
            maxWithIndices(x: x, y: y, indices: indices, planes: planes, g: Convolution.lifted(window), lowest: -Float.greatestFiniteMagnitude, columnMajor: columnMajor)
        } else {
            maxPlanes(x: x, y: y, planes: planes, g: Convolution.lifted(window), lowest: -Float.greatestFiniteMagnitude)
        }
    }

    /// Max pooling of uint8 planes.
    public static func maxPool(x: UnsafePointer<UInt8>, y: UnsafeMutablePointer<UInt8>, planes: Int, window: WindowGeometry,
                               indices: UnsafeMutablePointer<Int64>? = nil, columnMajor: Bool = false) {
        if let indices {
            maxWithIndices(x: x, y: y, indices: indices, planes: planes, g: Convolution.lifted(window), lowest: 0, columnMajor: columnMajor)
        } else {
            maxPlanes(x: x, y: y, planes: planes, g: Convolution.lifted(window), lowest: 0)
        }
    }

    /// Max pooling of int8 planes.
    public static func maxPool(x: UnsafePointer<Int8>, y: UnsafeMutablePointer<Int8>, planes: Int, window: WindowGeometry,
                               indices: UnsafeMutablePointer<Int64>? = nil, columnMajor: Bool = false) {
        if let indices {
            maxWithIndices(x: x, y: y, indices: indices, planes: planes, g: Convolution.lifted(window), lowest: Int8.min, columnMajor: columnMajor)
        } else {
            maxPlanes(x: x, y: y, planes: planes, g: Convolution.lifted(window), lowest: Int8.min)
        }
    }

    static func maxPlanes<T: Comparable>(x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, planes: Int, g: WindowGeometry, lowest: T) {
        let (D, H, W) = (g.input[0], g.input[1], g.input[2])
        let (OD, OH, OW) = (g.output[0], g.output[1], g.output[2])
        let (KD, KH, KW) = (g.kernel[0], g.kernel[1], g.kernel[2])
        let (sd, sh, sw) = (g.strides[0], g.strides[1], g.strides[2])
        let (dd, dh, dw) = (g.dilations[0], g.dilations[1], g.dilations[2])
        let (pd, ph, pw) = (g.padsBegin[0], g.padsBegin[1], g.padsBegin[2])
        let ranges = (0..<KW).map { kw in Convolution.validRange(offset: kw * dw - pw, stride: sw, inCount: W, outCount: OW) }
        let inPlane = D * H * W, outPlane = OD * OH * OW
        // A 2-d window whose row-then-column maxima take markedly fewer comparisons (SPP's 5×5,
        // 9×9 and 13×13 at stride 1: 10, 18 and 26 per output instead of 25, 81 and 169).
        if separableMax && separates(g) {
            maxSeparable(x: x, y: y, planes: planes, g: g, lowest: lowest, ranges: ranges)
            return
        }
        Parallel.forRanges(count: planes, minimumWork: 1 << 15, workPerItem: outPlane * KD * KH * KW) { range in
            for p in range {
                let xp = x + p * inPlane, yp = y + p * outPlane
                for od in 0..<OD {
                    for oh in 0..<OH {
                        let orow = yp + (od * OH + oh) * OW
                        orow.update(repeating: lowest, count: OW)
                        for kd in 0..<KD {
                            let id = od * sd + kd * dd - pd
                            if id < 0 || id >= D { continue }
                            for kh in 0..<KH {
                                let ih = oh * sh + kh * dh - ph
                                if ih < 0 || ih >= H { continue }
                                let irow = xp + (id * H + ih) * W
                                for kw in 0..<KW {
                                    let (lo, hi) = ranges[kw]
                                    let src = irow + (kw * dw - pw)
                                    // A select, not a branch, so the loop vectorizes; NaN never wins.
                                    if sw == 1 {
                                        for ow in lo..<hi { let v = src[ow], o = orow[ow]; orow[ow] = v > o ? v : o }
                                    } else {
                                        for ow in lo..<hi { let v = src[ow * sw], o = orow[ow]; orow[ow] = v > o ? v : o }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Tests and measurements: `COMPRESS_MAXPOOL=direct` keeps every window on the tap-by-tap
    /// loops instead of `maxSeparable`.
    nonisolated(unsafe) public static var separableMax = ProcessInfo.processInfo.environment["COMPRESS_MAXPOOL"] != "direct"

    /// Whether `maxSeparable` takes a (rank-3 lifted) window: 2-d, and its row and column
    /// passes compare under ¾ as often as the taps do.
    static func separates(_ g: WindowGeometry) -> Bool {
        let (D, H) = (g.input[0], g.input[1])
        let (OD, OH, OW) = (g.output[0], g.output[1], g.output[2])
        let (KD, KH, KW) = (g.kernel[0], g.kernel[1], g.kernel[2])
        return D == 1 && OD == 1 && KD == 1 && H * OW * KW + OH * OW * KH < (OH * OW * KH * KW) * 3 / 4
    }

    /// 2-d max pooling as the maximum over the window's rows of each row's maximum: first, for
    /// every input row, the maximum over the window's columns at each output column; then, for
    /// each output, the maximum of those over the window's rows. The same value as the tap-by-tap
    /// loops: both keep the first tap (rows in order, columns in order within a row) holding the
    /// window's greatest value, skip NaN and padding, and give `lowest` to a window with neither.
    static func maxSeparable<T: Comparable>(x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, planes: Int, g: WindowGeometry, lowest: T,
                                            ranges: [(Int, Int)]) {
        let (H, W) = (g.input[1], g.input[2])
        let (OH, OW) = (g.output[1], g.output[2])
        let (KH, KW) = (g.kernel[1], g.kernel[2])
        let (sh, sw) = (g.strides[1], g.strides[2])
        let (dh, dw) = (g.dilations[1], g.dilations[2])
        let (ph, pw) = (g.padsBegin[1], g.padsBegin[2])
        let inPlane = H * W, outPlane = OH * OW
        Parallel.forRanges(count: planes, minimumWork: 1 << 15, workPerItem: H * OW * KW + outPlane * KH) { range in
            var rowMax = [T](repeating: lowest, count: H * OW)
            rowMax.withUnsafeMutableBufferPointer { rb in
                let r = rb.baseAddress!
                for p in range {
                    let xp = x + p * inPlane, yp = y + p * outPlane
                    for ih in 0..<H {
                        let rrow = r + ih * OW, irow = xp + ih * W
                        rrow.update(repeating: lowest, count: OW)
                        for kw in 0..<KW {
                            let (lo, hi) = ranges[kw]
                            let src = irow + (kw * dw - pw)
                            if sw == 1 {
                                for ow in lo..<hi { let v = src[ow], o = rrow[ow]; rrow[ow] = v > o ? v : o }
                            } else {
                                for ow in lo..<hi { let v = src[ow * sw], o = rrow[ow]; rrow[ow] = v > o ? v : o }
                            }
                        }
                    }
                    for oh in 0..<OH {
                        let orow = yp + oh * OW
                        orow.update(repeating: lowest, count: OW)
                        for kh in 0..<KH {
                            let ih = oh * sh + kh * dh - ph
                            if ih < 0 || ih >= H { continue }
                            let rrow = r + ih * OW
                            for ow in 0..<OW { let v = rrow[ow], o = orow[ow]; orow[ow] = v > o ? v : o }
                        }
                    }
                }
            }
        }
    }

    static func maxWithIndices<T: Comparable>(x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int64>,
                                              planes: Int, g: WindowGeometry, lowest: T, columnMajor: Bool) {
        let (D, H, W) = (g.input[0], g.input[1], g.input[2])
        let (OD, OH, OW) = (g.output[0], g.output[1], g.output[2])
        let (KD, KH, KW) = (g.kernel[0], g.kernel[1], g.kernel[2])
        let (sd, sh, sw) = (g.strides[0], g.strides[1], g.strides[2])
        let (dd, dh, dw) = (g.dilations[0], g.dilations[1], g.dilations[2])
        let (pd, ph, pw) = (g.padsBegin[0], g.padsBegin[1], g.padsBegin[2])
        let inPlane = D * H * W, outPlane = OD * OH * OW
        Parallel.forRanges(count: planes, minimumWork: 1 << 15, workPerItem: outPlane * KD * KH * KW) { range in
            for p in range {
                let xp = x + p * inPlane
                var o = p * outPlane
                for od in 0..<OD {
                    for oh in 0..<OH {
                        for ow in 0..<OW {
                            var best = lowest, at = -1
                            for kd in 0..<KD {
                                let id = od * sd + kd * dd - pd
                                if id < 0 || id >= D { continue }
                                for kh in 0..<KH {
                                    let ih = oh * sh + kh * dh - ph
                                    if ih < 0 || ih >= H { continue }
                                    for kw in 0..<KW {
                                        let iw = ow * sw + kw * dw - pw
                                        if iw < 0 || iw >= W { continue }
                                        let i = (id * H + ih) * W + iw
                                        if at < 0 || xp[i] > best {
                                            best = xp[i]
                                            at = columnMajor ? id + D * (ih + H * iw) : i
                                        }
                                    }
                                }
                            }
                            y[o] = best
                            indices[o] = at < 0 ? -1 : Int64(p * inPlane + at)
                            o += 1
                        }
                    }
                }
            }
        }
    }

    /// For each output position along one axis, the number of window taps that count toward the
    /// average: taps inside `[lower, upper)`.
    static func tapCounts(out: Int, kernel: Int, stride: Int, dilation: Int, padBegin: Int, lower: Int, upper: Int) -> [Int] {
        (0..<out).map { o in
            var c = 0
            for k in 0..<kernel {
                let i = o * stride - padBegin + k * dilation
                if i >= lower && i < upper { c += 1 }
            }
            return c
        }
    }

    /// Average pooling of float32 planes.
    public static func averagePool(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, planes: Int, window: WindowGeometry,
                                   countIncludePad: Bool) {
        let g = Convolution.lifted(window)
        let (D, H, W) = (g.input[0], g.input[1], g.input[2])
        let (OD, OH, OW) = (g.output[0], g.output[1], g.output[2])
        let (KD, KH, KW) = (g.kernel[0], g.kernel[1], g.kernel[2])
        let (sd, sh, sw) = (g.strides[0], g.strides[1], g.strides[2])
        let (dd, dh, dw) = (g.dilations[0], g.dilations[1], g.dilations[2])
        let (pd, ph, pw) = (g.padsBegin[0], g.padsBegin[1], g.padsBegin[2])
        func counts(_ a: Int) -> [Int] {
            tapCounts(out: g.output[a], kernel: g.kernel[a], stride: g.strides[a], dilation: g.dilations[a], padBegin: g.padsBegin[a],
                      lower: countIncludePad ? -g.padsBegin[a] : 0,
                      upper: countIncludePad ? g.input[a] + g.padsEnd[a] : g.input[a])
        }
        let cD = counts(0), cH = counts(1), cW = counts(2)
        // 1 / (count along W) per column, used once per row.
        let invW = cW.map { Float($0) }
        let ranges = (0..<KW).map { kw in Convolution.validRange(offset: kw * dw - pw, stride: sw, inCount: W, outCount: OW) }
        let inPlane = D * H * W, outPlane = OD * OH * OW
        Parallel.forRanges(count: planes, minimumWork: 1 << 15, workPerItem: outPlane * KD * KH * KW) { range in
            for p in range {
                let xp = x + p * inPlane, yp = y + p * outPlane
                for od in 0..<OD {
                    for oh in 0..<OH {
                        let orow = yp + (od * OH + oh) * OW
                        orow.update(repeating: 0, count: OW)
                        for kd in 0..<KD {
                            let id = od * sd + kd * dd - pd
                            if id < 0 || id >= D { continue }
                            for kh in 0..<KH {
                                let ih = oh * sh + kh * dh - ph
                                if ih < 0 || ih >= H { continue }
                                let irow = xp + (id * H + ih) * W
                                for kw in 0..<KW {
                                    let (lo, hi) = ranges[kw]
                                    let src = irow + (kw * dw - pw)
                                    if sw == 1 {
                                        for ow in lo..<hi { orow[ow] += src[ow] }
                                    } else {
                                        for ow in lo..<hi { orow[ow] += src[ow * sw] }
                                    }
                                }
                            }
                        }
                        let dh = Float(cD[od] * cH[oh])
                        for ow in 0..<OW {
                            let n = dh * invW[ow]
                            // A window with no counted tap (all padding, count_include_pad 0) is 0/0 in
                            // the spec's formula; ONNX Runtime writes 0 there.
                            orow[ow] = n > 0 ? orow[ow] / n : 0
                        }
                    }
                }
            }
        }
    }

    /// `Y[p] = mean(X[p, :])` over planes of `size` elements (GlobalAveragePool).
    public static func globalAverage(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, planes: Int, size: Int) {
        Parallel.forRanges(count: planes, minimumWork: 1 << 16, workPerItem: size) { range in
            for p in range {
                let xp = x + p * size
                // Sixteen running sums (two vectors), not one: a single chain of dependent adds
                // ran at one element per add latency (3.4 % of MobileNetV3-Small's time).
                var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
                let raw = UnsafeRawPointer(xp)
                var i = 0
                while i + 16 <= size {
                    a0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                    a1 += raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
                    i += 16
                }
                var s = (a0 + a1).sum()
                while i < size { s += xp[i]; i += 1 }
                y[p] = size > 0 ? s / Float(size) : .nan
            }
        }
    }

    /// `Y[p] = max(X[p, :])` over planes of `size` elements (GlobalMaxPool); NaN propagates as in
    /// NumPy's `max`, which the ONNX reference uses.
    public static func globalMax(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, planes: Int, size: Int) {
        Parallel.forRanges(count: planes, minimumWork: 1 << 16, workPerItem: size) { range in
            for p in range {
                let xp = x + p * size
                var m = -Float.infinity
                var nan = false
                for i in 0..<size {
                    let v = xp[i]
                    if v.isNaN { nan = true }
                    m = v > m ? v : m
                }
                y[p] = nan ? .nan : m
            }
        }
    }
}
