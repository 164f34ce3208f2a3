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

    /// Over a constant image every bilinear sample is the constant, so avg (the default mode)
    /// gives it back whatever the sampling positions; testRoiAlignOverRampImage pins the positions
    /// and max mode.
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

    /// A ramp image, value x + 10·y at column x, row y (6 x 6), where every sampling position
    /// shows in the result. Derivation from the ONNX RoiAlign definition (opset 16, default
    /// coordinate_transformation_mode half_pixel, spatial_scale 1): the ROI [x1 y1 x2 y2] =
    /// [1 1 4 4] starts at (1 - 0.5, 1 - 0.5) = (0.5, 0.5) and is 3 x 3; output 2 x 3 gives bins
    /// 1.5 tall and 1 wide; sampling_ratio 2 puts 2 x 2 samples in each bin at
    /// y = 0.5 + 1.5·ph + (iy + 0.5)·0.75 = {0.875, 1.625} (ph 0), {2.375, 3.125} (ph 1) and
    /// x = 0.5 + pw + (ix + 0.5)·0.5 = 0.75 + pw, 1.25 + pw. All lie inside the image.
    /// - avg: bilinear interpolation of a linear ramp is exact, so a bin's mean is
    ///   mean(x) + 10·mean(y) = (1 + pw) + 10·(1.25 + 1.5·ph): 13.5 14.5 15.5 / 28.5 29.5 30.5.
    ///   (Without the half-pixel shift every value would be 5.5 larger.)
    /// - max: each sample takes the largest of its four weighted corners w·v (not their sum),
    ///   then the bin the largest over its samples. Bin (0, 0): sample (y 1.625, x 0.75) has
    ///   corners rows 1-2, columns 0-1, weights ly = 0.625, lx = 0.75; its corner (row 2, col 1)
    ///   = 21 weighs 0.625·0.75 = 0.46875: 9.84375, the largest of the bin. Each column step adds
    ///   1 to that corner value: 10.3125, 10.78125. Bin (1, 0): sample (y 3.125, x 0.75), corner
    ///   (row 3, col 1) = 31 weighs (1 - 0.125)·0.75 = 0.65625: 20.34375; then 32·0.65625 = 21,
    ///   33·0.65625 = 21.65625. (Checked against ONNX Runtime 1.32 and onnx.reference, which agree.)
    func testRoiAlignOverRampImage() throws {
        let x = Tensor(shape: [1, 1, 6, 6], scalars: (0..<36).map { Float($0 % 6 + 10 * ($0 / 6)) })
        let rois = floats([1, 4], [1, 1, 4, 4])
        let idx = Tensor(shape: [1], scalars: [Int64(0)])
        let expected: [(String, [Float])] = [("avg", [13.5, 14.5, 15.5, 28.5, 29.5, 30.5]),
                                             ("max", [9.84375, 10.3125, 10.78125, 20.34375, 21, 21.65625])]
        for (mode, values) in expected {
            let attrs: [String: AttributeValue] = ["mode": .string(Data(mode.utf8)), "output_height": .int(2), "output_width": .int(3),
                                                   "sampling_ratio": .int(2)]
            let y = try evalDetection("RoiAlign", [x, rois, idx], attrs, opset: 16)[0]
            XCTAssertEqual(y.shape, [1, 1, 2, 3], mode)
            XCTAssertEqual(y.floatValues().count, values.count, mode)
            for (a, b) in zip(y.floatValues(), values) { XCTAssertEqual(a, b, accuracy: 1e-5, mode) }
        }
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
