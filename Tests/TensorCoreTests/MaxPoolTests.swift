import XCTest
@testable import TensorCore

/// Max pooling: the row-then-column path (`Pooling.maxSeparable`, SPP's large stride-1 windows)
/// and the tap-by-tap loops against a reference written here from the ONNX definition (the
/// first greatest non-NaN tap in bounds, rows then columns; the type's lowest value where there
/// is none), bit for bit: NaN inputs, +0 and −0 in one window, padding on every side, strides,
/// dilations, float32, uint8 and int8.
final class MaxPoolTests: XCTestCase {
    private var savedSeparable = true, savedThreads = 1
    override func setUp() { savedSeparable = Pooling.separableMax; savedThreads = Parallel.threads }
    override func tearDown() { Pooling.separableMax = savedSeparable; Parallel.setThreads(savedThreads) }

    struct Case {
        let h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr: Int
        /// ceil_mode: one more output where the last window starts inside the padded input.
        var ceil = false
        var oh: Int { extent(h, pt, pb, kh, sh, dh) }
        var ow: Int { extent(w, pl, pr, kw, sw, dw) }
        func extent(_ n: Int, _ begin: Int, _ end: Int, _ k: Int, _ s: Int, _ d: Int) -> Int {
            let span = n + begin + end - ((k - 1) * d + 1)
            guard ceil else { return span / s + 1 }
            let out = (span + s - 1) / s + 1
            return (out - 1) * s >= n + begin ? out - 1 : out   // no window starting in the end padding
        }
        var geometry: WindowGeometry {
            WindowGeometry(input: [h, w], kernel: [kh, kw], strides: [sh, sw], dilations: [dh, dw], padsBegin: [pt, pl],
                           padsEnd: [pb, pr], output: [oh, ow])
        }
    }

