import XCTest
@testable import Quantize
import TensorCore

/// ONNX Runtime's golden values and hand-computed cases for the scale/zero-point rules.
final class QuantParamsTests: XCTestCase {
    func testGoldenValues() {
        // REFERENCES.md: range (−1, 2) in uint8 → zero point 85, scale 3/255.
        let u = QuantParams(rmin: -1, rmax: 2, range: .of(.uint8, symmetric: false), symmetric: false)
        XCTAssertEqual(u.zeroPoint, 85)
        XCTAssertEqual(u.scale, Float(3.0 / 255.0))
        // Symmetric int8: [−127, 127], scale = absmax/127, zero point 0.
        let s = QuantParams(rmin: -0.5, rmax: 2.54, range: .of(.int8, symmetric: true), symmetric: true)
        XCTAssertEqual(s.zeroPoint, 0)
        XCTAssertEqual(s.scale, Float(5.08 / 254.0))
        // The range always includes 0; an all-zero range gets scale 1.
        XCTAssertEqual(QuantParams(rmin: 1, rmax: 2, range: .of(.uint8, symmetric: false), symmetric: false).zeroPoint, 0)
        XCTAssertEqual(QuantParams(rmin: 0, rmax: 0, range: .of(.int8, symmetric: true), symmetric: true).scale, 1)
    }

    func testWeightsPerChannelAndBias() {
        let w = Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 1.27, -0.635, 0, 0.5, 0.25, -0.001))
        let (q, p) = WeightQuantizer.quantize(w, axis: 0, perChannel: true, range: .of(.int8, symmetric: true), symmetric: true)
        XCTAssertEqual(p.map(\.scale), [Float(2.54 / 254), Float(1.0 / 254)])
        XCTAssertEqual(q.scalars(as: Int8.self), [127, -64, 0, 127, 64, 0])
        // A tie that separates half-even from half-away: absmax 0.9921875 gives scale exactly
        // 2⁻⁷ (127·2⁻⁷ = 0.9921875), and 0.48828125 is 62.5 steps: even → 62 (away would be 63).
        let tie = Tensor(shape: [1, 2], scalars: [Float](arrayLiteral: 0.9921875, 0.48828125))
        let (qt, pt) = WeightQuantizer.quantize(tie, axis: 0, perChannel: true, range: .of(.int8, symmetric: true), symmetric: true)
        XCTAssertEqual(pt[0].scale, 0.0078125)
        XCTAssertEqual(qt.scalars(as: Int8.self), [127, 62])
        let (qb, bs) = WeightQuantizer.quantizeBias(Tensor(shape: [2], scalars: [Float](arrayLiteral: 0.1, -0.2)), inputScale: 0.5, weightScales: p.map(\.scale))
        XCTAssertEqual(bs, [0.5 * Float(2.54 / 254), 0.5 * Float(1.0 / 254)])
        XCTAssertEqual(qb.scalars(as: Int32.self), [20, -102])
    }
}
