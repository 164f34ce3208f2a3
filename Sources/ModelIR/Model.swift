import Foundation
import ONNXProto
import TensorCore

/// An ONNX model: versions, producer, metadata and the main graph.
///
/// What the IR does not model (model-local functions, training_info, device configurations,
/// field presence) is kept from the file it was read from and written back unchanged.
public struct Model {
    public var irVersion: Int64
    public var opsetImports: [OpsetImport]
    public var producerName: String
    public var producerVersion: String
    public var domain: String
    public var modelVersion: Int64
    public var docString: String
    public var metadataProps: [(key: String, value: String)]
    public var graph: Graph
    /// The model's folder, against which external-data locations resolve; nil for a model built in code.
    public var directory: URL?
    /// External-data files the model's tensors were read from (relative locations, in first-use order).
    public internal(set) var externalDataFiles: [String] = []

    var residual: Onnx_ModelProto

    public init(graph: Graph, opsetImports: [OpsetImport] = [OpsetImport(domain: "", version: 17)],
                irVersion: Int64 = 8, producerName: String = "compress", producerVersion: String = CompressVersion.string) {
        self.irVersion = irVersion
        self.opsetImports = opsetImports
        self.producerName = producerName
        self.producerVersion = producerVersion
        domain = ""
        modelVersion = 0
        docString = ""
        metadataProps = []
        self.graph = graph
        residual = Onnx_ModelProto()
    }

    /// The opset version imported for `domain` ("" and "ai.onnx" are the default domain).
    public func opset(for domain: String = "") -> Int? {
        let d = domain == "ai.onnx" ? "" : domain
        return opsetImports.first { ($0.domain == "ai.onnx" ? "" : $0.domain) == d }.map { Int($0.version) }
    }

    /// Number of model-local functions (kept verbatim; not modeled).
    public var functionCount: Int { residual.functions.count }
    public var functionNames: [String] { residual.functions.map { $0.domain.isEmpty ? $0.name : "\($0.domain).\($0.name)" } }
}

public struct OpsetImport: Equatable, Sendable {
    public var domain: String
    public var version: Int64
    public init(domain: String, version: Int64) { self.domain = domain; self.version = version }
}

public enum CompressVersion {
    public static let string = "0.1.0"
}
