import XCTest
import ModelIR
@testable import Runtime
import TensorCore

/// Runs one node of the standard registry on `inputs` (nil = omitted optional input).
private func evalNode(_ op: String, _ inputs: [Tensor?], _ attributes: [String: AttributeValue] = [:], opset: Int = 19, outputs: Int = 1) throws -> [Tensor] {
    let node = Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" },
                    outputs: (0..<outputs).map { "y\($0)" },
                    attributes: attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) })
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset), "\(op)-\(opset) is not registered")
    return try impl.kernel(inputs, KernelContext(node: node, opset: opset))
}

/// Runs a node's shape function with the given input types and known values.
private func infer(_ op: String, _ inputs: [TensorInfo?], values: [Tensor?]? = nil, _ attributes: [String: AttributeValue] = [:],
                   opset: Int = 19, outputs: Int = 1) throws -> [TensorInfo] {
    let node = Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" },
                    outputs: (0..<outputs).map { "y\($0)" },
                    attributes: attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) })
    let impl = try XCTUnwrap(OpRegistry.standard.implementation(op, domain: "", opset: opset))
    return try impl.infer(inputs, values ?? inputs.map { _ in nil }, KernelContext(node: node, opset: opset))
}

private func ints(_ v: [Int64]) -> Tensor { Tensor(shape: [v.count], scalars: v) }
private func iota(_ shape: [Int]) -> Tensor { Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { Float($0) }) }

final class TensorOpsTests: XCTestCase {
    // MARK: Shape inference through a Shape → Gather → Unsqueeze → Concat → Reshape chain

    /// `x[batch, 3, 4, 5]` reshaped to `[batch, -1]` where `batch` is read from the tensor at run
    /// time, as torch.onnx exports `x.view(x.size(0), -1)`. With the batch pinned to 2, shape
    /// inference must fold the chain and give Reshape the concrete shape [2, 60].
    func testShapeInferenceFoldsShapeGatherConcatReshapeChain() throws {
        let b = GraphBuilder(name: "chain")
        b.input("x", .float32, [.symbolic("batch"), .fixed(3), .fixed(4), .fixed(5)])
        let shape = b.op("Shape", ["x"])
        let zero = b.initializer("zero", Tensor(scalar: Int64(0)))
        let batch = b.op("Gather", [shape, zero], ["axis": .int(0)])
        let axes = b.initializer("axes", ints([0]))
        let batch1 = b.op("Unsqueeze", [batch, axes])
        let rest = b.initializer("rest", ints([-1]))
        let target = b.op("Concat", [batch1, rest], ["axis": .int(0)])
        let y = b.op("Reshape", ["x", target])
        b.output(y)
        let model = Model(graph: b.graph, opsetImports: [OpsetImport(domain: "", version: 17)])

        let si = try ShapeInference(model: model, pins: ["x": [2, 3, 4, 5]])
        XCTAssertEqual(si.types[y], TensorInfo(.float32, [2, 60]))
        XCTAssertEqual(si.values[target]?.int64Values(), [2, -1])
        // The default dynamic batch is 1.
        let si1 = try ShapeInference(model: model)
        XCTAssertEqual(si1.types[y], TensorInfo(.float32, [1, 60]))
    }