    static let cases: [Case] = [
        // YOLOX / YOLOv5 SPP: 13×13 planes, windows 5, 9 and 13, stride 1, "same" padding
        Case(h: 13, w: 13, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(h: 13, w: 13, kh: 9, kw: 9, sh: 1, sw: 1, dh: 1, dw: 1, pt: 4, pl: 4, pb: 4, pr: 4),
        Case(h: 13, w: 13, kh: 13, kw: 13, sh: 1, sw: 1, dh: 1, dw: 1, pt: 6, pl: 6, pb: 6, pr: 6),
        // uneven: rectangular plane and window, asymmetric padding, stride and dilation
        Case(h: 11, w: 17, kh: 7, kw: 4, sh: 1, sw: 2, dh: 1, dw: 2, pt: 3, pl: 1, pb: 0, pr: 3),
        Case(h: 20, w: 9, kh: 6, kw: 6, sh: 2, sw: 1, dh: 2, dw: 1, pt: 5, pl: 0, pb: 4, pr: 5),
        // ceil_mode: the last row and column of windows run past the end padding
        Case(h: 14, w: 12, kh: 5, kw: 4, sh: 2, sw: 3, dh: 1, dw: 1, pt: 2, pl: 1, pb: 2, pr: 1, ceil: true),
        // ResNet's 3×3 stride 2 (the loops keep it)
        Case(h: 16, w: 16, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
    ]

    /// The ONNX definition, tap by tap.
    static func reference<T: Comparable>(_ x: [T], planes: Int, _ c: Case, lowest: T) -> [T] {
        var y: [T] = []
        for p in 0..<planes {
            for o in 0..<c.oh {
                for q in 0..<c.ow {
                    var best: T? = nil
                    for a in 0..<c.kh {
                        for b in 0..<c.kw {
                            let i = o * c.sh - c.pt + a * c.dh, j = q * c.sw - c.pl + b * c.dw
                            guard i >= 0, i < c.h, j >= 0, j < c.w else { continue }
                            let v = x[(p * c.h + i) * c.w + j]
                            if let f = v as? Float, f.isNaN { continue }
                            if best == nil || v > best! { best = v }
                        }
                    }
                    y.append(best ?? lowest)
                }
            }
        }
        return y
    }

    /// Equal arrays, or one failure naming the first differing output and how many differ.
    static func expectEqual<T: Equatable>(_ y: [T], _ ref: [T], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(y.count, ref.count, what, file: file, line: line)
        let bad = zip(y, ref).enumerated().filter { $0.element.0 != $0.element.1 }
        if let first = bad.first {
            XCTFail("\(what): \(bad.count) outputs differ, first at \(first.offset): \(first.element.0) vs \(first.element.1)", file: file, line: line)
        }
    }

    func testFloatMatchesTheDefinitionBitForBit() {
        var rng = SplitMixForTests(seed: 91)
        for (ci, c) in Self.cases.enumerated() {
            Parallel.setThreads(ci % 2 == 0 ? 2 : 1)
            let planes = 40   // 13×13 outputs × 5×5 taps × 40 planes: past the pool's minimum work
            // Few distinct values, so windows hold ties: +0 and −0 both, and NaN now and then.
            var x = (0..<(planes * c.h * c.w)).map { _ in Float(Int((rng.uniform() + 1) * 3) - 3) * 0.5 }
            for i in x.indices where i % 7 == 3 { x[i] = x[i] == 0 ? -0.0 : x[i] }
            for i in x.indices where i % 23 == 5 { x[i] = .nan }
            for i in 0..<(c.h * c.w) { x[i] = .nan }   // plane 0 all NaN: every window gives the lowest value
            let ref = Self.reference(x, planes: planes, c, lowest: -Float.greatestFiniteMagnitude)
            for separable in [true, false] {
                Pooling.separableMax = separable
                var y = [Float](repeating: .nan, count: planes * c.oh * c.ow)
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                    Pooling.maxPool(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, window: c.geometry)
                } }
                Self.expectEqual(y.map(\.bitPattern), ref.map(\.bitPattern), "\(c) separable \(separable)")
            }
        }
        // The SPP windows take the row-then-column path; ResNet's 3×3 stride 2 does not.
        // Every case but ResNet's takes the row-then-column path (the uneven ones reach its strided
        // and dilated loops); ResNet's 3×3 stride 2 does not.
        for c in Self.cases.dropLast() { XCTAssert(Pooling.separates(Convolution.lifted(c.geometry)), "\(c)") }
        XCTAssertFalse(Pooling.separates(Convolution.lifted(Self.cases.last!.geometry)))
        // ceil mode adds a row and a column of windows: 8 × 5 where the floor gives 7 × 4
        XCTAssertEqual([Self.cases[5].oh, Self.cases[5].ow], [8, 5])
    }

    func testIntegersMatchTheDefinition() {
        var rng = SplitMixForTests(seed: 92)
        for (ci, c) in Self.cases.enumerated() {
            Parallel.setThreads(ci % 2 == 0 ? 1 : 2)
            let planes = 3
            let u = (0..<(planes * c.h * c.w)).map { _ in UInt8(Int((rng.uniform() + 1) * 127.5)) }
            let s = (0..<(planes * c.h * c.w)).map { _ in Int8(Int((rng.uniform() + 1) * 127.5) - 128) }
            let refU = Self.reference(u, planes: planes, c, lowest: 0)
            let refS = Self.reference(s, planes: planes, c, lowest: Int8.min)
            for separable in [true, false] {
                Pooling.separableMax = separable
                var yu = [UInt8](repeating: 7, count: planes * c.oh * c.ow)
                var ys = [Int8](repeating: 7, count: planes * c.oh * c.ow)
                u.withUnsafeBufferPointer { xp in yu.withUnsafeMutableBufferPointer { yp in
                    Pooling.maxPool(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, window: c.geometry)
                } }
                s.withUnsafeBufferPointer { xp in ys.withUnsafeMutableBufferPointer { yp in
                    Pooling.maxPool(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, window: c.geometry)
                } }
                Self.expectEqual(yu, refU, "uint8 \(c) separable \(separable)")
                Self.expectEqual(ys, refS, "int8 \(c) separable \(separable)")
            }
        }
    }
}
