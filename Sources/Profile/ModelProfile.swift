import Foundation
import ModelIR
import Runtime
import TensorCore

/// FLOPs, MACs, parameters and memory traffic of every node of a model, from shapes and dtypes
/// alone: weight payloads are never read (`ModelReader` maps them, and only their dims and
/// dtypes are looked at here).
///
/// Shapes come from `ShapeInference` (non-strict: a node it cannot infer is reported, not
/// fatal). Three views of the graph shape the counts:
/// - constants: a node whose inputs are all constant is folded at load time and costs nothing;
///   its result is a constant that later nodes read as a weight;
/// - QDQ: a DequantizeLinear is fused into its consumer, which reads the quantized tensor (an
///   int8 weight behind a DequantizeLinear is int8 weight traffic); a QuantizeLinear is fused
///   into the producer of its input when that value feeds only QuantizeLinear nodes;
/// - subgraphs: If branches are listed separately and the totals count the costlier one; a Loop
///   body is multiplied by its trip count when constant (otherwise counted once and flagged); a
///   Scan body by its scan length.
public struct ModelProfile: Sendable {
    /// Every node, in graph order, subgraph bodies after their control node.
    public var nodes: [NodeProfile] = []
    /// Lines a reader must see: nodes not counted, unknown shapes, Loop trip counts.
    public var warnings: [String] = []
    /// The resolved graph inputs.
    public var inputs: [(name: String, info: TensorInfo)] = []

    /// Profiles `model` with its inputs resolved by `pins` (the `--input` rule of `InputShapes`).
    /// - Throws: a `RuntimeError` when an input's shape cannot be resolved.
    public init(model: Model, pins: [String: [Int]] = [:]) throws {
        let inference = try ShapeInference(model: model, pins: pins, strict: false)
        let resolved = try InputShapes.resolve(graph: model.graph, pins: pins)
        inputs = model.graph.runtimeInputs.compactMap { v in resolved[v.name].map { (v.name, $0) } }
        var walker = GraphWalker(model: model)
        walker.walk(model.graph, scope: "", inference: inference, outer: .init(), repeats: 1)
        nodes = walker.nodes
        warnings = walker.warnings + Self.uncountedWarnings(nodes)
    }

    /// Builds a profile from rows made elsewhere (tests, comparisons).
    public init(nodes: [NodeProfile], warnings: [String] = []) {
        self.nodes = nodes
        self.warnings = warnings
    }

    /// Warning lines for nodes that are not counted, grouped by operator.
    static func uncountedWarnings(_ nodes: [NodeProfile]) -> [String] {
        var out: [String] = []
        var unknown: [(op: String, names: [String])] = []
        for n in nodes where n.status == .notCounted {
            let op = n.domain.isEmpty || n.domain == "ai.onnx" ? n.opType : "\(n.domain)::\(n.opType)"
            if let i = unknown.firstIndex(where: { $0.op == op }) { unknown[i].names.append(n.name) } else { unknown.append((op, [n.name])) }
        }
        for (op, names) in unknown {
            out.append("not counted: \(op) ×\(names.count) (\(listed(names))): operator unknown to the profiler")
        }
        let unresolved = nodes.filter { $0.status == .unresolved }
        if !unresolved.isEmpty {
            let first = unresolved.prefix(3).map { "\($0.name): \($0.note ?? "shape unknown")" }
            let more = unresolved.count > 3 ? "; and \(unresolved.count - 3) more" : ""
            out.append("not counted: \(unresolved.count) node\(unresolved.count == 1 ? "" : "s") with unknown shapes (\(first.joined(separator: "; "))\(more))")
        }
        return out
    }

    static func listed(_ names: [String], limit: Int = 5) -> String {
        names.prefix(limit).joined(separator: ", ") + (names.count > limit ? ", … \(names.count - limit) more" : "")
    }

    // MARK: Totals

    /// Sums over the nodes that run (the costlier If branch), with parameters and buffers
    /// counted once per constant value however many nodes read it.
    public var totals: ProfileTotals {
        var t = ProfileTotals()
        var seen = Set<String>()
        for n in nodes {
            for k in n.constantKeys where seen.insert(k.name).inserted {
                if k.isBuffer { t.buffers += k.elements } else { t.params += k.elements }
                t.parameterBytes += k.bytes
            }
            guard n.inTotal else { continue }
            t.nodes += 1
            if !n.isCounted { t.uncountedNodes += 1 }
            t.macs += n.macs
            t.flops += n.flops
            t.weightBytes += n.weightBytes
            t.inputBytes += n.inputBytes
            t.outputBytes += n.outputBytes
        }
        return t
    }

    /// MACs of the given operator types (e.g. Conv and Gemm, torchvision's published "FLOPs").
    public func macs(ofOps ops: Set<String>) -> Int {
        nodes.filter { $0.inTotal && ops.contains($0.opType) }.reduce(0) { $0 + $1.macs }
    }
}

/// Whole-model sums (see `ModelProfile.totals`).
public struct ProfileTotals: Equatable, Sendable {
    public var nodes = 0
    public var uncountedNodes = 0
    public var macs = 0
    public var flops = 0
    /// Unique parameter elements (each constant value once).
    public var params = 0
    /// Unique buffer elements (BatchNormalization running statistics).
    public var buffers = 0
    /// Bytes of the unique parameters and buffers as stored.
    public var parameterBytes = 0
    /// Sum of per-node weight reads (a weight read by two nodes counts twice).
    public var weightBytes = 0
    public var inputBytes = 0
    public var outputBytes = 0
    public var trafficBytes: Int { weightBytes + inputBytes + outputBytes }
    public var intensity: Double? { trafficBytes > 0 ? Double(flops) / Double(trafficBytes) : nil }
}
