import Foundation

/// Data movement on raw bytes: every kernel here copies elements without reading their values, so
/// one implementation serves every byte-sized dtype (bool, int8 … complex128).
///
/// Two primitives cover the ONNX movement operators:
/// - `copyView` materializes a strided view, `out[i₀,…,i_{r−1}] = in[offset + Σ iₖ·strideₖ]`, with
///   strides that may be 0 (broadcast: Expand, Tile) or negative (Slice with negative steps) and
///   any permutation (Transpose, DepthToSpace, SpaceToDepth).
/// - `gather` reads through one index map per axis, `out[i₀,…] = in[map₀[i₀], …]`, with −1 meaning
///   "write the fill value" (Pad in every mode, nearest Resize, tf_crop_and_resize extrapolation).
///
/// Both merge adjacent dimensions first and move the innermost contiguous run with one `memcpy`,
/// so per-element index arithmetic happens only where the layout requires it.
public enum Movement {
    /// Why a movement kernel cannot run.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Row-major element strides of `shape`.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    /// Bytes per element, or a failure for strings and sub-byte types (which have no byte layout
    /// per element).
    public static func elementSize(_ dtype: DType) throws -> Int {
        guard dtype.size > 0 else { throw Failure("\(dtype) tensors are not supported by data-movement kernels") }
        return dtype.size
    }

    // MARK: Strided views

