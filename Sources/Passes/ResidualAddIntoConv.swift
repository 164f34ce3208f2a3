import ModelIR

/// Moves a residual connection's Add into the Conv whose output it adds: the Conv adds the
/// other operand to its output as it finishes, instead of a separate step writing a new tensor.
///
/// Before: `c = Conv(x, W, B)`, `y = Add(c, r)` (either operand order).
/// After: `y = Conv(x, W, B, s?, r)` carrying the attribute `_compress_residual = 1` (input 3 is
/// `ChannelScaleIntoConv`'s scale or empty; input 4 the residual).
///
/// The Conv's activation, if it has one fused, comes first (`Add(act(conv), r)` is what the graph
/// computes). Where `r` has the output's shape the kernel adds it in place (`y + r`, the float
/// sum the Add computes, so the same bits); any other shape it broadcasts as Add would, into a
/// new tensor.
///
/// Why: inverted-residual networks (MobileNetV2/V3, EfficientNet) add a skip connection after
/// most blocks; each Add was a step of its own reading two tensors and writing a third.
///
/// The attribute is compress-internal, so the pass is in `PassPipeline.executorDefault` only.
///
/// Does not apply when: the Conv's output has another reader or is a graph output; `r` is
/// produced after the Conv (the Conv keeps its place in the node order); `r` is an
/// initializer (a constant bias folds into the Conv instead) or the Conv's output itself; the
/// Add carries opset-1–6 `broadcast`/`axis` attributes; the Conv already has a residual, more
/// than four inputs, or several outputs.
public struct ResidualAddIntoConv: GraphPass {
    public let name = "ResidualAddIntoConv"
    public init() {}

    public static let attribute = "_compress_residual"

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var drop = Set<Int>()
        for (ai, add) in graph.nodes.enumerated() where add.isDefaultDomain && add.opType == "Add" {
            guard add.inputs.count == 2, add.outputs.count == 1, !add.outputs[0].isEmpty, add.inputs[0] != add.inputs[1],
                  add[attribute: "broadcast"] == nil, add[attribute: "axis"] == nil else { continue }
            for side in 0..<2 {
                let c = add.inputs[side], r = add.inputs[1 - side]
                guard !c.isEmpty, !r.isEmpty, !graph.isInitializer(r), let ci = index.producer(of: c), !drop.contains(ci),
                      let use = index.hasSingleDirectReader(c), use.node == ai else { continue }
                // The Conv stays where it is: `r` must already exist there.
                if let rp = index.producer(of: r), rp > ci { continue }
                var conv = graph.nodes[ci]
                guard conv.isDefaultDomain, conv.opType == "Conv", conv.outputs.count == 1, conv.inputs.count >= 2,
                      conv.inputs.count <= 4, conv[attribute: Self.attribute] == nil else { continue }
                while conv.inputs.count < 4 { conv.inputs.append("") }
                conv.inputs.append(r)
                conv.outputs = add.outputs
                conv[attribute: Self.attribute] = .int(1)
                graph.nodes[ci] = conv
                drop.insert(ai)
                result.removedValues[c] = "added to the residual inside \(conv.reportLabel)"
                break
            }
        }
        graph.removeNodes(at: drop)
        result.rewrites = drop.count
        return result
    }
}

extension Node {
    /// Whether `ResidualAddIntoConv` gave this Conv a fifth input to add to its output.
    public var hasFusedResidual: Bool { int(ResidualAddIntoConv.attribute) == 1 }
}
