import Foundation
import XCTest

/// Runs the built `compress` binary: `info --format json` on the fixtures against values computed
/// from the onnx protobuf, the table and CSV forms, `convert` round trips, and error exits.
///
/// Expected values come from (onnx 1.22):
///
///     m = onnx.load(path); g = m.graph
///     collections.Counter(n.op_type for n in g.node)               # ops
///     sum(math.prod(t.dims) for t in g.initializer)                # parameters
///     [(v.name, v.type.tensor_type.elem_type, dims) for v in g.input if v.name not in inits]
///
/// The binary is COMPRESS_BIN when set, else `compress` beside the test bundle (SwiftPM builds
/// it with the tests).
final class InfoConvertCLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    func binary() throws -> URL {
        if let env = ProcessInfo.processInfo.environment["COMPRESS_BIN"], !env.isEmpty { return URL(fileURLWithPath: env) }
        let candidates = [Bundle.main.bundleURL, Bundle(for: Self.self).bundleURL.deletingLastPathComponent()]
            .map { $0.appendingPathComponent("compress") }
        // `swift build --build-tests` builds the binary with the tests: a missing one fails, it
        // does not skip every CLI test.
        return try XCTUnwrap(candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }),
                             "compress binary not found (looked at \(candidates.map(\.path))); build it or set COMPRESS_BIN")
    }

    @discardableResult
    func run(_ args: [String], environment extra: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = args
        if !extra.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read before waiting so a large output cannot fill the pipe and block the child.
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func fixture(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    func infoJSON(_ path: String) throws -> [String: Any] {
        let r = try run(["info", path, "--format", "json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    }

    func ops(_ j: [String: Any]) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: (j["ops"] as? [[String: Any]] ?? []).map { ($0["op"] as! String, $0["count"] as! Int) })
    }

    func io(_ j: [String: Any], _ key: String) -> [String] {
        (j[key] as? [[String: Any]] ?? []).map { e in
            let shape = (e["shape"] as? [Any])?.map { "\($0)" }.joined(separator: ",") ?? "?"
            return "\(e["name"]!):\(e["dtype"] ?? "?"):[\(shape)]"
        }
    }

    /// `--version` is answered before ArgumentParser; `--help` still goes through it.
    func testVersionAndHelp() throws {
        let v = try run(["--version"])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertEqual(v.stdout, "compress 0.1.0\n")
        let h = try run(["--help"])
        XCTAssertEqual(h.status, 0, h.stderr)
        XCTAssertTrue(h.stdout.contains("SUBCOMMANDS"), h.stdout)
    }

    /// OpenBLAS is opened on the first product, not at start: `--version`, `info` and `profile`
    /// never load it (the dynamic loader's LD_DEBUG=files log names every library it loads).
    func testCommandsWithoutProductsDoNotLoadOpenBLAS() throws {
        #if os(Linux)
        for args in [["--version"], ["info", fixture("digits_cnn_bn.onnx")], ["profile", fixture("digits_cnn_bn.onnx")]] {
            let r = try run(args, environment: ["LD_DEBUG": "files"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stderr.contains("file=libc.so.6"), "no LD_DEBUG log for \(args)")
            XCTAssertFalse(r.stderr.contains("openblas"), "\(args) loaded OpenBLAS")
        }
        #endif
    }

    func testInfoJSONDigitsCNN() throws {
        let j = try infoJSON(fixture("digits_cnn.onnx"))
        XCTAssertEqual(j["ir_version"] as? Int, 8)
        XCTAssertEqual(j["graph_name"] as? String, "digits_cnn")
        XCTAssertEqual(j["producer_name"] as? String, "compress-fixtures")
        XCTAssertEqual((j["opsets"] as? [[String: Any]])?.map { "\($0["domain"]!) \($0["version"]!)" }, ["ai.onnx 13"])
        XCTAssertEqual(io(j, "inputs"), ["input:float:[N,1,8,8]"])
        XCTAssertEqual(io(j, "outputs"), ["logits:float:[N,10]"])
        XCTAssertEqual(j["nodes"] as? Int, 13)
        XCTAssertEqual(ops(j), ["Conv": 4, "Relu": 4, "Add": 1, "Concat": 1, "Flatten": 1, "Gemm": 1, "MaxPool": 1])
        XCTAssertEqual((j["ops"] as? [[String: Any]])?.prefix(2).map { $0["op"] as! String }, ["Conv", "Relu"], "by count, then name")
        XCTAssertEqual(j["initializers"] as? Int, 10)
        XCTAssertEqual(j["parameters"] as? Int, 3074)
        XCTAssertEqual(j["initializer_bytes"] as? Int, 3074 * 4)
        XCTAssertEqual(j["external_data_files"] as? [String], [])
        let size = try FileManager.default.attributesOfItem(atPath: fixture("digits_cnn.onnx"))[.size] as? Int
        XCTAssertEqual(j["file_bytes"] as? Int, size)
    }

    func testInfoJSONDigitsCNNWithBatchNorm() throws {
        let j = try infoJSON(fixture("digits_cnn_bn.onnx"))
        XCTAssertEqual(j["nodes"] as? Int, 17)
        XCTAssertEqual(ops(j)["BatchNormalization"], 4)
        XCTAssertEqual(j["initializers"] as? Int, 26)
        XCTAssertEqual(j["parameters"] as? Int, 3234)
    }

    /// Bytes by dtype: float 6·4, int64 3·8, int8 3, uint8 3, float16 3·2, double 3·8, int32 3·4.
    func testInfoJSONTypedFields() throws {
        let j = try infoJSON(fixture("typed_fields.onnx"))
        XCTAssertEqual(ops(j), ["Cast": 6, "Add": 4, "Mul": 2, "Sub": 1])
        XCTAssertEqual(j["parameters"] as? Int, 24)
        let byType = Dictionary(uniqueKeysWithValues: (j["initializers_by_dtype"] as! [[String: Any]]).map { ($0["dtype"] as! String, $0["bytes"] as! Int) })
        XCTAssertEqual(byType, ["float": 24, "int64": 24, "int8": 3, "uint8": 3, "float16": 6, "double": 24, "int32": 12])
        XCTAssertEqual(j["initializer_bytes"] as? Int, 96)
    }

    func testInfoJSONExternalData() throws {
        let j = try infoJSON(fixture("external/model.onnx"))
        XCTAssertEqual(j["external_data_files"] as? [String], ["model.onnx.data"])
        XCTAssertEqual(j["parameters"] as? Int, 235)
        XCTAssertEqual(io(j, "inputs"), ["input:float:[1,1,8,8]"])
        XCTAssertEqual(io(j, "outputs"), ["output:float:[1,3]"])
    }

    func testInfoJSONSubgraphsFunctionsMetadata() throws {
        let j = try infoJSON(fixture("custom_if.onnx"))
        XCTAssertEqual(ops(j), ["If": 1, "Loop": 1, "com.example::MyOp": 1, "com.example.fn::ScaleAdd": 1])
        XCTAssertEqual(j["functions"] as? [String], ["com.example.fn.ScaleAdd"])
        XCTAssertEqual((j["metadata"] as? [String: String])?["unicode"], "ünïcødé")
        XCTAssertEqual(io(j, "outputs"), ["if_out:float:[2,3]", "loop_scan:float:[<null>,2,3]", "fn_out:float:[2,3]"])
    }

    func testInfoTableAndCSV() throws {
        let t = try run(["info", fixture("digits_cnn.onnx")])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stdout.contains("parameters 3,074"), t.stdout)
        XCTAssertTrue(t.stdout.contains("Conv 4"), t.stdout)
        let c = try run(["info", fixture("digits_cnn.onnx"), "--format", "csv"])
        XCTAssertEqual(c.status, 0, c.stderr)
        let lines = c.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "section,name,value")
        XCTAssertTrue(lines.contains("model,parameters,3074"))
        XCTAssertTrue(lines.contains("op,Conv,4"))
    }

    func testConvertRoundTripsByteForByte() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compress-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = fixture("digits_cnn.onnx")
        let original = try Data(contentsOf: URL(fileURLWithPath: src))
        let inline = dir.appendingPathComponent("inline.onnx").path
        let ext = dir.appendingPathComponent("ext.onnx").path
        let back = dir.appendingPathComponent("back.onnx").path
        XCTAssertEqual(try run(["convert", src, "-o", inline]).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: inline)), original)
        XCTAssertEqual(try run(["convert", src, "-o", ext, "--external-data", "--external-threshold", "0"]).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ext + ".data"))
        let j = try infoJSON(ext)
        XCTAssertEqual(j["external_data_files"] as? [String], ["ext.onnx.data"])
        XCTAssertEqual(j["parameters"] as? Int, 3074)
        XCTAssertEqual(try run(["convert", ext, "-o", back, "--inline"]).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: back)), original, "external and back restores the same bytes")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(),
                       ["back.onnx", "ext.onnx", "ext.onnx.data", "inline.onnx"], "no temporary files left")
    }

    func testErrorsAreOneLineWithStatusOne() throws {
        let r = try run(["info", "/nonexistent/model.onnx"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: /nonexistent/model.onnx: cannot open: No such file or directory\n")
        XCTAssertEqual(r.stdout, "")
        let src = fixture("digits_cnn.onnx")
        let c = try run(["convert", src, "-o", src])
        XCTAssertEqual(c.status, 1)
        XCTAssertEqual(c.stderr, "error: \(src): is the input model; writing over it needs --force\n")
        let u = try run(["convert", src, "-o", "/tmp/x.onnx", "--external-data", "--inline"])
        XCTAssertEqual(u.status, 64, "contradicting flags are a usage error")
    }
}
