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
/// The data ships with the `onnx` Python package (found in the project's .venv, which `make unit`
/// makes); or set ONNX_BACKEND_NODE_DIR to its `backend/test/data/node` folder. Without it the
/// test fails rather than skip. A case of these ops that cannot be read or run fails. The CLI-level harness,
/// which also covers multi-node models and older opsets, is Tests/Interop/test_tensor_ops.py.
final class TensorOpsConformanceTests: XCTestCase {
    static let ops: Set<String> = [
        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "GatherElements",
        "ScatterND", "Expand", "Tile", "Pad", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Shape", "Size",
        "Constant", "ConstantOfShape", "Range", "EyeLike", "NonZero", "TopK", "Einsum",
    ]

    /// Ops of the list with no single-node backend case (filled in from a run; must stay small).
    static let opsWithoutSingleNodeCases: Set<String> = []

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
        if sets.isEmpty { return "no test_data_set_* folder" }
        if node.outputs.isEmpty { return "the node has no outputs to compare" }
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
        let root = try XCTUnwrap(Self.dataDirectory, "ONNX backend node data not found: run `make venv` or set ONNX_BACKEND_NODE_DIR")
        var passed: [String: Int] = [:], failures: [String] = [], unreadable: [String] = []
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: root).sorted() {
            let dir = root + "/" + name
            guard fm.fileExists(atPath: dir + "/model.onnx") else { continue }
            let model: Model
            do {
                model = try ModelReader.read(path: dir + "/model.onnx")
            } catch {
                // Which op it is about is unknown here; every unreadable case is listed and the
                // list is held to the known ones (models compress's reader refuses on purpose).
                unreadable.append(name)
                continue
            }
            guard model.graph.nodes.count == 1, let op = model.graph.nodes.first?.opType, Self.ops.contains(op) else { continue }
            do {
                if let why = try Self.runCase(dir) { failures.append("\(name): \(why)") } else { passed[op, default: 0] += 1 }
            } catch {
                failures.append("\(name): \(error)")
            }
        }
        print("tensor-op backend cases (kernel + shape function): " + passed.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        XCTAssertEqual(failures, [])
        // Every backend model of these ops must load: an unreadable one whose name names one of
        // the ops would otherwise vanish from the count.
        let lowered = Self.ops.map { $0.lowercased() }
        let ours = unreadable.filter { n in lowered.contains { n.replacingOccurrences(of: "_", with: "").hasPrefix("test" + $0) } }
        XCTAssertEqual(ours, [], "backend models of the tensor ops that do not load")
        XCTAssertGreaterThan(passed.values.reduce(0, +), 150)
        // Every op has cases (an op whose cases all vanish would pass silently).
        XCTAssertEqual(Set(passed.keys), Self.ops.subtracting(Self.opsWithoutSingleNodeCases), "ops with no passing case")
    }
}
