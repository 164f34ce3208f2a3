/// NumPy-style multidirectional broadcasting (ONNX "Broadcasting in ONNX", docs/Broadcasting.md).
///
/// Shapes are aligned at their trailing dimensions; two dimensions are compatible when they are
/// equal or one of them is 1, and the result takes the larger (a 0 against a 1 gives 0). A
/// missing leading dimension counts as 1.
public enum Broadcast {
    /// The broadcast shape of `shapes`, or nil when two of them are incompatible.
    public static func shape(_ shapes: [[Int]]) -> [Int]? {
        let rank = shapes.map(\.count).max() ?? 0
        var out = [Int](repeating: 1, count: rank)
        for s in shapes {
            let pad = rank - s.count
            for (i, d) in s.enumerated() {
                let o = out[pad + i]
                if o == d || d == 1 { continue }
                if o == 1 { out[pad + i] = d } else { return nil }
            }
        }
        return out
    }

    public static func shape(_ a: [Int], _ b: [Int]) -> [Int]? { shape([a, b]) }

    /// The broadcast shape of `shapes`, or an error naming them.
    public static func checkedShape(_ shapes: [[Int]]) throws -> [Int] {
        guard let s = shape(shapes) else { throw BroadcastError(shapes: shapes) }
        return s
    }

    /// Whether `shape` broadcasts to `target` in one direction only (ONNX "unidirectional
    /// broadcasting", used by PRelu's slope and Expand).
    public static func isUnidirectional(_ shape: [Int], to target: [Int]) -> Bool {
        guard shape.count <= target.count else { return false }
        let pad = target.count - shape.count
        for (i, d) in shape.enumerated() where d != 1 && d != target[pad + i] { return false }
        return true
    }

    /// Element strides of a row-major `shape` seen through the broadcast `outShape`: 0 on a
    /// broadcast (or missing) dimension.
    public static func strides(of shape: [Int], in outShape: [Int]) -> [Int] {
        let pad = outShape.count - shape.count
        var strides = [Int](repeating: 0, count: outShape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[pad + i] = shape[i] == 1 ? 0 : s
            s *= shape[i]
        }
        return strides
    }
}

/// Shapes that do not broadcast.
public struct BroadcastError: Error, CustomStringConvertible, Equatable {
    public let shapes: [[Int]]
    public init(shapes: [[Int]]) { self.shapes = shapes }
    public var description: String {
        "shapes " + shapes.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: " and ")
            + " cannot be broadcast together"
    }
}

/// The iteration of an elementwise operation over up to three broadcast operands.
///
/// The output is walked in row-major order as a sequence of rows: adjacent dimensions along which
/// every operand is contiguous (or every operand is broadcast the same way) are merged first, so
/// a same-shape operation is one row of `count` elements and `x[N,C,H,W] * s[1,C,1,1]` is
/// N·C rows of H·W elements in which `s` is constant. Along a row each operand's step is 1 or 0.
/// Any range of output elements can be walked on its own (`segments(_:)`), so the work splits
/// across threads.
public struct BroadcastLoop: Sendable {
    public let outShape: [Int]
    public let count: Int
    /// Merged output dimensions (innermost last), at least one.
    @usableFromInline let dims: [Int]
    /// Element strides of operands 0, 1, 2 along each merged dimension (0 where broadcast or
    /// where the operand does not exist).
    @usableFromInline let s0: [Int], s1: [Int], s2: [Int]

    /// Plans the loop for up to three operands of `shapes` broadcast to `outShape` (which must
    /// be their broadcast shape, or a shape each of them broadcasts to).
    public init(outShape: [Int], operands shapes: [[Int]]) {
        precondition(shapes.count <= 3, "at most three operands")
        self.outShape = outShape
        count = outShape.reduce(1, *)
        let all = shapes.map { Broadcast.strides(of: $0, in: outShape) }
        // Drop size-1 output dimensions, then merge a dimension into the one outside it when
        // every operand's stride is continuous across the pair.
        var dims: [Int] = []
        var strides: [[Int]] = Array(repeating: [], count: 3)
        func stride(_ k: Int, _ d: Int) -> Int { k < all.count ? all[k][d] : 0 }
        for d in 0..<outShape.count where outShape[d] != 1 {
            if let last = dims.last, (0..<3).allSatisfy({ k in strides[k].last! == stride(k, d) * outShape[d] }) {
                dims[dims.count - 1] = last * outShape[d]
                for k in 0..<3 { strides[k][strides[k].count - 1] = stride(k, d) }
                continue
            }
            dims.append(outShape[d])
            for k in 0..<3 { strides[k].append(stride(k, d)) }
        }
        if dims.isEmpty {
            dims = [1]
            strides = [[0], [0], [0]]
        }
        self.dims = dims
        s0 = strides[0]; s1 = strides[1]; s2 = strides[2]
    }

