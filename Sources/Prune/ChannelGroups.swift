import ModelIR
import Runtime
import TensorCore

/// Channels that must be removed together, and every constant that removing them slices.
///
/// A group starts at a layer that makes channels (a Conv's filters, a Gemm's rows) and is joined
/// by everything that shares their index: the layers they pass through (BatchNormalization,
/// activations, pooling, Resize, depthwise convolutions), the layers that read them (the next
/// Conv's input channels, a Gemm's columns after Flatten), and other groups an elementwise op
/// (a residual Add, an SE block's Mul) adds them to. Concat places groups side by side at
/// offsets. Anything the analysis cannot prove safe makes a group unprunable, with the reason.
/// (DepGraph, Fang et al., CVPR 2023, on an ONNX graph instead of PyTorch modules.)
public struct ChannelGroup: Sendable {
    /// Index of the group in the analysis.
    public var id: Int
    /// The first producing node's name (what `--exclude` and `--ratios` name).
    public var label: String
    public var channels: Int
    /// Every constant the group's channels index, by role.
    public var slices: [ChannelSlice]
    /// Names of the nodes that produce the channels (importance comes from their filters).
    public var producers: [String]
    /// Outputs of the depthwise convolutions whose `group` attribute follows the channel count.
    public var depthwiseNodes: [String]
    /// BatchNormalization scale tensors of the group (Network Slimming's γ).
    public var batchNormScales: [ChannelSlice]
    /// Why the group cannot be pruned; empty when it can.
    public var reasons: [String]
    /// 1, or the `group` count of a grouped convolution that makes or reads the channels: they
    /// form that many equal blocks (one per convolution group), and every block must lose the
    /// same number of channels so the convolution keeps its group count.
    public var blocks = 1
    /// With `blocks` > 1: a grouped convolution reads the channels, so every block loses the
    /// same positions (its weight's input axis holds one position for all convolution groups).
    public var alignedBlocks = false

    public var isPrunable: Bool { reasons.isEmpty }
    /// Nodes that read or produce the group's channels, for reports.
    public var members: [String] {
        var seen = Set<String>()
        return slices.map(\.node).filter { seen.insert($0).inserted }
    }
}

/// A Split on the channel axis: which group channels each of its outputs carries, so the surgery
/// can give it the new sizes. `parts[k]` lists output k's runs: channels `start ..< start + count`
/// of group `group` (nil: channels no group owns, kept as they are).
public struct ChannelSplit: Sendable {
    public var node: Int
    public var parts: [[(group: Int?, start: Int, count: Int)]]

    /// Output sizes after removing `removed[group]` from each group.
    public func sizes(removing removed: [Int: Set<Int>]) -> [Int] {
        parts.map { runs in
            runs.reduce(0) { total, r in
                guard let g = r.group, let gone = removed[g] else { return total + r.count }
                return total + (r.start ..< r.start + r.count).filter { !gone.contains($0) }.count
            }
        }
    }
}

/// The dependency analysis over a model's graph.
public struct ChannelGroupAnalysis {
    public private(set) var groups: [ChannelGroup] = []
    /// Splits on the channel axis whose sizes follow the groups they cut.
    public private(set) var splits: [ChannelSplit] = []

    /// Analyses `model`'s main graph; `pins` resolve dynamic input dimensions (`--input`).
    /// - Throws: shape-inference errors (an op compress cannot size, an unpinned dynamic dim).
    public init(model: Model, pins: [String: [Int]] = [:]) throws {
        let shapes = try ShapeInference(model: model, pins: pins)
        var builder = Builder(graph: model.graph, types: shapes.types)
        builder.run()
        (groups, splits) = builder.finish()
    }

    public var prunable: [ChannelGroup] { groups.filter(\.isPrunable) }
}

// MARK: - The walk

private struct Space {
    var size: Int
    var label: String
    var slices: [ChannelSlice] = []
    var producers: [String] = []
    var depthwise: [String] = []
    var bnScales: [ChannelSlice] = []
    var reasons: [String] = []
    var blocks = 1
    var aligned = false
}

