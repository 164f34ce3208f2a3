import Foundation
import ModelIR
import Passes
import Runtime
import TensorCore

/// `compress fuse`: the shared graph passes (the same implementations the executor plans with),
/// applied to the model and written out, then verified by running the model before and after.
public enum Fuser {
    /// The passes `fuse` applies, in order (standard ONNX out: no executor-only attributes): the
    /// executor's exportable rewrites (`PassPipeline.exportable`) with constant folding,
    /// Reshape/Transpose elimination and the further BN and Mul/Add folds placed where each sees
    /// what the earlier ones leave:
    /// 1. `ConstantToInitializer`, 2. `IdentityElimination` (Identity, inference Dropout) — so
    ///    3. `ConstantFolding` sees constants as initializers and through no Identity;
    /// 4. `ReshapeTransposeElimination` — after folding, so shapes are constants;
    /// 5. `BatchNormIntoConv`, 6. `BatchNormIntoConvTranspose`, 7. `BatchNormIntoGemm`;
    /// 8. `RepVGGMerge` — after BN folding, each branch's BN is in its Conv;
    /// 9. `MulAddIntoConv` — per-channel Mul/Add into the Conv (BN already in it) or a lone BN;
    /// 10. `CommonSubexpressionElimination` — after the folds: merging two equal Convs earlier
    ///     would give their output two readers and keep both BNs from folding;
    /// 11. `BatchNormToMulAdd` — the BNs nothing absorbed;
    /// 12. `PadIntoConv`, 13. `DeadCodeElimination` (nodes, unread initializers, value_info).
    /// - Parameters:
    ///   - types: inferred value types; Shape/Size fold only with them (see `fuse`).
    public static func pipeline(for model: Model, types: [String: TensorInfo]?) -> [any GraphPass] {
        [ConstantToInitializer(), IdentityElimination(), ConstantFolding(model: model, types: types), ReshapeTransposeElimination(),
         BatchNormIntoConv(), BatchNormIntoConvTranspose(), BatchNormIntoGemm(), RepVGGMerge(), MulAddIntoConv(),
         CommonSubexpressionElimination(), BatchNormToMulAdd(), PadIntoConv(), DeadCodeElimination()]
    }

    /// The pass names, in order.
    public static var passNames: [String] { pipeline(for: Model(graph: Graph()), types: nil).map(\.name) }

    public struct Applied: Encodable, Sendable {
        public let pass: String
        public let rewrites: Int
    }

    /// A node a pass matched but left alone, with the guard that kept it.
    public struct LeftAlone: Encodable, Sendable {
        public let node: String
        public let reason: String
    }

    public struct Result {
        public let model: Model
        public let applied: [Applied]
        public let leftAlone: [LeftAlone]
        /// Whether Shape/Size were folded (every input shape fixed by the model or `pins`).
        public let shapesKnown: Bool
    }

    /// Applies the chosen passes (by name, case-insensitive; nil: all) less `skip`, each once in
    /// order. Value types are inferred first (`ShapeInference` with `pins`) and written into the
    /// graph's value_info for the passes that need a rank or shape; when some input dimension is
    /// neither fixed nor pinned, only ranks are recorded (dimensions unknown) and Shape/Size are not
    /// folded. The written model keeps the value_info it came with.
    /// - Throws: `FuseError` for a pass name that does not exist.
    public static func fuse(_ model: Model, passes: [String]?, skip: [String], pins: [String: [Int]] = [:]) throws -> Result {
        let names = passNames
        for n in (passes ?? []) + skip where !names.contains(where: { $0.lowercased() == n.lowercased() }) {
            throw FuseError.invalid("no pass named '\(n)' (passes: \(names.joined(separator: ", ")))")
        }
        var m = model
        let fixed = m.graph.runtimeInputs.allSatisfy { v in pins[v.name] != nil || v.type?.fixedShape != nil }
        var types: [String: TensorInfo]?
        if let inference = try? ShapeInference(model: m, pins: pins, strict: false) {
            if fixed {
                types = inference.types
                m.graph.recordTypes(inference.types.mapValues { ($0.dtype, $0.shape) })
            } else {
                m.graph.recordRanks(inference.types)
            }
        }
        var applied: [Applied] = []
        var left: [String: String] = [:]
        for p in pipeline(for: model, types: types) {
            let chosen = passes.map { list in list.contains { $0.lowercased() == p.name.lowercased() } } ?? true
            guard chosen, !skip.contains(where: { $0.lowercased() == p.name.lowercased() }) else { continue }
            let r = try p.apply(to: &m.graph)
            applied.append(Applied(pass: p.name, rewrites: r.rewrites))
            left.merge(r.leftAlone) { a, _ in a }
        }
        // Back to the value_info the model declared (of the values that still exist).
        var live = Set(m.graph.nodes.flatMap(\.outputs))
        live.formUnion(m.graph.inputs.map(\.name))
        m.graph.valueInfo = model.graph.valueInfo.filter { live.contains($0.name) }
        m.graph.outputs = model.graph.outputs
        if model.irVersion < 4 { m.graph.listInitializersAsInputs() }
        // Only what is still there was left alone (a later pass may have rewritten it).
        let labels = Set(m.graph.nodes.map(\.reportLabel))
        let leftAlone = left.filter { labels.contains($0.key) }.sorted { $0.key < $1.key }.map { LeftAlone(node: $0.key, reason: $0.value) }
        return Result(model: m, applied: applied, leftAlone: leftAlone, shapesKnown: types != nil)
    }

