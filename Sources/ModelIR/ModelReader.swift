import Foundation
import ONNXProto
import SwiftProtobuf
import TensorCore

/// Reads `.onnx` files into the IR without copying weights.
///
/// The file's structure is read with pread into a compact copy without the initializers'
/// payloads (`WireScanner.compactImage`, which also records where each raw_data lies) and
/// decoded with the payload-free schema (onnx-light.proto); the file is memory-mapped and each
/// tensor borrows its bytes from the map, whose pages are touched only when a tensor is used. Initializers stored in typed fields are decoded
/// from their own message bytes (they are small by construction: exporters use raw_data for
/// weights). External data is memory-mapped the same way.
public enum ModelReader {
    /// The deepest protobuf nesting read: about 20 levels of nested control-flow bodies.
    public static let maxMessageDepth = 64

    public static func read(path: String) throws -> Model {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let f as MappedFile.Failure { throw ModelError(path, f.reason) }
        guard file.count > 0 else { throw ModelError(path, "empty file: not an ONNX model") }
        // The structure is read with pread into a compact copy without the weights' payloads
        // (their pages never enter this process unless a tensor is used), then decoded.
        let image: [UInt8]
        let ranges: [WireInitializerRange]
        do {
            let source = try FileWindowSource(path: path)
            // The map and the scan are two opens of the file: ranges found by the scan must lie
            // in the map (a file replaced or resized in between is refused, not read past).
            guard source.count == file.count else {
                throw FileWindowSource.Failure(reason: "the file changed while being read (\(file.count) bytes mapped, \(source.count) now)")
            }
            (image, ranges) = try WireScanner(source: source).compactImage()
        } catch let f as FileWindowSource.Failure {
            throw ModelError(path, f.reason)
        } catch {
            throw ModelError(path, "not an ONNX model: protobuf decoding failed (malformed data); the file is truncated, corrupt or of another format")
        }
        var options = BinaryDecodingOptions()
        options.discardUnknownFields = true
        // Nesting is bounded (each If/Loop/Scan body is 3 messages deeper: node, attribute,
        // graph), so a forged model cannot exhaust the stack in the decoder or in the graph
        // walks that recurse into bodies; deeper input is "nesting too deep".
        options.messageDepthLimit = ModelReader.maxMessageDepth
        let light: OnnxLight_ModelProto
        do {
            light = try OnnxLight_ModelProto(serializedBytes: image, options: options)
        } catch BinaryDecodingError.messageDepthLimit {
            throw ModelError(path, "nesting too deep: more than \(maxMessageDepth) levels of protobuf messages (about 20 nested If/Loop/Scan bodies) are not read")
        } catch {
            throw ModelError(path, "not an ONNX model: protobuf decoding failed (\(describe(error))); the file is truncated, corrupt or of another format")
        }
        guard light.hasIrVersion, light.irVersion > 0 else {
            throw ModelError(path, "not an ONNX model: no ir_version (a protobuf of another kind, or not protobuf at all)")
        }
        guard light.hasGraph else { throw ModelError(path, "not an ONNX model: it has no graph") }
        // IR version 3 and later require an opset_import for the default domain (onnx.proto,
        // ModelProto.opset_import); it is serialized after the graph, so a model cut short just
        // after its graph decodes without one.
        guard light.irVersion < 3 || !light.opsetImport.isEmpty else {
            throw ModelError(path, "not a valid ONNX model: ir_version \(light.irVersion) needs an opset_import and there is none (is the file truncated?)")
        }
        guard ranges.count == light.graph.initializer.count else {
            throw ModelError(path, "initializer layout not understood (\(ranges.count) found by scan, \(light.graph.initializer.count) decoded)")
        }
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent()
        let ctx = ReadContext(path: path, resolver: ExternalDataResolver(directory: directory, modelPath: path))

        var residual = Onnx_ModelProto()
        if light.hasIrVersion { residual.irVersion = light.irVersion }
        residual.opsetImport = light.opsetImport
        if light.hasProducerName { residual.producerName = light.producerName }
        if light.hasProducerVersion { residual.producerVersion = light.producerVersion }
        if light.hasDomain { residual.domain = light.domain }
        if light.hasModelVersion { residual.modelVersion = light.modelVersion }
        if light.hasDocString { residual.docString = light.docString }
        residual.metadataProps = light.metadataProps
        residual.trainingInfo = light.trainingInfo
        residual.functions = light.functions
        residual.configuration = light.configuration

        let graph = try mainGraph(light.graph, ranges: ranges, file: file, ctx: ctx)
        var model = Model(graph: graph, opsetImports: light.opsetImport.map { OpsetImport(domain: $0.domain, version: $0.version) },
                          irVersion: light.irVersion, producerName: light.producerName, producerVersion: light.producerVersion)
        model.domain = light.domain
        model.modelVersion = light.modelVersion
        model.docString = light.docString
        model.metadataProps = light.metadataProps.map { ($0.key, $0.value) }
        model.residual = residual
        model.directory = directory
        model.externalDataFiles = ctx.resolver.usedFiles
        try checkStructure(light.graph.initializer.map(\.name), graph: model.graph, path: path)
        return model
    }