/// Ops whose output channel c depends only on input channel c (shape kept).
private let channelwise: Set<String> = [
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal",
    "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Identity", "Dropout", "Cast", "ThresholdedRelu", "Shrink",
    "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Resize", "Upsample",
    "BatchNormalization", "InstanceNormalization", "Pad",
]
private let elementwiseBinary: Set<String> = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow"]

private struct Builder {
    let graph: Graph
    let types: [String: TensorInfo]
    var spaces: [Space] = []
    var parent: [Int] = []
    var layouts: [String: ChannelLayout] = [:]
    /// Producers and readers (subgraph reads included) of every value: the graph layer's index.
    let index: UseDefIndex

    init(graph: Graph, types: [String: TensorInfo]) {
        self.graph = graph
        self.types = types
        index = UseDefIndex(graph)
    }

    // MARK: Union-find over spaces

    mutating func newSpace(size: Int, label: String) -> Int {
        spaces.append(Space(size: size, label: label))
        parent.append(spaces.count - 1)
        return spaces.count - 1
    }

    mutating func find(_ s: Int) -> Int {
        var r = s
        while parent[r] != r { r = parent[r] }
        var c = s
        while parent[c] != r { let n = parent[c]; parent[c] = r; c = n }
        return r
    }

    mutating func union(_ a: Int, _ b: Int) {
        let ra = find(a), rb = find(b)
        guard ra != rb else { return }
        let (keep, gone) = ra < rb ? (ra, rb) : (rb, ra)
        parent[gone] = keep
        spaces[keep].slices += spaces[gone].slices
        spaces[keep].producers += spaces[gone].producers
        spaces[keep].depthwise += spaces[gone].depthwise
        spaces[keep].bnScales += spaces[gone].bnScales
        spaces[keep].reasons += spaces[gone].reasons
        constrain(keep, blocks: spaces[gone].blocks, aligned: spaces[gone].aligned)
    }

    /// Records that a grouped convolution makes (`aligned` false) or reads (true) the space's
    /// channels in `blocks` equal blocks.
    mutating func constrain(_ space: Int, blocks: Int, aligned: Bool) {
        let r = find(space)
        guard blocks > 1 else { return }
        if spaces[r].blocks == 1 || spaces[r].blocks == blocks {
            spaces[r].blocks = blocks
            spaces[r].aligned = spaces[r].aligned || aligned
        } else {
            let why = "grouped convolutions with \(spaces[r].blocks) and \(blocks) groups share these channels"
            if !spaces[r].reasons.contains(why) { spaces[r].reasons.append(why) }
        }
    }

    mutating func block(_ layout: ChannelLayout?, _ reason: String) {
        guard let layout else { return }
        for s in layout.spaces {
            let r = find(s)
            if !spaces[r].reasons.contains(reason) { spaces[r].reasons.append(reason) }
        }
    }

    mutating func add(_ slice: ChannelSlice, to space: Int) { spaces[find(space)].slices.append(slice) }

    /// Slices of `tensor` along `axis` for every tracked segment of `layout`, as read by `node`.
    mutating func addSlices(_ layout: ChannelLayout, tensor: String, axis: Int, role: ChannelSlice.Role, node: String, scale: Int = 1) {
        for (pos, seg) in layout.positioned {
            guard let s = seg.space else { continue }
            add(ChannelSlice(tensor: tensor, axis: axis, offset: pos * scale, start: seg.start, count: seg.count,
                             block: scale, role: role, node: node), to: s)
        }
    }

    // MARK: Constants

    /// The constant tensor a node input reads and the name of the tensor that holds it (an
    /// `Identity` of a constant resolves to the constant), or nil.
    func constant(_ name: String) -> (name: String, tensor: Tensor)? { graph.constantSource(of: name) }

    /// Whether the constant `name` (reached from `input`) is read by one node only, counting
    /// the Identity hops between them.
    func soleReader(_ input: String, _ name: String) -> Bool {
        var v = input
        while true {
            if index.readers(of: v).count > 1 { return false }
            if v == name { return true }
            guard let p = index.producer(of: v) else { return true }
            v = graph.nodes[p].inputs[0]
        }
    }

