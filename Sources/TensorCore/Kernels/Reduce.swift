import Foundation

/// A row-major tensor seen as `[outer, length, inner]` around a contiguous block of axes: the
/// elements one reduction (or one softmax, one cumulative sum) reads form a *lane* of `length`
/// elements spaced `inner` apart. Lanes are numbered in the order of the remaining axes, so lane
/// k's result is element k of a reduction's output.
public struct LaneLayout: Equatable, Sendable {
    public let outer: Int
    public let length: Int
    public let inner: Int

    public init(outer: Int, length: Int, inner: Int) {
        self.outer = outer
        self.length = length
        self.inner = inner
    }

    /// The layout of `shape` around the axes `block` (a contiguous range of axes).
    public init(shape: [Int], block: Range<Int>) {
        outer = shape[..<block.lowerBound].reduce(1, *)
        length = shape[block].reduce(1, *)
        inner = shape[block.upperBound...].reduce(1, *)
    }

    public var laneCount: Int { outer * inner }
    /// Element distance between neighbours in a lane.
    public var stride: Int { inner }

    /// Offset of lane k's first element.
    @inlinable
    public func start(_ lane: Int) -> Int {
        inner == 1 ? lane * length : (lane / inner) * length * inner + lane % inner
    }
}

/// Shape arithmetic and layout for reductions (ONNX Reduce*, ArgMax/ArgMin).
public enum Reduce {
    /// The output shape of reducing `axes` (normalized, any order) of `shape`: each reduced axis
    /// becomes 1 with `keepDims`, or is removed.
    public static func shape(_ shape: [Int], axes: [Int], keepDims: Bool) -> [Int] {
        let set = Set(axes)
        var out: [Int] = []
        for (i, d) in shape.enumerated() {
            if set.contains(i) { if keepDims { out.append(1) } } else { out.append(d) }
        }
        return out
    }

    /// `x` arranged so that `axes` (normalized to 0..<rank, sorted, unique) form one contiguous
    /// block, with its lane layout. Already contiguous axes cost nothing; otherwise the kept axes
    /// are moved in front of the reduced ones (one transposing copy).
    public static func lanes(_ x: Tensor, axes: [Int]) throws -> (Tensor, LaneLayout) {
        let sorted = Array(Set(axes)).sorted()
        guard let first = sorted.first, let last = sorted.last else {
            return (x, LaneLayout(outer: x.count, length: 1, inner: 1))
        }
        if last - first + 1 == sorted.count {
            return (x, LaneLayout(shape: x.shape, block: first..<(last + 1)))
        }
        let kept = (0..<x.rank).filter { !sorted.contains($0) }
        let t = try Movement.transpose(x, perm: kept + sorted)
        return (t, LaneLayout(shape: t.shape, block: kept.count..<x.rank))
    }
}

extension Reduce {
    /// Σ f(p[r·stride]) for r in 0..<count, accumulated in float64. A contiguous lane uses four
    /// independent partial sums, which breaks the add-latency chain (and lets the compiler pair
    /// them into vector adds); the order of additions differs from a sequential loop by no more
    /// than float64 rounding, far below float32 resolution.
    @inlinable
    public static func sum<T: BinaryFloatingPoint>(_ p: UnsafePointer<T>, count n: Int, stride s: Int, _ f: (Double) -> Double) -> Double {
        if s != 1 {
            var acc = 0.0
            for r in 0..<n { acc += f(Double(p[r * s])) }
            return acc
        }
        var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
        var r = 0
        while r + 4 <= n {
            a0 += f(Double(p[r])); a1 += f(Double(p[r + 1])); a2 += f(Double(p[r + 2])); a3 += f(Double(p[r + 3]))
            r += 4
        }
        while r < n { a0 += f(Double(p[r])); r += 1 }
        return (a0 + a1) + (a2 + a3)
    }
}

extension Tensor {
    /// Reduces `axes` (normalized, unique) with `lane(pointer, length, stride)`, which returns
    /// the result of one lane. The result has `Reduce.shape(shape, axes:keepDims:)`.
    @inlinable
    public func reducingLanes<T, R>(axes: [Int], keepDims: Bool, _: T.Type, into dtype: DType, _: R.Type,
                                    _ lane: (UnsafePointer<T>, _ length: Int, _ stride: Int) -> R) throws -> Tensor {
        let (src, layout) = try Reduce.lanes(self, axes: axes)
        var out = Tensor(uninitialized: dtype, shape: Reduce.shape(shape, axes: axes, keepDims: keepDims))
        src.withUnsafeBufferPointer(as: T.self) { ps in
            out.withUnsafeMutableBufferPointer(as: R.self) { po in
                let s = ps.baseAddress!, o = po.baseAddress!
                Parallel.forRanges(count: layout.laneCount, workPerItem: layout.length) { range in
                    for k in range { o[k] = lane(s + layout.start(k), layout.length, layout.stride) }
                }
            }
        }
        return out
    }

    /// A tensor of this shape in which every lane along the contiguous axes `block` is written
    /// by `lane(input, output, length, stride)` (Softmax, LogSoftmax, CumSum).
    @inlinable
    public func transformingLanes<T, R>(block: Range<Int>, _: T.Type, into dtype: DType, _: R.Type,
                                        _ lane: (UnsafePointer<T>, UnsafeMutablePointer<R>, _ length: Int, _ stride: Int) -> Void) -> Tensor {
        let layout = LaneLayout(shape: shape, block: block)
        var out = Tensor(uninitialized: dtype, shape: shape)
        if count == 0 { return out }
        withUnsafeBufferPointer(as: T.self) { ps in
            out.withUnsafeMutableBufferPointer(as: R.self) { po in
                let s = ps.baseAddress!, o = po.baseAddress!
                Parallel.forRanges(count: layout.laneCount, workPerItem: layout.length * 4) { range in
                    for k in range {
                        let at = layout.start(k)
                        lane(s + at, o + at, layout.length, layout.stride)
                    }
                }
            }
        }
        return out
    }
}
