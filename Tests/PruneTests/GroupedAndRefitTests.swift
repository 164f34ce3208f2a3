import XCTest
@testable import Prune

final class GroupedAndRefitTests: XCTestCase {
    private func group(_ channels: Int, blocks: Int, aligned: Bool) -> ChannelGroup {
        ChannelGroup(id: 0, label: "g", channels: channels, slices: [], producers: ["g"], depthwiseNodes: [],
                     batchNormScales: [], reasons: [], blocks: blocks, alignedBlocks: aligned)
    }

    /// A grouped conv's output blocks each lose floor(k / blocks) channels, each block its lowest.
    func testEqualCountPerBlock() {
        let scores: [Double] = [5, 1, 3, /**/ 2, 9, 8, /**/ 7, 6, 0.5, /**/ 4, 4, 1]
        XCTAssertEqual(PrunePlan.choose(scores, 6, group(12, blocks: 4, aligned: false)).sorted(), [1, 3, 8, 11])
        XCTAssertEqual(PrunePlan.choose(scores, 3, group(12, blocks: 4, aligned: false)), [], "3 < 4 blocks: nothing")
        XCTAssertEqual(PrunePlan.choose(scores, 8, group(12, blocks: 4, aligned: false)).sorted(), [1, 2, 3, 5, 7, 8, 9, 11])
    }

    /// Channels a grouped conv reads lose the same positions in every block: the positions with the
    /// lowest mean score over the blocks.
    func testAlignedPositions() {
        // Two blocks of 3: position means (5+2)/2, (1+9)/2, (3+0)/2 = 3.5, 5, 1.5.
        let scores: [Double] = [5, 1, 3, 2, 9, 0]
        XCTAssertEqual(PrunePlan.choose(scores, 2, group(6, blocks: 2, aligned: true)).sorted(), [2, 5])
        XCTAssertEqual(PrunePlan.choose(scores, 4, group(6, blocks: 2, aligned: true)).sorted(), [0, 2, 3, 5])
        XCTAssertEqual(PrunePlan.choose(scores, 2, group(6, blocks: 1, aligned: false)), [1, 5], "no blocks: the lowest")
    }

    /// A period slice (a grouped conv's input side) names each weight column once.
    func testPeriodicSliceIndices() {
        let s = ChannelSlice(tensor: "w", axis: 1, offset: 0, start: 0, count: 8, block: 1, role: .input, node: "g", period: 2)
        XCTAssertEqual(s.indices(removing: [1, 3, 5, 7]), [1])
        XCTAssertEqual(s.channels(removing: [1, 3, 5, 7]), [1, 3, 5, 7])
    }

    /// Noise-free data the model can fit exactly: cross-validation picks the weakest ridge and the
    /// fit recovers the weights although the prior (all zero) is far from them.
    func testRidgeFitRecoversExactData() {
        // y = 2·x0 − x1 + 0.5, K = 2 inputs plus the bias row; 4 folds of 8 positions each.
        let kk = 3, m = 1
        var a = [[Double]](repeating: [Double](repeating: 0, count: kk * kk), count: 4)
        var b = [[Double]](repeating: [Double](repeating: 0, count: kk * m), count: 4)
        var yy = [Double](repeating: 0, count: 4)
        for i in 0..<32 {
            let x0 = Double(i % 7) - 3, x1 = Double((i * 5) % 11) - 5
            let v = [x0, x1, 1], y = 2 * x0 - x1 + 0.5
            let f = i % 4
            for r in 0..<kk { for c in 0..<kk { a[f][r * kk + c] += v[r] * v[c] }; b[f][r] += v[r] * y }
            yy[f] += y * y
        }
        let fit = PruneReconstruction.ridgeFit(a: a, b: b, yy: yy, prior: [0, 0, 0], n: kk, rhs: m, samples: 32)
        XCTAssertEqual(fit?.lambda, PruneReconstruction.lambdaGrid[0])
        XCTAssertEqual(fit?.solution[0] ?? 0, 2, accuracy: 1e-4)
        XCTAssertEqual(fit?.solution[1] ?? 0, -1, accuracy: 1e-4)
        XCTAssertEqual(fit?.solution[2] ?? 0, 0.5, accuracy: 1e-4)
    }
}
