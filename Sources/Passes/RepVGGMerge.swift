import ModelIR
import TensorCore

/// Merges parallel convolution branches that are added together into one convolution
/// (structural re-parameterization, Ding et al., CVPR 2021, RepVGG). Runs after
/// `BatchNormIntoConv`, so each branch's BN is already in its Conv.
///
/// Before: `y = Conv_k1(x, W1, b1) + Conv_k2(x, W2, b2) [+ BN(x) | + x]` (binary Adds in any order
/// and nesting, or one Sum), every Conv reading the same x with the same stride and group.
/// After: `y = Conv_K(x, W, b)` with K the largest kernel, `W = Σ pad_centre(W_i, K) + I·s`,
/// `b = Σ b_i + t`, where the identity branch contributes per output channel c the kernel centre
/// at its own input channel (c mod C/g within its group) scaled by s = γ/√(var + ε) and
/// t = β − mean·s for BN(x) (s = 1, t = 0 for x itself). Summed in Double, rounded once.
/// Does not apply when: a branch's output has another reader or is a graph output; a kernel is
/// not odd and square, is padded otherwise than (k − 1)/2 on every side, or is dilated; strides or
/// groups differ; an identity branch meets stride ≠ 1 or in-channels ≠ out-channels; a weight,
/// bias or BN parameter is not a float32 initializer; fewer than two branches are convolutions
/// and there is no identity branch beside one.
public struct RepVGGMerge: GraphPass {
    public let name = "RepVGGMerge"
    public init() {}

