import ModelIR

/// A graph rewrite: a pattern predicate (when the pass applies, including the do-not-apply
/// guards) and a transform. A pass keeps the graph's interface (graph input and output names and
/// types) and the values it computes; it may remove intermediate values, which it lists in its
/// result so a caller observing values can say where they went.
public protocol GraphPass {
    /// A short name for reports ("BatchNormIntoConv").
    var name: String { get }
    /// Rewrites `graph` in place.
    func apply(to graph: inout Graph) throws -> PassResult
}

/// What one pass did.
public struct PassResult: Equatable {
    /// Intermediate values that no longer exist, each with where it went
    /// ("folded into Conv 'conv1'", "fused into Conv 'conv1'").
    public var removedValues: [String: String] = [:]
    /// Number of rewrites made (0: the graph is unchanged).
    public var rewrites = 0
    /// Nodes the pattern matched but a do-not-apply guard kept, each with the reason
    /// ("BatchNormalization 'bn': Conv 'conv' output has another reader").
    public var leftAlone: [String: String] = [:]

    public init(removedValues: [String: String] = [:], rewrites: Int = 0) {
        self.removedValues = removedValues
        self.rewrites = rewrites
    }

    /// Folds `other` (a later pass) into this result.
    public mutating func merge(_ other: PassResult) {
        removedValues.merge(other.removedValues) { a, _ in a }
        leftAlone.merge(other.leftAlone) { a, _ in a }
        rewrites += other.rewrites
    }
}

extension Node {
    /// "Conv 'name'" (or the op and output when unnamed), for reports.
    public var reportLabel: String { name.isEmpty ? "\(opType) '\(outputs.first ?? "")'" : "\(opType) '\(name)'" }
}
