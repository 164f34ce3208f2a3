import XCTest
import ModelIR
@testable import Runtime
import TensorCore

/// `DataInput.conform`: the batch-dimension and element-type rules for data files.
final class DataInputTests: XCTestCase {
    let fixed = DataInput(name: "x", dtype: .float32, shape: [1, 1, 2, 2], flexibleBatch: false, pinned: false)
    let flexible = DataInput(name: "x", dtype: .float32, shape: [1, 1, 2, 2], flexibleBatch: true, pinned: false)

    func floats(_ shape: [Int]) -> Tensor { Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { Float($0) }) }

    func testShapes() throws {
        XCTAssertEqual(try fixed.conform(floats([1, 1, 2, 2]), path: "a").shape, [1, 1, 2, 2])
        XCTAssertEqual(try fixed.conform(floats([1, 2, 2]), path: "a").shape, [1, 1, 2, 2], "the batch dim is added")
        XCTAssertEqual(try flexible.conform(floats([4, 1, 2, 2]), path: "a").shape, [4, 1, 2, 2], "any batch for a dynamic one")
        XCTAssertThrowsError(try fixed.conform(floats([4, 1, 2, 2]), path: "d/a.npy")) { e in
            XCTAssertEqual("\(e)", "d/a.npy: shape 4x1x2x2 does not fit input 'x' 1x1x2x2 (as declared by the model); give the input's shape with or without the leading batch dimension")
        }
        let pinned = DataInput(name: "x", dtype: .float32, shape: [2, 1, 2, 2], flexibleBatch: false, pinned: true)
        XCTAssertThrowsError(try pinned.conform(floats([1, 2, 2]), path: "a.npy")) { e in
            XCTAssertTrue("\(e)".contains("(as pinned by --input)"), "\(e)")
        }
        XCTAssertThrowsError(try flexible.conform(floats([1, 1, 3, 2]), path: "a.npy"))
        XCTAssertThrowsError(try flexible.conform(floats([0, 1, 2, 2]), path: "a.npy"))
    }

    func testElementTypes() throws {
        let d = Tensor(shape: [1, 1, 2, 2], scalars: [Double](arrayLiteral: 0.1, 2, -3, 1e-40))
        let f = try fixed.conform(d, path: "a")
        XCTAssertEqual(f.dtype, .float32)
        XCTAssertEqual(f.scalars(as: Float.self), [Float(0.1), 2, -3, Float(1e-40)])
        XCTAssertThrowsError(try fixed.conform(Tensor(shape: [1, 1, 2, 2], scalars: [Int64](arrayLiteral: 1, 2, 3, 4)), path: "d/i.npy")) { e in
            XCTAssertTrue("\(e)".hasPrefix("d/i.npy: dtype int64 cannot feed input 'x' (float32): integer data for a float input"), "\(e)")
        }
        let ids = DataInput(name: "ids", dtype: .int32, shape: [1, 3], flexibleBatch: false, pinned: false)
        XCTAssertEqual(try ids.conform(Tensor(shape: [1, 3], scalars: [Int64](arrayLiteral: -1, 0, 2_000_000_000)), path: "a").scalars(as: Int32.self), [-1, 0, 2_000_000_000])
        XCTAssertThrowsError(try ids.conform(Tensor(shape: [1, 3], scalars: [Int64](arrayLiteral: 0, 1 << 40, 0)), path: "t.npy")) { e in
            XCTAssertTrue("\(e)".contains("element 1 (1099511627776) is out of range for int32"), "\(e)")
        }
        XCTAssertThrowsError(try ids.conform(Tensor(shape: [1, 3], scalars: [Float](arrayLiteral: 0, 1, 2)), path: "t.npy")) { e in
            XCTAssertTrue("\(e)".contains("float data for an integer input"), "\(e)")
        }
        let u = DataInput(name: "u", dtype: .uint8, shape: [2], flexibleBatch: false, pinned: false)
        XCTAssertThrowsError(try u.conform(Tensor(shape: [2], scalars: [Int8](arrayLiteral: 1, -1)), path: "t.npy"))
        let big = DataInput(name: "b", dtype: .int64, shape: [1], flexibleBatch: false, pinned: false)
        XCTAssertThrowsError(try big.conform(Tensor(shape: [1], scalars: [UInt64](arrayLiteral: .max)), path: "t.npy")) { e in
            XCTAssertTrue("\(e)".contains("18446744073709551615"), "\(e)")
        }
    }

    func testResolveFromGraph() throws {
        let b = GraphBuilder(name: "g")
        let x = b.input("x", .float32, [.symbolic("N"), .fixed(3)])
        b.output(b.op("Identity", [x]))
        let g = b.graph
        let free = try DataInput.resolve(graph: g, pins: [:])
        XCTAssertEqual(free, [DataInput(name: "x", dtype: .float32, shape: [1, 3], flexibleBatch: true, pinned: false)])
        let pinned = try DataInput.resolve(graph: g, pins: ["x": [2, 3]])
        XCTAssertEqual(pinned, [DataInput(name: "x", dtype: .float32, shape: [2, 3], flexibleBatch: false, pinned: true)])
    }
}

/// The `--input` rule on dynamic dimensions in every spelling: `dim_param`, neither value nor
/// name, and a negative `dim_value` (read as `.unknown`, as paddle2onnx's -1 is).
final class InputShapesDynamicTests: XCTestCase {
    func paddleLike() -> Graph {
        let b = GraphBuilder(name: "ocr")
        let x = b.input("x", .float32, [.unknown, .fixed(3), .fixed(48), .unknown])
        b.output(b.op("Identity", [x]))
        return b.graph
    }

