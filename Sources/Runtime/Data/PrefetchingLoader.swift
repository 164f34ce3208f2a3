import Foundation

/// Loads items `0 ..< count` in order on one background thread, at most `depth` ahead of the
/// consumer, so decoding and preprocessing the next samples overlaps running the current one.
///
/// - Order is deterministic: `next()` hands back item 0, 1, 2, … whatever the timing.
/// - Errors keep their place: when item i fails to load, items before it are handed back first,
///   then `next()` throws item i's error (a `DataError` naming the file) and the loader is done;
///   nothing after i is loaded.
/// - Memory is bounded: at most `depth` loaded items wait in the queue (plus the one being
///   loaded).
/// - Dropping the loader (or `cancel()`) stops the thread after the item it is loading and
///   waits for it, so no work outlives the loop.
///
/// Not a `Sequence`, like `DataSource.Iterator`: a load error must reach the caller.
public final class PrefetchingLoader<Element: Sendable> {
    /// Samples decoded ahead by default: enough to hide decode time behind a model run, small
    /// enough that a few large images do not pile up.
    public static var defaultDepth: Int { 2 }

    public let count: Int
    private let state: State
    private var handed = 0
    private var done = false

    /// Starts loading at once: `load(i)` is called on the background thread for i = 0, 1, ….
    public init(count: Int, depth: Int = PrefetchingLoader.defaultDepth, load: @escaping @Sendable (Int) throws -> Element) {
        precondition(depth >= 1, "depth must be at least 1")
        self.count = count
        let state = State(depth: depth)
        self.state = state
        guard count > 0 else { state.finished = true; return }
        let thread = Thread {
            state.produce(count: count, load: load)
        }
        thread.name = "compress.prefetch"
        thread.stackSize = 8 << 20
        thread.start()
    }

    deinit { cancel() }

    /// The next item in order, or nil after the last one.
    /// - Throws: the load error of that item; the loader then returns nil.
    public func next() throws -> Element? {
        guard !done, handed < count else { return nil }
        guard let result = state.take() else { done = true; return nil }
        handed += 1
        switch result {
        case .success(let e): return e
        case .failure(let error): done = true; cancel(); throw error
        }
    }

    /// Stops loading and waits for the background thread to finish its current item.
    public func cancel() {
        done = true
        state.cancelAndWait()
    }

    /// What the two threads share, guarded by `condition`.
    final class State: @unchecked Sendable {
        let depth: Int
        let condition = NSCondition()
        var queue: [Result<Element, any Error>] = []
        var cancelled = false
        var finished = false

        init(depth: Int) { self.depth = depth }

        func produce(count: Int, load: (Int) throws -> Element) {
            for i in 0..<count {
                condition.lock()
                while !cancelled && queue.count >= depth { condition.wait() }
                let stop = cancelled
                condition.unlock()
                if stop { break }
                let r = Result { try load(i) }
                condition.lock()
                queue.append(r)
                condition.broadcast()
                condition.unlock()
                if case .failure = r { break }
            }
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }

        /// The oldest loaded item, waiting for it; nil when the producer stopped without one.
        func take() -> Result<Element, any Error>? {
            condition.lock()
            defer { condition.unlock() }
            while queue.isEmpty && !finished { condition.wait() }
            guard !queue.isEmpty else { return nil }
            let r = queue.removeFirst()
            condition.broadcast()
            return r
        }

        func cancelAndWait() {
            condition.lock()
            cancelled = true
            condition.broadcast()
            while !finished { condition.wait() }
            queue = []
            condition.unlock()
        }
    }
}

extension DataSource {
    /// `entries` (default: all) loaded in order on a background thread, `depth` samples ahead:
    /// `let samples = source.prefetching(); while let s = try samples.next() { … }`.
    public func prefetching(_ entries: [Entry]? = nil, depth: Int = PrefetchingLoader<Sample>.defaultDepth) -> PrefetchingLoader<Sample> {
        let list = entries ?? self.entries
        return PrefetchingLoader(count: list.count, depth: depth) { [self] i in try self.load(list[i]) }
    }
}
