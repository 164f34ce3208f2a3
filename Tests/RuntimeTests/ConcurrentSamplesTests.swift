import Foundation
import XCTest
@testable import Runtime
import TensorCore

/// `PrefetchingLoader.forEachConcurrently`: results reach `consume` in item order whatever the
/// workers' timing, errors keep their place, and kernels run single-threaded only while it runs.
final class ConcurrentSamplesTests: XCTestCase {
    final class Tracker: @unchecked Sendable {
        private let lock = NSLock()
        private var running = 0
        private(set) var peak = 0
        private(set) var threadsSeen: Set<Int> = []
        func enter() { lock.lock(); running += 1; peak = max(peak, running); threadsSeen.insert(Parallel.threads); lock.unlock() }
        func leave() { lock.lock(); running -= 1; lock.unlock() }
    }

    func testResultsAreConsumedInOrderWhileItemsOverlap() throws {
        let saved = Parallel.threads
        defer { Parallel.setThreads(saved) }
        Parallel.setThreads(3)  // (whatever this machine's core count: 1 must be seen inside the workers)
        for workers in [1, 2, 3, 8] {
            let loader = PrefetchingLoader(count: 40, depth: 2) { i -> Int in i }
            let tracker = Tracker()
            var order: [Int] = [], values: [Int] = []
            let consuming = Tracker()
            try loader.forEachConcurrently(workers: workers) { i, item -> Int in
                tracker.enter()
                defer { tracker.leave() }
                // Early items slow, so later ones finish first and must wait their turn.
                usleep(UInt32(i % 3 == 0 ? 4000 : 300))
                XCTAssertEqual(i, item)
                return item * 10
            } consume: { i, r in
                consuming.enter()
                usleep(200)
                order.append(i)
                values.append(r)
                consuming.leave()
            }
            XCTAssertEqual(order, Array(0..<40), "workers \(workers)")
            XCTAssertEqual(consuming.peak, 1, "consume must run one call at a time")
            XCTAssertEqual(values, (0..<40).map { $0 * 10 })
            if workers > 1 {
                // (Dispatch runs at most one worker per core: overlap needs two cores.)
                if ProcessInfo.processInfo.activeProcessorCount > 1 {
                    XCTAssertGreaterThan(tracker.peak, 1, "items never overlapped with \(workers) workers")
                }
                XCTAssertEqual(tracker.threadsSeen, [1], "kernels must be single-threaded inside concurrent workers")
            } else {
                XCTAssertEqual(tracker.peak, 1)
                XCTAssertEqual(tracker.threadsSeen, [3], "one worker: kernels as configured")
            }
        }
    }

    func testKernelThreadsAreRestoredAfterwards() throws {
        let saved = Parallel.threads
        defer { Parallel.setThreads(saved) }
        Parallel.setThreads(3)
        let loader = PrefetchingLoader(count: 5) { $0 }
        try loader.forEachConcurrently(workers: 2) { _, x in x } consume: { _, _ in }
        XCTAssertEqual(Parallel.threads, 3)
        let failing = PrefetchingLoader(count: 5) { $0 }
        XCTAssertThrowsError(try failing.forEachConcurrently(workers: 2) { i, x -> Int in
            if i == 1 { throw DataError("s1.npy", "bad") }
            return x
        } consume: { _, _ in })
        XCTAssertEqual(Parallel.threads, 3)
    }

    func testTheLowestFailingItemsErrorIsThrownAndNothingAfterItIsConsumed() throws {
        for workers in [1, 2, 4] {
            let loader = PrefetchingLoader(count: 30) { $0 }
            var consumed: [Int] = []
            XCTAssertThrowsError(try loader.forEachConcurrently(workers: workers) { i, x -> Int in
                // Item 9 fails slowly, item 11 quickly: 9's error must win.
                if i == 9 { usleep(20000); throw DataError("s9.npy", "shape [1, 2] is not the model's [1, 3]") }
                if i == 11 { throw DataError("s11.npy", "not an npy file") }
                return x
            } consume: { i, _ in consumed.append(i) }) { e in
                XCTAssertEqual("\(e)", "s9.npy: shape [1, 2] is not the model's [1, 3]", "workers \(workers)")
            }
            XCTAssertEqual(consumed, Array(0..<9), "workers \(workers)")
        }
    }

    func testLoadAndConsumeErrorsKeepTheirPlace() throws {
        let loader = PrefetchingLoader(count: 20) { i -> Int in
            if i == 6 { throw DataError("s6.png", "not a decodable PNG") }
            return i
        }
        var consumed: [Int] = []
        XCTAssertThrowsError(try loader.forEachConcurrently(workers: 2) { _, x in x } consume: { i, _ in consumed.append(i) }) { e in
            XCTAssertEqual("\(e)", "s6.png: not a decodable PNG")
        }
        XCTAssertEqual(consumed, Array(0..<6))

        let second = PrefetchingLoader(count: 20) { $0 }
        consumed = []
        // Item 4 finishes last, so later results wait when its consume fails: they are dropped.
        XCTAssertThrowsError(try second.forEachConcurrently(workers: 3) { i, x in
            if i == 4 { usleep(20_000) }
            return x
        } consume: { i, _ in
            if i == 4 { throw DataError("stats", "bins disagree") }
            consumed.append(i)
        }) { e in
            XCTAssertEqual("\(e)", "stats: bins disagree")
        }
        XCTAssertEqual(consumed, Array(0..<4))
    }

    func testWorkersStopTakingItemsAfterAFailure() throws {
        final class Count: @unchecked Sendable {
            private let lock = NSLock()
            private var n = 0
            func bump() { lock.lock(); n += 1; lock.unlock() }
            var value: Int { lock.lock(); defer { lock.unlock() }; return n }
        }
        let calls = Count()
        let loader = PrefetchingLoader(count: 500) { $0 }
        XCTAssertThrowsError(try loader.forEachConcurrently(workers: 2) { i, x -> Int in
            calls.bump()
            if i == 3 { throw DataError("s3.npy", "bad") }
            usleep(100)
            return x
        } consume: { _, _ in })
        XCTAssertLessThan(calls.value, 50, "the workers went on after item 3 failed")
    }
}