    func shape(_ v: String) -> [Int]? { types[v]?.shape }

    // MARK: The walk

    mutating func run() {
        let outputs = Set(graph.outputs.map(\.name))
        let subgraphReads = graph.nodes.reduce(into: Set<String>()) { $0.formUnion($1.subgraphReads()) }
        for n in graph.nodes {
            visit(n)
            for o in n.outputs where outputs.contains(o) { block(layouts[o], "'\(o)' is a graph output") }
        }
        for v in subgraphReads { block(layouts[v], "'\(v)' is read inside a subgraph (If/Loop/Scan)") }
    }

    mutating func finish() -> ([ChannelGroup], [ChannelSplit]) {
        var out: [ChannelGroup] = []
        var groupOf: [Int: Int] = [:]
        for i in spaces.indices where parent[i] == i {
            let s = spaces[i]
            guard !s.producers.isEmpty else { continue }
            groupOf[i] = out.count
            out.append(ChannelGroup(id: out.count, label: s.label, channels: s.size, slices: s.slices, producers: s.producers,
                                    depthwiseNodes: s.depthwise, batchNormScales: s.bnScales, reasons: s.reasons,
                                    blocks: s.blocks, alignedBlocks: s.aligned))
        }
        var recorded: [ChannelSplit] = []
        for (node, parts) in splitRecords {
            recorded.append(ChannelSplit(node: node, parts: parts.map { runs in
                runs.map { seg in (seg.space.flatMap { groupOf[find($0)] }, seg.start, seg.count) }
            }))
        }
        return (out, recorded)
    }

    /// Splits on the channel axis seen so far: node index and each output's segments.
    var splitRecords: [(Int, [[ChannelSegment]])] = []

    mutating func visit(_ n: Node) {
        let tracked = n.inputs.map { $0.isEmpty ? nil : layouts[$0] }
        let op = n.isDefaultDomain ? n.opType : "\(n.domain)::\(n.opType)"
        let what = "\(op) '\(n.label)'"
        switch op {
        case "Conv": conv(n, tracked[0], what)
        case "Gemm": gemm(n, tracked, what)
        case "MatMul": matmul(n, tracked, what)
        case "Concat": concat(n, tracked, what)
        case "Split": split(n, tracked, what)
        case "Flatten": flatten(n, tracked[0], axis: Int(n.int("axis") ?? 1), what)
        case "Reshape":
            if let l = tracked[0] { reshapeAsFlatten(n, l, what) }
        case "Squeeze", "Unsqueeze": squeeze(n, tracked[0], what)
        case "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ReduceL1":
            if let l = tracked[0] { reduce(n, l, what) }
        case _ where elementwiseBinary.contains(op): elementwise(n, tracked, what)
        case _ where channelwise.contains(op): passThrough(n, tracked, what)
        default:
            for l in tracked { block(l, "read by \(what), which the analysis does not model") }
        }
    }

    // MARK: Producers and consumers

