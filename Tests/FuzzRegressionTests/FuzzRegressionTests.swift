import Foundation
import XCTest
import FuzzTargets
import ModelIR
import Runtime

/// Replays every committed fuzz input — the seeds (Fuzz/Seeds/<target>/) and the minimized
/// crashers the fuzzers found (Tests/FuzzRegressions/<target>/) — through the same entry point
/// libFuzzer drives (`FuzzTargets.run`), without a sanitizer build: each must be accepted or
/// refused with a clean one-line error naming the file; a crash or a broken invariant traps and
/// fails the run. The expectations below are written from the file formats, not from what the
/// readers print.
final class FuzzRegressionTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func inputs(_ folder: String, _ target: String) -> [URL] {
        let dir = root.appendingPathComponent(folder).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
    }

    func testEveryTargetHasSeeds() {
        for t in FuzzTargets.all { XCTAssertFalse(Self.inputs("Fuzz/Seeds", t).isEmpty, "no seeds for \(t)") }
    }

    func testSeedsAndRegressionsReplayCleanly() throws {
        for t in FuzzTargets.all {
            for url in Self.inputs("Fuzz/Seeds", t) + Self.inputs("Tests/FuzzRegressions", t) {
                let bytes = [UInt8](try Data(contentsOf: url))
                // Traps on a finding; a refusal has been checked to be one clean line. An input
                // that once exhausted memory runs with the address space capped (libFuzzer's
                // -rss_limit_mb is 2048): a plain build would otherwise get the untouched
                // gigabytes from calloc without complaint and hide the regression.
                if url.lastPathComponent.hasPrefix("oom-") {
                    Self.withAddressSpaceLimit(extraBytes: 2 << 30) { _ = FuzzTargets.run(t, bytes) }
                } else {
                    _ = FuzzTargets.run(t, bytes)
                }
            }
        }
    }

    /// Runs `body` with the soft address-space limit at the current size plus `extraBytes`
    /// (an allocation past it fails, which Swift reports as a crash), then restores it.
    static func withAddressSpaceLimit(extraBytes: Int, _ body: () -> Void) {
        #if os(Linux)
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let kB = status.split(separator: "\n").first { $0.hasPrefix("VmSize:") }
            .flatMap { Int($0.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") } ?? 0
        // (The kernel pads the number with spaces after the tab only up to 8 digits: with the
        // tensor arena's reserved range the size has more, and a split on spaces alone read 0.)
        XCTAssertGreaterThan(kB, 0, "VmSize not found in /proc/self/status")
        var old = rlimit()
        getrlimit(Int32(RLIMIT_AS.rawValue), &old)
        var capped = old
        capped.rlim_cur = rlim_t(min(UInt64(kB) * 1024 + UInt64(extraBytes), UInt64(old.rlim_max)))
        setrlimit(Int32(RLIMIT_AS.rawValue), &capped)
        defer { setrlimit(Int32(RLIMIT_AS.rawValue), &old) }
        #endif
        body()
    }

    /// The valid seeds decode and round-trip (a seed refused by its reader would make the
    /// fuzzer start from nothing, and a round-trip failure traps in `run`).
    func testValidSeedsAreAccepted() throws {
        for t in ["model", "tensor", "npy", "image"] {
            // Two seeds are refused by design: a tensor whose external file is absent, and a
            // Fortran-order array (compress asks for C order).
            for url in Self.inputs("Fuzz/Seeds", t) where !["external.pb", "fortran.npy"].contains(url.lastPathComponent) {
                let error = FuzzTargets.run(t, [UInt8](try Data(contentsOf: url)))
                XCTAssertNil(error, "\(t)/\(url.lastPathComponent): \(error.map { "\($0)" } ?? "")")
            }
        }
    }

    /// The two findings (Docs/robustness.md): each is now a clean refusal saying why.
    func testFindingsAreRefusedWithTheirCause() throws {
        let regressions = Self.root.appendingPathComponent("Tests/FuzzRegressions")
        // 8 bytes: dims of ~10^10 FLOAT elements and no values (allocated 6 GB before the fix).
        let oom = [UInt8](try Data(contentsOf: regressions.appendingPathComponent("tensor/oom-d416bea745c7e82d02747f27b6184c249c6c721c")))
        XCTAssertEqual(oom.count, 8)
        var result: Error?
        Self.withAddressSpaceLimit(extraBytes: 2 << 30) { result = FuzzTargets.run("tensor", oom) }
        let e1 = try XCTUnwrap(result as? ModelError)
        XCTAssertTrue(e1.message.contains("no data"), e1.description)
        // A .npy header with an unknown key and a raw line break (a two-line message before).
        let npy = [UInt8](try Data(contentsOf: regressions.appendingPathComponent("npy/crash-e3d6f47af5cb4910890b25690509f73bf38ff1c8")))
        let e2 = try XCTUnwrap(FuzzTargets.run("npy", npy) as? DataError)
        XCTAssertTrue(e2.description.hasPrefix("fuzz.npy: "), e2.description)
        XCTAssertTrue(e2.description.contains("fortrarder"), e2.description)
        XCTAssertFalse(e2.description.contains("\n"), e2.description)
        XCTAssertTrue(e2.description.contains("\\n"), e2.description)
    }

    /// The small fixtures (the model target's other seeds) survive the round trip: every name,
    /// type, attribute, subgraph and tensor byte, and a byte-identical second encoding.
    func testFixtureModelsRoundTrip() throws {
        let dir = Self.root.appendingPathComponent("Fixtures")
        let models = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".onnx") }.sorted()
        XCTAssertGreaterThan(models.count, 5)
        for name in models {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            guard bytes.count < 20_000 else { continue }
            let error = FuzzTargets.run("model", bytes)
            XCTAssertNil(error, "\(name): \(error.map { "\($0)" } ?? "")")
        }
    }

    /// The external-data target's own seeds: locations inside the model folder load, every way
    /// out of it (absolute, `..`, a symlinked folder or file leading outside) is refused.
    func testExternalLocations() {
        let inside = ["w.bin", "sub/w.bin", "./sub/deeper/w.bin", "sub/../w.bin", "sub/up/w.bin", "w.bin\u{0}8\u{0}4"]
        let outside = ["escape/secret.bin", "sub/secret.bin", "abs/secret.bin", "../outside/secret.bin", "/etc/passwd",
                       "../../../../../../etc/passwd", "sub/../../outside/secret.bin", "w.bin\u{0}62\u{0}4", "w.bin\u{0}-1", "nothere.bin"]
        for loc in inside { XCTAssertNil(FuzzTargets.run("external", Array(loc.utf8)), loc.debugDescription) }
        for loc in outside {
            let error = FuzzTargets.run("external", Array(loc.utf8))
            XCTAssertNotNil(error, "\(loc.debugDescription) was read")
        }
    }

    func testTruncatedSeedsAreRefusedCleanly() throws {
        // Every prefix of one seed per target: the readers must refuse (or accept) each cleanly.
        for (t, name) in [("model", "tiny_if_custom.onnx"), ("tensor", "f32_typed.pb"), ("npy", "v2.npy"), ("image", "rgb.png"), ("image", "rgb.jpg")] {
            let bytes = [UInt8](try Data(contentsOf: Self.root.appendingPathComponent("Fuzz/Seeds/\(t)/\(name)")))
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 64)) { _ = FuzzTargets.run(t, Array(bytes.prefix(cut))) }
        }
    }
}
