import XCTest
@testable import Distill

/// Hand-computed cases of the distillation losses.
final class DistillLossesTests: XCTestCase {
    /// Two classes, T = 1: p = softmax(0, ln 3) = (1/4, 3/4), q = softmax(0, 0) = (1/2, 1/2):
    /// KL = ¼·ln(½) + ¾·ln(3/2), entropy = −(¼·ln ¼ + ¾·ln ¾), CE = ln 2.
    func testTwoClasses() {
        let l = DistributionLosses.compute(teacher: [0, log(3)], student: [0, 0], temperature: 1, label: 0)
        XCTAssertEqual(l.kl, 0.25 * log(0.5) + 0.75 * log(1.5), accuracy: 1e-15)
        XCTAssertEqual(l.softCE, log(2), accuracy: 1e-15)
        XCTAssertEqual(l.teacherEntropy, -(0.25 * log(0.25) + 0.75 * log(0.75)), accuracy: 1e-15)
        XCTAssertEqual(l.softCE, l.teacherEntropy + l.kl, accuracy: 1e-15)
        XCTAssertEqual(l.studentHardCE!, log(2), accuracy: 1e-15)
        XCTAssertEqual(l.teacherHardCE!, log(4), accuracy: 1e-15)
        XCTAssertEqual(l.teacherTop, 1)
        XCTAssertEqual(l.studentTop, 0, "a tie ranks the lower class first")
    }

    /// Top-5 agreement: the teacher's best class ranked 6th by the student is a miss; 5th a hit.
    func testTop5() {
        let teacher: [Double] = [0, 0, 0, 0, 0, 0, 9]
        XCTAssertFalse(DistributionLosses.compute(teacher: teacher, student: [6, 5, 4, 3, 2, 0, 1], temperature: 1, label: nil).top5Agrees)
        XCTAssertTrue(DistributionLosses.compute(teacher: teacher, student: [6, 5, 4, 3, 0, 0, 1], temperature: 1, label: nil).top5Agrees)
        // Ties rank the lower class first: class 6 tied with 5 others at the 5th place misses.
        XCTAssertFalse(DistributionLosses.compute(teacher: teacher, student: [1, 1, 1, 1, 1, 1, 1], temperature: 1, label: nil).top5Agrees)
    }

    /// KL at T = 1 differs from KL at T with a student that is not constant.
    func testKLAtOneAndStudentScaling() {
        let t: [Double] = [0, log(3)], s: [Double] = [log(3), 0]
        let l = DistributionLosses.compute(teacher: t, student: s, temperature: 2, label: nil)
        // T = 1: p = (1/4, 3/4), q = (3/4, 1/4): KL = ¼·ln(1/3) + ¾·ln 3 = ½·ln 3.
        XCTAssertEqual(l.kl1, 0.5 * log(3), accuracy: 1e-15)
        // T = 2: p = softmax(0, ln√3) = (1/(1+√3), √3/(1+√3)), q the reverse: KL = (p1 − p0)·ln√3.
        let p0 = 1 / (1 + 3.0.squareRoot()), p1 = 1 - p0
        XCTAssertEqual(l.kl, (p1 - p0) * log(3.0.squareRoot()), accuracy: 1e-15)
    }

    /// T scales the logits: KL at T = 2 of (0, 2·ln 3) equals KL at T = 1 of (0, ln 3); T²·KL = 4·KL.
    func testTemperature() {
        let a = DistributionLosses.compute(teacher: [0, 2 * log(3)], student: [0, 0], temperature: 2, label: nil)
        let b = DistributionLosses.compute(teacher: [0, log(3)], student: [0, 0], temperature: 1, label: nil)
        XCTAssertEqual(a.kl, b.kl, accuracy: 1e-15)
        XCTAssertEqual(a.klT2, 4 * a.kl, accuracy: 1e-15)
        XCTAssertNil(a.studentHardCE)
    }

    func testExtremeLogitsAndFeatures() {
        // p ≈ one-hot on class 0; log q(0) = −2e4 − log(1 + e^−1e4 + e^−2e4): KL = 2e4 to double precision.
        let l = DistributionLosses.compute(teacher: [1e4, -1e4, 0], student: [-1e4, 1e4, 0], temperature: 1, label: 2)
        XCTAssertEqual(l.kl, 2e4, accuracy: 1e-9)
        XCTAssertEqual(l.kl1, 2e4, accuracy: 1e-9)
        XCTAssertEqual(l.studentHardCE!, 1e4, accuracy: 1e-9)
        XCTAssertEqual(l.teacherHardCE!, 1e4, accuracy: 1e-9)
        let f = FeatureLosses.compute([1, 2, 3], [1, 2, 5])
        XCTAssertEqual(f.mse, 4.0 / 3.0, accuracy: 1e-15)
        XCTAssertEqual(f.maxAbs, 2)
        XCTAssertEqual(f.cosine, 20 / (14.0.squareRoot() * 30.0.squareRoot()), accuracy: 1e-15)  // 1+4+15
    }
}