    func testPinsPinUnknownDims() throws {
        let r = try InputShapes.resolve(graph: paddleLike(), pins: try InputShapes.parse(["x=1x3x48x192"]))
        XCTAssertEqual(r["x"], TensorInfo(.float32, [1, 3, 48, 192]))
        XCTAssertThrowsError(try InputShapes.resolve(graph: paddleLike(), pins: ["x": [1, 3, 32, 192]])) { e in
            XCTAssertEqual("\(e)", "--input x: dimension 2 is fixed to 48 by the model, not 32")
        }
    }

    func testUnpinnedUnknownDimNamesAParsableExample() throws {
        XCTAssertThrowsError(try InputShapes.resolve(graph: paddleLike(), pins: [:])) { e in
            XCTAssertEqual("\(e)", "input 'x' dimension 3 ('?') is dynamic; pin it with --input x=1x3x48xN (N: the size to run at)")
            // The suggestion, with N filled in, is accepted by the parser.
            let suggestion = "\(e)".components(separatedBy: "--input ").last?.components(separatedBy: " ").first ?? ""
            XCTAssertEqual(try? InputShapes.parse([suggestion.replacingOccurrences(of: "N", with: "64")]), ["x": [1, 3, 48, 64]])
        }
        XCTAssertThrowsError(try InputShapes.parse(["x=-1x3x48x64"]), "a negative pin is refused")
    }

    /// A named (dim_param) batch is 1 unpinned; a named non-batch dim must be pinned, like -1.
    func testSymbolicDims() throws {
        let b = GraphBuilder(name: "g")
        let x = b.input("x", .float32, [.symbolic("batch"), .fixed(3), .symbolic("width")])
        b.output(b.op("Identity", [x]))
        XCTAssertThrowsError(try InputShapes.resolve(graph: b.graph, pins: [:])) { e in
            XCTAssertEqual("\(e)", "input 'x' dimension 2 ('width') is dynamic; pin it with --input x=1x3xN (N: the size to run at)")
        }
        XCTAssertEqual(try InputShapes.resolve(graph: b.graph, pins: ["x": [4, 3, 7]])["x"], TensorInfo(.float32, [4, 3, 7]))
    }
}

/// The shared evaluation measures (`Evaluation.swift`) on hand-computed cases.
final class EvaluationMeasureTests: XCTestCase {
    func testRankingNaNAndTies() {
        let t = Tensor(shape: [2, 4], scalars: [Float](arrayLiteral: 1, .nan, 3, 3, -1, -2, -1, 0))
        XCTAssertEqual(ClassScores.ranked(t, k: 4).map { $0.map(\.class) }, [[2, 3, 0, 1], [3, 0, 2, 1]])
        XCTAssertEqual(ClassScores.argmax(t), [2, 3])
        XCTAssertNil(ClassScores.argmax(Tensor(shape: [2, 1], scalars: [Float](arrayLiteral: 1, 2))), "one class is not class scores")
        XCTAssertNil(ClassScores.argmax(Tensor(shape: [4], scalars: [Float](arrayLiteral: 1, 2, 3, 4))))
    }

    func testAccuracyCounter() {
        var a = AccuracyCounter()
        let t = Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 0.1, 0.7, 0.2, 0.5, 0.3, 0.2))
        a.add(ClassScores.ranked(t, k: 2), label: 1)
        XCTAssertEqual(a.evaluated, 2)
        XCTAssertEqual(a.top1Correct, 1, "row 0 ranks class 1 first")
        XCTAssertEqual(a.topKCorrect, 2, "row 1 has class 1 second")
        XCTAssertEqual(a.top1, 0.5)
        XCTAssertNil(AccuracyCounter().top1)
    }

    /// SQNR = 10·log10(Σref²/Σ(ref−out)²): ref (3, 4) vs out (2.5, 4) → 10·log10(25/0.25) = 20 dB.
    func testAgreementAndSQNR() {
        var g = OutputAgreement()
        let ref = Tensor(shape: [1, 2], scalars: [Float](arrayLiteral: 3, 4)), out = Tensor(shape: [1, 2], scalars: [Float](arrayLiteral: 2.5, 4))
        g.add(reference: [ref], candidate: [out])
        XCTAssertEqual(g.agreement, 1, "both rank class 1 first")
        XCTAssertEqual(g.sqnrDB!, 20, accuracy: 1e-12)
        g.add(reference: [ref], candidate: [Tensor(shape: [1, 2], scalars: [Float](arrayLiteral: 5, 1))])
        XCTAssertEqual(g.agreement, 0.5)
        var same = OutputAgreement()
        same.add(reference: [ref], candidate: [ref])
        XCTAssertNil(same.sqnrDB, "identical outputs: infinite SQNR")
        var boxes = OutputAgreement()
        boxes.add(reference: [Tensor(shape: [4], scalars: [Float](arrayLiteral: 1, 2, 3, 4))], candidate: [Tensor(shape: [4], scalars: [Float](arrayLiteral: 1, 2, 3, 5))])
        XCTAssertNil(boxes.agreement, "no class scores: no agreement")
        XCTAssertEqual(boxes.sqnrDB!, 10 * log10(30.0), accuracy: 1e-12)
    }
}
