import ModelIR
import TensorCore

// Indexing operators: Gather, GatherElements, ScatterND, NonZero, TopK.

extension StandardOps {
    static func registerIndexOps(_ r: OpRegistry) {
        // Gather-1/11/13: out = data[..., indices, ...] along axis; negative indices count from
        // the back (Gather-11).
        r.register("Gather", since: 1, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0), idx = try ctx.required(inputs, 1)
            let (axis, shape) = try IndexRules.gather(TensorInfo(x), TensorInfo(idx), ctx)
            let indices = try IndexRules.indices(idx, length: x.shape[axis], ctx)
            return [try Movement.take(x, indices: indices, axis: axis).reshaped(shape)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0), idx = try ctx.required(inputs, 1)
            return [TensorInfo(x.dtype, try IndexRules.gather(x, idx, ctx).1)]
        })

        // GatherElements-11/13: out[i…] = data[i… with i_axis replaced by indices[i…]].
        r.register("GatherElements", since: 11, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0), idx = try ctx.required(inputs, 1)
            let axis = try IndexRules.gatherElements(TensorInfo(x), TensorInfo(idx), ctx)
            let indices = try IndexRules.indices(idx, length: x.shape[axis], ctx)
            return [try Movement.gatherElements(x, indices: indices, indexShape: idx.shape, axis: axis)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0), idx = try ctx.required(inputs, 1)
            _ = try IndexRules.gatherElements(x, idx, ctx)
            return [TensorInfo(x.dtype, idx.shape)]
        })

        // ScatterND-11 (replace), -16 (reduction add/mul), -18 (max/min).
        r.register("ScatterND", since: 11, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0), idx = try ctx.required(inputs, 1), upd = try ctx.required(inputs, 2)
            return [try IndexRules.scatterND(x, idx, upd, ctx)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [x]
        })

        // NonZero-9/13: the indices of the nonzero elements, [rank, count] int64 in row-major order.
        r.register("NonZero", since: 9, kernel: { inputs, ctx in
            [try IndexRules.nonZero(ctx.required(inputs, 0), ctx)]
        }, infer: { _, values, ctx in
            guard let v = values.first ?? nil else {
                throw ctx.error("the output shape depends on the input's contents, which are not known before running")
            }
            return [TensorInfo(try IndexRules.nonZero(v, ctx))]
        })

        // TopK-1 (k attribute), TopK-10 (k input), TopK-11 (largest, sorted, negative axis).
        for since in [1, 10] {
            r.register("TopK", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let k = try since < 10 ? Int(ctx.node.int("k") ?? -1) : IndexRules.k(ctx.required(inputs, 1), ctx)
                return try IndexRules.topK(x, k: k, ctx)
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let k = try since < 10 ? Int(ctx.node.int("k") ?? -1) : IndexRules.k(TensorOperands.known(values, 1, "input 'K'", ctx), ctx)
                let (axis, _) = try IndexRules.topKAxis(x.shape, k: k, ctx)
                var s = x.shape
                s[axis] = k
                return [TensorInfo(x.dtype, s), TensorInfo(.int64, s)]
            })
        }
    }
}

/// Shapes and kernels of the indexing operators.
private enum IndexRules {
    static func gather(_ x: TensorInfo, _ idx: TensorInfo, _ ctx: KernelContext) throws -> (Int, [Int]) {
        guard !x.shape.isEmpty else { throw ctx.error("cannot gather from a scalar") }
        guard idx.dtype == .int64 || idx.dtype == .int32 else { throw ctx.error("indices must be int64 or int32, got \(idx.dtype)") }
        let axis = try TensorOperands.axis(ctx.node.int("axis") ?? 0, rank: x.shape.count, ctx)
        return (axis, Array(x.shape[..<axis]) + idx.shape + Array(x.shape[(axis + 1)...]))
    }

