import XCTest
@testable import TensorCore

/// `Tensor.rowScaled` (the channel-broadcast Mul fast path, `ck_scale_rows`): exactly the
/// elementwise products in either operand order, nil for shapes it does not cover; AVX2 and baseline.
final class RowScaleTests: XCTestCase {
    override func tearDown() { DirectGemm.forceBaseline(false) }

    func testRowScaledMatchesProducts() {
        var rng = SplitMixForTests(seed: 3)
        let cases: [([Int], [Int])] = [([2, 5, 3, 7], [2, 5, 1, 1]), ([1, 960, 7, 7], [1, 960, 1, 1]), ([3, 17], [3, 1]),
                                       ([4, 6, 9], [4, 1, 1]), ([4, 6, 9], [4, 6, 1]), ([1, 3, 1, 5], [1, 3, 1, 1])]
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            for (xs, ss) in cases {
                var xv = (0..<xs.reduce(1, *)).map { _ in rng.uniform() * 10 }
                xv[0] = .nan; xv[xv.count - 1] = .infinity
                let sv = (0..<ss.reduce(1, *)).map { _ in rng.uniform() }
                let x = Tensor(shape: xs, scalars: xv), s = Tensor(shape: ss, scalars: sv)
                for (a, b) in [(x, s), (s, x)] {
                    guard let y = Tensor.rowScaled(a, b) else { XCTFail("\(xs) · \(ss) not taken"); continue }
                    XCTAssertEqual(y.shape, xs)
                    let yv = y.scalars(as: Float.self)
                    let inner = xs.count - ss.reversed().prefix(while: { $0 == 1 }).count
                    let per = xs[inner...].reduce(1, *)
                    for i in 0..<xv.count {
                        let ref = xv[i] * sv[i / per]
                        XCTAssert(ref.isNaN ? yv[i].isNaN : yv[i] == ref, "\(xs) · \(ss) at \(i): \(yv[i]) vs \(ref) baseline \(baseline)")
                    }
                }
            }
        }
        // Not of the form: general broadcasting, same shape, other dtypes.
        let f = { (s: [Int]) in Tensor(shape: s, scalars: [Float](repeating: 1, count: s.reduce(1, *))) }
        XCTAssertNil(Tensor.rowScaled(f([2, 3, 4]), f([1, 3, 1])))
        XCTAssertNil(Tensor.rowScaled(f([2, 3]), f([2, 3])))
        XCTAssertNil(Tensor.rowScaled(f([2, 3]), f([1, 3])))
        XCTAssertNil(Tensor.rowScaled(f([2, 3, 4]), f([3, 4])))
        XCTAssertNil(Tensor.rowScaled(f([2, 1]), f([1, 3])))
    }
}
