import XCTest
@testable import TensorCore

/// Value semantics, copy on write, borrowed (memory-mapped) storage, DType sizes and Cast rules.
final class TensorTests: XCTestCase {
    func testCopyOnWriteLeavesTheOriginalIntact() {
        let a = Tensor(shape: [2, 3], scalars: [Float](arrayLiteral: 1, 2, 3, 4, 5, 6))
        var b = a
        XCTAssertTrue(a.storage === b.storage, "a copy shares storage until written")
        b.withUnsafeMutableBufferPointer(as: Float.self) { $0[0] = 100 }
        XCTAssertFalse(a.storage === b.storage, "the first write copies shared storage")
        XCTAssertEqual(a.scalars(as: Float.self), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(b.scalars(as: Float.self), [100, 2, 3, 4, 5, 6])
    }

    func testUniqueOwnerWritesInPlace() {
        var a = Tensor(shape: [4], scalars: [Int32](arrayLiteral: 1, 2, 3, 4))
        let before = a.withUnsafeBytes { $0.baseAddress }  // no second reference to the storage
        a.withUnsafeMutableBufferPointer(as: Int32.self) { $0[3] = 9 }
        XCTAssertEqual(a.withUnsafeBytes { $0.baseAddress }, before, "a uniquely owned buffer is written in place")
        XCTAssertEqual(a.scalars(as: Int32.self), [1, 2, 3, 9])
    }

    func testReshapedSharesStorageAndCopiesOnWrite() {
        let a = Tensor(shape: [2, 2], scalars: [Float](arrayLiteral: 1, 2, 3, 4))
        var r = a.reshaped([4])
        XCTAssertTrue(r.storage === a.storage)
        r.withUnsafeMutableBytes { $0.storeBytes(of: Float(7), as: Float.self) }
        XCTAssertEqual(a.scalars(as: Float.self), [1, 2, 3, 4])
        XCTAssertEqual(r.scalars(as: Float.self), [7, 2, 3, 4])
        XCTAssertEqual(r.shape, [4])
    }

    /// Storage borrowed from a buffer someone else owns (a memory map) is never written: the first
    /// write copies it, even when the tensor is its only reference.
    func testBorrowedStorageIsCopiedOnFirstWrite() {
        let owner = ByteBox([Float](arrayLiteral: 1, 2, 3))
        var t = Tensor(dtype: .float32, shape: [3],
                       storage: TensorStorage(borrowing: owner.pointer, byteCount: 12, owner: owner))
        XCTAssertFalse(t.storage.isOwned)
        XCTAssertEqual(t.scalars(as: Float.self), [1, 2, 3], "reads go straight to the borrowed bytes")
        t.withUnsafeMutableBufferPointer(as: Float.self) { $0[1] = -5 }
        XCTAssertTrue(t.storage.isOwned)
        XCTAssertEqual(t.scalars(as: Float.self), [1, -5, 3])
        XCTAssertEqual(owner.floats, [1, 2, 3], "the borrowed bytes are untouched")
    }

    /// protobuf puts raw_data at any file offset: a borrowed range may be misaligned for its
    /// element type. Typed access then reads an aligned copy (made once); raw access sees the
    /// original bytes.
    func testUnalignedBorrowedStorage() {
        let values: [Float] = [1.5, -2.25, 3e-3, .infinity]
        let owner = ByteBox(bytes: [0xAA] + values.withUnsafeBytes { Array($0) })
        let p = owner.pointer + 1
        XCTAssertNotEqual(Int(bitPattern: p) % 4, 0)
        let t = Tensor(dtype: .float32, shape: [4], storage: TensorStorage(borrowing: p, byteCount: 16, owner: owner))
        XCTAssertEqual(t.scalars(as: Float.self), values)
        let aligned1 = t.storage.alignedBase(4)
        let aligned2 = t.storage.alignedBase(4)
        XCTAssertEqual(Int(bitPattern: aligned1) % 4, 0)
        XCTAssertEqual(aligned1, aligned2, "the aligned copy is made once")
        t.withUnsafeBytes { XCTAssertEqual($0.baseAddress, UnsafeRawPointer(p)) }
        XCTAssertEqual(t.floatValues(), values)
        XCTAssertEqual(t.converted(to: .float64).scalars(as: Double.self), values.map(Double.init))
    }

    func testInitializersAndCounts() {
        let z = Tensor(dtype: .int64, shape: [2, 0, 3])
        XCTAssertEqual(z.count, 0)
        XCTAssertEqual(z.byteCount, 0)
        let s = Tensor(scalar: Float(3))
        XCTAssertEqual(s.rank, 0)
        XCTAssertEqual(s.count, 1)
        XCTAssertEqual(s.scalars(as: Float.self), [3])
        let zeros = Tensor(dtype: .float32, shape: [3])
        XCTAssertEqual(zeros.scalars(as: Float.self), [0, 0, 0])
        let i4 = Tensor(dtype: .int4, shape: [3])
        XCTAssertEqual(i4.byteCount, 2, "sub-byte types pack, rounded up")
        XCTAssertTrue(Tensor(shape: [2], scalars: [Float](arrayLiteral: 1, 2)).isBitwiseEqual(to: Tensor(shape: [2], scalars: [Float](arrayLiteral: 1, 2))))
        XCTAssertFalse(Tensor(shape: [2], scalars: [Float](arrayLiteral: 1, 2)).isBitwiseEqual(to: Tensor(shape: [1, 2], scalars: [Float](arrayLiteral: 1, 2))))
    }

    func testDTypeSizesMatchONNX() {
        // onnx.helper.tensor_dtype_to_np_dtype(code).itemsize for the byte-sized types.
        let bytes: [DType: Int] = [.float32: 4, .uint8: 1, .int8: 1, .uint16: 2, .int16: 2, .int32: 4, .int64: 8,
                                   .bool: 1, .float16: 2, .float64: 8, .uint32: 4, .uint64: 8, .complex64: 8,
                                   .complex128: 16, .bfloat16: 2, .float8e4m3fn: 1, .float8e5m2: 1]
        for (d, n) in bytes { XCTAssertEqual(d.size, n, "\(d)") }
        XCTAssertEqual(DType.int4.byteCount(elements: 5), 3)
        XCTAssertEqual(DType.uint2.byteCount(elements: 5), 2)
        XCTAssertNil(DType.string.bitWidth)
        XCTAssertEqual(DType(rawValue: 16), .bfloat16)
        XCTAssertEqual(DType(name: "fp16"), .float16)
        XCTAssertEqual(DType(name: "float"), .float32)
        XCTAssertEqual(DType(name: "INT8"), .int8)
        XCTAssertNil(DType(name: "float13"))
    }

    /// ONNX Cast: float to integer truncates toward zero, NaN to integer gives 0 here (undefined
    /// in ONNX), nonzero to bool is true, bool to float is 0/1.
    ///   np.array([-2.7, -0.5, 0.5, 2.7, 127.9]).astype(np.int32) -> [-2, 0, 0, 2, 127]
    func testCastSemantics() {
        let f = Tensor(shape: [5], scalars: [Float](arrayLiteral: -2.7, -0.5, 0.5, 2.7, 127.9))
        XCTAssertEqual(f.converted(to: .int32).scalars(as: Int32.self), [-2, 0, 0, 2, 127])
        XCTAssertEqual(f.converted(to: .int8).scalars(as: Int8.self), [-2, 0, 0, 2, 127])
        XCTAssertEqual(f.converted(to: .bool).scalars(as: UInt8.self), [1, 1, 1, 1, 1])
        XCTAssertEqual(Tensor(shape: [2], scalars: [Float](arrayLiteral: 0, -0.0)).converted(to: .bool).scalars(as: UInt8.self), [0, 0])
        XCTAssertEqual(Tensor(shape: [1], scalars: [Float](arrayLiteral: .nan)).converted(to: .int64).scalars(as: Int64.self), [0])
        XCTAssertEqual(Tensor(shape: [3], scalars: [Bool](arrayLiteral: true, false, true)).converted(to: .float32).scalars(as: Float.self), [1, 0, 1])
        // int64 -> int32 wraps like numpy's astype: np.array([2**31 + 5]).astype(np.int32) -> [-2147483643]
        XCTAssertEqual(Tensor(shape: [1], scalars: [Int64](arrayLiteral: 2_147_483_653)).converted(to: .int32).scalars(as: Int32.self), [-2_147_483_643])
        XCTAssertEqual(Tensor(shape: [2], scalars: [Int64](arrayLiteral: 3_000_000_000, -7)).int64Values(), [3_000_000_000, -7])
        XCTAssertEqual(Tensor(shape: [2], scalars: [UInt8](arrayLiteral: 200, 7)).floatValues(), [200, 7])
    }

    /// `selecting` is numpy's take(indices, axis).
    ///   np.arange(24).reshape(2,3,4).take([2,0], axis=1).ravel()
    ///   -> [8 9 10 11 0 1 2 3 20 21 22 23 12 13 14 15]
    func testSelectingMatchesNumpyTake() {
        let t = Tensor(shape: [2, 3, 4], scalars: (0..<24).map(Float.init))
        let s = t.selecting([2, 0], alongAxis: 1)
        XCTAssertEqual(s.shape, [2, 2, 4])
        XCTAssertEqual(s.scalars(as: Float.self), [8, 9, 10, 11, 0, 1, 2, 3, 20, 21, 22, 23, 12, 13, 14, 15])
        XCTAssertEqual(t.selecting([1], alongAxis: -1).scalars(as: Float.self), [1, 5, 9, 13, 17, 21])
        XCTAssertEqual(t.selecting([], alongAxis: 0).shape, [0, 3, 4])
    }
}

/// Bytes owned by a class instance, standing in for a memory map that lends tensor storage.
final class ByteBox {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(bytes: [UInt8]) {
        count = bytes.count
        pointer = .allocate(byteCount: max(count, 1), alignment: 16)
        bytes.withUnsafeBytes { if count > 0 { pointer.copyMemory(from: $0.baseAddress!, byteCount: count) } }
    }
    convenience init(_ floats: [Float]) { self.init(bytes: floats.withUnsafeBytes { Array($0) }) }
    var floats: [Float] { (0..<count / 4).map { pointer.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
    deinit { pointer.deallocate() }
}
