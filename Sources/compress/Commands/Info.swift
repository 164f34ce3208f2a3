import ArgumentParser
import Foundation
import ModelIR
import TensorCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show a model's versions, inputs and outputs, operators and parameters.",
        discussion: """
        Reads only the model's structure: weights are memory-mapped, never copied.

        Examples:
          compress info model.onnx
          compress info model.onnx --format json | jq .parameters
        """)

    @Argument(help: "The ONNX model to describe.")
    var model: String

    @OptionGroup var output: FormatOption

    func run() throws {
        try reportingErrors {
            let m = try ModelReader.read(path: model)
            let report = InfoReport(model: m, path: model)
            switch output.format {
            case .json: try printJSON(report)
            case .table: print(report.table())
            case .csv: print(report.csv())
            }
        }
    }
}

/// The `compress info --format json` schema (documented in Docs/info.md).
struct InfoReport: Encodable {
    struct Opset: Encodable { let domain: String; let version: Int64 }
    struct IO: Encodable { let name: String; let dtype: String?; let shape: [ShapeDim]? }
    struct OpCount: Encodable { let op: String; let count: Int }
    struct DTypeBytes: Encodable { let dtype: String; let tensors: Int; let elements: Int64; let bytes: Int64 }

    let file: String
    let file_bytes: Int64
    let ir_version: Int64
    let opsets: [Opset]
    let producer_name: String
    let producer_version: String
    let graph_name: String
    let inputs: [IO]
    let outputs: [IO]
    let nodes: Int
    let ops: [OpCount]
    let initializers: Int
    let initializer_bytes: Int64
    let initializers_by_dtype: [DTypeBytes]
    /// Tensors held by `Constant` nodes (older exporters keep every weight there).
    let constant_nodes: Int
    let constant_node_bytes: Int64
    let constant_nodes_by_dtype: [DTypeBytes]
    /// Elements of every stored tensor: initializers plus Constant nodes.
    let parameters: Int64
    let initializer_parameters: Int64
    let constant_node_parameters: Int64
    let external_data_files: [String]
    let functions: [String]
    let metadata: [String: String]

