import ModelIR

/// An explicit, ordered list of passes, run once each in order.
public struct PassPipeline {
    public var passes: [any GraphPass]

    public init(_ passes: [any GraphPass]) { self.passes = passes }

    /// What the executor applies when it plans (on a copy of the graph; the model is untouched):
    /// 1. `ConstantToInitializer` — Constant nodes become initializers, so later passes (and
    ///    kernels) see weights and Clip bounds as initializers and nothing constant runs per sample;
    /// 2. `IdentityElimination` — readers of an Identity read its input (shared weights through
    ///    an Identity become plain initializers for 3);
    /// 3. `BatchNormIntoConv` — before fusion, so the activation after a BN fuses into the Conv;
    /// 4. `PadIntoConv`;
    /// 5. `ActivationFusion` — it marks the producer with an attribute only the executor
    ///    understands;
    /// 6. `ChannelScaleIntoConv` — a squeeze-and-excitation Mul into the 1×1 Conv reading it
    ///    (another compress-internal attribute);
    /// 7. `ResidualAddIntoConv` — a skip connection's Add into the Conv it adds to (likewise);
    /// 8. `DeadCodeElimination` — nodes, initializers and value_info the rewrites left unread.
    public static let executorDefault = PassPipeline([
        ConstantToInitializer(), IdentityElimination(), BatchNormIntoConv(), PadIntoConv(), ActivationFusion(), ChannelScaleIntoConv(),
        ResidualAddIntoConv(), DeadCodeElimination(),
    ])

    /// The rewrites that keep a standard ONNX graph (no compress-internal attributes): what
    /// `compress fuse` may write out.
    /// `RepVGGMerge` runs after BN folding (each branch's BN is then in its Conv).
    public static let exportable = PassPipeline([
        ConstantToInitializer(), IdentityElimination(), BatchNormIntoConv(), RepVGGMerge(), PadIntoConv(), DeadCodeElimination(),
    ])

    /// No passes.
    public static let none = PassPipeline([])

    /// `executorDefault` without the passes that move a whole tensor's arithmetic into a Conv
    /// (`ChannelScaleIntoConv`, `ResidualAddIntoConv`): those tensors (an SE block's product, a
    /// Conv's output before its residual Add) stay observable, as quantization and feature
    /// distillation need, while activations still fuse.
    public static let executorObservable = PassPipeline(executorDefault.passes.filter { !($0 is ChannelScaleIntoConv || $0 is ResidualAddIntoConv) })

    /// Runs every pass in order on `graph`.
    /// - Returns: the merged results (removed values map to where they went).
    public func run(on graph: inout Graph) throws -> PassResult {
        var total = PassResult()
        for p in passes { total.merge(try p.apply(to: &graph)) }
        return total
    }

    /// The pass names, in order.
    public var names: [String] { passes.map(\.name) }
}
