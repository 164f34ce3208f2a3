/// Gathers entries along one axis (numpy's `take(indices, axis)`), for any byte-sized dtype.
extension Tensor {
    public func selecting(_ indices: [Int], alongAxis axis: Int) -> Tensor {
        let ax = axis < 0 ? axis + rank : axis
        precondition(ax >= 0 && ax < rank, "axis \(axis) out of range for rank \(rank)")
        precondition(dtype.size > 0, "cannot slice \(dtype) tensors")
        let outer = shape[..<ax].reduce(1, *)
        let dim = shape[ax]
        let inner = shape[(ax + 1)...].reduce(1, *) * dtype.size
        var newShape = shape
        newShape[ax] = indices.count
        var out = Tensor(uninitialized: dtype, shape: newShape)
        withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                var d = dst.baseAddress!
                for o in 0..<outer {
                    for i in indices {
                        precondition(i >= 0 && i < dim, "index \(i) out of range 0..<\(dim)")
                        d.copyMemory(from: src.baseAddress! + (o * dim + i) * inner, byteCount: inner)
                        d += inner
                    }
                }
            }
        }
        return out
    }
}
