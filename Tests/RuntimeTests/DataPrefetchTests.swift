import Foundation
import XCTest
@testable import Runtime
import TensorCore

final class DataPrefetchTests: XCTestCase {
    /// Counts loads across threads.
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        private var maxAhead = 0
        func loaded(_ i: Int, consumed: Int) {
            lock.lock(); value += 1; maxAhead = max(maxAhead, i - consumed); lock.unlock()
        }
        var count: Int { lock.lock(); defer { lock.unlock() }; return value }
        var ahead: Int { lock.lock(); defer { lock.unlock() }; return maxAhead }
    }

    final class Consumed: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        var value: Int { lock.lock(); defer { lock.unlock() }; return n }
        func bump() { lock.lock(); n += 1; lock.unlock() }
    }

    func testOrderAndBoundedLookahead() throws {
        let counter = Counter(), consumed = Consumed()
        let loader = PrefetchingLoader(count: 50, depth: 3) { i -> Int in
            // Uneven load times, so a reordering bug would show.
            if i % 7 == 0 { usleep(2000) }
            counter.loaded(i, consumed: consumed.value)
            return i * i
        }
        var got: [Int] = []
        while let v = try loader.next() {
            got.append(v)
            if got.count % 5 == 0 { usleep(3000) }  // a slow consumer: the producer must wait
            consumed.bump()
        }
        XCTAssertEqual(got, (0..<50).map { $0 * $0 })
        XCTAssertNil(try loader.next())
        // Item i is loaded only when at most `depth` items wait: i ≤ consumed + depth.
        XCTAssertLessThanOrEqual(counter.ahead, 3)
    }

    func testErrorKeepsItsPlaceAndStopsLoading() throws {
        let counter = Counter()
        let loader = PrefetchingLoader(count: 20, depth: 2) { i -> Int in
            counter.loaded(i, consumed: 0)
            if i == 4 { throw DataError("s4.png", "not a decodable PNG") }
            return i
        }
        var got: [Int] = []
        XCTAssertThrowsError(try { while let v = try loader.next() { got.append(v) } }()) { e in
            XCTAssertEqual("\(e)", "s4.png: not a decodable PNG")
        }
        XCTAssertEqual(got, [0, 1, 2, 3])
        XCTAssertNil(try loader.next())
        XCTAssertEqual(counter.count, 5)  // nothing after the failed item is loaded
    }

    func testDroppingTheLoaderStopsTheThread() throws {
        let counter = Counter()
        do {
            let loader = PrefetchingLoader(count: 1000, depth: 2) { i -> Int in counter.loaded(i, consumed: 0); return i }
            XCTAssertEqual(try loader.next(), 0)
        }  // deinit cancels and waits
        let after = counter.count
        XCTAssertLessThanOrEqual(after, 4)
        usleep(20_000)
        XCTAssertEqual(counter.count, after)
        let empty = PrefetchingLoader(count: 0) { i -> Int in i }
        XCTAssertNil(try empty.next())
    }

    func testDataSourcePrefetchingMatchesLoad() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prefetch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for i in 0..<7 {
            let t = Tensor(shape: [1, 2], scalars: [Float(i), Float(-i)])
            try NPYFile.write(t, to: dir.appendingPathComponent("s\(i).npy").path)
        }
        let input = DataInput(name: "x", dtype: .float32, shape: [1, 2], flexibleBatch: false, pinned: false)
        let source = try DataSource(directory: dir.path, inputs: [input])
        let samples = source.prefetching()
        var ids: [String] = []
        while let s = try samples.next() {
            ids.append(s.id)
            XCTAssertEqual(s.inputs["x"]?.scalars(as: Float.self), try source.load(source.entries[ids.count - 1]).inputs["x"]?.scalars(as: Float.self))
        }
        XCTAssertEqual(ids, (0..<7).map { "s\($0)" })
    }
}
