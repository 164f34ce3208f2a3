import ModelIR
import TensorCore
import XCTest
@testable import Quantize

/// Calibration runs samples concurrently, each into its own `CalibrationStats`, and merges them in
/// sample order; that must give exactly (`==`, every bit) what observing the samples one after
/// another into one statistics gives: min, max, the sums of per-sample extremes, and histograms
/// whose range doubles as larger samples arrive.
final class CalibrationStatsTests: XCTestCase {
    func testPerSampleStatisticsMergedInOrderEqualOneSequentialPass() throws {
        var rng = SplitMix64(seed: 42)
        // Samples whose magnitudes grow and shrink, so the histogram range doubles mid-way,
        // with exact zeros, a NaN and an infinity (left out of the histogram and the sums).
        let samples: [[String: Tensor]] = (0..<12).map { k in
            let spread: Float = [0.3, 1, 7, 0.01, 40, 2, 300, 0.5, 5, 1, 90, 3][k]
            var a = (0..<257).map { _ in rng.uniform(-spread, spread) }
            a[5] = 0
            if k == 4 { a[9] = .nan }
            if k == 0 { a[12] = -.infinity }  // an infinity before any range exists
            if k == 7 { a[10] = .infinity; a[11] = -0.9 }  // its largest finite |x| negative, a power of two above the rest
            let b = (0..<33).map { _ in max(0, rng.uniform(-1, spread)) }  // Relu-like, zeros
            return ["a": Tensor(shape: [257], scalars: a), "b": Tensor(shape: [33], scalars: b)]
        }
        for bins in [0, 2048, 64] {
            var sequential = CalibrationStats(bins: bins)
            for s in samples {
                for name in ["a", "b"] { sequential.observe(name, s[name]!) }
                sequential.samples += 1
            }
            var merged = CalibrationStats(bins: bins)
            for s in samples {
                var one = CalibrationStats(bins: bins)
                for name in ["a", "b"] { one.observe(name, s[name]!) }
                one.samples = 1
                if bins > 0 {  // each sample's own histogram holds its every finite value
                    XCTAssertEqual(one.tensors["a"]!.counts.reduce(0, +), Double(s["a"]!.scalars(as: Float.self).filter(\.isFinite).count))
                }
                try merged.merge(one)
            }
            XCTAssertEqual(merged, sequential, "bins \(bins)")
            // And the values themselves, so equal-but-wrong statistics would not pass.
            let a = try XCTUnwrap(merged.tensors["a"])
            let all = samples.flatMap { $0["a"]!.scalars(as: Float.self) }.filter { $0.isFinite }
            XCTAssertEqual(a.max, .infinity)  // the infinities of samples 0 and 7 are values seen
            XCTAssertEqual(a.min, -.infinity)
            XCTAssertEqual(a.minCount, 11)  // sample 0's minimum (−∞) is not summed for mean-minmax
            XCTAssertEqual(a.maxCount, 11)  // nor sample 7's maximum (+∞)
            XCTAssertEqual(merged.samples, 12)
            if bins > 0 {
                XCTAssertEqual(a.counts.reduce(0, +), Double(all.count), "every finite value lands in one bin")
                XCTAssertEqual(a.histRange, 512)  // the smallest power of two above 300's samples
            }
        }
    }
}