    init(model m: Model, path: String) {
        file = path
        file_bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)??.int64Value ?? 0
        ir_version = m.irVersion
        opsets = m.opsetImports.map { Opset(domain: $0.domain.isEmpty ? "ai.onnx" : $0.domain, version: $0.version) }
        producer_name = m.producerName
        producer_version = m.producerVersion
        graph_name = m.graph.name
        let g = m.graph
        func io(_ v: ValueInfo) -> IO { IO(name: v.name, dtype: v.type?.elementType?.onnxName, shape: v.type?.shape?.map(ShapeDim.init)) }
        inputs = g.runtimeInputs.map(io)
        outputs = g.outputs.map(io)
        nodes = g.nodes.count
        var hist: [String: Int] = [:]
        for n in g.nodes { hist[n.isDefaultDomain ? n.opType : "\(n.domain)::\(n.opType)", default: 0] += 1 }
        ops = hist.map { OpCount(op: $0.key, count: $0.value) }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.op < $1.op }
        initializers = g.initializers.count
        initializers_by_dtype = Self.byDType(g.initializers.map(\.tensor))
        initializer_bytes = initializers_by_dtype.reduce(0) { $0 + $1.bytes }
        initializer_parameters = initializers_by_dtype.reduce(0) { $0 + $1.elements }
        let constants = g.constantNodeTensors.map(\.tensor)
        constant_nodes = constants.count
        constant_nodes_by_dtype = Self.byDType(constants)
        constant_node_bytes = constant_nodes_by_dtype.reduce(0) { $0 + $1.bytes }
        constant_node_parameters = constant_nodes_by_dtype.reduce(0) { $0 + $1.elements }
        parameters = initializer_parameters + constant_node_parameters
        external_data_files = m.externalDataFiles
        functions = m.functionNames
        metadata = Dictionary(m.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
    }

    /// Tensor count, elements and bytes per element type, largest first.
    static func byDType(_ tensors: [Tensor]) -> [DTypeBytes] {
        var byType: [DType: (Int, Int64, Int64)] = [:]
        for t in tensors {
            var e = byType[t.dtype] ?? (0, 0, 0)
            e.0 += 1; e.1 += Int64(t.count); e.2 += Int64(t.byteCount)
            byType[t.dtype] = e
        }
        return byType.map { DTypeBytes(dtype: $0.key.onnxName, tensors: $0.value.0, elements: $0.value.1, bytes: $0.value.2) }
            .sorted { $0.bytes != $1.bytes ? $0.bytes > $1.bytes : $0.dtype < $1.dtype }
    }

    func table() -> String {
        var out: [String] = []
        out.append("model      \(file) (\(Units.bytes(Double(file_bytes))))")
        out.append("ir         \(ir_version), opsets " + opsets.map { "\($0.domain) \($0.version)" }.joined(separator: ", "))
        if !producer_name.isEmpty { out.append("producer   \(producer_name) \(producer_version)") }
        out.append("")
        var io = TextTable(["", "name", "dtype", "shape"])
        for i in inputs { io.add(["input", i.name, i.dtype ?? "?", shapeText(i.shape)]) }
        for o in outputs { io.add(["output", o.name, o.dtype ?? "?", shapeText(o.shape)]) }
        out.append(io.render())
        out.append("")
        out.append("nodes      \(nodes) (" + ops.map { "\($0.op) \($0.count)" }.joined(separator: ", ") + ")")
        var stored = "in \(initializers) initializers, \(Units.bytes(Double(initializer_bytes)))"
        if constant_nodes > 0 {
            stored = ": \(Units.grouped(initializer_parameters)) in \(initializers) initializers (\(Units.bytes(Double(initializer_bytes)))), "
                + "\(Units.grouped(constant_node_parameters)) in \(constant_nodes) Constant nodes (\(Units.bytes(Double(constant_node_bytes))))"
        }
        out.append("parameters \(Units.grouped(parameters)) (\(Units.count(Double(parameters))))\(constant_nodes > 0 ? "" : " ")\(stored)")
        for (title, list) in [("initializers", initializers_by_dtype), ("Constant nodes", constant_nodes_by_dtype)] where !list.isEmpty {
            var t = TextTable(["dtype", "tensors", "elements", "bytes"], rightAligned: [1, 2, 3])
            for d in list { t.add([d.dtype, String(d.tensors), Units.grouped(d.elements), Units.bytes(Double(d.bytes))]) }
            if constant_nodes > 0 { out.append(title) }
            out.append(t.render())
        }
        if !external_data_files.isEmpty { out.append("external   " + external_data_files.joined(separator: ", ")) }
        if !functions.isEmpty { out.append("functions  " + functions.joined(separator: ", ")) }
        return out.joined(separator: "\n")
    }

    func csv() -> String {
        var lines = ["section,name,value"]
        lines.append("model,ir_version,\(ir_version)")
        for o in opsets { lines.append("opset,\(o.domain),\(o.version)") }
        for i in inputs { lines.append("input,\(i.name),\(i.dtype ?? "?") \(shapeText(i.shape))") }
        for o in outputs { lines.append("output,\(o.name),\(o.dtype ?? "?") \(shapeText(o.shape))") }
        for o in ops { lines.append("op,\(o.op),\(o.count)") }
        for d in initializers_by_dtype { lines.append("bytes_by_dtype,\(d.dtype),\(d.bytes)") }
        for d in constant_nodes_by_dtype { lines.append("constant_node_bytes_by_dtype,\(d.dtype),\(d.bytes)") }
        lines.append("model,parameters,\(parameters)")
        lines.append("model,initializer_parameters,\(initializer_parameters)")
        lines.append("model,constant_node_parameters,\(constant_node_parameters)")
        return lines.joined(separator: "\n")
    }

    private func shapeText(_ s: [ShapeDim]?) -> String {
        guard let s else { return "?" }
        return "[" + s.map(\.text).joined(separator: ", ") + "]"
    }
}

/// A dimension in JSON: a number when fixed, a string when symbolic, null when unknown.
struct ShapeDim: Encodable {
    let dim: Dim
    init(_ d: Dim) { dim = d }
    var text: String { dim.description }
    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch dim {
        case .fixed(let v): try c.encode(v)
        case .symbolic(let s): try c.encode(s)
        case .unknown: try c.encodeNil()
        }
    }
}
