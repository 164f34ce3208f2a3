import CKernels
import Foundation

/// Splits independent work items (channels, planes, rows) across the CPU's cores with a
/// persistent spinning thread pool (`ck_parallel_run`, CKernels/pool.c: a loop starts in well
/// under a microsecond, where `DispatchQueue.concurrentPerform` took about 10 µs per call), or
/// runs them inline when the work is too small to pay for the hand-off.
public enum Parallel {
    /// Threads used for kernel loops and for OpenBLAS's products (split across this pool;
    /// OpenBLAS itself runs single-threaded). Defaults to the active processor count; `setThreads` overrides it (1 runs everything inline).
    nonisolated(unsafe) public static var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    /// Sets the thread count for kernel loops (values below 1 mean 1).
    public static func setThreads(_ n: Int) { threads = max(1, n) }

    /// Calls `body` on disjoint subranges covering `0..<count`, concurrently when
    /// `count · workPerItem ≥ minimumWork` and more than one thread is allowed.
    /// - Parameters:
    ///   - workPerItem: a rough cost of one item (elements touched), to decide whether to split.
    public static func forRanges(count: Int, minimumWork: Int = 1 << 15, workPerItem: Int = 1,
                                 _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let t = threads
        if t <= 1 || count == 1 || count * max(workPerItem, 1) < minimumWork {
            body(0..<count)
            return
        }
        // A few chunks per thread evens out uneven items without much dispatch overhead.
        let chunks = min(count, t * 4)
        withoutActuallyEscaping(body) { body in
            var chunk: (Int) -> Void = { i in
                let lo = count * i / chunks, hi = count * (i + 1) / chunks
                if hi > lo { body(lo..<hi) }
            }
            withUnsafeMutablePointer(to: &chunk) { p in
                ck_parallel_run(chunks, Int32(t), { ctx, i in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(i)
                }, p)
            }
        }
    }
}
