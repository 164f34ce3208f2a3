import Foundation

/// Reusable float scratch buffers (im2col columns, converted operands), so a network run does not
/// allocate and fault in a fresh multi-megabyte buffer for every convolution.
///
/// `withBuffer` hands out a buffer of at least the requested size from a small pool and takes it
/// back afterwards; concurrent callers get distinct buffers. Buffers are 64-byte aligned and
/// their contents are undefined on entry.
public enum Scratch {
    private final class Buffer {
        let capacity: Int
        let pointer: UnsafeMutablePointer<Float>
        init(capacity: Int) {
            self.capacity = capacity
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1) * 4, alignment: 64)
            pointer = raw.bindMemory(to: Float.self, capacity: max(capacity, 1))
        }
        deinit { UnsafeMutableRawPointer(pointer).deallocate() }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var free: [Buffer] = []
    /// Buffers larger than this many floats are not kept after use (256 MiB).
    private static let keepLimit = 64 << 20
    /// At most this many idle buffers are kept.
    private static let keepCount = 8

    /// Runs `body` with a buffer of at least `count` floats.
    public static func withBuffer<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let buffer = take(count)
        defer { give(buffer) }
        return try body(buffer.pointer)
    }

    private static func take(_ count: Int) -> Buffer {
        lock.lock()
        // The smallest idle buffer that is large enough; otherwise replace the largest idle one.
        var best: Int? = nil
        for (i, b) in free.enumerated() where b.capacity >= count {
            if best == nil || b.capacity < free[best!].capacity { best = i }
        }
        if let i = best {
            let b = free.remove(at: i)
            lock.unlock()
            return b
        }
        if let i = free.indices.max(by: { free[$0].capacity < free[$1].capacity }) { free.remove(at: i) }
        lock.unlock()
        return Buffer(capacity: count)
    }

    private static func give(_ b: Buffer) {
        guard b.capacity <= keepLimit else { return }
        lock.lock()
        free.append(b)
        if free.count > keepCount, let i = free.indices.min(by: { free[$0].capacity < free[$1].capacity }) { free.remove(at: i) }
        lock.unlock()
    }
}