    func testShapeFunctionsUseKnownValues() throws {
        let x = TensorInfo(.float32, [2, 3, 8, 8])
        // Slice with known starts/ends/axes/steps.
        let sl = try infer("Slice", [x, TensorInfo(.int64, [1]), TensorInfo(.int64, [1]), TensorInfo(.int64, [1]), TensorInfo(.int64, [1])],
                           values: [nil, ints([-1]), ints([Int64.min]), ints([3]), ints([-3])])
        XCTAssertEqual(sl[0].shape, [2, 3, 8, 3])
        // Resize with sizes.
        let rs = try infer("Resize", [x, nil, nil, TensorInfo(.int64, [4])], values: [nil, nil, nil, ints([2, 3, 5, 17])], ["mode": .string("linear")])
        XCTAssertEqual(rs[0].shape, [2, 3, 5, 17])
        // tf_crop_and_resize needs no roi values for the shape.
        let tf = try infer("Resize", [x, TensorInfo(.float32, [8]), nil, TensorInfo(.int64, [4])], values: [nil, nil, nil, ints([2, 3, 4, 4])],
                           ["mode": .string("linear"), "coordinate_transformation_mode": .string("tf_crop_and_resize")])
        XCTAssertEqual(tf[0].shape, [2, 3, 4, 4])
        // Resize with scales floors the product.
        let sc = try infer("Resize", [x, nil, TensorInfo(.float32, [4])], values: [nil, nil, Tensor(shape: [4], scalars: [Float(1), 1, 1.5, 0.3])])
        XCTAssertEqual(sc[0].shape, [2, 3, 12, 2])
        // Split by known sizes and by num_outputs (uneven last part).
        let sp = try infer("Split", [TensorInfo(.float32, [7, 2]), TensorInfo(.int64, [2])], values: [nil, ints([3, 4])], outputs: 2)
        XCTAssertEqual(sp.map(\.shape), [[3, 2], [4, 2]])
        let sn = try infer("Split", [TensorInfo(.float32, [7, 2])], ["num_outputs": .int(3)], outputs: 3)
        XCTAssertEqual(sn.map(\.shape), [[3, 2], [3, 2], [1, 2]])
        // Unknown values are an error naming the input.
        XCTAssertThrowsError(try infer("Reshape", [x, TensorInfo(.int64, [2])])) { e in
            XCTAssertTrue("\(e)".contains("input 'shape'"), "\(e)")
        }
        // TopK's output shape follows K.
        let tk = try infer("TopK", [x, TensorInfo(.int64, [1])], values: [nil, ints([4])], outputs: 2)
        XCTAssertEqual(tk.map(\.shape), [[2, 3, 8, 4], [2, 3, 8, 4]])
        XCTAssertEqual(tk[1].dtype, .int64)
        // ConstantOfShape / Range / Expand / Tile / Pad.
        XCTAssertEqual(try infer("ConstantOfShape", [TensorInfo(.int64, [2])], values: [ints([4, 0])])[0], TensorInfo(.float32, [4, 0]))
        XCTAssertEqual(try infer("Range", [TensorInfo(.int64, []), TensorInfo(.int64, []), TensorInfo(.int64, [])],
                                 values: [Tensor(scalar: Int64(10)), Tensor(scalar: Int64(-3)), Tensor(scalar: Int64(-4))])[0].shape, [4])
        XCTAssertEqual(try infer("Expand", [TensorInfo(.float32, [3, 1]), TensorInfo(.int64, [3])], values: [nil, ints([2, 1, 6])])[0].shape, [2, 3, 6])
        XCTAssertEqual(try infer("Tile", [TensorInfo(.int8, [2, 3]), TensorInfo(.int64, [2])], values: [nil, ints([3, 2])])[0].shape, [6, 6])
        XCTAssertEqual(try infer("Pad", [x, TensorInfo(.int64, [8])], values: [nil, ints([0, 0, 1, -1, 0, 0, 2, 3])])[0].shape, [2, 3, 11, 10])
    }

    // MARK: Hand-checked kernels

    /// x = [[0 … 5], [6 … 11], [12 … 17]]; rows 2, 1, 0 (start −1, end −∞, step −1) and columns
    /// 5, 3, 1 (start INT_MAX clamps to 5, step −2, end 0 excluded).
    func testSliceNegativeSteps() throws {
        let x = iota([3, 6])
        let y = try evalNode("Slice", [x, ints([-1, Int64.max]), ints([Int64.min, 0]), ints([0, 1]), ints([-1, -2])], opset: 13)[0]
        XCTAssertEqual(y.shape, [3, 3])
        XCTAssertEqual(y.floatValues(), [17, 15, 13, 11, 9, 7, 5, 3, 1])
        // Slice-1 with attributes; out-of-range ends clamp.
        let z = try evalNode("Slice", [x], ["starts": .ints([1]), "ends": .ints([1000]), "axes": .ints([1])], opset: 1)[0]
        XCTAssertEqual(z.shape, [3, 5])
        XCTAssertEqual(z.floatValues().prefix(5), [1, 2, 3, 4, 5])
        // An empty slice (start after end with a positive step).
        XCTAssertEqual(try evalNode("Slice", [x, ints([4]), ints([2]), ints([1])], opset: 13)[0].shape, [3, 0])
        // Step 0 is an error.
        XCTAssertThrowsError(try evalNode("Slice", [x, ints([0]), ints([2]), ints([1]), ints([0])], opset: 13))
    }

