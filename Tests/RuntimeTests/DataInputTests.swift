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
