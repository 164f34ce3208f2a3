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
    public func filterImportance(_ weights: Tensor, axis: Int) -> [Double] {
        let filters = PruneCriterion.filters(weights, axis: axis)
        switch self {
        case .l1: return filters.map { $0.reduce(0) { $0 + abs($1) } }
        case .l2, .slim: return filters.map { $0.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        case .fpgm:
            let n = filters.count
            var d = [Double](repeating: 0, count: n)
            for i in 0..<n {
                for j in (i + 1)..<max(i + 1, n) {
                    var s = 0.0
                    for (a, b) in zip(filters[i], filters[j]) { s += (a - b) * (a - b) }
                    let dist = s.squareRoot()
                    d[i] += dist
                    d[j] += dist
                }
            }
            return d
        }
    }

    /// The filters of `t` along `axis`, each flattened, in Double.
    static func filters(_ t: Tensor, axis: Int) -> [[Double]] {
        let v = t.converted(to: .float64).scalars(as: Double.self)
        let outer = t.shape[..<axis].reduce(1, *), n = t.shape[axis], inner = t.shape[(axis + 1)...].reduce(1, *)
        var out = [[Double]](repeating: [], count: n)
        for c in 0..<n {
            out[c].reserveCapacity(outer * inner)
            for o in 0..<outer {
                let base = (o * n + c) * inner
                out[c].append(contentsOf: v[base ..< base + inner])
            }
        }
        return out
    }
}
