import Foundation

/// A dense, row-major tensor: an element type, a shape and the bytes, with value semantics.
///
/// Copying a `Tensor` shares its storage; the first write through
/// `withUnsafeMutableBytes`/`withUnsafeMutableBufferPointer` copies it unless this value is
/// its only owner (copy on write). Storage may borrow a memory map (see `TensorStorage`).
public struct Tensor: @unchecked Sendable {
    public private(set) var dtype: DType
    public private(set) var shape: [Int]
    public private(set) var storage: TensorStorage

    /// Number of elements: the product of the dims (1 for a scalar).
    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    /// Bytes of the payload in ONNX's raw layout.
    public var byteCount: Int { storage.byteCount }

    /// Zero-filled tensor.
    public init(dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
        storage = TensorStorage(byteCount: dtype.byteCount(elements: shape.reduce(1, *)))
    }

    /// Wraps existing storage, which must hold exactly the payload of `shape` in `dtype`.
    public init(dtype: DType, shape: [Int], storage: TensorStorage) {
        precondition(storage.byteCount == dtype.byteCount(elements: shape.reduce(1, *)),
                     "storage of \(storage.byteCount) bytes does not fit \(dtype)\(shape)")
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
    }

    /// A tensor of uninitialized storage; the caller must write every element.
    public init(uninitialized dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
        storage = TensorStorage(uninitializedByteCount: dtype.byteCount(elements: shape.reduce(1, *)))
    }

    /// Copies raw bytes in ONNX's raw_data layout (little-endian).
    public init(dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        self.init(dtype: dtype, shape: shape, storage: TensorStorage(copying: bytes))
    }

    /// Builds a tensor from Swift scalars; `scalars.count` must equal the product of `shape`.
    public init<T: TensorScalar>(shape: [Int], scalars: [T]) {
        precondition(shape.reduce(1, *) == scalars.count, "\(scalars.count) scalars for shape \(shape)")
        self.init(uninitialized: T.dtype, shape: shape)
        scalars.withUnsafeBytes { src in
            if src.count > 0 { storage.base.copyMemory(from: src.baseAddress!, byteCount: src.count) }
        }
    }

    /// A scalar (rank 0) tensor.
    public init<T: TensorScalar>(scalar: T) { self.init(shape: [], scalars: [scalar]) }

    // MARK: Access

    /// Reads the raw bytes (possibly an unaligned borrowed range).
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.byteCount))
    }

    /// Reads the elements as `T`, whose size must match the dtype's.
    public func withUnsafeBufferPointer<T, R>(as: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride == dtype.size, "\(T.self) does not match \(dtype)")
        let p = storage.alignedBase(MemoryLayout<T>.alignment)
        return try body(UnsafeBufferPointer(start: p.assumingMemoryBound(to: T.self), count: count))
    }

    /// Makes the storage uniquely owned (copy on write) and returns it.
    private mutating func makeUnique() {
        if !storage.isOwned || !isKnownUniquelyReferenced(&storage) {
            storage = storage.ownedCopy()
        }
    }

    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableRawBufferPointer(start: storage.base, count: storage.byteCount))
    }

    public mutating func withUnsafeMutableBufferPointer<T, R>(as: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride == dtype.size, "\(T.self) does not match \(dtype)")
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.base.assumingMemoryBound(to: T.self), count: count))
    }

    /// The elements as a Swift array of `T` (which must be this tensor's element type).
    public func scalars<T: TensorScalar>(as type: T.Type = T.self) -> [T] {
        precondition(T.dtype == dtype || (T.dtype.size == dtype.size && T.self == UInt8.self && dtype == .bool),
                     "tensor is \(dtype), not \(T.dtype)")
        return withUnsafeBufferPointer(as: T.self) { Array($0) }
    }

    /// The same data under a new shape with the same element count (shares storage).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        var t = self
        t.shape = newShape
        return t
    }

    /// Whether both tensors hold the same dtype, shape and bytes.
    public func isBitwiseEqual(to other: Tensor) -> Bool {
        guard dtype == other.dtype, shape == other.shape, byteCount == other.byteCount else { return false }
        if storage === other.storage { return true }
        return withUnsafeBytes { a in other.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor<\(dtype)>\(shape)" }
}