    /// Nearest, asymmetric, floor: x_orig = y / s. For length 4 upsampled by 2 the sources are
    /// 0, 0, 1, 1, 2, 2, 3, 3; downsampled to 3 by sizes (s = 3/4) they are ⌊0⌋, ⌊4/3⌋, ⌊8/3⌋ = 0, 1, 2.
    func testResizeNearestAsymmetric() throws {
        let x = Tensor(shape: [1, 1, 2, 4], scalars: [Float(1), 2, 3, 4, 5, 6, 7, 8])
        let attrs: [String: AttributeValue] = ["mode": .string("nearest"), "coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("floor")]
        let up = try evalNode("Resize", [x, nil, Tensor(shape: [4], scalars: [Float(1), 1, 1, 2])], attrs)[0]
        XCTAssertEqual(up.shape, [1, 1, 2, 8])
        XCTAssertEqual(up.floatValues(), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8])
        let down = try evalNode("Resize", [x, nil, nil, ints([1, 1, 1, 3])], attrs)[0]
        XCTAssertEqual(down.floatValues(), [1, 2, 3])
        // Nearest copies elements bit-exactly for any dtype (uint8 here).
        let u = Tensor(shape: [1, 1, 1, 3], scalars: [UInt8(9), 200, 255])
        let uu = try evalNode("Resize", [u, nil, Tensor(shape: [4], scalars: [Float(1), 1, 2, 2])], attrs)[0]
        XCTAssertEqual(uu.scalars(as: UInt8.self), [9, 9, 200, 200, 255, 255, 9, 9, 200, 200, 255, 255])
        // Linear, align_corners, length 2 -> 3: the midpoint averages its neighbours.
        let lin = try evalNode("Resize", [Tensor(shape: [1, 2], scalars: [Float(2), 6]), nil, nil, ints([1, 3])],
                          ["mode": .string("linear"), "coordinate_transformation_mode": .string("align_corners")])[0]
        XCTAssertEqual(lin.floatValues(), [2, 4, 6])
    }

    /// Equal values keep the lower index first, for both largest and smallest.
    func testTopKTies() throws {
        let x = Tensor(shape: [6], scalars: [Float(1), 3, 3, 2, 3, 1])
        let big = try evalNode("TopK", [x, ints([4])], outputs: 2)
        XCTAssertEqual(big[0].floatValues(), [3, 3, 3, 2])
        XCTAssertEqual(big[1].int64Values(), [1, 2, 4, 3])
        let small = try evalNode("TopK", [x, ints([3])], ["largest": .int(0)], outputs: 2)
        XCTAssertEqual(small[0].floatValues(), [1, 1, 2])
        XCTAssertEqual(small[1].int64Values(), [0, 5, 3])
        // The partial-selection path (k much smaller than n) gives the same order.
        let long = Tensor(shape: [40], scalars: (0..<40).map { Float($0 % 5) })
        let t = try evalNode("TopK", [long, ints([3])], outputs: 2)
        XCTAssertEqual(t[1].int64Values(), [4, 9, 14])
        // TopK-1 takes k as an attribute; K beyond the axis is an error.
        XCTAssertEqual(try evalNode("TopK", [x], ["k": .int(1)], opset: 1, outputs: 2)[1].int64Values(), [1])
        XCTAssertThrowsError(try evalNode("TopK", [x, ints([7])], outputs: 2))
    }

    func testReshapeZeroAndMinusOne() throws {
        let x = iota([2, 3, 4])
        XCTAssertEqual(try evalNode("Reshape", [x, ints([0, -1])])[0].shape, [2, 12])
        XCTAssertEqual(try evalNode("Reshape", [x, ints([-1, 0, 2])])[0].shape, [4, 3, 2])
        // allowzero: 0 is a literal zero, so an empty input reshapes to a shape holding 0.
        XCTAssertEqual(try evalNode("Reshape", [Tensor(dtype: .float32, shape: [0, 3]), ints([3, 0])], ["allowzero": .int(1)])[0].shape, [3, 0])
        XCTAssertThrowsError(try evalNode("Reshape", [x, ints([5, -1])]))
        XCTAssertThrowsError(try evalNode("Reshape", [x, ints([-1, -1])]))
    }