    mutating func conv(_ n: Node, _ x: ChannelLayout?, _ what: String) {
        guard n.inputs.count > 1, let w = constant(n.inputs[1]), w.tensor.rank >= 3 else {
            block(x, "read by \(what), whose weight is not a constant")
            return
        }
        let g = Int(n.int("group") ?? 1)
        let m = w.tensor.shape[0], cPerGroup = w.tensor.shape[1]
        let cIn = cPerGroup * g
        let bias = n.inputs.count > 2 && !n.inputs[2].isEmpty ? constant(n.inputs[2]) : nil
        let shared = !soleReader(n.inputs[1], w.name) || (bias.map { !soleReader(n.inputs[2], $0.name) } ?? false)
        let biasMissing = n.inputs.count > 2 && !n.inputs[2].isEmpty && bias == nil
        if let x, x.block != 1 { block(x, "read by \(what) after a Flatten"); return }
        let depthwise = g == cIn && m == cIn && cPerGroup == 1
        if g == 1 || (!depthwise && g > 1 && m % g == 0) {
            if let x {
                if shared { block(x, "read by \(what), whose weight '\(w.name)' is shared by several nodes") }
                if g == 1 {
                    addSlices(x, tensor: w.name, axis: 1, role: .input, node: n.name)
                } else if x.segments.count == 1, let s0 = x.segments[0].space, x.segments[0].start == 0,
                          x.segments[0].count == cIn, spaces[find(s0)].size == cIn {
                    // Grouped: input channel c is position c mod (C/group) of convolution group
                    // c div (C/group); every convolution group must lose the same positions.
                    constrain(s0, blocks: g, aligned: true)
                    add(ChannelSlice(tensor: w.name, axis: 1, offset: 0, start: 0, count: cIn, block: 1, role: .input,
                                     node: n.name, period: cPerGroup), to: s0)
                } else {
                    block(x, "read by grouped \(what) (group \(g)) through only part of a group's channels (a Concat or Split)")
                }
            }
            let s = newSpace(size: m, label: n.label)
            if g > 1 { constrain(s, blocks: g, aligned: false) }
            spaces[s].producers.append(n.label)
            add(ChannelSlice(tensor: w.name, axis: 0, offset: 0, start: 0, count: m, block: 1, role: .output, node: n.name), to: s)
            if let bias { add(ChannelSlice(tensor: bias.name, axis: 0, offset: 0, start: 0, count: m, block: 1, role: .output, node: n.name), to: s) }
            if shared { spaces[s].reasons.append("\(what) shares its weight or bias with other nodes") }
            if biasMissing { spaces[s].reasons.append("\(what) has a bias that is not a constant") }
            layouts[n.outputs[0]] = ChannelLayout(segments: [ChannelSegment(space: s, start: 0, count: m)])
        } else if depthwise {
            // Depthwise: output channel c is input channel c filtered; they are one index.
            guard let x else { return }
            if shared { block(x, "read by \(what), whose weight '\(w.name)' is shared by several nodes") }
            if biasMissing { block(x, "read by \(what), whose bias is not a constant") }
            addSlices(x, tensor: w.name, axis: 0, role: .passThrough, node: n.name)
            if let bias { addSlices(x, tensor: bias.name, axis: 0, role: .passThrough, node: n.name) }
            for s in Set(x.spaces.map { find($0) }) { spaces[s].depthwise.append(n.outputs[0]) }
            layouts[n.outputs[0]] = x
        } else {
            block(x, "read by grouped \(what) (group \(g))")
        }
    }

    mutating func gemm(_ n: Node, _ tracked: [ChannelLayout?], _ what: String) {
        let transA = n.int("transA") ?? 0, transB = n.int("transB") ?? 0
        guard n.inputs.count > 1, let b = constant(n.inputs[1]), b.tensor.rank == 2, transA == 0 else {
            block(tracked[0], "read by \(what), whose B is not a constant matrix (or transA is set)")
            return
        }
        let shared = !soleReader(n.inputs[1], b.name)
        if let a = tracked[0] {
            if shared { block(a, "read by \(what), whose weight '\(b.name)' is shared by several nodes") }
            addSlices(a, tensor: b.name, axis: transB == 1 ? 1 : 0, role: .input, node: n.name, scale: a.block)
        }
        let nOut = b.tensor.shape[transB == 1 ? 0 : 1]
        let s = newSpace(size: nOut, label: n.label)
        spaces[s].producers.append(n.label)
        add(ChannelSlice(tensor: b.name, axis: transB == 1 ? 0 : 1, offset: 0, start: 0, count: nOut, block: 1, role: .output, node: n.name), to: s)
        if shared { spaces[s].reasons.append("\(what) shares its weight with other nodes") }
        if n.inputs.count > 2, !n.inputs[2].isEmpty {
            if let c = constant(n.inputs[2]), soleReader(n.inputs[2], c.name) {
                if c.tensor.count > 1 {
                    if c.tensor.shape.last == nOut, c.tensor.count == nOut {
                        add(ChannelSlice(tensor: c.name, axis: c.tensor.rank - 1, offset: 0, start: 0, count: nOut, block: 1, role: .output, node: n.name), to: s)
                    } else {
                        spaces[s].reasons.append("\(what) has a bias that is not per output")
                    }
                }
            } else {
                spaces[s].reasons.append("\(what) has a bias that is not a constant of its own")
            }
        }
        layouts[n.outputs[0]] = ChannelLayout(segments: [ChannelSegment(space: s, start: 0, count: nOut)])
    }