    /// Elements per row (the merged innermost dimension).
    public var rowLength: Int { dims[dims.count - 1] }
    /// Steps (0 or 1) of operands 0, 1, 2 along a row.
    @inlinable public var steps: (Int, Int, Int) { (s0[s0.count - 1], s1[s1.count - 1], s2[s2.count - 1]) }

    /// A run of `n` consecutive output elements from `out` within one row; operand k's first
    /// element is at `offsets.k` and it advances by `steps.k` per element.
    public struct Segment {
        public var out: Int
        public var offsets: (Int, Int, Int)
        public var n: Int
        @inlinable init(out: Int, offsets: (Int, Int, Int), n: Int) { self.out = out; self.offsets = offsets; self.n = n }
    }

    /// The segments covering the output elements `range`, in order.
    @inlinable
    public func segments(_ range: Range<Int>) -> Segments { Segments(self, range) }

    public struct Segments: IteratorProtocol {
        @usableFromInline let loop: BroadcastLoop
        @usableFromInline var index: [Int]
        @usableFromInline var offsets: (Int, Int, Int) = (0, 0, 0)
        @usableFromInline var position: Int
        @usableFromInline var remaining: Int
        @usableFromInline var inRow: Int

        @inlinable
        init(_ loop: BroadcastLoop, _ range: Range<Int>) {
            self.loop = loop
            let rank = loop.dims.count, n = loop.dims[rank - 1]
            position = range.lowerBound
            remaining = range.count
            inRow = n == 0 ? 0 : range.lowerBound % n
            index = [Int](repeating: 0, count: rank)
            var row = n == 0 ? 0 : range.lowerBound / n
            var d = rank - 2
            while d >= 0 {
                let i = row % loop.dims[d]
                row /= loop.dims[d]
                index[d] = i
                offsets.0 += i * loop.s0[d]; offsets.1 += i * loop.s1[d]; offsets.2 += i * loop.s2[d]
                d -= 1
            }
        }

        @inlinable
        public mutating func next() -> Segment? {
            guard remaining > 0 else { return nil }
            let rank = loop.dims.count, n = loop.dims[rank - 1]
            let take = Swift.min(n - inRow, remaining)
            let st = loop.steps
            let seg = Segment(out: position, offsets: (offsets.0 + inRow * st.0, offsets.1 + inRow * st.1, offsets.2 + inRow * st.2), n: take)
            position += take
            remaining -= take
            inRow += take
            if inRow == n {
                inRow = 0
                var d = rank - 2
                while d >= 0 {
                    index[d] += 1
                    offsets.0 += loop.s0[d]; offsets.1 += loop.s1[d]; offsets.2 += loop.s2[d]
                    if index[d] < loop.dims[d] { break }
                    offsets.0 -= loop.s0[d] * loop.dims[d]; offsets.1 -= loop.s1[d] * loop.dims[d]; offsets.2 -= loop.s2[d] * loop.dims[d]
                    index[d] = 0
                    d -= 1
                }
            }
            return seg
        }
    }

    /// Calls `body(outOffset, offsets, steps, n)` for each row of `n` output elements, where
    /// `offsets.k` is operand k's first element and `steps.k` (0 or 1) its step along the row.
    @inlinable
    public func forEachRow(_ body: (_ out: Int, _ offsets: (Int, Int, Int), _ steps: (Int, Int, Int), _ n: Int) -> Void) {
        var it = segments(0..<count)
        let st = steps
        while let s = it.next() { body(s.out, s.offsets, st, s.n) }
    }
}
