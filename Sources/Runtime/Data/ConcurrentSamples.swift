import Foundation
import TensorCore

extension PrefetchingLoader {
    /// How many samples `forEachConcurrently` runs at once by default: one per core (at most 8,
    /// since each run holds its own activations), or 1 when kernels are limited to one thread.
    /// `COMPRESS_SAMPLE_WORKERS=N` overrides it (for measuring; 1 runs one sample at a time on
    /// every kernel thread).
    public var defaultWorkers: Int {
        let n = ProcessInfo.processInfo.environment["COMPRESS_SAMPLE_WORKERS"].flatMap(Int.init) ?? min(Parallel.threads, 8)
        return max(1, min(n, count))
    }

    /// Runs `work` on the remaining items, up to `workers` of them at once, and hands each result
    /// to `consume` in item order (0, 1, 2, …, whatever the timing; one call at a time), so
    /// anything `consume` accumulates is the same as a sequential loop's.
    ///
    /// With more than one worker the kernels run single-threaded (`Parallel.threads` is 1 while
    /// the workers run, restored after): on a model whose layers are too small to split well, two
    /// samples on one core each keep two cores busier than one sample split across both. `work`
    /// must be safe to call concurrently (`Executor.run` is: a run keeps its values to itself).
    /// With one worker everything runs on the calling thread, kernels as configured.
    ///
    /// Errors keep their place: the workers stop taking items at the first failure, and the error
    /// of the lowest-numbered failing item (its load, `work` or `consume`) is thrown once they
    /// have stopped; every result before it has been consumed, none after it.
    public func forEachConcurrently<R>(workers: Int, _ work: (Int, Element) throws -> R, consume: (Int, R) throws -> Void) throws {
        if workers <= 1 {
            var i = 0
            while let e = try next() {
                try consume(i, try work(i, e))
                i += 1
            }
            return
        }
        let lock = NSLock()
        var taken = 0, consumed = 0
        var pending: [Int: R] = [:]
        var failure: (index: Int, error: any Error)?
        func fail(_ i: Int, _ e: any Error) {
            if failure == nil || i < failure!.index { failure = (i, e) }
        }
        // One worker's loop (`lock` guards the loader, `pending`, `consumed` and `failure`).
        func worker() {
            while true {
                lock.lock()
                guard failure == nil else { lock.unlock(); return }
                let i = taken
                let item: Element?
                do { item = try next() } catch { fail(i, error); lock.unlock(); return }
                guard let item else { lock.unlock(); return }
                taken += 1
                lock.unlock()
                let r: R
                do { r = try work(i, item) } catch {
                    lock.lock(); fail(i, error); lock.unlock()
                    return
                }
                lock.lock()
                pending[i] = r
                // Consume the ready prefix (results past a failure are dropped).
                while failure.map({ consumed < $0.index }) ?? true, let next = pending.removeValue(forKey: consumed) {
                    do { try consume(consumed, next) } catch { fail(consumed, error) }
                    consumed += 1
                }
                lock.unlock()
            }
        }
        let saved = Parallel.threads
        Parallel.setThreads(1)
        defer { Parallel.setThreads(saved) }
        DispatchQueue.concurrentPerform(iterations: workers) { _ in worker() }
        if let failure { throw failure.error }
    }
}