    /// Indices normalized into `0 ..< length` (negative ones count from the back).
    static func indices(_ t: Tensor, length: Int, _ ctx: KernelContext) throws -> [Int] {
        try TensorOperands.ints(t, "indices", ctx).map { i in
            let j = i < 0 ? i + length : i
            guard j >= 0 && j < length else { throw ctx.error("index \(i) is out of range for an axis of length \(length)") }
            return j
        }
    }

    static func gatherElements(_ x: TensorInfo, _ idx: TensorInfo, _ ctx: KernelContext) throws -> Int {
        guard idx.dtype == .int64 || idx.dtype == .int32 else { throw ctx.error("indices must be int64 or int32, got \(idx.dtype)") }
        guard !x.shape.isEmpty, x.shape.count == idx.shape.count else {
            throw ctx.error("indices of shape \(idx.shape) must have the rank of the data \(x.shape)")
        }
        let axis = try TensorOperands.axis(ctx.node.int("axis") ?? 0, rank: x.shape.count, ctx)
        for k in 0..<x.shape.count where k != axis && idx.shape[k] > x.shape[k] {
            throw ctx.error("indices of shape \(idx.shape) exceed the data \(x.shape) on axis \(k)")
        }
        return axis
    }

    /// ScatterND (ONNX ScatterND-18): out = data, then for each index tuple `indices[i…, :]` the
    /// slice `out[indices[i…]]` becomes `f(out[…], updates[i…])` with f = replace, +, ×, max or
    /// min. Duplicate index tuples apply in order.
    static func scatterND(_ x: Tensor, _ idx: Tensor, _ upd: Tensor, _ ctx: KernelContext) throws -> Tensor {
        try TensorOperands.checkMovable(x.dtype, ctx)
        guard upd.dtype == x.dtype else { throw ctx.error("updates are \(upd.dtype) but the data is \(x.dtype)") }
        guard let q = idx.shape.last, idx.rank >= 1, q <= x.rank else {
            throw ctx.error("indices of shape \(idx.shape) must end in a dimension ≤ the data's rank \(x.rank)")
        }
        let lead = Array(idx.shape.dropLast())
        guard upd.shape == lead + Array(x.shape[q...]) else {
            throw ctx.error("updates of shape \(upd.shape) do not match indices \(idx.shape) and data \(x.shape) (expected \(lead + Array(x.shape[q...])))")
        }
        let reduction = ctx.node.string("reduction") ?? "none"
        guard ["none", "add", "mul", "max", "min"].contains(reduction) else { throw ctx.error("reduction '\(reduction)' is not none, add, mul, max or min") }
        let raw = try TensorOperands.ints(idx, "indices", ctx)
        let slice = x.shape[q...].reduce(1, *)
        let strides = Movement.strides(x.shape)
        let tuples = lead.reduce(1, *)
        var offsets = [Int](repeating: 0, count: tuples)
        for t in 0..<tuples {
            var off = 0
            for j in 0..<q {
                let i = raw[t * q + j], d = x.shape[j]
                let n = i < 0 ? i + d : i
                guard n >= 0 && n < d else { throw ctx.error("index \(i) is out of range for axis \(j) of length \(d)") }
                off += n * strides[j]
            }
            offsets[t] = off
        }
        if reduction == "none" {
            var out = x
            let es = x.dtype.size
            out.withUnsafeMutableBytes { d in
                upd.withUnsafeBytes { u in
                    for t in 0..<tuples {
                        (d.baseAddress! + offsets[t] * es).copyMemory(from: u.baseAddress! + t * slice * es, byteCount: slice * es)
                    }
                }
            }
            return out
        }
        func combine<T: Numeric & Comparable>(_: T.Type, _ data: Tensor, _ updates: Tensor) -> Tensor {
            var out = data
            let f: (T, T) -> T
            switch reduction {
            case "add": f = { $0 + $1 }
            case "mul": f = { $0 * $1 }
            case "max": f = { Swift.max($0, $1) }
            default: f = { Swift.min($0, $1) }
            }
            out.withUnsafeMutableBufferPointer(as: T.self) { d in
                updates.withUnsafeBufferPointer(as: T.self) { u in
                    for t in 0..<tuples {
                        for i in 0..<slice { d[offsets[t] + i] = f(d[offsets[t] + i], u[t * slice + i]) }
                    }
                }
            }
            return out
        }
        switch x.dtype {
        case .float32: return combine(Float.self, x, upd)
        case .float64: return combine(Double.self, x, upd)
        case .float16, .bfloat16:
            return combine(Float.self, x.converted(to: .float32), upd.converted(to: .float32)).converted(to: x.dtype)
        case .int8: return combine(Int8.self, x, upd)
        case .uint8: return combine(UInt8.self, x, upd)
        case .int16: return combine(Int16.self, x, upd)
        case .uint16: return combine(UInt16.self, x, upd)
        case .int32: return combine(Int32.self, x, upd)
        case .uint32: return combine(UInt32.self, x, upd)
        case .int64: return combine(Int64.self, x, upd)
        case .uint64: return combine(UInt64.self, x, upd)
        default: throw ctx.error("reduction '\(reduction)' is not supported for \(x.dtype)")
        }
    }

