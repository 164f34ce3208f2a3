import Foundation

/// Normalization kernels on float32 buffers (ONNX BatchNormalization, InstanceNormalization,
/// LayerNormalization, RMSNormalization, LRN). Means and variances are accumulated in Double and the variance is
/// the biased (population) one, `mean((x − mean)²)`, as every one of these specs defines it.
public enum Normalization {
    /// Per-channel affine map over `[N, C, S]` data: `Y = X·a[c] + b[c]`, each channel row
    /// through `epilogue`-free straight-line code. Used by inference BatchNormalization with
    /// `a = scale / sqrt(var + ε)`, `b = B − mean·a`.
    public static func channelAffine(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int,
                                     a: UnsafePointer<Float>, b: UnsafePointer<Float>) {
        let rows = batch * channels
        Parallel.forRanges(count: rows, minimumWork: 1 << 17, workPerItem: spatial) { range in
            for r in range {
                let c = r % channels
                let av = a[c], bv = b[c]
                let xr = x + r * spatial, yr = y + r * spatial
                for i in 0..<spatial { yr[i] = xr[i] * av + bv }
            }
        }
    }

    /// Inference BatchNormalization: `Y = (X − mean[c]) / sqrt(var[c] + ε) · scale[c] + B[c]`.
    public static func batchNorm(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int,
                                 scale: UnsafePointer<Float>, bias: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                                 variance: UnsafePointer<Float>, epsilon: Float) {
        var a = [Float](repeating: 0, count: channels), b = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            let s = Float(Double(scale[c]) / (Double(variance[c]) + Double(epsilon)).squareRoot())
            a[c] = s
            b[c] = bias[c] - mean[c] * s
        }
        channelAffine(x: x, y: y, batch: batch, channels: channels, spatial: spatial, a: a, b: b)
    }

    /// Per-channel mean and biased variance over the batch and spatial positions of `[N, C, S]`
    /// (training-mode BatchNormalization's batch statistics).
    public static func channelMoments(x: UnsafePointer<Float>, batch: Int, channels: Int, spatial: Int,
                                      mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>) {
        let n = Double(batch * spatial)
        for c in 0..<channels {
            var s = 0.0
            for b in 0..<batch { let r = x + (b * channels + c) * spatial; for i in 0..<spatial { s += Double(r[i]) } }
            let m = n > 0 ? s / n : 0
            var q = 0.0
            for b in 0..<batch { let r = x + (b * channels + c) * spatial; for i in 0..<spatial { let d = Double(r[i]) - m; q += d * d } }
            mean[c] = Float(m)
            variance[c] = Float(n > 0 ? q / n : 0)
        }
    }

    /// InstanceNormalization: for each (n, c) plane of `spatial` values,
    /// `Y = scale[c] · (X − mean) / sqrt(var + ε) + B[c]`.
    public static func instanceNorm(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int,
                                    scale: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float) {
        Parallel.forRanges(count: batch * channels, minimumWork: 1 << 16, workPerItem: spatial) { range in
            for r in range {
                let c = r % channels
                let xr = x + r * spatial, yr = y + r * spatial
                let (m, v) = moments(xr, spatial)
                let a = Float(Double(scale[c]) / (v + Double(epsilon)).squareRoot())
                let b = bias[c] - Float(m) * a
                for i in 0..<spatial { yr[i] = xr[i] * a + b }
            }
        }
    }

    /// Mean and biased variance of `n` values (two passes, Double accumulators).
    @inline(__always)
    static func moments(_ p: UnsafePointer<Float>, _ n: Int) -> (Double, Double) {
        guard n > 0 else { return (0, 0) }
        var s = 0.0
        for i in 0..<n { s += Double(p[i]) }
        let m = s / Double(n)
        var q = 0.0
        for i in 0..<n { let d = Double(p[i]) - m; q += d * d }
        return (m, q / Double(n))
    }

    /// LayerNormalization over rows of `cols` values:
    /// `Y = (X − mean) / sqrt(var + ε) · scale + bias`, with `scale`/`bias` already laid out as
    /// `cols` values (broadcast by the caller). Optionally writes each row's mean and
    /// `1 / sqrt(var + ε)` (the spec's `Mean` and `InvStdDev` outputs).
    public static func layerNorm(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                 scale: UnsafePointer<Float>, bias: UnsafePointer<Float>?, epsilon: Float,
                                 mean: UnsafeMutablePointer<Float>?, invStdDev: UnsafeMutablePointer<Float>?) {
        Parallel.forRanges(count: rows, minimumWork: 1 << 16, workPerItem: cols) { range in
            for r in range {
                let xr = x + r * cols, yr = y + r * cols
                let (m, v) = moments(xr, cols)
                let inv = 1 / (v + Double(epsilon)).squareRoot()
                let mf = Float(m), invf = Float(inv)
                if let bias {
                    for i in 0..<cols { yr[i] = (xr[i] - mf) * invf * scale[i] + bias[i] }
                } else {
                    for i in 0..<cols { yr[i] = (xr[i] - mf) * invf * scale[i] }
                }
                mean?[r] = mf
                invStdDev?[r] = invf
            }
        }
    }

    /// RMSNormalization over rows of `cols` values: `Y = X / sqrt(mean(X²) + ε) · scale`, with
    /// `scale` laid out as `cols` values (broadcast by the caller); the mean of squares is
    /// accumulated in Double.
    public static func rmsNorm(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                               scale: UnsafePointer<Float>, epsilon: Float) {
        guard cols > 0 else { return }
        Parallel.forRanges(count: rows, minimumWork: 1 << 16, workPerItem: cols) { range in
            for r in range {
                let xr = x + r * cols, yr = y + r * cols
                var q = 0.0
                for i in 0..<cols { let v = Double(xr[i]); q += v * v }
                let inv = Float(1 / (q / Double(cols) + Double(epsilon)).squareRoot())
                for i in 0..<cols { yr[i] = xr[i] * inv * scale[i] }
            }
        }
    }

    /// Local response normalization across channels (ONNX LRN):
    /// `Y[n, c, s] = X[n, c, s] / (bias + α/size · Σ_{c'} X[n, c', s]²)^β`, the sum over
    /// `c' ∈ [c − floor((size−1)/2), c + ceil((size−1)/2)] ∩ [0, C)`.
    public static func lrn(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int,
                           size: Int, alpha: Float, beta: Float, bias: Float) {
        let before = (size - 1) / 2, after = size - 1 - before
        let k = alpha / Float(size)
        Parallel.forRanges(count: batch * channels, minimumWork: 1 << 15, workPerItem: spatial * size) { range in
            var sq = [Float](repeating: 0, count: spatial)
            for r in range {
                let n = r / channels, c = r % channels
                for i in 0..<spatial { sq[i] = 0 }
                for c2 in max(0, c - before)...min(channels - 1, c + after) {
                    let xr = x + (n * channels + c2) * spatial
                    for i in 0..<spatial { sq[i] += xr[i] * xr[i] }
                }
                let xr = x + r * spatial, yr = y + r * spatial
                for i in 0..<spatial { yr[i] = xr[i] / powf(bias + k * sq[i], beta) }
            }
        }
    }
}
