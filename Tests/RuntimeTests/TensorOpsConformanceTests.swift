import Foundation
import ModelIR
@testable import Runtime
import TensorCore
import XCTest

/// Checks every shape function of the tensor operators against its kernel on the ONNX backend
/// node tests: for each single-node case of one of these ops, the kernel's outputs must match
/// the expected ones (rtol 1e-3, atol 1e-7; integers exactly) and the shape function, given the
/// inputs' types and contents, must predict exactly the outputs' dtype and shape.
///
/// The data ships with the `onnx` Python package; set ONNX_BACKEND_NODE_DIR to its
/// `backend/test/data/node` folder (the test is skipped without it). The CLI-level harness,
/// which also covers multi-node models and older opsets, is Tests/Interop/test_tensor_ops.py.
final class TensorOpsConformanceTests: XCTestCase {
    static let ops: Set<String> = [
        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "GatherElements",
        "ScatterND", "Expand", "Tile", "Pad", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Shape", "Size",
        "Constant", "ConstantOfShape", "Range", "EyeLike", "NonZero", "TopK", "Einsum",
    ]

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

    static func compare(_ got: Tensor, _ want: Tensor) -> String? {
        guard got.dtype == want.dtype else { return "dtype \(got.dtype), expected \(want.dtype)" }
        guard got.shape == want.shape else { return "shape \(got.shape), expected \(want.shape)" }
        if [.float32, .float64, .float16, .bfloat16].contains(want.dtype) {
            let g = got.doubleValues(), w = want.doubleValues()
            for i in g.indices where !(g[i].isNaN && w[i].isNaN) && !(abs(g[i] - w[i]) <= 1e-7 + 1e-3 * abs(w[i])) {
                return "element \(i): \(g[i]), expected \(w[i])"
            }
            return nil
        }
        return got.isBitwiseEqual(to: want) ? nil : "contents differ"
    }

    /// Runs one single-node case; returns nil on success or a one-line reason.
    static func runCase(_ dir: String) throws -> String? {
        let model = try ModelReader.read(path: dir + "/model.onnx")
        let node = model.graph.nodes[0]
        let opset = model.opset(for: "") ?? 0
        guard let impl = OpRegistry.standard.implementation(node.opType, domain: "", opset: opset) else { return "not registered at opset \(opset)" }
        let ctx = KernelContext(node: node, opset: opset)
        let fm = FileManager.default
        let sets = try fm.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("test_data_set_") }.sorted()
        for set in sets {
            let path = dir + "/" + set
            var env: [String: Tensor] = [:]
            for i in model.graph.initializers { env[i.name] = i.tensor }
            for (i, v) in model.graph.runtimeInputs.enumerated() {
                env[v.name] = try TensorCodec.readTensorFile("\(path)/input_\(i).pb").tensor
            }
            let inputs: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : env[$0] }
            let outs = try impl.kernel(inputs, ctx)
            let infos = try impl.infer(inputs.map { $0.map(TensorInfo.init) }, inputs, ctx)
            for (i, o) in node.outputs.enumerated() {
                let want = try TensorCodec.readTensorFile("\(path)/output_\(i).pb").tensor
                guard i < outs.count, i < infos.count else { return "\(set): output \(i) '\(o)' missing" }
                if let why = compare(outs[i], want) { return "\(set) output \(i): \(why)" }
                if infos[i] != TensorInfo(want) { return "\(set) output \(i): shape function gave \(infos[i]), kernel \(TensorInfo(want))" }
            }
        }
        return nil
    }

    func testShapeFunctionsMatchKernelsOnBackendCases() throws {
        guard let root = Self.dataDirectory else { throw XCTSkip("ONNX backend node data not found (set ONNX_BACKEND_NODE_DIR)") }
        var passed: [String: Int] = [:], failures: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: root).sorted() {
            let dir = root + "/" + name
            guard let model = try? ModelReader.read(path: dir + "/model.onnx"), model.graph.nodes.count == 1,
                  let op = model.graph.nodes.first?.opType, Self.ops.contains(op) else { continue }
            do {
                if let why = try Self.runCase(dir) { failures.append("\(name): \(why)") } else { passed[op, default: 0] += 1 }
            } catch {
                failures.append("\(name): \(error)")
            }
        }
        print("tensor-op backend cases (kernel + shape function): " + passed.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        XCTAssertEqual(failures, [])
        XCTAssertGreaterThan(passed.values.reduce(0, +), 150)
    }
}
