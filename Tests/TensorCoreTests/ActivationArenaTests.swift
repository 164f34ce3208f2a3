import Foundation
import XCTest
@testable import TensorCore

final class ActivationArenaTests: XCTestCase {
    private func makeArena(_ bytes: Int = 1 << 30) throws -> ActivationArena {
        #if os(Linux)
        return try XCTUnwrap(ActivationArena(reserving: bytes))
        #else
        throw XCTSkip("the arena is Linux-only")
        #endif
    }

    private func gaps(_ a: ActivationArena) -> [[Int]] { a.layout.gaps.map { [$0.offset, $0.length] } }

    func testLowestAddressFirstAndMerging() throws {
        let a = try makeArena()
        let page = ActivationArena.granule
        // Rounded up to whole pages, laid out from the start.
        let b1 = try XCTUnwrap(a.allocate(1))
        let b2 = try XCTUnwrap(a.allocate(3 * page))
        let b3 = try XCTUnwrap(a.allocate(2 * page + 1))
        XCTAssertEqual([b1.offset, b1.length, b2.offset, b2.length, b3.offset, b3.length],
                       [0, page, page, 3 * page, 4 * page, 3 * page])
        XCTAssertEqual(b2.pointer - b1.pointer, page)
        XCTAssertEqual(a.layout.top, 7 * page)

        // A freed block in the middle is a gap; the next request that fits takes its start.
        a.free(offset: b2.offset, length: b2.length)
        XCTAssertEqual(gaps(a), [[page, 3 * page]])
        let small = try XCTUnwrap(a.allocate(page))
        XCTAssertEqual(small.offset, page)
        XCTAssertEqual(gaps(a), [[2 * page, 2 * page]])
        // Too big for the gap: goes to the top.
        let big = try XCTUnwrap(a.allocate(5 * page))
        XCTAssertEqual(big.offset, 7 * page)

        // Freeing both neighbours of a gap merges all three into one.
        a.free(offset: small.offset, length: small.length)
        XCTAssertEqual(gaps(a), [[page, 3 * page]])
        a.free(offset: b3.offset, length: b3.length)
        XCTAssertEqual(gaps(a), [[page, 6 * page]])
        a.free(offset: b1.offset, length: b1.length)
        XCTAssertEqual(gaps(a), [[0, 7 * page]])
        // Now a request of 7 pages reuses the lowest addresses, not the top.
        let again = try XCTUnwrap(a.allocate(7 * page))
        XCTAssertEqual(again.offset, 0)
        XCTAssertEqual(gaps(a), [])

        // Freeing the highest block lowers the top, through a gap that reaches it.
        a.free(offset: again.offset, length: again.length)
        a.free(offset: big.offset, length: big.length)
        XCTAssertEqual(gaps(a), [])
        XCTAssertEqual(a.layout.top, 0)
    }

    func testFreeingTheTopBlockLowersTheTop() throws {
        let a = try makeArena()
        let page = ActivationArena.granule
        let b1 = try XCTUnwrap(a.allocate(page))
        let b2 = try XCTUnwrap(a.allocate(2 * page))
        let b3 = try XCTUnwrap(a.allocate(page))
        a.free(offset: b2.offset, length: b2.length)
        a.free(offset: b3.offset, length: b3.length)  // merges with b2's gap and lowers the top
        XCTAssertEqual(gaps(a), [])
        XCTAssertEqual(a.layout.top, page)
        // A request larger than any gap starts where the free space reaching the top starts.
        let b4 = try XCTUnwrap(a.allocate(4 * page))
        XCTAssertEqual(b4.offset, page)
        XCTAssertEqual(a.layout.top, 5 * page)
        a.free(offset: b1.offset, length: b1.length)
        XCTAssertEqual(gaps(a), [[0, page]])
    }

    func testMemoryIsWritableAcrossCommitSteps() throws {
        // 70 MiB blocks cross the 64 MiB commit step; every page must be usable.
        let a = try makeArena()
        var blocks: [(pointer: UnsafeMutableRawPointer, offset: Int, length: Int)] = []
        for i in 0..<3 {
            let b = try XCTUnwrap(a.allocate(70 << 20))
            let n = b.length / 4
            let p = b.pointer.bindMemory(to: Float.self, capacity: n)
            for j in stride(from: 0, to: n, by: 1024) { p[j] = Float(i * 7 + j % 5) }
            p[n - 1] = Float(i)
            blocks.append(b)
        }
        for (i, b) in blocks.enumerated() {
            let p = b.pointer.assumingMemoryBound(to: Float.self)
            XCTAssertEqual(p[b.length / 4 - 1], Float(i))
            XCTAssertEqual(p[1024 * 3], Float(i * 7 + (1024 * 3) % 5))
        }
        for b in blocks { a.free(offset: b.offset, length: b.length) }
        XCTAssertEqual(a.layout.top, 0)
    }

