import Foundation
import ModelIR
import Runtime
import TensorCore
import XCTest

/// Runs the ONNX backend node tests of LSTM, GRU, the quantization ops and If/Loop/Scan through
/// the executor, in process, comparing with the expected outputs (rtol 1e-3, atol 1e-7 for
/// floats, exact for integers). The data ships with the `onnx` Python package (`make unit` makes
/// the project's .venv, where it is found); or set ONNX_BACKEND_NODE_DIR to its
/// `backend/test/data/node` folder. Without it the tests fail: a skip would hide every case.
/// The CLI-level harness is Tests/Interop/test_seq_quant_ops.py.
final class RecurrentConformanceTests: XCTestCase {
    static let cases: [String] = [
        "test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes", "test_lstm_batchwise",
        "test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
    ]

    /// The backend node data folder; fails the calling test when it cannot be found.
    static func requireDataDirectory(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try XCTUnwrap(dataDirectory, "ONNX backend node data not found: run `make venv` (the onnx wheel ships it) or set ONNX_BACKEND_NODE_DIR",
                      file: file, line: line)
    }

    static var dataDirectory: String? {
        if let d = ProcessInfo.processInfo.environment["ONNX_BACKEND_NODE_DIR"] { return d }
        // The project's .venv (made by `make venv`), found from this file's location.
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let lib = repo.appendingPathComponent(".venv/lib")
        guard let pythons = try? FileManager.default.contentsOfDirectory(atPath: lib.path) else { return nil }
        for py in pythons.sorted() where py.hasPrefix("python") {
            let d = lib.appendingPathComponent("\(py)/site-packages/onnx/backend/test/data/node").path
            if FileManager.default.fileExists(atPath: d) { return d }
        }
        return nil
    }

    /// Runs one backend case; returns nil on success or a one-line reason.
    static func runCase(_ dir: String) throws -> String? {
        let model = try ModelReader.read(path: dir + "/model.onnx")
        let exec = try Executor(model: model)
        let fm = FileManager.default
        let sets = try fm.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("test_data_set_") }.sorted()
        if sets.isEmpty { return "no test_data_set_* folder" }
        if model.graph.outputs.isEmpty { return "the model has no outputs to compare" }
        for set in sets {
            let path = dir + "/" + set
            var feeds: [String: Tensor] = [:]
            let ins = model.graph.runtimeInputs
            for (i, v) in ins.enumerated() where fm.fileExists(atPath: "\(path)/input_\(i).pb") {
                feeds[v.name] = try TensorCodec.readTensorFile("\(path)/input_\(i).pb").tensor
            }
            let outs = try exec.run(feeds)
            for (i, o) in model.graph.outputs.enumerated() {
                let want = try TensorCodec.readTensorFile("\(path)/output_\(i).pb").tensor
                guard let got = outs[o.name] else { return "\(set): output \(o.name) missing" }
                if let why = compare(got, want) { return "\(set) output \(i) '\(o.name)': \(why)" }
            }
        }
        return nil
    }

    static func compare(_ got: Tensor, _ want: Tensor) -> String? {
        guard got.dtype == want.dtype else { return "dtype \(got.dtype), expected \(want.dtype)" }
        guard got.shape == want.shape else { return "shape \(got.shape), expected \(want.shape)" }
        if want.dtype.isFloatingPoint && Minifloat.format(of: want.dtype) == nil {
            let g = got.floatValues(), w = want.floatValues()
            for i in 0..<g.count where !(abs(g[i] - w[i]) <= 1e-7 + 1e-3 * abs(w[i]) || (g[i].isNaN && w[i].isNaN)) {
                return "element \(i): \(g[i]) vs \(w[i])"
            }
            return nil
        }
        return got.isBitwiseEqual(to: want) ? nil : "bytes differ"
    }

    func testBackendNodeCases() throws {
        let root = try Self.requireDataDirectory()
        XCTAssertGreaterThanOrEqual(Self.cases.count, 8)
        var failures: [String] = []
        for c in Self.cases {
            do {
                if let why = try Self.runCase(root + "/" + c) { failures.append("\(c): \(why)") }
            } catch {
                failures.append("\(c): \(error)")
            }
        }
        XCTAssert(failures.isEmpty, failures.joined(separator: "\n"))
    }

    /// Runs the cases named in CONFORMANCE_CASES (comma-separated; the recurrent and
    /// quantization node cases below when unset), prints each result and requires every one to
    /// pass: at least one named case when the list is given, all of `listedDefaults` otherwise.
    static let listedDefaults: [String] = [
        "test_lstm_defaults", "test_gru_defaults", "test_quantizelinear", "test_dequantizelinear",
        "test_dynamicquantizelinear", "test_matmulinteger", "test_qlinearmatmul_2D_uint8_float32",
        "test_qlinearconv", "test_convinteger_with_padding", "test_if", "test_loop11", "test_scan9_sum",
    ]

    func testListedCases() throws {
        let root = try Self.requireDataDirectory()
        let given = ProcessInfo.processInfo.environment["CONFORMANCE_CASES"]
        let list = given.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
            ?? Self.listedDefaults
        XCTAssertGreaterThanOrEqual(list.count, given == nil ? Self.listedDefaults.count : 1,
                                    "CONFORMANCE_CASES names no case: \(given ?? "")")
        var passed = 0, failures: [String] = []
        for c in list {
            do {
                if let why = try Self.runCase(root + "/" + c) {
                    failures.append("\(c): FAIL \(why)")
                } else {
                    passed += 1
                }
            } catch {
                failures.append("\(c): ERROR \(error)")
            }
            print("CASE \(c): \(failures.last?.hasPrefix(c + ":") == true ? failures.last! : "PASS")")
        }
        XCTAssertEqual(failures, [])
        XCTAssertEqual(passed, list.count)
    }
}