    /// The checks after decoding (GraphValidation.swift): one definition per value, reads
    /// defined before use (no cycles, no dangling inputs), graph outputs defined. Duplicate
    /// initializer names are checked on the decoded list, as the IR keeps one per name.
    static func checkStructure(_ initializerNames: [String], graph: Graph, path: String) throws {
        var seen = Set<String>()
        for name in initializerNames where !seen.insert(name).inserted {
            throw ModelError(path, "initializer '\(name)' is defined twice")
        }
        try graph.validate(path: path)
    }

    /// Decodes a model from bytes held in memory (tests, fuzzing). External data is not available.
    public static func read(bytes: Data, name: String = "<memory>") throws -> Model {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("compress-\(UUID().uuidString).onnx")
        try bytes.write(to: tmp)
        defer { try? FileManager.default.removeItem(at: tmp) }
        do { return try read(path: tmp.path) } catch let e as ModelError { throw ModelError(name, e.message) }
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? BinaryDecodingError {
            switch e {
            case .truncated: return "truncated data"
            case .malformedProtobuf: return "malformed data"
            case .invalidUTF8: return "a string is not valid UTF-8"
            case .messageDepthLimit: return "nesting too deep"
            default: return "\(e)"
            }
        }
        return "\(error)"
    }

    final class ReadContext {
        let path: String
        let resolver: ExternalDataResolver
        init(path: String, resolver: ExternalDataResolver) { self.path = path; self.resolver = resolver }
    }

