import XCTest
import ModelIR
@testable import Runtime
import TensorCore

// Hand-computed cases for NonMaxSuppression, RoiAlign, GridSample and Attention, and their shape
// functions (the interop tests cover the values against ONNX Runtime and the backend data).

private func node(_ op: String, _ inputs: Int, _ attributes: [String: AttributeValue], outputs: Int, omitted: Set<Int> = []) -> Node {
    Node(opType: op, inputs: (0..<inputs).map { omitted.contains($0) ? "" : "x\($0)" }, outputs: (0..<outputs).map { "y\($0)" },
         attributes: attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) })
}

private func evalDetection(_ op: String, _ inputs: [Tensor?], _ attributes: [String: AttributeValue] = [:], opset: Int, outputs: Int = 1) throws -> [Tensor] {
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset), "\(op)-\(opset) is not registered")
    let n = node(op, inputs.count, attributes, outputs: outputs, omitted: Set(inputs.indices.filter { inputs[$0] == nil }))
    return try impl.kernel(inputs, KernelContext(node: n, opset: opset))
}

private func infer(_ op: String, _ inputs: [TensorInfo?], values: [Tensor?]? = nil, _ attributes: [String: AttributeValue] = [:],
                   opset: Int, outputs: Int = 1) throws -> [TensorInfo] {
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
    let n = node(op, inputs.count, attributes, outputs: outputs, omitted: Set(inputs.indices.filter { inputs[$0] == nil }))
    return try impl.infer(inputs, values ?? inputs.map { _ in nil }, KernelContext(node: n, opset: opset))
}

private func floats(_ shape: [Int], _ v: [Float]) -> Tensor { Tensor(shape: shape, scalars: v) }

final class DetectionOpsTests: XCTestCase {
    /// Box 1 overlaps box 0 with IoU 0.9 / 1.1 ≈ 0.82 > 0.5 and is dropped; box 2 is disjoint.
    func testNonMaxSuppressionSuppressesOverlapsInScoreOrder() throws {
        let boxes = floats([1, 3, 4], [0, 0, 1, 1, 0, 0.1, 1, 1.1, 0, 2, 1, 3])
        let scores = floats([1, 1, 3], [0.8, 0.9, 0.7])
        let inputs: [Tensor?] = [boxes, scores, Tensor(shape: [1], scalars: [Int64(3)]), floats([1], [0.5])]
        let y = try evalDetection("NonMaxSuppression", inputs, opset: 11)[0]
        // Box 1 (0.9) first, which suppresses box 0 (IoU 0.82); then box 2.
        XCTAssertEqual(y.shape, [2, 3])
        XCTAssertEqual(y.int64Values(), [0, 0, 1, 0, 0, 2])
        // The count depends on the scores: unknown before running, known when the inputs are.
        let types = inputs.map { $0.map(TensorInfo.init) }
        XCTAssertThrowsError(try infer("NonMaxSuppression", types, opset: 11))
        XCTAssertEqual(try infer("NonMaxSuppression", types, values: inputs, opset: 11), [TensorInfo(.int64, [2, 3])])
    }

    /// Over a constant image every bilinear sample is the constant, so avg gives it back; max
    /// mode takes the largest weighted corner, which for an interior sample is at most the value.
    func testRoiAlignOverConstantImage() throws {
        let x = Tensor(shape: [1, 2, 6, 6], scalars: [Float](repeating: 3, count: 72))
        let rois = floats([2, 4], [1, 1, 4, 4, 0.5, 2, 3.5, 5])
        let idx = Tensor(shape: [2], scalars: [Int64(0), 0])
        let attrs: [String: AttributeValue] = ["output_height": .int(2), "output_width": .int(3)]
        let y = try evalDetection("RoiAlign", [x, rois, idx], attrs, opset: 16)[0]
        XCTAssertEqual(y.shape, [2, 2, 2, 3])
        for v in y.floatValues() { XCTAssertEqual(v, 3, accuracy: 1e-6) }
        XCTAssertEqual(try infer("RoiAlign", [TensorInfo(x), TensorInfo(rois), TensorInfo(idx)], attrs, opset: 16),
                       [TensorInfo(.float32, [2, 2, 2, 3])])
        var bad = attrs
        bad["mode"] = .string(Data("median".utf8))
        XCTAssertThrowsError(try evalDetection("RoiAlign", [x, rois, idx], bad, opset: 16))
    }

