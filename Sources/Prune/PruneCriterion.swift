import TensorCore

/// How the importance of an output channel (a filter) is measured. Lowest goes first.
public enum PruneCriterion: String, CaseIterable, Sendable, Codable {
    /// Σ|w| over the filter (Li et al., ICLR 2017).
    case l1
    /// √Σw² over the filter.
    case l2
    /// Σ_j ‖F_i − F_j‖₂ over all filters j of the layer: filters nearest the geometric median
    /// have the smallest sum and are the most replaceable (He et al., CVPR 2019, FPGM).
    case fpgm
    /// |γ| of the BatchNormalization after the convolution (Liu et al., ICCV 2017, Network Slimming).
    case slim

    /// Per-filter importance of `weights`, whose filters are the slices along `axis`, in Double.
    /// Slim does not read filters (its importance is a BN scale: use `magnitudes`).
    ///
    /// FPGM's distances come from one Gram matrix: ‖F_i − F_j‖² = ‖F_i‖² + ‖F_j‖² − 2·F_i·F_j
    /// (clamped at 0), in Double. Cancellation costs about 1e-16·‖F‖² of each squared distance,
    /// far below any gap between two filters' sums unless filters are duplicates.
    public func filterImportance(_ weights: Tensor, axis: Int) -> [Double] {
        let (f, n, d) = PruneCriterion.filters(weights, axis: axis)
        switch self {
        case .l1, .l2, .slim:
            return (0..<n).map { i in
                var s = 0.0
                if self == .l1 { for q in 0..<d { s += abs(f[i * d + q]) } } else { for q in 0..<d { s += f[i * d + q] * f[i * d + q] } }
                return self == .l1 ? s : s.squareRoot()
            }
        case .fpgm:
            let g = BLAS.gram(f, rows: n, cols: d)
            return (0..<n).map { i in
                var s = 0.0
                for j in 0..<n where j != i { s += max(g[i * n + i] + g[j * n + j] - 2 * g[i * n + j], 0).squareRoot() }
                return s
            }
        }
    }

    /// The filters of `t` along `axis` as a row-major n×d matrix in Double (n filters of d values).
    static func filters(_ t: Tensor, axis: Int) -> (values: [Double], n: Int, d: Int) {
        let v = t.converted(to: .float64).scalars(as: Double.self)
        let outer = t.shape[..<axis].reduce(1, *), n = t.shape[axis], inner = t.shape[(axis + 1)...].reduce(1, *)
        if outer == 1 { return (v, n, inner) }
        var out = [Double](repeating: 0, count: n * outer * inner)
        for c in 0..<n {
            for o in 0..<outer {
                for q in 0..<inner { out[(c * outer + o) * inner + q] = v[(o * n + c) * inner + q] }
            }
        }
        return (out, n, outer * inner)
    }
}
