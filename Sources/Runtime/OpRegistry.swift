import Foundation
import ModelIR
import Passes
import TensorCore

/// Computes a node's outputs from its inputs. `inputs[i]` is nil for an omitted optional input
/// (an empty name in the node). Returns one tensor per node output (trailing optional outputs the
/// node does not name may be left off).
public typealias KernelFunction = (_ inputs: [Tensor?], _ context: KernelContext) throws -> [Tensor]

/// Computes a node's output types (dtype and concrete shape) without running it. `values[i]` holds
/// input i's contents when known ahead of time (an initializer or a small constant-folded tensor),
/// which ops such as Reshape, Expand or Slice need to know their output shape.
public typealias ShapeFunction = (_ inputs: [TensorInfo?], _ values: [Tensor?], _ context: KernelContext) throws -> [TensorInfo]

/// Element type and concrete shape of a value.
public struct TensorInfo: Equatable, Sendable, CustomStringConvertible {
    public var dtype: DType
    public var shape: [Int]
    public init(_ dtype: DType, _ shape: [Int]) { self.dtype = dtype; self.shape = shape }
    public init(_ t: Tensor) { dtype = t.dtype; shape = t.shape }
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { dtype.byteCount(elements: count) }

    /// The largest value shape inference accepts: 2⁵⁰ bytes (1 PiB). Shapes come from files
    /// (declared types, constant shape inputs), and a product that overflows, or that is too
    /// large for counts derived from it (MACs, traffic) to fit in 64 bits, is refused where it
    /// appears instead of trapping in arithmetic later.
    public static let maxBytes = 1 << 50

    /// Whether the dims are non-negative and the byte size is at most `maxBytes` (computed with
    /// overflow checks).
    public var isAddressable: Bool {
        var n = 1
        for d in shape {
            guard d >= 0 else { return false }
            let (r, o) = n.multipliedReportingOverflow(by: d)
            guard !o, r <= TensorInfo.maxBytes else { return false }
            n = r
        }
        let (bits, o) = n.multipliedReportingOverflow(by: dtype.bitWidth ?? 8)
        return !o && bits / 8 <= TensorInfo.maxBytes
    }
    public var description: String { "\(dtype)[\(shape.map(String.init).joined(separator: "x"))]" }
}

/// What a kernel sees besides its inputs.
public struct KernelContext {
    public let node: Node
    /// The opset version of the node's domain imported by the model.
    public let opset: Int
    /// An activation the planner fused into this node (Conv/Gemm/MatMul + Relu/Clip/...), applied
    /// to the output in the same pass; kernels that do not fuse never receive one.
    public var fusedActivation: FusedActivation?
    /// Runs a subgraph (If/Loop/Scan bodies) with the given inputs bound by name, returning its
    /// outputs in order. Outer-scope values the body reads are resolved by the executor.
    public var runSubgraph: ((Graph, [String: Tensor]) throws -> [Tensor])?
    /// Whether kernels may keep a repacked copy of constant weights for later runs (`PackedWeights`).
    /// False for a plan that runs once or twice (`compress fuse`'s verification), where packing
    /// 100 MB of convolution weights costs more than the packed layout saves.
    public var packWeights = true
    /// Inputs (by position) that are the graph's initializers: the same tensor on every run, so a
    /// repacked copy stays valid (Gemm's weights for `PackedWeights`). Empty outside an executor plan.
    public var constantInputs: Set<Int> = []
    /// Where a kernel may keep what it derives from its node and input shapes between runs of
    /// an executor plan (one per step; nil elsewhere): a convolution's geometry is worked out
    /// from the attributes once, not on every run.
    public var memo: KernelMemo?

    public init(node: Node, opset: Int, fusedActivation: FusedActivation? = nil,
                runSubgraph: ((Graph, [String: Tensor]) throws -> [Tensor])? = nil) {
        self.node = node
        self.opset = opset
        self.fusedActivation = fusedActivation
        self.runSubgraph = runSubgraph
    }

    /// An error about this node.
    public func error(_ message: String) -> RuntimeError { RuntimeError.node(node.label, node.opType, message) }

    /// Input `i`, or an error naming it when it is missing.
    public func required(_ inputs: [Tensor?], _ i: Int) throws -> Tensor {
        guard i < inputs.count, let t = inputs[i] else { throw error("input \(i) is required") }
        return t
    }

    public func required(_ inputs: [TensorInfo?], _ i: Int) throws -> TensorInfo {
        guard i < inputs.count, let t = inputs[i] else { throw error("input \(i) is required") }
        return t
    }
}

/// Elementwise activations a producer can apply to its output in the same pass.
public enum FusedActivation: Equatable, Sendable {
    case relu
    case clip(min: Float, max: Float)
    case leakyRelu(alpha: Float)
    case sigmoid
    case hardSwish
    /// max(0, min(1, α·x + β)) (ONNX HardSigmoid); applied by the Swift epilogue.
    case hardSigmoid(alpha: Float, beta: Float)
    /// x · σ(x): a Sigmoid whose output multiplies its own input (SiLU / Swish, as exported).
    case silu
    /// tanh(x) (com.microsoft FusedConv's "Tanh").
    case tanh

