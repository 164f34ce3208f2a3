import CKernels

extension Tensor {
    /// `a · b` for float32 tensors of one rank where one operand's shape is the other's with
    /// every dimension from some axis on set to 1 (`x[N, C, H, W] · s[N, C, 1, 1]`, the
    /// squeeze-and-excitation scale): rows of the larger operand times one value each, by the
    /// vectorized `ck_scale_rows`, rows in parallel. Nil when the shapes are not of that form
    /// (the caller takes the general broadcast loop).
    public static func rowScaled(_ a: Tensor, _ b: Tensor) -> Tensor? {
        guard a.dtype == .float32, b.dtype == .float32, a.rank == b.rank, a.rank >= 2, a.shape != b.shape else { return nil }
        // The operand with the full shape, and the other (its scale).
        let aFull = zip(a.shape, b.shape).allSatisfy { $0 >= $1 }
        let (x, s) = aFull ? (a, b) : (b, a)
        // Leading axes equal, then trailing axes of the scale all 1.
        var axis = 0
        while axis < x.rank && x.shape[axis] == s.shape[axis] { axis += 1 }
        guard axis > 0, axis < x.rank, s.shape[axis...].allSatisfy({ $0 == 1 }) else { return nil }
        let rows = x.shape[..<axis].reduce(1, *), len = x.shape[axis...].reduce(1, *)
        guard rows > 0, len > 1 else { return nil }
        var out = Tensor(uninitialized: .float32, shape: x.shape)
        x.withUnsafeBufferPointer(as: Float.self) { px in
            s.withUnsafeBufferPointer(as: Float.self) { ps in
                out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                    scaleRows(px.baseAddress!, ps.baseAddress!, into: po.baseAddress!, rows: rows, length: len)
                }
            }
        }
        return out
    }

    /// `out[r·length + i] = x[r·length + i] · scale[r]` over `rows` rows of `length` floats, by the
    /// vectorized `ck_scale_rows`, rows in parallel.
    public static func scaleRows(_ x: UnsafePointer<Float>, _ scale: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                                 rows: Int, length: Int) {
        Parallel.forRanges(count: rows, minimumWork: 1 << 16, workPerItem: length) { r in
            ck_scale_rows(x + r.lowerBound * length, scale + r.lowerBound, out + r.lowerBound * length, r.count, length)
        }
    }
}