    /// The largest absolute and relative differences of one output between the two models.
    public struct OutputCheck: Encodable, Sendable {
        public let name: String
        public let max_abs: Double
        /// max |a − b| / max |a| over the output (relative to its scale).
        public let max_rel: Double
        /// Whether every element keeps |a − b| ≤ atol + rtol·|a|.
        public let within: Bool
    }

    /// Runs both models on `feeds` (each a sample) and compares every output.
    public static func verify(_ original: Model, _ fused: Model, samples: [[String: Tensor]], rtol: Double, atol: Double) throws -> [OutputCheck] {
        // The original runs as written (no plan-time passes: nothing of what is being verified is
        // assumed); the fused model with the executor's usual plan. Weights are not repacked for
        // the direct product: each plan runs only `samples.count` times (one by default).
        let repeated = samples.count > 2
        let a = try Executor(model: original, passes: .none, packWeights: repeated)
        let b = try Executor(model: fused, packWeights: repeated)
        var worst: [String: (abs: Double, scale: Double, ok: Bool)] = [:]
        for feeds in samples {
            let x = try a.run(feeds), y = try b.run(feeds)
            for o in original.graph.outputs.map(\.name) {
                guard let u = x[o], let v = y[o] else { throw FuseError.invalid("output '\(o)' was not produced") }
                guard u.shape == v.shape else { throw FuseError.invalid("output '\(o)' changed shape: \(u.shape) → \(v.shape)") }
                var w = worst[o] ?? (0, 0, true)
                if u.dtype.isFloatingPoint {
                    let p = u.converted(to: .float64).scalars(as: Double.self), q = v.converted(to: .float64).scalars(as: Double.self)
                    for (s, t) in zip(p, q) {
                        let d = abs(s - t)
                        if !(s.isNaN && t.isNaN) {
                            w.abs = max(w.abs, d.isNaN ? .infinity : d)
                            if !(d <= atol + rtol * abs(s)) { w.ok = false }
                        }
                        w.scale = max(w.scale, abs(s))
                    }
                } else {
                    let p = u.converted(to: .int64).scalars(as: Int64.self), q = v.converted(to: .int64).scalars(as: Int64.self)
                    for (s, t) in zip(p, q) where s != t { w.abs = max(w.abs, Double(abs(s - t))); w.ok = false }
                }
                worst[o] = w
            }
        }
        return original.graph.outputs.map { o in
            let w = worst[o.name] ?? (0, 0, true)
            return OutputCheck(name: o.name, max_abs: w.abs, max_rel: w.scale > 0 ? w.abs / w.scale : w.abs, within: w.ok)
        }
    }

    /// Seeded random inputs for `model`'s runtime inputs (uniform in [−1, 1) for float types,
    /// zeros for integer and bool types), `count` samples.
    public static func randomSamples(_ model: Model, pins: [String: [Int]], count: Int, seed: UInt64) throws -> [[String: Tensor]] {
        let types = try InputShapes.resolve(graph: model.graph, pins: pins)
        for (name, info) in types { try InputShapes.checkSynthesizable(info, input: name) }
        // (The offset seed keeps the inputs of earlier versions: the same values, bit for bit.)
        var rng = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15)
        func next() -> Float { rng.uniform(-1, 1) }
        return (0..<count).map { _ in
            var feeds: [String: Tensor] = [:]
            for (name, info) in types.sorted(by: { $0.key < $1.key }) {
                if info.dtype.isFloatingPoint {
                    let values = (0..<info.count).map { _ in next() }
                    feeds[name] = Tensor(shape: info.shape, scalars: values).converted(to: info.dtype)
                } else {
                    feeds[name] = Tensor(dtype: info.dtype, shape: info.shape)
                }
            }
            return feeds
        }
    }
}

public enum FuseError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case .invalid(let s) = self { return s }; return "" }
}

extension Graph {
    /// IR version < 4 requires every initializer to be listed among the graph inputs: the inputs
    /// become the runtime inputs followed by one entry per initializer (new ones included;
    /// entries of initializers that no longer exist dropped).
    mutating func listInitializersAsInputs() {
        let declared = Dictionary(inputs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var list = runtimeInputs.filter { v in !nodes.contains { $0.outputs.contains(v.name) } }
        for i in initializers {
            list.append(declared[i.name] ?? ValueInfo(i.name, i.tensor.dtype, i.tensor.shape.map { .fixed($0) }))
        }
        inputs = list
    }

    /// Records the rank and element type of every inferred node output in value_info, each
    /// dimension unknown (for passes that need a rank when the shapes are not fixed).
    mutating func recordRanks(_ types: [String: TensorInfo]) {
        let outs = Set(outputs.map(\.name))
        let declared = Set(valueInfo.map(\.name))
        for n in nodes {
            for o in n.outputs where !o.isEmpty && !outs.contains(o) && !declared.contains(o) {
                guard let t = types[o] else { continue }
                valueInfo.append(ValueInfo(o, t.dtype, t.shape.map { _ in Dim.unknown }))
            }
        }
    }
}