    /// NonZero: an element is nonzero when any bit other than a float's sign bit is set (so −0.0
    /// is zero and NaN is nonzero). A scalar is treated as a 1-element vector, as ONNX Runtime does.
    static func nonZero(_ x: Tensor, _ ctx: KernelContext) throws -> Tensor {
        let es = try Movement.elementSize(x.dtype)
        let shape = x.rank == 0 ? [1] : x.shape
        let n = x.count
        // Mask applied to each element's last (most significant, little-endian) byte.
        let topMask: UInt8 = x.dtype.isFloatingPoint ? 0x7f : 0xff
        var hits: [Int] = []
        x.withUnsafeBytes { b in
            let p = b.baseAddress!.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n {
                let e = p + i * es
                var nz = e[es - 1] & topMask != 0
                var j = 0
                while !nz && j < es - 1 { nz = e[j] != 0; j += 1 }
                if nz { hits.append(i) }
            }
        }
        let r = shape.count
        let strides = Movement.strides(shape)
        var out = [Int64](repeating: 0, count: r * hits.count)
        for (c, flat) in hits.enumerated() {
            var rem = flat
            for k in 0..<r {
                out[k * hits.count + c] = Int64(rem / strides[k])
                rem %= strides[k]
            }
        }
        return Tensor(shape: [r, hits.count], scalars: out)
    }

    static func k(_ t: Tensor, _ ctx: KernelContext) throws -> Int {
        let v = try TensorOperands.ints(t, "K", ctx)
        guard v.count == 1 else { throw ctx.error("K must hold one value, got \(v.count)") }
        return v[0]
    }

    static func topKAxis(_ shape: [Int], k: Int, _ ctx: KernelContext) throws -> (Int, Int) {
        guard !shape.isEmpty else { throw ctx.error("cannot take the top K of a scalar") }
        let axis = try TensorOperands.axis(ctx.node.int("axis") ?? -1, rank: shape.count, ctx)
        guard k >= 0 && k <= shape[axis] else { throw ctx.error("K = \(k) is outside 0...\(shape[axis]) (axis \(axis) of \(shape))") }
        return (axis, shape[axis])
    }

