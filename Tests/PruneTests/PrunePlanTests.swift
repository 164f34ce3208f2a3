import XCTest
import ModelIR
@testable import Prune
import TensorCore

final class PrunePlanTests: XCTestCase {
    func testGlob() {
        XCTAssertTrue(Glob.matches("head/*", "head/conv"))
        XCTAssertTrue(Glob.matches("*conv", "block/dw/conv"))
        XCTAssertTrue(Glob.matches("Conv_?1", "Conv_41"))
        XCTAssertFalse(Glob.matches("Conv_?1", "Conv_411"))
        XCTAssertFalse(Glob.matches("head/*", "stem/conv"))
        XCTAssertTrue(Glob.matches("*", ""))
        XCTAssertTrue(Glob.matches("a*b*c", "aXXbYYc"))
        XCTAssertFalse(Glob.matches("a*b*c", "aXXbYY"))
    }

    /// floor(C·ratio) removed, the floor kept, the rest rounded up to a multiple of round-to.
    func testRemovalCounts() {
        let o = PruneOptions(criterion: .l1, ratio: 0.3)
        XCTAssertEqual(PrunePlan.rounded(removing: 19, of: 64, o), 19)
        XCTAssertEqual(PrunePlan.rounded(removing: 64, of: 64, o), 63, "never empty a group")
        var r8 = o; r8.roundTo = 8
        XCTAssertEqual(PrunePlan.rounded(removing: 19, of: 64, r8), 16, "45 kept → 48")
        XCTAssertEqual(PrunePlan.rounded(removing: 3, of: 6, r8), 0, "a group smaller than round-to stays whole")
        var m = o; m.minChannels = 10
        XCTAssertEqual(PrunePlan.rounded(removing: 60, of: 64, m), 54)
        XCTAssertEqual(PrunePlan.rounded(removing: 5, of: 8, m), 0)
    }

    func testLowestBreaksTiesByIndex() {
        XCTAssertEqual(PrunePlan.lowest([3, 1, 2, 1, 5], 2), [1, 3])
        XCTAssertEqual(PrunePlan.lowest([3, 1, 2, 1, 5], 3), [1, 2, 3])
        XCTAssertEqual(PrunePlan.lowest([3, 1], 0), [])
    }

    /// Hand-computed importances: filters [1,-1], [3,0], [0,0.5] along axis 0.
    func testCriteria() {
        let w = Tensor(shape: [3, 2], scalars: [Float](arrayLiteral: 1, -1, 3, 0, 0, 0.5))
        XCTAssertEqual(PruneCriterion.l1.filterImportance(w, axis: 0), [2, 3, 0.5])
        XCTAssertEqual(PruneCriterion.l2.filterImportance(w, axis: 0), [Double(2).squareRoot(), 3, 0.5])
        let d01 = (4.0 + 1.0).squareRoot(), d02 = (1.0 + 2.25).squareRoot(), d12 = (9.0 + 0.25).squareRoot()
        let f = PruneCriterion.fpgm.filterImportance(w, axis: 0)
        XCTAssertEqual(f[0], d01 + d02, accuracy: 1e-12)
        XCTAssertEqual(f[1], d01 + d12, accuracy: 1e-12)
        XCTAssertEqual(f[2], d02 + d12, accuracy: 1e-12)
        // Filters along axis 1 (a Gemm with transB = 0): columns [1,3,0] and [-1,0,0.5].
        XCTAssertEqual(PruneCriterion.l1.filterImportance(w, axis: 1), [4, 1.5])
    }

    /// The digits fixture's groups: the residual group spans stem, depthwise and pointwise
    /// convolutions and the Concat's two halves; the classifier's outputs are a graph output.
    func testDigitsGroups() throws {
        let m = try ModelReader.read(path: fixture("digits_cnn_bn.onnx"))
        let a = try ChannelGroupAnalysis(model: m)
        let byLabel = Dictionary(uniqueKeysWithValues: a.groups.map { ($0.label, $0) })
        let stem = try XCTUnwrap(byLabel["stem/conv"])
        XCTAssertEqual(stem.producers, ["stem/conv", "block/pw/conv"])
        XCTAssertEqual(stem.depthwiseNodes.count, 1)
        XCTAssertEqual(stem.batchNormScales.count, 3)
        let headInputs = stem.slices.filter { $0.node == "head/conv" }.map(\.offset).sorted()
        XCTAssertEqual(headInputs, [0, 8], "Concat places the group at offsets 0 and 8 of head/conv's input")
        XCTAssertTrue(stem.isPrunable)
        let head = try XCTUnwrap(byLabel["head/conv"])
        let fc = head.slices.first { $0.node == "fc" }
        XCTAssertEqual(fc?.block, 16, "Flatten of [N,16,4,4]: each channel is 16 columns of the Gemm")
        XCTAssertEqual(byLabel["fc"]?.reasons, ["'logits' is a graph output"])
    }
}