    /// With align_corners, a grid at the pixel centres reproduces the image in every mode.
    func testGridSampleIdentityGrid() throws {
        let (h, w) = (3, 4)
        let x = Tensor(shape: [1, 2, h, w], scalars: (0..<(2 * h * w)).map { Float($0 * $0 % 7) })
        var g: [Float] = []
        for i in 0..<h { for j in 0..<w { g += [Float(2 * j) / Float(w - 1) - 1, Float(2 * i) / Float(h - 1) - 1] } }
        let grid = floats([1, h, w, 2], g)
        for (opset, modes) in [(16, ["bilinear", "nearest", "bicubic"]), (20, ["linear", "nearest", "cubic"])] {
            for mode in modes {
                for pad in ["zeros", "border", "reflection"] {
                    let attrs: [String: AttributeValue] = ["mode": .string(Data(mode.utf8)), "padding_mode": .string(Data(pad.utf8)), "align_corners": .int(1)]
                    let y = try evalDetection("GridSample", [x, grid], attrs, opset: opset)[0]
                    XCTAssertEqual(y.shape, x.shape)
                    for (a, b) in zip(y.floatValues(), x.floatValues()) { XCTAssertEqual(a, b, accuracy: 1e-5, "\(mode) \(pad)") }
                }
            }
        }
        // Opset 16 names its modes bilinear/bicubic and takes 4-D input only; 20 renames them.
        XCTAssertThrowsError(try evalDetection("GridSample", [x, grid], ["mode": .string(Data("linear".utf8))], opset: 16))
        XCTAssertThrowsError(try evalDetection("GridSample", [x, grid], ["mode": .string(Data("bilinear".utf8))], opset: 20))
        let vol = TensorInfo(.float32, [1, 2, 3, 4, 5]), vgrid = TensorInfo(.float32, [1, 6, 7, 8, 3])
        XCTAssertThrowsError(try infer("GridSample", [vol, vgrid], opset: 16))
        XCTAssertEqual(try infer("GridSample", [vol, vgrid], opset: 20), [TensorInfo(.float32, [1, 2, 6, 7, 8])])
    }

    /// One key per head: the softmax is 1 and each query head returns its KV group's value row
    /// (query heads 0, 1 read KV head 0; heads 2, 3 read KV head 1).
    func testAttentionGroupedQueryHeadsWithOneKey() throws {
        let q = Tensor(shape: [1, 4, 2, 3], scalars: (0..<24).map { Float($0) / 10 })
        let k = floats([1, 2, 1, 3], [1, 2, 3, -1, 0, 1])
        let v = floats([1, 2, 1, 5], [1, 2, 3, 4, 5, -1, -2, -3, -4, -5])
        let outs = try evalDetection("Attention", [q, k, v], ["is_causal": .int(1)], opset: 23, outputs: 3)
        XCTAssertEqual(outs[0].shape, [1, 4, 2, 5])
        let y = outs[0].floatValues()
        for h in 0..<4 {
            for i in 0..<2 {
                // Causal: query i sees keys 0...i, and there is one key, so every row sees it.
                let start = (h * 2 + i) * 5
                let row = Array(y[start ..< start + 5])
                let expected: [Float] = h < 2 ? [1, 2, 3, 4, 5] : [-1, -2, -3, -4, -5]
                XCTAssertEqual(row, expected)
            }
        }
        XCTAssertEqual(outs[1].floatValues(), k.floatValues())  // present_key without a past is K
    }

    func testAttentionShapeFunction() throws {
        // 3-D, GQA 6 over 2 heads, head sizes 4 (Q/K) and 5 (V), past 3 + new 7 keys.
        let types: [TensorInfo?] = [TensorInfo(.float16, [2, 5, 24]), TensorInfo(.float16, [2, 7, 8]), TensorInfo(.float16, [2, 7, 10]),
                                    TensorInfo(.bool, [5, 10]), TensorInfo(.float16, [2, 2, 3, 4]), TensorInfo(.float16, [2, 2, 3, 5])]
        let attrs: [String: AttributeValue] = ["q_num_heads": .int(6), "kv_num_heads": .int(2)]
        XCTAssertEqual(try infer("Attention", types, attrs, opset: 23, outputs: 4),
                       [TensorInfo(.float16, [2, 5, 30]), TensorInfo(.float16, [2, 2, 10, 4]),
                        TensorInfo(.float16, [2, 2, 10, 5]), TensorInfo(.float16, [2, 6, 5, 10])])
        // Heads that do not group, a mask longer than the keys, a past without its value.
        XCTAssertThrowsError(try infer("Attention", types, ["q_num_heads": .int(4), "kv_num_heads": .int(3)], opset: 23))
        var longMask = types
        longMask[3] = TensorInfo(.bool, [5, 11])
        XCTAssertThrowsError(try infer("Attention", longMask, attrs, opset: 23))
        XCTAssertThrowsError(try infer("Attention", Array(types[0..<5]), attrs, opset: 23))
    }
}
