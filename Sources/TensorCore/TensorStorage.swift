import Foundation

/// The bytes behind a `Tensor`: either a buffer the storage owns, or a range borrowed from an
/// object that keeps it alive (a memory-mapped model file), so weights are never copied on read.
///
/// Storage is immutable once shared: `Tensor` copies it before a write unless it is uniquely
/// referenced and owned (copy on write). A borrowed range may be unaligned for its element type
/// (protobuf places raw_data at any offset); typed access then reads from an aligned copy made
/// once, on first use.
public final class TensorStorage: @unchecked Sendable {
    public let byteCount: Int
    /// Start of the bytes; for a borrowed range, possibly unaligned.
    public let base: UnsafeMutableRawPointer
    public let isOwned: Bool
    private let owner: AnyObject?
    /// The block of `ActivationArena.shared` behind `base`, if it came from there.
    let arenaBlock: (offset: Int, length: Int)?
    private var alignedCopy: UnsafeMutableRawPointer?
    /// Guards `alignedCopy` of every storage: the copy is rare (misaligned borrowed ranges only),
    /// and one shared lock spares each tensor a lock object of its own (an allocation and a
    /// mutex set up and torn down per intermediate tensor of every run).
    private static let alignedCopyLock = NSLock()

    /// Maximum alignment any element type needs (complex128 / SIMD loads).
    public static let alignment = 64

    /// Allocates zero-filled owned storage.
    public convenience init(byteCount: Int) {
        self.init(uninitializedByteCount: byteCount)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
    }

    /// Allocates owned storage without initializing it (the caller fills every byte).
    public init(uninitializedByteCount byteCount: Int) {
        self.byteCount = byteCount
        if byteCount >= ActivationArena.minimumBytes, let arena = ActivationArena.shared,
           let block = arena.allocate(byteCount) {
            base = block.pointer
            arenaBlock = (block.offset, block.length)
        } else {
            base = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: Self.alignment)
            arenaBlock = nil
        }
        isOwned = true
        owner = nil
    }

    /// Borrows `byteCount` bytes at `pointer`, kept alive by `owner`. Nothing is copied.
    public init(borrowing pointer: UnsafeRawPointer, byteCount: Int, owner: AnyObject) {
        self.byteCount = byteCount
        base = UnsafeMutableRawPointer(mutating: pointer)
        isOwned = false
        self.owner = owner
        arenaBlock = nil
    }

    /// Copies `bytes` into new owned storage.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(uninitializedByteCount: bytes.count)
        if bytes.count > 0 { base.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
    }

    deinit {
        if let arenaBlock {
            ActivationArena.shared!.free(offset: arenaBlock.offset, length: arenaBlock.length)
        } else if isOwned {
            base.deallocate()
        }
        alignedCopy?.deallocate()
    }

    /// A pointer aligned for elements of `alignment` bytes, copying a misaligned borrowed range once.
    public func alignedBase(_ alignment: Int) -> UnsafeMutableRawPointer {
        if Int(bitPattern: base) % max(alignment, 1) == 0 { return base }
        Self.alignedCopyLock.lock(); defer { Self.alignedCopyLock.unlock() }
        if let c = alignedCopy { return c }
        let c = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: Self.alignment)
        c.copyMemory(from: base, byteCount: byteCount)
        alignedCopy = c
        return c
    }

    /// A copy this storage owns.
    public func ownedCopy() -> TensorStorage {
        TensorStorage(copying: UnsafeRawBufferPointer(start: base, count: byteCount))
    }
}

/// A read-only memory map of a whole file; the owner that borrowed tensor storage keeps alive.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer?
    public let count: Int

    public enum Failure: Error, CustomStringConvertible {
        case cannotOpen(String, String)
        case cannotMap(String, String)
        public var description: String {
            switch self {
            case .cannotOpen(let p, _), .cannotMap(let p, _): return "\(p): \(reason)"
            }
        }
        /// What went wrong, without the path (for messages that name the file themselves).
        public var reason: String {
            switch self {
            case .cannotOpen(_, let why): return "cannot open: \(why)"
            case .cannotMap(_, let why): return "cannot map: \(why)"
            }
        }
    }

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Failure.cannotOpen(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure.cannotOpen(path, String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw Failure.cannotOpen(path, "is a directory") }
        count = Int(st.st_size)
        if count == 0 { base = nil; return }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw Failure.cannotMap(path, String(cString: strerror(errno))) }
        base = UnsafeRawPointer(p)
    }

    deinit { if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) } }

    /// The whole file as `Data` that borrows the map (no copy); `self` stays alive with it.
    public var data: Data {
        guard let base else { return Data() }
        return Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: count,
                    deallocator: .custom { [self] _, _ in _ = self })
    }
}
