import ModelIR

/// Moves the multiplication of a squeeze-and-excitation block into the 1×1 Conv that reads its
/// result: the Conv scales each input channel as it packs its input for the product, so the
/// scaled tensor is never written out and read back.
///
/// Before: `m = Mul(a, b)`, `y = Conv(m, W, B)` (W `[M, C, 1, 1]`).
/// After: `y = Conv(a, W, B, b)` carrying the attribute `_compress_input_scale = 1`.
///
/// Which of `a` and `b` is the tensor and which the scale is not known until run time (shapes
/// may be symbolic): the Conv kernel looks at the shapes. Where one is `[N, C, H, W]` and the
/// other `[N, C, 1, 1]` it multiplies each channel of the first by the second's value while
/// packing (the same float products the Mul computes, so the same bits); any other pair it
/// multiplies out first as the Mul would (NumPy broadcasting), then convolves.
///
/// Why: EfficientNet and MobileNetV3 write a whole activation tensor per SE block only to read
/// it once; the Mul was 6 % of EfficientNet-B0's time at batch 1.
///
/// The attribute is compress-internal (a Conv with four inputs is not standard ONNX), so the
/// pass is in `PassPipeline.executorDefault` only.
///
/// Does not apply when: the Mul's output has another reader (direct or in a body) or is a graph
/// output; the Conv reads it through an input other than 0; either Mul operand is an
/// initializer (a constant scale folds into the weights instead) or both are the same value;
/// the Mul carries opset-1–6 `broadcast`/`axis` attributes; the Conv's weight is not an
/// initializer of shape `[M, C, 1, 1]`; its group is not 1, a stride is not 1, a pad is not 0,
/// or `auto_pad` is SAME_*; it already has a fused input scale or more than three inputs.
public struct ChannelScaleIntoConv: GraphPass {
    public let name = "ChannelScaleIntoConv"
    public init() {}

    public static let attribute = "_compress_input_scale"

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var drop = Set<Int>()
        for (mi, mul) in graph.nodes.enumerated() where mul.isDefaultDomain && mul.opType == "Mul" {
            guard mul.inputs.count == 2, mul.outputs.count == 1, let m = mul.outputs.first, !m.isEmpty,
                  mul.inputs[0] != mul.inputs[1], mul.inputs.allSatisfy({ !$0.isEmpty && !graph.isInitializer($0) }),
                  mul[attribute: "broadcast"] == nil, mul[attribute: "axis"] == nil,
                  let use = index.hasSingleDirectReader(m), use.slot == 0 else { continue }
            var conv = graph.nodes[use.node]
            guard conv.isDefaultDomain, conv.opType == "Conv", conv.inputs.count >= 2, conv.inputs.count <= 3,
                  conv[attribute: Self.attribute] == nil, Self.isPointwise(conv, graph) else { continue }
            var inputs = conv.inputs
            inputs[0] = mul.inputs[0]
            if inputs.count == 2 { inputs.append("") }
            inputs.append(mul.inputs[1])
            conv.inputs = inputs
            conv[attribute: Self.attribute] = .int(1)
            graph.nodes[use.node] = conv
            drop.insert(mi)
            result.removedValues[m] = "multiplied into \(conv.reportLabel) as it reads its input (channel scale)"
        }
        graph.removeNodes(at: drop)
        result.rewrites = drop.count
        return result
    }

    /// A Conv the kernels run as one product over the input positions: weight `[M, C, 1, 1]`
    /// (an initializer), group 1, strides 1, no padding.
    static func isPointwise(_ conv: Node, _ graph: Graph) -> Bool {
        guard let w = graph.initializer(named: conv.inputs[1])?.tensor, w.rank == 4, w.shape[2] == 1, w.shape[3] == 1,
              (conv.int("group") ?? 1) == 1 else { return false }
        if let s = conv.ints("strides"), !s.allSatisfy({ $0 == 1 }) { return false }
        if let p = conv.ints("pads"), !p.allSatisfy({ $0 == 0 }) { return false }
        let autoPad = conv.string("auto_pad") ?? "NOTSET"
        return autoPad == "NOTSET" || autoPad == "VALID"
    }
}

extension Node {
    /// Whether `ChannelScaleIntoConv` gave this Conv a fourth input to scale its input by.
    public var hasFusedInputScale: Bool { int(ChannelScaleIntoConv.attribute) == 1 }
}