    private static func mainGraph(_ g: OnnxLight_GraphProto, ranges: [WireInitializerRange], file: MappedFile, ctx: ReadContext) throws -> Graph {
        var graph = Graph(name: g.name)
        graph.docString = g.docString
        var residual = Onnx_GraphProto()
        if g.hasName { residual.name = g.name }
        if g.hasDocString { residual.docString = g.docString }
        residual.sparseInitializer = g.sparseInitializer
        residual.quantizationAnnotation = g.quantizationAnnotation
        residual.metadataProps = g.metadataProps
        graph.residual = residual
        graph.sparseInitializerNames = g.sparseInitializer.map { $0.values.name }
        graph.nodes = try g.node.map { try node($0, ctx: ctx) }
        graph.inputs = g.input.map(valueInfo)
        graph.outputs = g.output.map(valueInfo)
        graph.valueInfo = g.valueInfo.map(valueInfo)
        let base = file.base!
        for (info, range) in zip(g.initializer, ranges) {
            let name = info.name
            guard range.message.upperBound <= file.count, (range.rawData?.upperBound ?? 0) <= file.count else {
                throw ModelError(ctx.path, "tensor '\(name)' lies past the end of the file (was it changed while being read?)")
            }
            let dtype = try TensorCodec.dtype(info.dataType, tensor: name, path: ctx.path)
            let n = try TensorCodec.elementCount(info.dims, tensor: name, path: ctx.path)
            let shape = info.dims.map { Int($0) }
            let bytes = dtype.byteCount(elements: n)
            let messageRange = range.message
            let loadProto: () throws -> Onnx_TensorProto = {
                let slice = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base + messageRange.lowerBound),
                                 count: messageRange.count, deallocator: .none)
                return try withExtendedLifetime(file) { try Onnx_TensorProto(serializedBytes: slice) }
            }
            let tensor: Tensor
            var external: String?
            if info.hasDataLocation && info.dataLocation == .external {
                let ref = try ExternalDataResolver.parse(info.externalData.map { ($0.key, $0.value) }, tensor: name, path: ctx.path)
                external = ref.location
                tensor = Tensor(dtype: dtype, shape: shape, storage: try ctx.resolver.storage(ref, tensor: name, byteCount: bytes))
            } else if let raw = range.rawData, dtype != .string {
                guard raw.count == bytes else {
                    throw ModelError(ctx.path, "tensor '\(name)': raw_data has \(raw.count) bytes but dims \(shape) of \(dtype) need \(bytes)")
                }
                let storage = bytes == 0 ? TensorStorage(byteCount: 0) : TensorStorage(borrowing: base + raw.lowerBound, byteCount: bytes, owner: file)
                tensor = Tensor(dtype: dtype, shape: shape, storage: storage)
            } else if range.hasTypedData || dtype == .string {
                let full: Onnx_TensorProto
                do { full = try loadProto() } catch { throw ModelError(ctx.path, "tensor '\(name)': \(describe(error))") }
                tensor = try TensorCodec.tensor(from: full, path: ctx.path, resolver: nil)
            } else if n == 0 {
                tensor = Tensor(dtype: dtype, shape: shape)
            } else {
                throw ModelError(ctx.path, "tensor '\(name)' has dims \(shape) but no data")
            }
            var initializer = Initializer(name: name, tensor: tensor, docString: info.docString)
            initializer.origin = TensorOrigin(storage: tensor.storage, dtype: dtype, shape: shape, externalLocation: external, loadProto: loadProto,
                                              message: UnsafeRawBufferPointer(start: base + messageRange.lowerBound, count: messageRange.count),
                                              messageName: name, messageDocString: info.docString, owner: file)
            graph.addInitializer(initializer)
        }
        return graph
    }

    /// A subgraph (If/Loop/Scan body) decoded with the full schema.
    static func graph(_ g: Onnx_GraphProto, ctx: ReadContext) throws -> Graph {
        var graph = Graph(name: g.name)
        graph.docString = g.docString
        var residual = g
        residual.node = []; residual.initializer = []; residual.input = []; residual.output = []; residual.valueInfo = []
        graph.residual = residual
        graph.sparseInitializerNames = g.sparseInitializer.map { $0.values.name }
        graph.nodes = try g.node.map { try node($0, ctx: ctx) }
        graph.inputs = g.input.map(valueInfo)
        graph.outputs = g.output.map(valueInfo)
        graph.valueInfo = g.valueInfo.map(valueInfo)
        var seen = Set<String>()
        for p in g.initializer {
            guard seen.insert(p.name).inserted else { throw ModelError(ctx.path, "initializer '\(p.name)' of body '\(g.name)' is defined twice") }
            let t = try TensorCodec.tensor(from: p, path: ctx.path, resolver: ctx.resolver)
            var i = Initializer(name: p.name, tensor: t, docString: p.docString)
            let external = p.dataLocation == .external ? p.externalData.first { $0.key == "location" }?.value : nil
            i.origin = TensorOrigin(storage: t.storage, dtype: t.dtype, shape: t.shape, externalLocation: external, loadProto: { p })
            graph.addInitializer(i)
        }
        return graph
    }

    static func node(_ p: Onnx_NodeProto, ctx: ReadContext) throws -> Node {
        var n = Node(name: p.name, opType: p.opType, domain: p.domain, inputs: p.input, outputs: p.output, docString: p.docString)
        n.attributes = try p.attribute.map { try attribute($0, node: p, ctx: ctx) }
        n.residual = p
        return n
    }

    static func attribute(_ p: Onnx_AttributeProto, node: Onnx_NodeProto, ctx: ReadContext) throws -> Attribute {
        var type = p.type
        if !p.hasType {
            // IR < 3 did not require `type`: infer it from the one field that is set.
            if p.hasF { type = .float } else if p.hasI { type = .int } else if p.hasS { type = .string }
            else if p.hasT { type = .tensor } else if p.hasG { type = .graph } else if !p.floats.isEmpty { type = .floats }
            else if !p.ints.isEmpty { type = .ints } else if !p.strings.isEmpty { type = .strings }
            else if !p.tensors.isEmpty { type = .tensors } else if !p.graphs.isEmpty { type = .graphs }
        }
        let value: AttributeValue
        var origins: [TensorStorage] = []
        if !p.refAttrName.isEmpty {
            value = .opaque
        } else {
            func tensor(_ t: Onnx_TensorProto) throws -> Tensor {
                do { return try TensorCodec.tensor(from: t, path: ctx.path, resolver: ctx.resolver) } catch let e as ModelError {
                    throw ModelError(ctx.path, "node '\(node.name)' attribute '\(p.name)': \(e.message)")
                }
            }
            switch type {
            case .float: value = .float(p.f)
            case .int: value = .int(p.i)
            case .string: value = .string(p.s)
            case .tensor: let t = try tensor(p.t); origins = [t.storage]; value = .tensor(t)
            case .graph: value = .graph(try graph(p.g, ctx: ctx))
            case .floats: value = .floats(p.floats)
            case .ints: value = .ints(p.ints)
            case .strings: value = .strings(p.strings)
            case .tensors: let ts = try p.tensors.map(tensor); origins = ts.map(\.storage); value = .tensors(ts)
            case .graphs: value = .graphs(try p.graphs.map { try graph($0, ctx: ctx) })
            default: value = .opaque
            }
        }
        var a = Attribute(name: p.name, value: value)
        a.residual = p
        a.originTensors = origins
        return a
    }

    static func valueInfo(_ p: Onnx_ValueInfoProto) -> ValueInfo {
        var v = ValueInfo(name: p.name, type: nil, docString: p.docString)
        if p.hasType {
            if case .tensorType(let t)? = p.type.value {
                v.type = tensorType(t)
            } else if p.type.value != nil {
                v.hasOpaqueType = true
            }
        }
        v.residual = p
        return v
    }

    static func tensorType(_ t: Onnx_TypeProto.Tensor) -> TensorType {
        let elem = t.hasElemType ? DType(rawValue: t.elemType) : nil
        let shape: [Dim]? = t.hasShape ? t.shape.dim.map { d in
            switch d.value {
            // A negative dim_value (paddle2onnx writes -1) is a dynamic dimension, as ONNX Runtime
            // reads it; the writer keeps the original message, so it goes back out as written.
            case .dimValue(let v)?: return v < 0 ? .unknown : .fixed(Int(v))
            case .dimParam(let s)?: return .symbolic(s)
            case nil: return .unknown
            }
        } : nil
        return TensorType(elementType: elem, shape: shape)
    }
}
