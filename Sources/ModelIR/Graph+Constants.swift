import TensorCore

// Weights as exporters store them. Newer exporters keep weights in initializers; older ones
// (and some paddle2onnx / tf2onnx paths) keep every weight in a `Constant` node instead. Every
// capability that reads a weight asks `constantTensor(named:)`, so the two spellings are one.

extension Node {
    /// Whether this is a default-domain `Constant` node.
    public var isConstant: Bool { isDefaultDomain && opType == "Constant" }

    /// The tensor a `Constant` node produces, from whichever attribute holds it (Constant-1/9
    /// `value`, Constant-12 `value_float(s)`, `value_int(s)`). nil for other nodes and for the
    /// forms compress does not model as tensors (`value_string(s)`, `sparse_value`, string tensors).
    public var constantValue: Tensor? {
        guard isConstant else { return nil }
        if let t = tensor("value") { return t.dtype == .string ? nil : t }
        if let v = float("value_float") { return Tensor(scalar: v) }
        if let v = floats("value_floats") { return Tensor(shape: [v.count], scalars: v) }
        if let v = int("value_int") { return Tensor(scalar: v) }
        if let v = ints("value_ints") { return Tensor(shape: [v.count], scalars: v) }
        return nil
    }
}

extension Graph {
    /// The constant tensor named `name`: an initializer's, or the output of a `Constant` node.
    /// A graph input that shares an initializer's name is not constant (the caller may feed it),
    /// as ONNX Runtime treats it; nil then.
    public func constantTensor(named name: String) -> Tensor? {
        if let i = initializer(named: name) {
            return inputs.contains(where: { $0.name == name }) ? nil : i.tensor
        }
        guard let p = producer(of: name) else { return nil }
        return nodes[p].constantValue
    }

    /// The tensors held by `Constant` nodes, by output name, in node order.
    public var constantNodeTensors: [(name: String, tensor: Tensor)] {
        nodes.compactMap { n in n.constantValue.flatMap { t in n.outputs.first.map { ($0, t) } } }
    }
}

extension Graph {
    /// Replaces the constant named `name` — an initializer's tensor, or the `value` of the
    /// `Constant` node that produces it — with `tensor`, keeping its name.
    /// - Throws: `GraphError.noSuchValue` when `name` is neither.
    public mutating func replaceConstant(named name: String, with tensor: Tensor) throws {
        if isInitializer(name) { return try replaceInitializer(name, with: tensor) }
        guard let p = producer(of: name), nodes[p].isConstant else { throw GraphError.noSuchValue(name) }
        for a in ["value_float", "value_floats", "value_int", "value_ints"] { nodes[p][attribute: a] = nil }
        nodes[p][attribute: "value"] = .tensor(tensor)
    }
}

extension Graph {
    /// The constant behind `name`, following `Identity` nodes (torch.onnx.export reads shared
    /// weights through them): the name of the initializer or `Constant` output that holds it, and
    /// its tensor. nil when `name` is not constant.
    public func constantSource(of name: String) -> (name: String, tensor: Tensor)? {
        var n = name
        for _ in 0..<16 {
            if let t = constantTensor(named: n) { return (n, t) }
            guard let p = producer(of: n), nodes[p].isDefaultDomain, nodes[p].opType == "Identity", !nodes[p].inputs.isEmpty else { return nil }
            n = nodes[p].inputs[0]
        }
        return nil
    }
}