    func testPadModes() throws {
        let x = Tensor(shape: [4], scalars: [Float(1), 2, 3, 4])
        func pad(_ mode: String, _ b: Int64, _ e: Int64) throws -> [Float] {
            try evalNode("Pad", [x, ints([b, e])], ["mode": .string(mode)])[0].floatValues()
        }
        XCTAssertEqual(try pad("constant", 2, 1), [0, 0, 1, 2, 3, 4, 0])
        XCTAssertEqual(try pad("reflect", 2, 2), [3, 2, 1, 2, 3, 4, 3, 2])
        XCTAssertEqual(try pad("edge", 2, 1), [1, 1, 1, 2, 3, 4, 4])
        XCTAssertEqual(try pad("wrap", 2, 3), [3, 4, 1, 2, 3, 4, 1, 2, 3])
        XCTAssertEqual(try pad("constant", -1, 1), [2, 3, 4, 0])
        // Pad-2 with the attribute form and a fill value.
        XCTAssertEqual(try evalNode("Pad", [x], ["pads": .ints([1, 0]), "value": .float(9)], opset: 2)[0].floatValues(), [9, 1, 2, 3, 4])
    }

    func testTransposeIsDtypeGeneric() throws {
        let x = Tensor(shape: [2, 3], scalars: [Int16(1), 2, 3, 4, 5, 6])
        let y = try evalNode("Transpose", [x])[0]
        XCTAssertEqual(y.shape, [3, 2])
        XCTAssertEqual(y.scalars(as: Int16.self), [1, 4, 2, 5, 3, 6])
        let d = Tensor(shape: [2, 1, 2], scalars: [1.5, 2.5, 3.5, 4.5])
        XCTAssertEqual(try evalNode("Transpose", [d], ["perm": .ints([2, 0, 1])])[0].scalars(as: Double.self), [1.5, 3.5, 2.5, 4.5])
        XCTAssertThrowsError(try evalNode("Transpose", [x], ["perm": .ints([0, 0])]))
    }

    func testEinsumAttentionPatterns() throws {
        // bhid,bhjd->bhij with b = h = 1: Q·Kᵀ.
        let q = Tensor(shape: [1, 1, 2, 2], scalars: [Float(1), 2, 3, 4])
        let k = Tensor(shape: [1, 1, 3, 2], scalars: [Float(1), 0, 0, 1, 1, 1])
        let s = try evalNode("Einsum", [q, k], ["equation": .string("bhid,bhjd->bhij")], opset: 12)[0]
        XCTAssertEqual(s.shape, [1, 1, 2, 3])
        XCTAssertEqual(s.floatValues(), [1, 2, 3, 3, 4, 7])
        // Outer product, reduction over a label, trace.
        let a = Tensor(shape: [2], scalars: [Float(1), 2]), b = Tensor(shape: [3], scalars: [Float(1), 10, 100])
        XCTAssertEqual(try evalNode("Einsum", [a, b], ["equation": .string("i,j->ij")], opset: 12)[0].floatValues(), [1, 10, 100, 2, 20, 200])
        XCTAssertEqual(try evalNode("Einsum", [iota([2, 3])], ["equation": .string("ij->j")], opset: 12)[0].floatValues(), [3, 5, 7])
        XCTAssertEqual(try evalNode("Einsum", [iota([3, 3])], ["equation": .string("ii")], opset: 12)[0].floatValues(), [12])
        XCTAssertThrowsError(try evalNode("Einsum", [a, b], ["equation": .string("i,i->i")], opset: 12))
    }