    func testFreeMergesWithBothNeighboursAtOnce() throws {
        let a = try makeArena()
        let page = ActivationArena.granule
        let b = try (0..<4).map { _ in try XCTUnwrap(a.allocate(page)) }
        a.free(offset: b[0].offset, length: b[0].length)
        a.free(offset: b[2].offset, length: b[2].length)
        XCTAssertEqual(gaps(a), [[0, page], [2 * page, page]])
        a.free(offset: b[1].offset, length: b[1].length)   // between two gaps: one gap of three
        XCTAssertEqual(gaps(a), [[0, 3 * page]])
        XCTAssertEqual(a.layout.top, 4 * page)
    }

    func testConcurrentUseKeepsBlocksDisjoint() throws {
        let a = try makeArena()
        let page = ActivationArena.granule
        // Four threads allocate, fill, check and free blocks of varying sizes; a block shared
        // by two threads would see the other's pattern.
        let failures = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        failures.initialize(repeating: 0, count: 4)
        defer { failures.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            var live: [(pointer: UnsafeMutableRawPointer, offset: Int, length: Int)] = []
            for i in 0..<400 {
                if let b = a.allocate(page * (1 + (i * 7 + t) % 5)) {
                    b.pointer.initializeMemory(as: UInt8.self, repeating: UInt8(t + 1), count: b.length)
                    live.append(b)
                }
                if live.count > 6 || i % 3 == 0, !live.isEmpty {
                    let b = live.removeFirst()
                    let bytes = UnsafeRawBufferPointer(start: b.pointer, count: b.length)
                    if !bytes.allSatisfy({ $0 == UInt8(t + 1) }) { failures[t] += 1 }
                    a.free(offset: b.offset, length: b.length)
                }
            }
            for b in live { a.free(offset: b.offset, length: b.length) }
        }
        XCTAssertEqual((0..<4).map { failures[$0] }, [0, 0, 0, 0])
        XCTAssertEqual(gaps(a), [])
        XCTAssertEqual(a.layout.top, 0)
    }

    func testLargeRequestsGoToMalloc() throws {
        let a = try makeArena(4 << 30)
        XCTAssertNil(a.allocate(ActivationArena.maximumBytes + 1))
        let b = try XCTUnwrap(a.allocate(ActivationArena.maximumBytes))
        a.free(offset: b.offset, length: b.length)
    }

    func testRequestsBeyondTheReservationAreRefused() throws {
        let a = try makeArena(1 << 20)
        XCTAssertNil(a.allocate((1 << 20) + 1))
        let whole = try XCTUnwrap(a.allocate(1 << 20))
        XCTAssertNil(a.allocate(1))
        a.free(offset: whole.offset, length: whole.length)
        XCTAssertNotNil(a.allocate(1))
    }

    func testStorageTakesLargeBuffersFromTheSharedArena() throws {
        guard ActivationArena.shared != nil else { throw XCTSkip("no shared arena on this platform") }
        let small = TensorStorage(uninitializedByteCount: ActivationArena.minimumBytes - 1)
        XCTAssertNil(small.arenaBlock)
        let zeroed = TensorStorage(byteCount: ActivationArena.minimumBytes)
        XCTAssertNotNil(zeroed.arenaBlock)
        XCTAssertEqual(Int(bitPattern: zeroed.base) % TensorStorage.alignment, 0)
        let bytes = UnsafeRawBufferPointer(start: zeroed.base, count: zeroed.byteCount)
        XCTAssertTrue(bytes.allSatisfy { $0 == 0 })
        // A tensor round-trips its values through arena storage, and its copy is independent.
        let values = (0..<40_000).map { Float($0) * 0.5 }
        var t = Tensor(shape: [200, 200], scalars: values)
        XCTAssertNotNil(t.storage.arenaBlock)
        let copy = t
        t.withUnsafeMutableBufferPointer(as: Float.self) { $0[0] = -1 }
        XCTAssertNotEqual(t.storage.base, copy.storage.base)
        XCTAssertNotNil(t.storage.arenaBlock)
        XCTAssertEqual(copy.scalars(as: Float.self), values)
        let changed = t.scalars(as: Float.self)
        XCTAssertEqual(changed[0], -1)
        XCTAssertEqual(Array(changed[1...]), Array(values[1...]))
    }
}