    /// Materializes the view of `src` with the given shape, element strides and element offset.
    ///
    /// `out[i₀,…,i_{r−1}] = src.flat[offset + Σₖ iₖ·strides[k]]`. The caller guarantees every
    /// addressed element lies inside `src`.
    public static func copyView(_ src: Tensor, shape: [Int], strides: [Int], offset: Int = 0) throws -> Tensor {
        precondition(shape.count == strides.count, "view rank mismatch")
        let es = try elementSize(src.dtype)
        var out = Tensor(uninitialized: src.dtype, shape: shape)
        if out.count == 0 { return out }
        src.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                stridedCopy(src: s.baseAddress! + offset * es, dst: d.baseAddress!, shape: shape, strides: strides, elementSize: es)
            }
        }
        return out
    }

    /// The permutation `out.shape[k] = src.shape[perm[k]]` (ONNX Transpose).
    public static func transpose(_ src: Tensor, perm: [Int]) throws -> Tensor {
        let st = strides(src.shape)
        return try copyView(src, shape: perm.map { src.shape[$0] }, strides: perm.map { st[$0] })
    }

    /// `src` broadcast to `shape` (ONNX unidirectional broadcasting; `shape` must be a valid
    /// broadcast target of `src.shape` with at least its rank).
    public static func broadcast(_ src: Tensor, to shape: [Int]) throws -> Tensor {
        let pad = shape.count - src.rank
        let st = strides(src.shape)
        var vs = [Int](repeating: 0, count: shape.count)
        for i in 0..<src.rank where src.shape[i] != 1 || shape[pad + i] == 1 { vs[pad + i] = st[i] }
        return try copyView(src, shape: shape, strides: vs)
    }

    /// `src` repeated `repeats[k]` times along each axis (ONNX Tile): the view
    /// `[r₀, d₀, r₁, d₁, …]` with stride 0 on each repeat axis, read as `[r₀·d₀, r₁·d₁, …]`.
    public static func tile(_ src: Tensor, repeats: [Int]) throws -> Tensor {
        let st = strides(src.shape)
        var shape: [Int] = [], vs: [Int] = []
        for k in 0..<src.rank {
            shape += [repeats[k], src.shape[k]]
            vs += [0, st[k]]
        }
        let out = try copyView(src, shape: shape, strides: vs)
        return out.reshaped(zip(repeats, src.shape).map { $0 * $1 })
    }

    /// Copies the strided source view into the contiguous `dst`.
    ///
    /// After merging dimensions, a view whose last two dimensions are read with strides (1, s),
    /// a transposed plane such as NCHW → NHWC, is copied in square tiles so both sides stay in
    /// cache; any other view is copied row by row (`memcpy` when the last stride is 1). Rows
    /// or tiles are split across threads for large copies.
    static func stridedCopy(src: UnsafeRawPointer, dst: UnsafeMutableRawPointer, shape: [Int], strides: [Int], elementSize es: Int) {
        // Drop unit dimensions, then merge a dimension into the next when they are contiguous.
        var dims: [Int] = [], st: [Int] = []
        for (n, s) in zip(shape, strides) where n != 1 {
            if n == 0 { return }
            if let last = dims.last, st.last! == s * n {
                dims[dims.count - 1] = last * n
                st[st.count - 1] = s
            } else {
                dims.append(n)
                st.append(s)
            }
        }
        if dims.isEmpty {
            dst.copyMemory(from: src, byteCount: es)
            return
        }
        let r = dims.count
        // Source offset (in elements) of the first `count` dimensions' flat index `flat`.
        func offset(_ flat: Int, count: Int) -> Int {
            var rem = flat, off = 0
            for k in stride(from: count - 1, through: 0, by: -1) {
                off += (rem % dims[k]) * st[k]
                rem /= dims[k]
            }
            return off
        }
        if r >= 2, st[r - 2] == 1, st[r - 1] > 1, dims[r - 2] >= 8, [1, 2, 4, 8].contains(es) {
            let a = dims[r - 2], b = dims[r - 1], sb = st[r - 1]
            let planes = dims[..<(r - 2)].reduce(1, *)
            let tile = 32
            let rowTiles = (a + tile - 1) / tile
            Parallel.forRanges(count: planes * rowTiles, minimumWork: 1 << 16, workPerItem: tile * b) { range in
                for item in range {
                    let p = item / rowTiles, a0 = (item % rowTiles) * tile
                    let s = src + offset(p, count: r - 2) * es
                    let d = dst + p * a * b * es
                    switch es {
                    case 1: transposeTile(s, sb, a0, min(a0 + tile, a), b, d, tile, UInt8.self)
                    case 2: transposeTile(s, sb, a0, min(a0 + tile, a), b, d, tile, UInt16.self)
                    case 4: transposeTile(s, sb, a0, min(a0 + tile, a), b, d, tile, UInt32.self)
                    default: transposeTile(s, sb, a0, min(a0 + tile, a), b, d, tile, UInt64.self)
                    }
                }
            }
            return
        }
        let inner = dims[r - 1], innerStride = st[r - 1]
        let outer = dims[..<(r - 1)].reduce(1, *)
        Parallel.forRanges(count: outer, minimumWork: 1 << 18, workPerItem: inner * es) { range in
            var index = [Int](repeating: 0, count: r)
            var rem = range.lowerBound
            for k in stride(from: r - 2, through: 0, by: -1) {
                index[k] = rem % dims[k]
                rem /= dims[k]
            }
            var srcOff = offset(range.lowerBound, count: r - 1)
            var d = dst + range.lowerBound * inner * es
            for _ in range {
                copyRow(src + srcOff * es, stride: innerStride, count: inner, to: d, elementSize: es)
                d += inner * es
                // Odometer over the outer dimensions.
                var k = r - 2
                while k >= 0 {
                    index[k] += 1
                    srcOff += st[k]
                    if index[k] < dims[k] { break }
                    srcOff -= st[k] * dims[k]
                    index[k] = 0
                    k -= 1
                }
            }
        }
    }

    /// Rows `a0 ..< a1` of the plane `dst[a][j] = src[a + j·sb]` (j < b), in tiles of `tile`
    /// columns: each source column segment is read contiguously.
    @inline(__always)
    static func transposeTile<T>(_ src: UnsafeRawPointer, _ sb: Int, _ a0: Int, _ a1: Int, _ b: Int,
                                 _ dst: UnsafeMutableRawPointer, _ tile: Int, _: T.Type) {
        let size = MemoryLayout<T>.size
        let d = dst.assumingMemoryBound(to: T.self)   // owned storage: aligned
        if Int(bitPattern: src) % MemoryLayout<T>.alignment == 0 {
            let s = src.assumingMemoryBound(to: T.self)
            var j0 = 0
            while j0 < b {
                let j1 = min(j0 + tile, b)
                for i in a0..<a1 {
                    let dr = d + i * b
                    for j in j0..<j1 { dr[j] = s[i + j * sb] }
                }
                j0 = j1
            }
            return
        }
        // A borrowed range may be unaligned: read it with unaligned loads.
        var j0 = 0
        while j0 < b {
            let j1 = min(j0 + tile, b)
            for j in j0..<j1 {
                let col = src + j * sb * size
                for i in a0..<a1 {
                    dst.storeBytes(of: col.loadUnaligned(fromByteOffset: i * size, as: T.self), toByteOffset: (i * b + j) * size, as: T.self)
                }
            }
            j0 = j1
        }
    }

    /// Copies `count` elements read `stride` elements apart into contiguous `dst`.
    @inline(__always)
    static func copyRow(_ src: UnsafeRawPointer, stride: Int, count n: Int, to dst: UnsafeMutableRawPointer, elementSize es: Int) {
        if stride == 1 {
            dst.copyMemory(from: src, byteCount: n * es)
            return
        }
        switch es {
        case 1: copyRow(src, stride, n, dst, UInt8.self)
        case 2: copyRow(src, stride, n, dst, UInt16.self)
        case 4: copyRow(src, stride, n, dst, UInt32.self)
        case 8: copyRow(src, stride, n, dst, UInt64.self)
        default:
            for i in 0..<n { (dst + i * es).copyMemory(from: src + i * stride * es, byteCount: es) }
        }
    }

    @inline(__always)
    static func copyRow<T>(_ src: UnsafeRawPointer, _ stride: Int, _ n: Int, _ dst: UnsafeMutableRawPointer, _: T.Type) {
        let size = MemoryLayout<T>.size
        if stride == 0 {
            let v = src.loadUnaligned(as: T.self)
            for i in 0..<n { dst.storeBytes(of: v, toByteOffset: i * size, as: T.self) }
            return
        }
        for i in 0..<n {
            dst.storeBytes(of: src.loadUnaligned(fromByteOffset: i * stride * size, as: T.self), toByteOffset: i * size, as: T.self)
        }
    }

    // MARK: Index maps

    /// Reads `src` through one index map per axis: `out[i₀,…] = src[maps[0][i₀], …]`; where any
    /// map entry is −1 the element is `fill` (the bytes of one element, zero when nil).
    ///
    /// Trailing axes whose map is the identity form one contiguous run. The last other axis is
    /// cut into segments of consecutive source indices (or of fill), each moved with one
    /// `memcpy`; a map of mostly single entries (nearest upsampling) is walked with typed loads
    /// instead. An output row whose source row equals the previous one's (a repeated index on
    /// an outer axis) is copied from the row just written.
    public static func gather(_ src: Tensor, maps: [[Int]], fill: [UInt8]? = nil) throws -> Tensor {
        precondition(maps.count == src.rank, "one index map per axis")
        let es = try elementSize(src.dtype)
        let outShape = maps.map(\.count)
        var out = Tensor(uninitialized: src.dtype, shape: outShape)
        if out.count == 0 { return out }
        let pattern = fill ?? [UInt8](repeating: 0, count: es)
        precondition(pattern.count == es, "fill value has the wrong size")
        // The identity suffix becomes the contiguous inner run.
        var p = src.rank
        while p > 0, maps[p - 1].count == src.shape[p - 1], maps[p - 1].enumerated().allSatisfy({ $0.offset == $0.element }) { p -= 1 }
        let run = src.shape[p...].reduce(1, *) * es
        if p == 0 {
            out.withUnsafeMutableBytes { d in src.withUnsafeBytes { d.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: run) } }
            return out
        }
        let byteStrides = strides(src.shape).map { $0 * es }
        let last = maps[p - 1]
        let rowBytes = last.count * run
        // Segments of the last mapped axis: (source byte offset or −1 for fill, entries).
        var segments: [(offset: Int, count: Int)] = []
        for m in last {
            if let s = segments.last, (m < 0 && s.offset < 0) || (m >= 0 && s.offset >= 0 && s.offset + s.count * run == m * run) {
                segments[segments.count - 1].count += 1
            } else {
                segments.append((m < 0 ? -1 : m * run, 1))
            }
        }
        let elementLoop = [1, 2, 4, 8].contains(run) && !last.contains(-1) && segments.count * 2 > last.count
        let lastOffsets = last.map { $0 * run }
        // One row of fill, copied wherever fill is needed.
        let needsFill = last.contains(-1) || maps[..<(p - 1)].contains { $0.contains(-1) }
        var fillRow = [UInt8](repeating: 0, count: needsFill ? rowBytes : 0)
        if needsFill && pattern.contains(where: { $0 != 0 }) {
            fillRow.withUnsafeMutableBytes { fillRun($0.baseAddress!, byteCount: rowBytes, pattern: pattern) }
        }
        let outer = outShape[..<(p - 1)].reduce(1, *)
        src.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                fillRow.withUnsafeBytes { f in
                    let sp = s.baseAddress!, dst = d.baseAddress!, fp = f.baseAddress
                    Parallel.forRanges(count: outer, minimumWork: 1 << 18, workPerItem: rowBytes) { range in
                        var previous: Int?? = .none   // source offset of the previous row (nil: fill)
                        for row in range {
                            let dp = dst + row * rowBytes
                            // Offset of the outer axes, or nil when one of them is a fill position.
                            var rem = row, base: Int? = 0
                            for k in stride(from: p - 2, through: 0, by: -1) {
                                let m = maps[k][rem % outShape[k]]
                                rem /= outShape[k]
                                if m < 0 { base = nil; break }
                                base! += m * byteStrides[k]
                            }
                            defer { previous = .some(base) }
                            if let prev = previous, prev == base {
                                dp.copyMemory(from: dp - rowBytes, byteCount: rowBytes)
                                continue
                            }
                            guard let b = base else {
                                dp.copyMemory(from: fp!, byteCount: rowBytes)
                                continue
                            }
                            let rowSrc = sp + b
                            if elementLoop {
                                switch run {
                                case 1: gatherRow(rowSrc, lastOffsets, dp, UInt8.self)
                                case 2: gatherRow(rowSrc, lastOffsets, dp, UInt16.self)
                                case 4: gatherRow(rowSrc, lastOffsets, dp, UInt32.self)
                                default: gatherRow(rowSrc, lastOffsets, dp, UInt64.self)
                                }
                                continue
                            }
                            var o = dp
                            for seg in segments {
                                let n = seg.count * run
                                if seg.offset < 0 { o.copyMemory(from: fp!, byteCount: n) } else { o.copyMemory(from: rowSrc + seg.offset, byteCount: n) }
                                o += n
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `dst[j] = src[offsets[j]]` (byte offsets) for elements of type `T`.
    @inline(__always)
    static func gatherRow<T>(_ src: UnsafeRawPointer, _ offsets: [Int], _ dst: UnsafeMutableRawPointer, _: T.Type) {
        let size = MemoryLayout<T>.size
        offsets.withUnsafeBufferPointer { o in
            for j in 0..<o.count { dst.storeBytes(of: src.loadUnaligned(fromByteOffset: o[j], as: T.self), toByteOffset: j * size, as: T.self) }
        }
    }

    /// Writes the element `pattern` repeatedly over `byteCount` bytes.
    static func fillRun(_ p: UnsafeMutableRawPointer, byteCount n: Int, pattern: [UInt8]) {
        if pattern.allSatisfy({ $0 == 0 }) {
            p.initializeMemory(as: UInt8.self, repeating: 0, count: n)
            return
        }
        let es = pattern.count
        pattern.withUnsafeBytes { (p as UnsafeMutableRawPointer).copyMemory(from: $0.baseAddress!, byteCount: min(es, n)) }
        // Double the filled prefix until the run is full.
        var filled = min(es, n)
        while filled < n {
            let c = min(filled, n - filled)
            (p + filled).copyMemory(from: p, byteCount: c)
            filled += c
        }
    }

    // MARK: Concatenation and splitting

    /// Joins tensors of one dtype along `axis` (all other dimensions equal; checked by the caller).
    public static func concat(_ parts: [Tensor], axis: Int) throws -> Tensor {
        let first = parts[0]
        let es = try elementSize(first.dtype)
        var shape = first.shape
        shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        var out = Tensor(uninitialized: first.dtype, shape: shape)
        if out.count == 0 { return out }
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *) * es
        out.withUnsafeMutableBytes { d in
            var dp = d.baseAddress!
            // The storages stay alive with `parts` for the whole call.
            let sources: [(UnsafeRawPointer, Int)] = parts.map { (UnsafeRawPointer($0.storage.base), $0.shape[axis] * inner) }
            for o in 0..<outer {
                for (sp, chunk) in sources where chunk > 0 {
                    dp.copyMemory(from: sp + o * chunk, byteCount: chunk)
                    dp += chunk
                }
            }
        }
        withExtendedLifetime(parts) {}
        return out
    }

    /// Entries `start ..< start + length` of `src` along `axis`.
    public static func narrow(_ src: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor {
        let es = try elementSize(src.dtype)
        if start == 0 && length == src.shape[axis] { return src }
        var shape = src.shape
        shape[axis] = length
        var out = Tensor(uninitialized: src.dtype, shape: shape)
        if out.count == 0 { return out }
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *) * es
        let dim = src.shape[axis]
        src.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                for o in 0..<outer {
                    (d.baseAddress! + o * length * inner).copyMemory(from: s.baseAddress! + (o * dim + start) * inner, byteCount: length * inner)
                }
            }
        }
        return out
    }

    /// Entries of `src` at `indices` along `axis` (ONNX Gather): the output shape is
    /// `shape[..<axis] + [indices.count] + shape[(axis+1)...]`; indices must be in range.
    public static func take(_ src: Tensor, indices: [Int], axis: Int) throws -> Tensor {
        let es = try elementSize(src.dtype)
        var shape = src.shape
        shape[axis] = indices.count
        var out = Tensor(uninitialized: src.dtype, shape: shape)
        if out.count == 0 { return out }
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *) * es
        let dim = src.shape[axis]
        src.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                var dp = d.baseAddress!
                let sp = s.baseAddress!
                for o in 0..<outer {
                    let base = sp + o * dim * inner
                    if inner == 4 {
                        for i in indices { dp.storeBytes(of: (base + i * 4).loadUnaligned(as: UInt32.self), as: UInt32.self); dp += 4 }
                    } else {
                        for i in indices { dp.copyMemory(from: base + i * inner, byteCount: inner); dp += inner }
                    }
                }
            }
        }
        return out
    }

    /// ONNX GatherElements: `out[…, i_axis, …] = src[…, indices[…, i_axis, …], …]`, where the
    /// output has the shape of `indices` (normalized to `0 ..< src.shape[axis]`).
    public static func gatherElements(_ src: Tensor, indices: [Int], indexShape: [Int], axis: Int) throws -> Tensor {
        let es = try elementSize(src.dtype)
        var out = Tensor(uninitialized: src.dtype, shape: indexShape)
        if out.count == 0 { return out }
        let srcStrides = strides(src.shape)
        let r = indexShape.count
        src.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                var index = [Int](repeating: 0, count: r)
                var base = 0   // source offset of `index` with the axis coordinate left out
                for (n, idx) in indices.enumerated() {
                    let off = base + idx * srcStrides[axis]
                    (d.baseAddress! + n * es).copyMemory(from: s.baseAddress! + off * es, byteCount: es)
                    var k = r - 1
                    while k >= 0 {
                        index[k] += 1
                        if k != axis { base += srcStrides[k] }
                        if index[k] < indexShape[k] { break }
                        if k != axis { base -= srcStrides[k] * indexShape[k] }
                        index[k] = 0
                        k -= 1
                    }
                }
            }
        }
        return out
    }
}