    mutating func matmul(_ n: Node, _ tracked: [ChannelLayout?], _ what: String) {
        guard n.inputs.count > 1, let b = constant(n.inputs[1]), b.tensor.rank == 2, shape(n.inputs[0])?.count == 2 else {
            for l in tracked { block(l, "read by \(what), which is not a 2-D product with a constant weight") }
            return
        }
        block(tracked[1], "read by \(what) as its weight")
        let shared = !soleReader(n.inputs[1], b.name)
        if let a = tracked[0] {
            if shared { block(a, "read by \(what), whose weight '\(b.name)' is shared by several nodes") }
            addSlices(a, tensor: b.name, axis: 0, role: .input, node: n.name, scale: a.block)
        }
        let nOut = b.tensor.shape[1]
        let s = newSpace(size: nOut, label: n.label)
        spaces[s].producers.append(n.label)
        add(ChannelSlice(tensor: b.name, axis: 1, offset: 0, start: 0, count: nOut, block: 1, role: .output, node: n.name), to: s)
        if shared { spaces[s].reasons.append("\(what) shares its weight with other nodes") }
        layouts[n.outputs[0]] = ChannelLayout(segments: [ChannelSegment(space: s, start: 0, count: nOut)])
    }

    // MARK: Pass-through and joins

    mutating func passThrough(_ n: Node, _ tracked: [ChannelLayout?], _ what: String) {
        guard let x = tracked[0] else {
            for l in tracked.dropFirst() { block(l, "read by \(what) as a parameter") }
            return
        }
        for l in tracked.dropFirst() { block(l, "read by \(what) as a parameter") }
        if x.block != 1 { block(x, "read by \(what) after a Flatten"); return }
        switch n.opType {
        case "BatchNormalization", "InstanceNormalization":
            let count = n.opType == "BatchNormalization" ? 5 : 3
            for (k, input) in n.inputs.enumerated().dropFirst() where k < count {
                guard let c = constant(input), soleReader(input, c.name), c.tensor.rank == 1 else {
                    block(x, "read by \(what), whose parameter '\(input)' is not a constant of its own")
                    return
                }
                addSlices(x, tensor: c.name, axis: 0, role: .passThrough, node: n.name)
                if k == 1, n.opType == "BatchNormalization" {
                    for (pos, seg) in x.positioned {
                        guard let s = seg.space else { continue }
                        spaces[find(s)].bnScales.append(ChannelSlice(tensor: c.name, axis: 0, offset: pos, start: seg.start,
                                                                     count: seg.count, block: 1, role: .passThrough, node: n.name))
                    }
                }
            }
            if n.outputs.count > 1, n.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
                block(x, "read by \(what) in training mode")
            }
        case "PRelu":
            guard n.inputs.count > 1, let slope = constant(n.inputs[1]), soleReader(n.inputs[1], slope.name) else {
                block(x, "read by \(what), whose slope is not a constant of its own")
                return
            }
            if slope.tensor.count > 1, let rank = shape(n.inputs[0])?.count {
                let axis = 1 - (rank - slope.tensor.rank)
                if axis >= 0, slope.tensor.shape[axis] > 1 { addSlices(x, tensor: slope.name, axis: axis, role: .passThrough, node: n.name) }
            }
        case "Pad":
            guard padsLeaveChannels(n) else { block(x, "read by \(what), which pads the channel axis"); return }
        case "Resize", "Upsample":
            if let scales = n.inputs.count > 2 ? constant(n.inputs[2])?.tensor : nil, scales.count > 1,
               scales.floatValues()[1] != 1 {
                block(x, "read by \(what), which resizes the channel axis")
                return
            }
        default: break
        }
        layouts[n.outputs[0]] = x
    }

    func padsLeaveChannels(_ n: Node) -> Bool {
        let pads: [Int64]
        if let p = n.ints("pads") { pads = p } else if n.inputs.count > 1, let p = constant(n.inputs[1]) { pads = p.tensor.int64Values() } else { return false }
        if n.inputs.count > 3, !n.inputs[3].isEmpty { return false }  // explicit axes: keep it simple
        let r = pads.count / 2
        return r > 1 && pads[1] == 0 && pads[r + 1] == 0
    }

    mutating func elementwise(_ n: Node, _ tracked: [ChannelLayout?], _ what: String) {
        let operands = n.inputs.enumerated().filter { !$0.element.isEmpty }
        let layoutsIn = operands.compactMap { tracked[$0.offset] }
        guard let first = layoutsIn.first else { return }
        guard let outRank = shape(n.outputs[0])?.count else { layoutsIn.forEach { block($0, "read by \(what) of unknown shape") }; return }
        var ok = true
        for (k, input) in operands {
            let r = shape(input)?.count ?? 0
            let axis = 1 - (outRank - r)
            if let l = tracked[k] {
                if r != outRank || l != first && !sameShape(l, first) { ok = false }
                continue
            }
            let size = axis >= 0 ? (shape(input)?[axis] ?? 0) : 1
            guard size > 1 else { continue }
            if let c = constant(input), soleReader(input, c.name) {
                addSlices(first, tensor: c.name, axis: axis, role: .passThrough, node: n.name)
            } else {
                ok = false
            }
        }
        guard ok, first.block == 1 else {
            layoutsIn.forEach { block($0, "joined by \(what) with channels laid out differently") }
            return
        }
        for l in layoutsIn.dropFirst() {
            for (a, b) in zip(first.segments, l.segments) {
                if let sa = a.space, let sb = b.space { union(sa, sb) }
                else if a.space != nil || b.space != nil { block(first, "joined by \(what) with channels no group owns"); block(l, "joined by \(what) with channels no group owns") }
            }
        }
        layouts[n.outputs[0]] = first
    }

    /// Same segment sizes and starts, so two layouts can be joined index by index.
    func sameShape(_ a: ChannelLayout, _ b: ChannelLayout) -> Bool {
        a.block == b.block && a.segments.count == b.segments.count
            && zip(a.segments, b.segments).allSatisfy { $0.count == $1.count && $0.start == $1.start }
    }

    mutating func concat(_ n: Node, _ tracked: [ChannelLayout?], _ what: String) {
        guard tracked.contains(where: { $0 != nil }) else { return }
        guard let rank = shape(n.outputs[0])?.count else { tracked.forEach { block($0, "read by \(what) of unknown shape") }; return }
        var axis = Int(n.int("axis") ?? 0)
        if axis < 0 { axis += rank }
        guard axis == 1 else { tracked.forEach { block($0, "concatenated by \(what) along axis \(axis), not the channel axis") }; return }
        var segments: [ChannelSegment] = []
        for (k, input) in n.inputs.enumerated() {
            if let l = tracked[k] {
                guard l.block == 1 else { tracked.forEach { block($0, "concatenated by \(what) after a Flatten") }; return }
                segments += l.segments
            } else {
                guard let c = shape(input)?[1] else { tracked.forEach { block($0, "concatenated by \(what) with a value of unknown shape") }; return }
                segments.append(ChannelSegment(space: nil, start: 0, count: c))
            }
        }
        layouts[n.outputs[0]] = ChannelLayout(segments: segments)
    }

    /// Split on the channel axis cuts the input's segments at the output boundaries; each output
    /// carries its part, and the surgery gives the node its new sizes.
    mutating func split(_ n: Node, _ tracked: [ChannelLayout?], _ what: String) {
        guard let x = tracked[0] else { return }
        for l in tracked.dropFirst() { block(l, "read by \(what) as its sizes") }
        guard let shape = shape(n.inputs[0]), x.block == 1 else { block(x, "split by \(what) of unknown shape"); return }
        var axis = Int(n.int("axis") ?? 0)
        if axis < 0 { axis += shape.count }
        guard axis == 1 else { block(x, "split by \(what) along axis \(axis), not the channel axis"); return }
        let outs = n.outputs
        var sizes: [Int] = []
        if let a = n.ints("split") { sizes = a.map(Int.init) }
        else if n.inputs.count > 1, !n.inputs[1].isEmpty {
            guard let c = constant(n.inputs[1]), soleReader(n.inputs[1], c.name) else {
                block(x, "split by \(what), whose sizes are not a constant of its own"); return
            }
            sizes = c.tensor.int64Values().map(Int.init)
        } else {
            let parts = Int(n.int("num_outputs") ?? Int64(outs.count))
            let each = (shape[1] + parts - 1) / parts
            sizes = (0..<parts).map { k in min(each, max(0, shape[1] - k * each)) }
        }
        guard sizes.count == outs.count, sizes.reduce(0, +) == x.channels else { block(x, "split by \(what) into sizes that do not add up"); return }
        var parts: [[ChannelSegment]] = []
        var pos = 0
        for size in sizes {
            var runs: [ChannelSegment] = []
            for (p, seg) in x.positioned {
                let lo = max(p, pos), hi = min(p + seg.count, pos + size)
                if lo < hi { runs.append(ChannelSegment(space: seg.space, start: seg.start + (lo - p), count: hi - lo)) }
            }
            parts.append(runs)
            pos += size
        }
        for (o, runs) in zip(outs, parts) where !o.isEmpty { layouts[o] = ChannelLayout(segments: runs) }
        if let i = graph.nodes.firstIndex(where: { $0.outputs == n.outputs }) { splitRecords.append((i, parts)) }
    }

    mutating func flatten(_ n: Node, _ x: ChannelLayout?, axis: Int, _ what: String) {
        guard let x else { return }
        guard axis == 1, x.block == 1, let s = shape(n.inputs[0]), s.count >= 2 else {
            block(x, "flattened by \(what) at axis \(axis)")
            return
        }
        layouts[n.outputs[0]] = ChannelLayout(segments: x.segments, block: s.dropFirst(2).reduce(1, *))
    }

    /// A Reshape that flattens `[N, C, …]` into `[N, C·…]` reads like Flatten; others change the
    /// channel axis and stop the group.
    mutating func reshapeAsFlatten(_ n: Node, _ x: ChannelLayout, _ what: String) {
        if let i = shape(n.inputs[0]), let o = shape(n.outputs[0]), i.count >= 2, o.count == 2, o[0] == i[0],
           o[1] == i.dropFirst().reduce(1, *), x.block == 1 {
            layouts[n.outputs[0]] = ChannelLayout(segments: x.segments, block: i.dropFirst(2).reduce(1, *))
            return
        }
        if let i = shape(n.inputs[0]), let o = shape(n.outputs[0]), i == o {
            layouts[n.outputs[0]] = x
            return
        }
        block(x, "reshaped by \(what), which changes the channel axis")
    }

    mutating func squeeze(_ n: Node, _ x: ChannelLayout?, _ what: String) {
        guard let x else { return }
        guard let i = shape(n.inputs[0]), let o = shape(n.outputs[0]), i.count >= 2, o.count >= 2,
              i[0] == o[0], i[1] == o[1], x.block == 1 else {
            block(x, "reshaped by \(what), which moves the channel axis")
            return
        }
        layouts[n.outputs[0]] = x
    }

    mutating func reduce(_ n: Node, _ x: ChannelLayout, _ what: String) {
        guard let rank = shape(n.inputs[0])?.count, let o = shape(n.outputs[0]) else { block(x, "reduced by \(what)"); return }
        var axes: [Int] = n.ints("axes")?.map(Int.init) ?? []
        if axes.isEmpty, n.inputs.count > 1, let a = constant(n.inputs[1]) { axes = a.tensor.int64Values().map(Int.init) }
        axes = axes.map { $0 < 0 ? $0 + rank : $0 }
        guard !axes.isEmpty, !axes.contains(0), !axes.contains(1), o.count >= 2, x.block == 1 else {
            block(x, "reduced by \(what) across the channel or batch axis")
            return
        }
        layouts[n.outputs[0]] = x
    }
}
