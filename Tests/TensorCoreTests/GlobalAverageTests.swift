import XCTest
@testable import TensorCore

/// `Pooling.globalAverage` (GlobalAveragePool, sixteen running sums per plane) against a float64
/// mean written here, for plane sizes around the 16-element step and real layer sizes.
final class GlobalAverageTests: XCTestCase {
    func testMatchesFloat64Mean() {
        var rng = SplitMixForTests(seed: 11)
        for size in Array(1...40) + [49, 196, 784, 3136] {
            let planes = 5
            // Values of mixed sign and magnitude, offset so the mean is not near zero.
            let x = (0..<planes * size).map { _ in rng.uniform() * 4 + 0.5 }
            var y = [Float](repeating: -1, count: planes)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    Pooling.globalAverage(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, size: size)
                }
            }
            for p in 0..<planes {
                let slice = x[p * size..<(p + 1) * size]
                let want = slice.reduce(0.0) { $0 + Double($1) } / Double(size)
                let scale = slice.reduce(0.0) { $0 + abs(Double($1)) } / Double(size)
                // float32 summation of `size` terms: a few ulps of the magnitude per term
                XCTAssertEqual(Double(y[p]), want, accuracy: scale * Double(size) * 1.2e-7 + 1e-7, "size \(size), plane \(p)")
            }
        }
    }

    func testNaNPropagatesAndEmptyPlaneIsNaN() {
        var x = [Float](repeating: 1, count: 3 * 37)
        x[37 + 20] = .nan
        var y = [Float](repeating: 0, count: 3)
        Pooling.globalAverage(x: x, y: &y, planes: 3, size: 37)
        XCTAssertEqual(y[0], 1)
        XCTAssertTrue(y[1].isNaN)
        XCTAssertEqual(y[2], 1)
        var e: [Float] = [7]
        Pooling.globalAverage(x: [], y: &e, planes: 1, size: 0)
        XCTAssertTrue(e[0].isNaN)
    }
}