    func testGatherScatterAndNonZero() throws {
        let x = iota([3, 2])
        XCTAssertEqual(try evalNode("Gather", [x, ints([-1, 0])])[0].floatValues(), [4, 5, 0, 1])
        XCTAssertThrowsError(try evalNode("Gather", [x, ints([3])]))
        let s = try evalNode("ScatterND", [x, Tensor(shape: [2, 1], scalars: [Int64(1), 1]), Tensor(shape: [2, 2], scalars: [Float(10), 20, 30, 40])],
                        ["reduction": .string("add")], opset: 18)[0]
        XCTAssertEqual(s.floatValues(), [0, 1, 42, 63, 4, 5])
        let nz = try evalNode("NonZero", [Tensor(shape: [2, 2], scalars: [Float(0), -0.0, .nan, 3])])[0]
        XCTAssertEqual(nz.shape, [2, 2])
        XCTAssertEqual(nz.int64Values(), [1, 1, 0, 1])
    }

    func testConstantsAndErrors() throws {
        XCTAssertEqual(try evalNode("Constant", [], ["value_ints": .ints([1, 2])], opset: 13)[0].int64Values(), [1, 2])
        XCTAssertThrowsError(try evalNode("Constant", [], ["value_string": .string("a")], opset: 13)) { e in
            XCTAssertTrue("\(e)".contains("string constants are not supported"), "\(e)")
        }
        XCTAssertThrowsError(try evalNode("Constant", [], ["sparse_value": .opaque], opset: 13)) { e in
            XCTAssertTrue("\(e)".contains("sparse"), "\(e)")
        }
        let eye = try evalNode("EyeLike", [Tensor(dtype: .float32, shape: [2, 3])], ["k": .int(1), "dtype": .int(7)], opset: 9)[0]
        XCTAssertEqual(eye.int64Values(), [0, 1, 0, 0, 0, 1])
        XCTAssertEqual(try evalNode("Range", [Tensor(scalar: Float(1)), Tensor(scalar: Float(2)), Tensor(scalar: Float(0.25))], opset: 11)[0].floatValues(),
                       [1, 1.25, 1.5, 1.75])
        // Shapes computed from tensor contents that would overflow are errors, not traps.
        XCTAssertThrowsError(try evalNode("ConstantOfShape", [ints([Int64(1) << 40, Int64(1) << 40])], opset: 9))
        XCTAssertThrowsError(try evalNode("Range", [Tensor(scalar: Int64.min), Tensor(scalar: Int64.max), Tensor(scalar: Int64(1))], opset: 11))
        XCTAssertThrowsError(try evalNode("Tile", [iota([2, 3]), ints([Int64(1) << 62, 4])], opset: 13))
        XCTAssertThrowsError(try evalNode("Reshape", [iota([2, 3]), ints([Int64(1) << 62, Int64(1) << 62, -1])], opset: 13))
        XCTAssertThrowsError(try evalNode("Resize", [iota([1, 2]), nil, Tensor(shape: [2], scalars: [Float(1), .infinity])], opset: 13))
        // Errors are one line and name the node.
        XCTAssertThrowsError(try evalNode("Squeeze", [iota([2, 3]), ints([0])], opset: 13)) { e in
            XCTAssertTrue("\(e)".hasPrefix("node 'Squeeze(y0)' (Squeeze):"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"))
        }
    }

    // MARK: Movement primitives

    func testMovementGatherFillsAndCopiesRuns() throws {
        let x = iota([2, 3])
        // Rows 1, −1 (fill), 0; columns identity (one contiguous run per row).
        let y = try Movement.gather(x, maps: [[1, -1, 0], [0, 1, 2]], fill: Tensor(scalar: Float(-1)).withUnsafeBytes { Array($0) })
        XCTAssertEqual(y.floatValues(), [3, 4, 5, -1, -1, -1, 0, 1, 2])
        // Broadcast view with stride 0 and a reversed view with a negative stride.
        let b = try Movement.copyView(Tensor(shape: [3], scalars: [Float(1), 2, 3]), shape: [2, 3], strides: [0, 1])
        XCTAssertEqual(b.floatValues(), [1, 2, 3, 1, 2, 3])
        let r = try Movement.copyView(x, shape: [3], strides: [-1], offset: 5)
        XCTAssertEqual(r.floatValues(), [5, 4, 3])
        XCTAssertThrowsError(try Movement.transpose(Tensor(dtype: .int4, shape: [2, 2]), perm: [1, 0]))
    }
}