    @inline(__always)
    public func apply(_ x: Float) -> Float {
        switch self {
        case .relu: return x < 0 ? 0 : x  // NaN passes through, as in Relu
        case .clip(let lo, let hi): return min(max(x, lo), hi)
        case .leakyRelu(let a): return x >= 0 ? x : a * x
        case .sigmoid: return 1 / (1 + expf(-x))
        case .silu: return x / (1 + expf(-x))
        case .hardSwish: return x * min(max(x / 6 + 0.5, 0), 1)
        case .tanh: return tanhf(x)
        case .hardSigmoid(let a, let b): let y = a * x + b; return y.isNaN ? y : max(0, min(1, y))  // as the HardSigmoid op (and FusedConv's), NaN kept
        }
    }

    /// The kernel form of an activation `ActivationFusion` recorded on a node.
    public init(_ a: FusableActivation) {
        switch a {
        case .relu: self = .relu
        case .clip(let lo, let hi): self = .clip(min: lo, max: hi)
        case .leakyRelu(let alpha): self = .leakyRelu(alpha: alpha)
        case .hardSigmoid(let alpha, let beta): self = .hardSigmoid(alpha: alpha, beta: beta)
        case .hardSwish: self = .hardSwish
        case .sigmoid: self = .sigmoid
        case .silu: self = .silu
        }
    }

    /// Applies the activation over a buffer in place.
    public func apply(_ p: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .relu: for i in 0..<n where p[i] < 0 { p[i] = 0 }
        case .clip(let lo, let hi): for i in 0..<n { p[i] = min(max(p[i], lo), hi) }
        case .sigmoid: KernelActivation.sigmoid.apply(p, into: p, count: n)
        case .silu: KernelActivation.silu.apply(p, into: p, count: n)
        case .hardSwish: KernelActivation.hardSwish.apply(p, into: p, count: n)
        case .hardSigmoid(let a, let b): KernelActivation.hardSigmoid(alpha: a, beta: b).apply(p, into: p, count: n)
        case .tanh: KernelActivation.tanh.apply(p, into: p, count: n)
        default: for i in 0..<n { p[i] = apply(p[i]) }
        }
    }
}

public enum RuntimeError: Error, CustomStringConvertible, Equatable {
    /// A node failed: node label, op type, message.
    case node(String, String, String)
    case unsupported(op: String, domain: String, opset: Int, node: String)
    case missingInput(String)
    case badInput(String)

    public var description: String {
        switch self {
        case .node(let label, let op, let msg): return "node '\(label)' (\(op)): \(msg)"
        case .unsupported(let op, let domain, let opset, let node):
            let d = domain.isEmpty || domain == "ai.onnx" ? "" : "\(domain)::"
            return "unsupported operator \(d)\(op) (opset \(opset)) at node \(node)"
        case .missingInput(let n): return "no value was given for model input '\(n)'"
        case .badInput(let msg): return msg
        }
    }
}

/// One implementation of an operator, valid from `sinceVersion` of its domain's opset.
public struct OpImplementation {
    public let sinceVersion: Int
    public let kernel: KernelFunction
    public let infer: ShapeFunction
}

/// The explicit map `(domain, opType) -> [(sinceVersion, kernel)]`; a node runs the entry with the
/// highest `sinceVersion` not above the model's opset.
public final class OpRegistry: @unchecked Sendable {
    private var table: [String: [OpImplementation]] = [:]

    public init() {}

    static func key(_ domain: String, _ op: String) -> String {
        (domain == "ai.onnx" ? "" : domain) + "::" + op
    }

    /// Registers `kernel` for `op` from opset `since` (default domain unless given).
    public func register(_ op: String, domain: String = "", since: Int = 1, kernel: @escaping KernelFunction, infer: @escaping ShapeFunction) {
        var list = table[Self.key(domain, op), default: []]
        list.removeAll { $0.sinceVersion == since }
        list.append(OpImplementation(sinceVersion: since, kernel: kernel, infer: infer))
        list.sort { $0.sinceVersion < $1.sinceVersion }
        table[Self.key(domain, op)] = list
    }

    /// The implementation for a node at `opset`, or nil when unsupported.
    public func implementation(_ op: String, domain: String, opset: Int) -> OpImplementation? {
        table[Self.key(domain, op)]?.last { $0.sinceVersion <= opset }
    }

    /// A registry with the same implementations, to which more can be added without changing this
    /// one (compress's internal operators, registered for one executor).
    public func copy() -> OpRegistry {
        let r = OpRegistry()
        r.table = table
        return r
    }

    /// What is supported: (domain, op, sinceVersions), sorted.
    public var supported: [(domain: String, op: String, versions: [Int])] {
        table.map { k, v in
            let parts = k.components(separatedBy: "::")
            return (parts[0], parts[1], v.map(\.sinceVersion))
        }.sorted { ($0.domain, $0.op) < ($1.domain, $1.op) }
    }

    /// The registry with every operator compress implements.
    public static let standard: OpRegistry = {
        let r = OpRegistry()
        StandardOps.registerAll(r)
        return r
    }()
}

/// One value a kernel derived for its step, with the input shapes it was derived for (`KernelContext.memo`).
/// Runs of one executor from several threads share it, so it is locked.
public final class KernelMemo: @unchecked Sendable {
    private let lock = NSLock()
    private var key: [Int] = []
    private var value: Any?

    public init() {}

    /// The value made for `key` last time, or `make()`'s (kept for the next run). A value of
    /// another type, or made for other shapes, is replaced.
    public func value<T>(for key: [Int], _ make: () throws -> T) rethrows -> T {
        lock.lock()
        if self.key == key, let v = value as? T { lock.unlock(); return v }
        lock.unlock()
        let v = try make()
        lock.lock(); self.key = key; value = v; lock.unlock()
        return v
    }
}
