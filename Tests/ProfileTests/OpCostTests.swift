import ModelIR
@testable import Profile
import Runtime
import XCTest

/// The counting rules on hand-made types: every expected figure is worked out in the comment
/// beside it from the formula in `OpCost`.
final class OpCostTests: XCTestCase {
    func f32(_ s: [Int]) -> TensorInfo { TensorInfo(.float32, s) }

    func work(_ op: String, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?], _ attrs: [String: AttributeValue] = [:]) throws -> Work {
        let node = Node(name: "n", opType: op, inputs: inputs.enumerated().map { $1 == nil ? "" : "i\($0)" },
                        outputs: outputs.indices.map { "o\($0)" },
                        attributes: attrs.keys.sorted().map { Attribute(name: $0, value: attrs[$0]!) })
        return try XCTUnwrap(try OpCost.work(node, inputs: inputs, outputs: outputs), "\(op) unknown")
    }

    func testConvAnyRankGroupDilation() throws {
        // 2-D: N·Cout·Hout·Wout·(Cin/g)·kH·kW = 1·64·112·112·3·7·7; bias adds 64·112·112 FLOPs.
        var w = try work("Conv", [f32([1, 3, 224, 224]), f32([64, 3, 7, 7]), f32([64])], [f32([1, 64, 112, 112])])
        XCTAssertEqual(w.macs, 118_013_952)
        XCTAssertEqual(w.flops, 2 * 118_013_952 + 802_816)
        // Grouped (g = 4) 1-D: 2·32·50·(16/4)·5 = 64,000; no bias.
        w = try work("Conv", [f32([2, 16, 100]), f32([32, 4, 5])], [f32([2, 32, 50])], ["group": .int(4)])
        XCTAssertEqual(w.macs, 64_000)
        XCTAssertEqual(w.flops, 128_000)
        // Depthwise 3-D with dilation 2: taps stay 3·3·3 per output: 1·8·6·6·6·1·27 = 46,656.
        w = try work("Conv", [f32([1, 8, 10, 10, 10]), f32([8, 1, 3, 3, 3])], [f32([1, 8, 6, 6, 6])],
                     ["group": .int(8), "dilations": .ints([2, 2, 2])])
        XCTAssertEqual(w.macs, 46_656)
        let bad = Node(opType: "Conv", inputs: ["x", "w"], outputs: ["y"])
        XCTAssertThrowsError(try OpCost.work(bad, inputs: [f32([1, 3, 8, 8]), f32([4, 3, 3])], outputs: [f32([1, 4, 6, 6])]))
    }

    func testConvTransposeCountsInputSide() throws {
        // N·Cin·∏in·(Cout/g)·∏k = 1·4·4³·4·2³ = 8,192 (stride 2 spreads, adds no products;
        // counting by output elements instead gives 8× too much, onnx-tool 1.0.1's figure).
        let w = try work("ConvTranspose", [f32([1, 4, 4, 4, 4]), f32([4, 4, 2, 2, 2])], [f32([1, 4, 8, 8, 8])], ["strides": .ints([2, 2, 2])])
        XCTAssertEqual(w.macs, 8_192)
        // 2-D grouped with bias: 1·8·5·5·(4/2·... W is [Cin, Cout/g, k, k] = [8, 2, 3, 3]: 8·25·2·9 = 3,600; bias 1·4·10·10.
        let g = try work("ConvTranspose", [f32([1, 8, 5, 5]), f32([8, 2, 3, 3]), f32([4])], [f32([1, 4, 10, 10])], ["group": .int(2)])
        XCTAssertEqual(g.macs, 3_600)
        XCTAssertEqual(g.flops, 7_200 + 400)
    }

    func testGemmMatMulEinsum() throws {
        // Gemm transA: A' = Aᵀ [M=3, K=5]; M·N·K = 3·7·5 = 105; C adds M·N.
        var w = try work("Gemm", [f32([5, 3]), f32([5, 7]), f32([7])], [f32([3, 7])], ["transA": .int(1)])
        XCTAssertEqual(w.macs, 105)
        XCTAssertEqual(w.flops, 210 + 21)
        // Attention scores: [2, 12, 128, 64] × [2, 12, 64, 128] = 2·12·128·128·64.
        w = try work("MatMul", [f32([2, 12, 128, 64]), f32([2, 12, 64, 128])], [f32([2, 12, 128, 128])])
        XCTAssertEqual(w.macs, 25_165_824)
        // Broadcast batch [4, 1, 3, 8] × [5, 8, 2] -> [4, 5, 3, 2]: 4·5·3·2·8.
        w = try work("MatMul", [f32([4, 1, 3, 8]), f32([5, 8, 2])], [f32([4, 5, 3, 2])])
        XCTAssertEqual(w.macs, 960)
        // Vector · matrix: [8] × [8, 3] -> [3]: 24.
        w = try work("MatMul", [f32([8]), f32([8, 3])], [f32([3])])
        XCTAssertEqual(w.macs, 24)
        // Einsum batched matmul equals MatMul: bij,bjk->bik with b=2, i=3, j=4, k=5: 120.
        w = try work("Einsum", [f32([2, 3, 4]), f32([2, 4, 5])], [f32([2, 3, 5])], ["equation": .string("bij,bjk->bik")])
        XCTAssertEqual(w.macs, 120)
        XCTAssertEqual(w.flops, 240)
        // Ellipsis attention: ...qd,...kd->...qk with [2, 4, 6, 8] and [2, 4, 7, 8]: 2·4·6·7·8.
        w = try work("Einsum", [f32([2, 4, 6, 8]), f32([2, 4, 7, 8])], [f32([2, 4, 6, 7])], ["equation": .string("...qd,...kd->...qk")])
        XCTAssertEqual(w.macs, 2688)
        // Outer product i,j->ij: multiplies only (no accumulation): 0 MACs, 12 FLOPs.
        w = try work("Einsum", [f32([3]), f32([4])], [f32([3, 4])], ["equation": .string("i,j->ij")])
        XCTAssertEqual(w.macs, 0)
        XCTAssertEqual(w.flops, 12)
        // Three operands, left to right: ij,jk->ik (2·3·4 = 24), then ik,kl->il (2·4·5 = 40).
        w = try work("Einsum", [f32([2, 3]), f32([3, 4]), f32([4, 5])], [f32([2, 5])], ["equation": .string("ij,jk,kl->il")])
        XCTAssertEqual(w.macs, 24 + 40)
        // Implicit output and a single-operand sum: "ij" -> "ij" permutation-free copy; "ij->i" sums 6.
        w = try work("Einsum", [f32([2, 3])], [f32([2])], ["equation": .string("ij->i")])
        XCTAssertEqual(w.flops, 6)
        w = try work("Einsum", [f32([2, 3]), f32([3, 4])], [f32([2, 4])], ["equation": .string("ij,jk")])
        XCTAssertEqual(w.macs, 24)
    }

    func testRecurrentBySequenceBatchDirections() throws {
        // LSTM: seq 10, batch 2, 1 direction, H 16, I 8: 10·2·4·16·(8+16) = 30,720 MACs.
        // FLOPs per step: 2·4·16·24 + 2·4·16 (B) + 9·16 = 3,072 + 128 + 144 = 3,344; × 20 steps.
        var w = try work("LSTM", [f32([10, 2, 8]), f32([1, 64, 8]), f32([1, 64, 16]), f32([1, 128])], [f32([10, 1, 2, 16])], ["hidden_size": .int(16)])
        XCTAssertEqual(w.macs, 30_720)
        XCTAssertEqual(w.flops, 20 * 3_344)
        // Bidirectional GRU, batch-first (layout 1): X [2, 10, 8]: 10·2·2·3·16·24 = 46,080.
        w = try work("GRU", [f32([2, 10, 8]), f32([2, 48, 8]), f32([2, 48, 16])], [f32([2, 10, 2, 16])], ["hidden_size": .int(16), "layout": .int(1)])
        XCTAssertEqual(w.macs, 46_080)
        XCTAssertEqual(w.flops, 40 * (2 * 3 * 16 * 24 + 8 * 16))
        // RNN: 5·1·1·4·(3+4) = 140 MACs.
        w = try work("RNN", [f32([5, 1, 3]), f32([1, 4, 3]), f32([1, 4, 4])], [f32([5, 1, 1, 4])])
        XCTAssertEqual(w.macs, 140)
    }

    func testPoolingAnyRank() throws {
        // 3-D MaxPool 2×2×2: 4·4·4·4 outputs × 8 = 2,048 (onnx-tool 1.0.1 reports 512).
        var w = try work("MaxPool", [f32([1, 4, 8, 8, 8])], [f32([1, 4, 4, 4, 4])], ["kernel_shape": .ints([2, 2, 2])])
        XCTAssertEqual(w.flops, 2_048)
        XCTAssertEqual(w.macs, 0)
        // 1-D AveragePool k=3: 1·2·8 outputs × 3.
        w = try work("AveragePool", [f32([1, 2, 10])], [f32([1, 2, 8])], ["kernel_shape": .ints([3])])
        XCTAssertEqual(w.flops, 48)
        w = try work("GlobalAveragePool", [f32([1, 512, 7, 7])], [f32([1, 512, 1, 1])])
        XCTAssertEqual(w.flops, 25_088)
    }

    func testElementwiseNormalizationResizeAndFreeOps() throws {
        let x = f32([1, 8, 4, 4])
        XCTAssertEqual(try work("Add", [x, x], [x]).flops, 128)
        XCTAssertEqual(try work("Relu", [x], [x]).flops, 128)
        XCTAssertEqual(try work("HardSwish", [x], [x]).flops, 4 * 128)
        XCTAssertEqual(try work("Sum", [x, x, x], [x]).flops, 2 * 128)
        XCTAssertEqual(try work("BatchNormalization", [x, f32([8]), f32([8]), f32([8]), f32([8])], [x]).flops, 2 * 128)
        XCTAssertEqual(try work("LayerNormalization", [x, f32([4])], [x]).flops, 8 * 128)
        XCTAssertEqual(try work("Softmax", [x], [x]).flops, 5 * 128)
        XCTAssertEqual(try work("ReduceMean", [x], [f32([1, 8, 1, 1])]).flops, 128)
        // Resize: nearest is a gather; bilinear over 2 resized axes: 3 lerps · 3 FLOPs per output.
        let big = f32([1, 8, 8, 8])
        XCTAssertEqual(try work("Resize", [x, nil, f32([4])], [big]), Work.movement)
        XCTAssertEqual(try work("Resize", [x, nil, f32([4])], [big], ["mode": .string("linear")]).flops, 512 * 9)
        XCTAssertEqual(try work("Resize", [x, nil, f32([4])], [big], ["mode": .string("cubic")]).flops, 512 * 35)
        // Views cost nothing on purpose; movement reads and writes but does no arithmetic.
        XCTAssertEqual(try work("Reshape", [x, TensorInfo(.int64, [2])], [f32([8, 16])]), Work.free)
        XCTAssertEqual(try work("Identity", [x], [x]), Work.free)
        XCTAssertEqual(try work("Transpose", [x], [x]), Work.movement)
        // Unknown operators and foreign domains are not counted (nil), never 0.
        let custom = Node(opType: "FusedMatMul", domain: "com.microsoft", inputs: ["a"], outputs: ["b"])
        XCTAssertNil(try OpCost.work(custom, inputs: [x], outputs: [x]))
        XCTAssertNil(try OpCost.work(Node(opType: "NoSuchOp", inputs: ["a"], outputs: ["b"]), inputs: [x], outputs: [x]))
    }
}
