import ModelIR
import TensorCore

/// Folds a multiplication or addition by a per-channel constant into the Conv or inference
/// BatchNormalization that feeds it (Caffe2-era exports write BN as BatchNormalization → Mul →
/// Add, the scale layer; any framework may write a bias as a separate Add).
///
/// Before: `y = Mul(Conv(x, W, b), c)` / `y = Add(Conv(x, W, b), d)` (either operand order), or
/// the same after `BN(x, γ, β, mean, var)`.
/// After: `y = Conv(x, W', b')` with `W'[o, …] = c[o]·W[o, …]`, `b'[o] = c[o]·b[o]` (Mul) or
/// `b'[o] = b[o] + d[o]` (Add); `y = BN(x, γ', β', mean, var)` with `γ' = c·γ`, `β' = c·β` (Mul)
/// or `β' = β + d` (Add) — since `c·(s·x + t) = (c·γ/√(var + ε))·x + c·(β − mean·s)`. In Double,
/// rounded to float32 once per fold. A chain (Mul then Add) folds link by link in one run.
/// The constant broadcasts per channel: one element, or a float32 initializer whose only
/// dimension larger than 1 lines up with axis 1 of the output (`[C, 1, 1]`, `[1, C, 1, 1]`, and
/// `[C]` for a 2-D BN output).
/// Does not apply when: the producer's output has another reader or is a graph output; the
/// constant is not a float32 initializer or would broadcast along another axis (or enlarge the
/// output); the Conv's weight or bias is not a float32 initializer; the BN fails its own guards
/// (`BatchNormAffine`) or its input's rank is not declared.
public struct MulAddIntoConv: GraphPass {
    public let name = "MulAddIntoConv"
    public init() {}

    /// The constant's values per channel (length `channels`), when it broadcasts along axis 1 of
    /// a rank-`rank` output only.
    static func perChannel(_ t: Tensor, channels: Int, rank: Int) -> [Double]? {
        guard t.dtype == .float32, t.rank <= rank else { return nil }
        let v = t.scalars(as: Float.self).map(Double.init)
        if t.count == 1 { return [Double](repeating: v[0], count: channels) }
        let axis = t.rank - (rank - 1)  // where output axis 1 falls in t's (right-aligned) shape
        guard axis >= 0, t.shape[axis] == channels, t.shape.enumerated().allSatisfy({ $0.offset == axis || $0.element == 1 }) else { return nil }
        return v
    }

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var names = NameAllocator(graph)
        var producer: [String: Int] = index.producers
        var drop = Set<Int>()
        for (k, n) in graph.nodes.enumerated() where n.isDefaultDomain && (n.opType == "Mul" || n.opType == "Add") {
            guard n.inputs.count == 2, n.outputs.count == 1 else { continue }
            for side in 0..<2 {
                let v = n.inputs[side], cName = n.inputs[1 - side]
                guard let pi = producer[v], !drop.contains(pi), let c = graph.initializer(named: cName)?.tensor,
                      !index.isGraphOutput(v), index.hasSingleDirectReader(v) != nil else { continue }
                let p = graph.nodes[pi]
                guard p.isDefaultDomain, p.outputs.count == 1 else { continue }
                let isMul = n.opType == "Mul"
                var rewritten: Node?
                if p.opType == "Conv", p.inputs.count >= 2, let w = graph.initializer(named: p.inputs[1])?.tensor, w.dtype == .float32, w.rank >= 3,
                   let f = Self.perChannel(c, channels: w.shape[0], rank: w.rank) {
                    let m = w.shape[0]
                    var bias = [Double](repeating: 0, count: m)
                    if p.inputs.count >= 3, !p.inputs[2].isEmpty {
                        guard let b = doubles(p.inputs[2], graph), b.count == m else { continue }
                        bias = b
                    }
                    var q = p
                    if isMul {
                        let per = w.count / m
                        var folded = Tensor(uninitialized: .float32, shape: w.shape)
                        w.withUnsafeBufferPointer(as: Float.self) { src in
                            folded.withUnsafeMutableBufferPointer(as: Float.self) { dst in
                                for o in 0..<m { for i in o * per..<(o + 1) * per { dst[i] = Float(Double(src[i]) * f[o]) } }
                            }
                        }
                        let wName = names.fresh(p.inputs[1] + "#scaled")
                        graph.addInitializer(Initializer(name: wName, tensor: folded))
                        q.inputs[1] = wName
                        bias = (0..<m).map { bias[$0] * f[$0] }
                    } else {
                        bias = (0..<m).map { bias[$0] + f[$0] }
                    }
                    let bName = names.fresh((p.name.isEmpty ? "conv" : p.name) + "#bias")
                    graph.addInitializer(Initializer(name: bName, tensor: Tensor(shape: [m], scalars: bias.map { Float($0) })))
                    if q.inputs.count >= 3 { q.inputs[2] = bName } else { q.inputs.append(bName) }
                    rewritten = q
                } else if p.opType == "BatchNormalization", BatchNormAffine(p, graph) != nil,
                          let rank = graph.type(of: p.inputs[0])?.shape?.count, rank >= 2,
                          let gamma = doubles(p.inputs[1], graph), let beta = doubles(p.inputs[2], graph),
                          let f = Self.perChannel(c, channels: gamma.count, rank: rank) {
                    var q = p
                    let ch = gamma.count
                    if isMul {
                        let g = names.fresh(p.inputs[1] + "#scaled")
                        graph.addInitializer(Initializer(name: g, tensor: Tensor(shape: [ch], scalars: (0..<ch).map { Float(gamma[$0] * f[$0]) })))
                        q.inputs[1] = g
                    }
                    let b = names.fresh(p.inputs[2] + (isMul ? "#scaled" : "#shifted"))
                    graph.addInitializer(Initializer(name: b, tensor: Tensor(shape: [ch], scalars: (0..<ch).map { Float(isMul ? beta[$0] * f[$0] : beta[$0] + f[$0]) })))
                    q.inputs[2] = b
                    rewritten = q
                }
                guard var q = rewritten else { continue }
                q.outputs = n.outputs
                graph.nodes[pi] = q
                producer[n.outputs[0]] = pi
                drop.insert(k)
                result.removedValues[v] = "folded into \(p.reportLabel) with \(n.reportLabel)"
                result.rewrites += 1
                break
            }
        }
        graph.removeNodes(at: drop)
        return result
    }
}