    enum Branch {
        case conv(node: Int, w: Tensor, b: Tensor?)
        case identity(scale: [Double]?, shift: [Double]?, node: Int?)
    }

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var drop = Set<Int>()
        var replace: [Int: Node] = [:]
        var names = NameAllocator(graph)
        for (ai, add) in graph.nodes.enumerated() where add.isDefaultDomain && (add.opType == "Add" || add.opType == "Sum") && !drop.contains(ai) {
            // Skip an Add whose only reader is another Add/Sum: the outermost one merges the tree.
            if let r = index.hasSingleDirectReader(add.outputs[0]), ["Add", "Sum"].contains(graph.nodes[r.node].opType),
               !index.isGraphOutput(add.outputs[0]) { continue }
            var terms: [String] = [], adds: [Int] = [ai]
            func collect(_ v: String) {
                if let p = index.producer(of: v), p != ai, !drop.contains(p), ["Add", "Sum"].contains(graph.nodes[p].opType), graph.nodes[p].isDefaultDomain,
                   index.hasSingleDirectReader(v) != nil, !index.isGraphOutput(v) {
                    adds.append(p)
                    graph.nodes[p].inputs.forEach(collect)
                } else {
                    terms.append(v)
                }
            }
            add.inputs.forEach(collect)
            guard terms.count >= 2 else { continue }
            // The common input x: what the convolutions read.
            var branches: [Branch] = []
            var x: String?
            var ok = true
            for t in terms {
                if let p = index.producer(of: t), graph.nodes[p].isDefaultDomain, graph.nodes[p].opType == "Conv",
                   index.hasSingleDirectReader(t) != nil, !index.isGraphOutput(t), !drop.contains(p) {
                    let n = graph.nodes[p]
                    guard n.inputs.count >= 2, let w = graph.initializer(named: n.inputs[1])?.tensor, w.dtype == .float32, w.rank == 4 else { ok = false; break }
                    let b = n.inputs.count > 2 && !n.inputs[2].isEmpty ? graph.initializer(named: n.inputs[2])?.tensor : nil
                    if n.inputs.count > 2, !n.inputs[2].isEmpty, b?.dtype != .float32 { ok = false; break }
                    if x == nil { x = n.inputs[0] } else if x != n.inputs[0] { ok = false; break }
                    branches.append(.conv(node: p, w: w, b: b))
                } else if let p = index.producer(of: t), graph.nodes[p].isDefaultDomain, graph.nodes[p].opType == "BatchNormalization",
                          index.hasSingleDirectReader(t) != nil, !index.isGraphOutput(t), !drop.contains(p) {
                    let bn = graph.nodes[p]
                    guard bn.inputs.count == 5, (bn.int("training_mode") ?? 0) == 0, bn.outputs.dropFirst().allSatisfy(\.isEmpty),
                          bn.inputs[1...4].allSatisfy({ graph.initializer(named: $0)?.tensor.dtype == .float32 }) else { ok = false; break }
                    let prm = bn.inputs[1...4].map { graph.initializer(named: $0)!.tensor }
                    let eps = Double(bn.float("epsilon") ?? 1e-5)
                    let g = prm[0].scalars(as: Float.self), be = prm[1].scalars(as: Float.self), m = prm[2].scalars(as: Float.self), v = prm[3].scalars(as: Float.self)
                    let s = g.indices.map { Double(g[$0]) / (Double(v[$0]) + eps).squareRoot() }
                    branches.append(.identity(scale: s, shift: s.indices.map { Double(be[$0]) - Double(m[$0]) * s[$0] }, node: p))
                    if x == nil { x = bn.inputs[0] } else if x != bn.inputs[0] { ok = false; break }
                } else {
                    branches.append(.identity(scale: nil, shift: nil, node: nil))
                    if x == nil { x = t } else if x != t { ok = false; break }
                }
            }
            let convs = branches.compactMap { b -> (Int, Tensor, Tensor?)? in if case .conv(let n, let w, let bb) = b { return (n, w, bb) }; return nil }
            guard ok, let input = x, !convs.isEmpty, branches.count >= 2 else { continue }
            // Geometry: one stride, one group, centred odd kernels, no dilation.
            let first = graph.nodes[convs[0].0]
            let strides = first.ints("strides") ?? [1, 1], group = Int(first.int("group") ?? 1)
            let m = convs[0].1.shape[0], cPer = convs[0].1.shape[1]
            var k = 1
            for (n, w, _) in convs {
                let node = graph.nodes[n]
                let kh = w.shape[2], kw = w.shape[3]
                let pads = node.ints("pads") ?? [0, 0, 0, 0]
                guard kh == kw, kh % 2 == 1, (node.ints("strides") ?? [1, 1]) == strides, Int(node.int("group") ?? 1) == group,
                      (node.ints("dilations") ?? [1, 1]).allSatisfy({ $0 == 1 }), (node.string("auto_pad") ?? "NOTSET") == "NOTSET",
                      pads.count == 4, pads.allSatisfy({ $0 == Int64((kh - 1) / 2) }), w.shape[0] == m, w.shape[1] == cPer else { ok = false; break }
                k = max(k, kh)
            }
            let identities = branches.filter { if case .identity = $0 { return true }; return false }
            if !identities.isEmpty, !(strides.allSatisfy { $0 == 1 } && m == cPer * group) { ok = false }
            guard ok else { continue }
            // Sum in Double.
            var W = [Double](repeating: 0, count: m * cPer * k * k), B = [Double](repeating: 0, count: m)
            for (_, w, b) in convs {
                let kw = w.shape[2], off = (k - kw) / 2, v = w.scalars(as: Float.self)
                for o in 0..<m { for i in 0..<cPer { for r in 0..<kw { for c in 0..<kw {
                    W[((o * cPer + i) * k + r + off) * k + c + off] += Double(v[((o * cPer + i) * kw + r) * kw + c])
                } } } }
                if let b { let bv = b.scalars(as: Float.self); for o in 0..<m { B[o] += Double(bv[o]) } }
            }
            for case .identity(let s, let t, _) in branches {
                for o in 0..<m {
                    let i = o % cPer
                    W[((o * cPer + i) * k + k / 2) * k + k / 2] += s?[o] ?? 1
                    B[o] += t?[o] ?? 0
                }
            }
            let wName = names.fresh(first.name.isEmpty ? "repvgg.weight" : first.name + "#repvgg.weight")
            let bName = names.fresh(first.name.isEmpty ? "repvgg.bias" : first.name + "#repvgg.bias")
            graph.addInitializer(Initializer(name: wName, tensor: Tensor(shape: [m, cPer, k, k], scalars: W.map { Float($0) })))
            graph.addInitializer(Initializer(name: bName, tensor: Tensor(shape: [m], scalars: B.map { Float($0) })))
            var merged = Node(name: names.fresh(add.name.isEmpty ? "repvgg" : add.name + "#repvgg"), opType: "Conv",
                              inputs: [input, wName, bName], outputs: [add.outputs[0]])
            merged[attribute: "kernel_shape"] = .ints([Int64(k), Int64(k)])
            merged[attribute: "pads"] = .ints([Int64(k / 2), Int64(k / 2), Int64(k / 2), Int64(k / 2)])
            merged[attribute: "strides"] = .ints(strides)
            if group != 1 { merged[attribute: "group"] = .int(Int64(group)) }
            for (n, _, _) in convs {
                drop.insert(n)
                result.removedValues[graph.nodes[n].outputs[0]] = "merged into Conv '\(merged.name)' (RepVGG)"
            }
            for case .identity(_, _, let n?) in branches {
                drop.insert(n)
                result.removedValues[graph.nodes[n].outputs[0]] = "merged into Conv '\(merged.name)' (RepVGG)"
            }
            for a in adds where a != ai {
                drop.insert(a)
                result.removedValues[graph.nodes[a].outputs[0]] = "merged into Conv '\(merged.name)' (RepVGG)"
            }
            replace[ai] = merged
            result.rewrites += 1
        }
        guard result.rewrites > 0 else { return result }
        var out: [Node] = []
        for (i, n) in graph.nodes.enumerated() where !drop.contains(i) { out.append(replace[i] ?? n) }
        graph.nodes = out
        return result
    }
}
