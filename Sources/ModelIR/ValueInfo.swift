import Foundation
import ONNXProto
import TensorCore

/// A dimension of a declared shape.
public enum Dim: Equatable, Hashable, Sendable, CustomStringConvertible {
    case fixed(Int)
    case symbolic(String)
    /// Neither a value nor a name (ONNX allows a dimension with neither).
    case unknown

    public var value: Int? { if case .fixed(let v) = self { return v }; return nil }
    public var description: String {
        switch self {
        case .fixed(let v): return String(v)
        case .symbolic(let s): return s
        case .unknown: return "?"
        }
    }
}

/// A tensor type: element type and shape (nil shape: rank unknown).
public struct TensorType: Equatable, Sendable {
    public var elementType: DType?
    public var shape: [Dim]?
    public init(elementType: DType?, shape: [Dim]?) { self.elementType = elementType; self.shape = shape }
    public init(_ dtype: DType, _ dims: [Int]) { self.init(elementType: dtype, shape: dims.map { .fixed($0) }) }

    /// Concrete dims if every one is fixed.
    public var fixedShape: [Int]? { shape.flatMap { s in s.allSatisfy { $0.value != nil } ? s.map { $0.value! } : nil } }

    public var shapeDescription: String { shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "[?]" }
}

/// A named, typed value: a graph input or output, or an entry of value_info.
public struct ValueInfo {
    public var name: String
    /// nil for a value whose type is not a tensor (sequence, map, optional) or is unspecified.
    public var type: TensorType?
    public var docString: String
    var residual: Onnx_ValueInfoProto?
    /// Whether the residual declared a non-tensor type the IR does not model.
    var hasOpaqueType = false

    public init(name: String, type: TensorType?, docString: String = "") {
        self.name = name
        self.type = type
        self.docString = docString
    }

    public init(_ name: String, _ dtype: DType, _ dims: [Dim]) {
        self.init(name: name, type: TensorType(elementType: dtype, shape: dims))
    }
}

/// A named constant tensor of a graph.
public struct Initializer {
    public var name: String
    public var tensor: Tensor
    public var docString: String
    var origin: TensorOrigin?

    public init(name: String, tensor: Tensor, docString: String = "") {
        self.name = name
        self.tensor = tensor
        self.docString = docString
    }

    /// Where the payload was read from: "inline" or the external-data file's location.
    public var location: String { origin?.externalLocation ?? "inline" }
}

/// How a tensor was stored in the file it came from, so an unchanged tensor is written back as it was.
final class TensorOrigin {
    /// The storage the tensor had when read: a tensor still holding it is unchanged.
    let storage: TensorStorage
    let dtype: DType
    let shape: [Int]
    /// The original message; decoded on demand from the mapped bytes so reading never copies weights.
    private let loadProto: () throws -> Onnx_TensorProto
    let externalLocation: String?
    /// The original message's bytes where they lie in a memory-mapped file (top-level graph
    /// initializers), with the name and doc string it holds: the writer copies an unchanged
    /// tensor's message from here without decoding it. `owner` keeps the mapping alive.
    let message: UnsafeRawBufferPointer?
    let messageName: String?
    let messageDocString: String?
    private let owner: AnyObject?

    init(storage: TensorStorage, dtype: DType, shape: [Int], externalLocation: String?, loadProto: @escaping () throws -> Onnx_TensorProto,
         message: UnsafeRawBufferPointer? = nil, messageName: String? = nil, messageDocString: String? = nil, owner: AnyObject? = nil) {
        self.storage = storage
        self.dtype = dtype
        self.shape = shape
        self.externalLocation = externalLocation
        self.loadProto = loadProto
        self.message = message
        self.messageName = messageName
        self.messageDocString = messageDocString
        self.owner = owner
    }

    func proto() throws -> Onnx_TensorProto { try loadProto() }

    func matches(_ t: Tensor) -> Bool { t.storage === storage && t.dtype == dtype && t.shape == shape }
}
