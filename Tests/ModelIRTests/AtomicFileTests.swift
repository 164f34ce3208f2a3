import Foundation
import XCTest
@testable import ModelIR

/// AtomicFile: a pending file is invisible until committed, leaves nothing when abandoned, and
/// replaces the destination whole.
final class AtomicFileTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("compress-atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func listing() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() }

    func testPendingFileAppearsOnlyOnCommit() throws {
        let target = folder.appendingPathComponent("out.bin")
        try Data("old".utf8).write(to: target)
        let file = try AtomicFile.Pending(for: target)
        try file.write(Data("new ".utf8))
        try file.write(Data("bytes".utf8))
        // Before the commit: the old file, and (where O_TMPFILE works) nothing else by name.
        XCTAssertEqual(try Data(contentsOf: target), Data("old".utf8))
        XCTAssertTrue(try listing().allSatisfy { $0 == "out.bin" || $0.hasPrefix(".out.bin.tmp-") })
        try file.commit()
        XCTAssertEqual(try Data(contentsOf: target), Data("new bytes".utf8))
        XCTAssertEqual(try listing(), ["out.bin"], "no temporary file is left")
    }

    func testAbandonLeavesNothing() throws {
        let target = folder.appendingPathComponent("never.bin")
        let file = try AtomicFile.Pending(for: target)
        try file.write(Data(count: 1000))
        file.abandon()
        XCTAssertEqual(try listing(), [])
    }

    func testWriteReplacesWholeAndErrorsNameTheDestination() throws {
        let target = folder.appendingPathComponent("r.txt")
        try AtomicFile.write(Data("first".utf8), to: target)
        try AtomicFile.write(Data("second, longer".utf8), to: target, durable: false)
        XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "second, longer")
        XCTAssertEqual(try listing(), ["r.txt"])
        let missing = folder.appendingPathComponent("no/such/x.txt")
        XCTAssertThrowsError(try AtomicFile.write(Data(), to: missing)) { e in
            XCTAssertTrue("\(e)".hasPrefix(missing.path), "\(e)")
            XCTAssertFalse("\(e)".contains(".tmp-"), "\(e)")
        }
    }

    /// A model written in the background (`compress fuse` verifies meanwhile) is invisible until
    /// committed, gives the same bytes as a plain write, and leaves nothing when abandoned — with
    /// inline and with external data.
    func testBackgroundWriteCommitsOrLeavesNothing() throws {
        try backgroundWriteCommitsOrLeavesNothing()
    }

    /// The same where the filesystem has no O_TMPFILE: the temporaries are named files in the
    /// folder, so an abandon or a commit that forgot one would show in the listing.
    func testBackgroundWriteWithNamedTemporaries() throws {
        setenv("COMPRESS_TEST_NAMED_TEMPORARIES", "1", 1)
        defer { unsetenv("COMPRESS_TEST_NAMED_TEMPORARIES") }
        try backgroundWriteCommitsOrLeavesNothing()
    }

    func backgroundWriteCommitsOrLeavesNothing() throws {
        let m = smallDenseModel()
        let plain = folder.appendingPathComponent("plain.onnx")
        try ModelWriter.write(m, to: plain)
        let target = folder.appendingPathComponent("bg.onnx")
        try Data("old".utf8).write(to: target)
        let kept = ModelWriter.BackgroundWrite(m, to: target)
        kept.abandon()
        XCTAssertEqual(try Data(contentsOf: target), Data("old".utf8))
        XCTAssertEqual(try listing(), ["bg.onnx", "plain.onnx"])
        let put = ModelWriter.BackgroundWrite(m, to: target)
        XCTAssertEqual(try Data(contentsOf: target), Data("old".utf8), "not in place before the commit")
        try put.commit()
        XCTAssertEqual(try Data(contentsOf: target), try Data(contentsOf: plain))
        XCTAssertEqual(try listing(), ["bg.onnx", "plain.onnx"])

        let external = folder.appendingPathComponent("ext.onnx")
        ModelWriter.BackgroundWrite(m, to: external, layout: .external(location: nil, threshold: 1)).abandon()
        XCTAssertEqual(try listing(), ["bg.onnx", "plain.onnx"], "neither the model nor its data file")
        try ModelWriter.BackgroundWrite(m, to: external, layout: .external(location: nil, threshold: 1)).commit()
        XCTAssertEqual(try listing(), ["bg.onnx", "ext.onnx", "ext.onnx.data", "plain.onnx"])
        XCTAssertEqual(try ModelReader.read(path: external.path).graph.initializer(named: "W")?.tensor.scalars(as: Float.self), [1, -2, 3, -4, 5, -6])

        // A write that cannot start (no such folder) fails at commit, naming the destination.
        let missing = folder.appendingPathComponent("no/such/m.onnx")
        XCTAssertThrowsError(try ModelWriter.BackgroundWrite(m, to: missing).commit()) { e in
            XCTAssertTrue("\(e)".hasPrefix(missing.path), "\(e)")
        }
        ModelWriter.BackgroundWrite(m, to: missing).abandon()
    }
}