    /// TopK: the k largest (or smallest) entries along the axis and their indices, in sorted
    /// order; equal values keep the lower index first (ONNX TopK-11). NaN ranks above every
    /// number, as in NumPy's sort.
    static func topK(_ x: Tensor, k: Int, _ ctx: KernelContext) throws -> [Tensor] {
        let (axis, n) = try topKAxis(x.shape, k: k, ctx)
        let largest = ctx.opset < 11 || (ctx.node.int("largest") ?? 1) != 0
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        var shape = x.shape
        shape[axis] = k
        var order = [Int](repeating: 0, count: outer * inner * k)   // source positions in output order
        func select<T: TopKKey>(_ p: UnsafeBufferPointer<T>) {
            var idx = [Int](repeating: 0, count: n)
            var best: [Int] = []
            best.reserveCapacity(k + 1)
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * n * inner + i
                    // Strict total order: NaN above numbers; ties by index.
                    @inline(__always) func before(_ a: Int, _ b: Int) -> Bool {
                        let va = p[base + a * inner], vb = p[base + b * inner]
                        if va.isUnordered || vb.isUnordered {
                            let na = va.isUnordered, nb = vb.isUnordered
                            return na != nb ? (largest ? na : nb) : a < b
                        }
                        if va != vb { return largest ? va > vb : va < vb }
                        return a < b
                    }
                    if k <= 16 && k < n / 4 {
                        // Small k: keep a sorted window of the best k seen so far.
                        best.removeAll(keepingCapacity: true)
                        for j in 0..<n where k > 0 {
                            if best.count == k, !before(j, best[k - 1]) { continue }
                            var lo = 0, hi = best.count
                            while lo < hi { let mid = (lo + hi) / 2; if before(best[mid], j) { lo = mid + 1 } else { hi = mid } }
                            best.insert(j, at: lo)
                            if best.count > k { best.removeLast() }
                        }
                        for (t, j) in best.enumerated() { order[(o * k + t) * inner + i] = j }
                    } else {
                        for j in 0..<n { idx[j] = j }
                        idx.sort(by: before)
                        for t in 0..<k { order[(o * k + t) * inner + i] = idx[t] }
                    }
                }
            }
        }
        func typed<T: TopKKey>(_: T.Type) { x.withUnsafeBufferPointer(as: T.self) { select($0) } }
        switch x.dtype {
        case .float32: typed(Float.self)
        case .float64: typed(Double.self)
        case .float16, .bfloat16: x.floatValues().withUnsafeBufferPointer { select($0) }
        case .int8: typed(Int8.self)
        case .uint8: typed(UInt8.self)
        case .int16: typed(Int16.self)
        case .uint16: typed(UInt16.self)
        case .int32: typed(Int32.self)
        case .uint32: typed(UInt32.self)
        case .int64: typed(Int64.self)
        case .uint64: typed(UInt64.self)
        default: throw ctx.error("TopK of \(x.dtype) tensors is not supported")
        }
        // Values are copied from their source positions, so they keep their exact bits.
        var flat = [Int](repeating: 0, count: order.count)
        for o in 0..<outer { for t in 0..<k { for i in 0..<inner {
            let p = (o * k + t) * inner + i
            flat[p] = (o * n + order[p]) * inner + i
        } } }
        let values = try Movement.take(x.reshaped([x.count]), indices: flat, axis: 0).reshaped(shape)
        return [values, Tensor(shape: shape, scalars: order.map { Int64($0) })]
    }
}

/// Element types TopK ranks: comparable, with NaN ("unordered") ranking above every number.
private protocol TopKKey: Comparable {
    var isUnordered: Bool { get }
}
extension Float: TopKKey { fileprivate var isUnordered: Bool { isNaN } }
extension Double: TopKKey { fileprivate var isUnordered: Bool { isNaN } }
extension Int8: TopKKey { fileprivate var isUnordered: Bool { false } }
extension UInt8: TopKKey { fileprivate var isUnordered: Bool { false } }
extension Int16: TopKKey { fileprivate var isUnordered: Bool { false } }
extension UInt16: TopKKey { fileprivate var isUnordered: Bool { false } }
extension Int32: TopKKey { fileprivate var isUnordered: Bool { false } }
extension UInt32: TopKKey { fileprivate var isUnordered: Bool { false } }
extension Int64: TopKKey { fileprivate var isUnordered: Bool { false } }
extension UInt64: TopKKey { fileprivate var isUnordered: Bool { false } }
