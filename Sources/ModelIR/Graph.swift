import Foundation
import ONNXProto
import TensorCore

/// A computation graph: nodes in topological order, graph inputs/outputs, intermediate value
/// types and constant initializers.
public struct Graph {
    public var name: String
    public var docString: String
    public var nodes: [Node]
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    /// Types recorded for intermediate values (ONNX `value_info`).
    public var valueInfo: [ValueInfo]
    public internal(set) var initializers: [Initializer]
    private var initializerIndex: [String: Int]
    /// Sparse initializers are kept verbatim (not modeled); their names, for lookups.
    public internal(set) var sparseInitializerNames: [String] = []

    var residual: Onnx_GraphProto

    public init(name: String = "graph", nodes: [Node] = [], inputs: [ValueInfo] = [], outputs: [ValueInfo] = [],
                initializers: [Initializer] = [], valueInfo: [ValueInfo] = []) {
        self.name = name
        docString = ""
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.valueInfo = valueInfo
        self.initializers = []
        initializerIndex = [:]
        residual = Onnx_GraphProto()
        for i in initializers { addInitializer(i) }
    }

    // MARK: Initializers

    public func initializer(named name: String) -> Initializer? {
        initializerIndex[name].map { initializers[$0] }
    }

    public func isInitializer(_ name: String) -> Bool { initializerIndex[name] != nil }

    /// Adds an initializer; replaces the one of the same name if there is one.
    /// Removes the nodes at `offsets` (indices into `nodes`), keeping the others in order.
    public mutating func removeNodes(at offsets: Set<Int>) {
        guard !offsets.isEmpty else { return }
        nodes = nodes.enumerated().filter { !offsets.contains($0.offset) }.map(\.element)
    }

    public mutating func addInitializer(_ initializer: Initializer) {
        if let i = initializerIndex[initializer.name] {
            initializers[i] = initializer
        } else {
            initializerIndex[initializer.name] = initializers.count
            initializers.append(initializer)
        }
    }

    /// Replaces the tensor of an existing initializer, keeping its name and metadata.
    public mutating func replaceInitializer(_ name: String, with tensor: Tensor) throws {
        guard let i = initializerIndex[name] else { throw GraphError.noSuchValue(name) }
        initializers[i].tensor = tensor
    }

    @discardableResult
    public mutating func removeInitializer(_ name: String) -> Initializer? {
        guard let i = initializerIndex[name] else { return nil }
        let removed = initializers.remove(at: i)
        rebuildInitializerIndex()
        return removed
    }

    mutating func rebuildInitializerIndex() {
        initializerIndex = Dictionary(uniqueKeysWithValues: initializers.enumerated().map { ($1.name, $0) })
    }

    // MARK: Lookups

    /// The node that produces `value`, if any (graph inputs and initializers have none).
    /// Scans the graph once per call; for repeated queries build a `UseDefIndex` once.
    public func producer(of value: String) -> Int? {
        nodes.firstIndex { $0.outputs.contains(value) }
    }

    /// Indices of the nodes that read `value`, directly or inside their subgraph bodies.
    /// Builds a `UseDefIndex` per call; for repeated queries build one index and ask it.
    public func consumers(of value: String) -> [Int] {
        UseDefIndex(self).readingNodes(of: value)
    }

    /// The declared type of a value: graph input/output, value_info, or an initializer's.
    public func type(of value: String) -> TensorType? {
        if let i = initializer(named: value) { return TensorType(elementType: i.tensor.dtype, shape: i.tensor.shape.map { .fixed($0) }) }
        for list in [inputs, outputs, valueInfo] {
            if let v = list.first(where: { $0.name == value }) { return v.type }
        }
        return nil
    }

    /// Graph inputs that are not initializers (what a caller must feed).
    public var runtimeInputs: [ValueInfo] { inputs.filter { !isInitializer($0.name) } }

    /// Every value name used anywhere (inputs, outputs, node outputs, initializers).
    public var allValueNames: Set<String> {
        var s = Set(inputs.map(\.name))
        s.formUnion(outputs.map(\.name))
        s.formUnion(initializers.map(\.name))
        for n in nodes { s.formUnion(n.outputs); s.formUnion(n.inputs) }
        return s
    }
}

public enum GraphError: Error, CustomStringConvertible {
    case noSuchValue(String)
    case noSuchNode(String)
    case notTopological(node: String, input: String)
    case duplicateName(String)
    case invalidEdit(String)

    public var description: String {
        switch self {
        case .noSuchValue(let n): return "no value named '\(n)'"
        case .noSuchNode(let n): return "no node named '\(n)'"
        case .notTopological(let node, let input): return "node '\(node)' reads '\(input)' before any node produces it"
        case .duplicateName(let n): return "name '\(n)' is already in use"
        case .invalidEdit(let why): return why
        }
    }
}
