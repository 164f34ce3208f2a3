import Foundation
import ONNXProto
import TensorCore

/// One operator application. An empty string in `inputs` is an omitted optional input.
public struct Node {
    public var name: String
    public var opType: String
    /// Operator domain; "" is the default ONNX domain (also spelled "ai.onnx").
    public var domain: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [Attribute]
    public var docString: String

    var residual: Onnx_NodeProto?

    public init(name: String = "", opType: String, domain: String = "", inputs: [String], outputs: [String],
                attributes: [Attribute] = [], docString: String = "") {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
        self.docString = docString
    }

    /// Whether the node is in the default ONNX operator domain.
    public var isDefaultDomain: Bool { domain.isEmpty || domain == "ai.onnx" }

    public subscript(attribute name: String) -> AttributeValue? {
        get { attributes.first { $0.name == name }?.value }
        set {
            if let i = attributes.firstIndex(where: { $0.name == name }) {
                if let v = newValue { attributes[i].value = v } else { attributes.remove(at: i) }
            } else if let v = newValue {
                attributes.append(Attribute(name: name, value: v))
            }
        }
    }

    public func int(_ name: String) -> Int64? { if case .int(let v)? = self[attribute: name] { return v }; return nil }
    public func float(_ name: String) -> Float? { if case .float(let v)? = self[attribute: name] { return v }; return nil }
    public func ints(_ name: String) -> [Int64]? { if case .ints(let v)? = self[attribute: name] { return v }; return nil }
    public func floats(_ name: String) -> [Float]? { if case .floats(let v)? = self[attribute: name] { return v }; return nil }
    public func string(_ name: String) -> String? {
        if case .string(let v)? = self[attribute: name] { return String(decoding: v, as: UTF8.self) }; return nil
    }
    public func strings(_ name: String) -> [String]? {
        if case .strings(let v)? = self[attribute: name] { return v.map { String(decoding: $0, as: UTF8.self) } }; return nil
    }
    public func tensor(_ name: String) -> Tensor? { if case .tensor(let v)? = self[attribute: name] { return v }; return nil }
    public func graph(_ name: String) -> Graph? { if case .graph(let v)? = self[attribute: name] { return v }; return nil }

    /// A label for messages: the node's name, or its op type and first output when unnamed.
    public var label: String { name.isEmpty ? "\(opType)(\(outputs.first ?? ""))" : name }
}

/// A named attribute of a node.
public struct Attribute {
    public var name: String
    public var value: AttributeValue
    var residual: Onnx_AttributeProto?
    /// Storage identities of tensors as read, so unchanged tensors are written back verbatim.
    var originTensors: [TensorStorage] = []

    public init(name: String, value: AttributeValue) {
        self.name = name
        self.value = value
    }
}

/// Every kind of ONNX attribute. Sparse tensors and type protos are kept opaque (not modeled).
public enum AttributeValue {
    case float(Float)
    case int(Int64)
    case string(Data)
    case tensor(Tensor)
    case graph(Graph)
    case floats([Float])
    case ints([Int64])
    case strings([Data])
    case tensors([Tensor])
    case graphs([Graph])
    /// sparse_tensor, type_proto and their list forms, or a reference to a function attribute
    /// (ref_attr_name): kept as read.
    case opaque

    public static func string(_ s: String) -> AttributeValue { .string(Data(s.utf8)) }
    public static func strings(_ s: [String]) -> AttributeValue { .strings(s.map { Data($0.utf8) }) }
}
