import Foundation
import ONNXProto
import SwiftProtobuf
import TensorCore

/// Writes the IR back to ONNX.
///
/// Lossless for what the IR does not model: every message starts from the one it was read from
/// (its residual) and only fields the IR holds are overwritten, and only where they changed, so
/// field presence, unknown ops, functions, metadata, doc strings and subgraphs survive. An
/// initializer whose tensor still holds the storage it was read with is written back as its
/// original message (same typed fields or raw_data); a changed one is written as raw_data.
public enum ModelWriter {
    /// Where tensor payloads go.
    public enum DataLayout: Equatable {
        /// Every tensor inline; switches to external data automatically when the model would
        /// pass protobuf's 2 GiB limit.
        case inline
        /// Initializers of at least `threshold` bytes go to one side file named `location`
        /// (relative to the model), the others stay inline.
        case external(location: String?, threshold: Int)
    }

    /// protobuf cannot serialize a message of 2 GiB or more; leave room for the graph itself.
    static let inlineLimit = Int(Int32.max) - 64 * 1024 * 1024

    /// Serializes and atomically writes `model` to `url` (and its external-data file, if any).
    /// - Throws: `ModelError` naming the file; no partial output is left behind.
    public static func write(_ model: Model, to url: URL, layout: DataLayout = .inline) throws {
        let staged = try stage(model, to: url, layout: layout)
        do { try staged.commit() } catch {
            staged.abandon()
            throw error
        }
    }

    /// A model written in full to temporary files beside its destination and flushed to disk
    /// (fsync), not yet in place: `commit` renames it (the external-data file first) and
    /// flushes the folder; `abandon` drops it, leaving nothing. Lets the write and its flush
    /// overlap other work (`BackgroundWrite`).
    public final class Staged {
        let file: AtomicFile.Pending
        let sink: ExternalSink?
        init(file: AtomicFile.Pending, sink: ExternalSink?) {
            self.file = file
            self.sink = sink
        }

        /// Moves the files into place: the data file before the model that points into it.
        public func commit() throws {
            try sink?.finish()
            try file.commit()
        }

        public func abandon() {
            sink?.abandon()
            file.abandon()
        }
    }

    /// Serializes `model` for `url` into temporary files, flushed, that `Staged.commit` puts
    /// in place. - Throws: `ModelError` naming the file; nothing is left behind on error.
    public static func stage(_ model: Model, to url: URL, layout: DataLayout = .inline) throws -> Staged {
        var layout = layout
        if layout == .inline && model.graph.initializers.reduce(0, { $0 + $1.tensor.byteCount }) > inlineLimit {
            layout = .external(location: nil, threshold: 1024)
        }
        var sink: ExternalSink?
        if case .external(let location, let threshold) = layout {
            let loc = location ?? (url.lastPathComponent + ".data")
            sink = try ExternalSink(location: loc, target: url.deletingLastPathComponent().appendingPathComponent(loc), threshold: threshold)
        }
        guard let sink else { return Staged(file: try writeStreaming(model, to: url), sink: nil) }
        do {
            let proto = try modelProto(model, sink: sink)
            let bytes: Data
            do { bytes = try proto.serializedBytes() } catch {
                throw ModelError(url.path, "cannot serialize the model: \(error)")
            }
            let file = try AtomicFile.Pending(for: url)
            do {
                try file.write(bytes)
                try sink.flush()
                try file.flush()
            } catch {
                file.abandon()
                throw error
            }
            return Staged(file: file, sink: sink)
        } catch {
            sink.abandon()
            throw error
        }
    }

    /// A model written and flushed on a thread of its own while the caller does other work
    /// (`compress fuse` verifies meanwhile): `commit` waits for it and puts the file in place,
    /// `abandon` waits and drops it. Exactly one of the two must be called; until then nothing
    /// is visible at the destination (the temporary file has no name where the filesystem
    /// allows, `.NAME.tmp-PID-RANDOM` elsewhere).
    public final class BackgroundWrite: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<Staged, Error>?
        private var finished = false

        /// Starts writing `model` to `url` (see `stage`). The model's tensors are only read.
        public init(_ model: Model, to url: URL, layout: DataLayout = .inline) {
            let job = Job(model: model, url: url, layout: layout)
            Thread.detachNewThread { [self] in
                result = Result { try ModelWriter.stage(job.model, to: job.url, layout: job.layout) }
                done.signal()
            }
        }

        /// The inputs the writing thread reads (immutable once handed over).
        private struct Job: @unchecked Sendable {
            let model: Model
            let url: URL
            let layout: DataLayout
        }

        private func wait() -> Result<Staged, Error> {
            if !finished { done.wait(); finished = true }
            return result!
        }

        /// Waits for the write and its flush, then moves the file into place.
        /// - Throws: the write's error, or the commit's (nothing is left behind either way).
        public func commit() throws {
            let staged = try wait().get()
            do { try staged.commit() } catch {
                staged.abandon()
                throw error
            }
        }

        /// Waits for the write, then drops it.
        public func abandon() {
            if case .success(let staged) = wait() { staged.abandon() }
        }
    }

    /// The serialized model, all tensors inline.
    public static func serialize(_ model: Model) throws -> Data {
        try modelProto(model, sink: nil).serializedBytes()
    }

    static func modelProto(_ m: Model, sink: ExternalSink?, initializers: Bool = true) throws -> Onnx_ModelProto {
        var p = m.residual
        if !(p.hasIrVersion && p.irVersion == m.irVersion) { p.irVersion = m.irVersion }
        let opsets = p.opsetImport.map { OpsetImport(domain: $0.domain, version: $0.version) }
        if opsets != m.opsetImports {
            p.opsetImport = m.opsetImports.map { o in var x = Onnx_OperatorSetIdProto(); x.domain = o.domain; x.version = o.version; return x }
        }
        if p.producerName != m.producerName { p.producerName = m.producerName }
        if p.producerVersion != m.producerVersion { p.producerVersion = m.producerVersion }
        if p.domain != m.domain { p.domain = m.domain }
        if p.modelVersion != m.modelVersion { p.modelVersion = m.modelVersion }
        if p.docString != m.docString { p.docString = m.docString }
        if !p.metadataProps.map({ $0.key }).elementsEqual(m.metadataProps.map(\.key))
            || !p.metadataProps.map({ $0.value }).elementsEqual(m.metadataProps.map(\.value)) {
            p.metadataProps = m.metadataProps.map { kv in var e = Onnx_StringStringEntryProto(); e.key = kv.key; e.value = kv.value; return e }
        }
        p.graph = try graphProto(m.graph, sink: sink, initializers: initializers)
        return p
    }

    static func graphProto(_ g: Graph, sink: ExternalSink?, initializers: Bool = true) throws -> Onnx_GraphProto {
        var p = g.residual
        if p.name != g.name { p.name = g.name }
        if p.docString != g.docString { p.docString = g.docString }
        p.node = try g.nodes.map(nodeProto)
        p.input = g.inputs.map(valueInfoProto)
        p.output = g.outputs.map(valueInfoProto)
        p.valueInfo = g.valueInfo.map(valueInfoProto)
        p.initializer = initializers ? try g.initializers.map { try initializerProto($0, sink: sink) } : []
        return p
    }

    /// One top-level initializer as the streaming writer emits it: encoded bytes, optionally a
    /// raw_data field whose payload is written straight from the tensor (or the original message
    /// straight from the mapped file), then the fields numbered after raw_data.
    struct InitializerPiece {
        var head: Data
        var rawView: UnsafeRawBufferPointer?
        var payload: Tensor?
        var tail = Data()
        var length: Int { head.count + (rawView?.count ?? 0) + (payload.map { 1 + varint($0.byteCount).count + $0.byteCount } ?? 0) + tail.count }
    }

    static func varint(_ v: Int) -> [UInt8] {
        var v = UInt64(v), out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
        return out
    }

    /// Writes an inline model without building it in memory. The bytes are those `serialize`
    /// gives (fields in number order, as SwiftProtobuf writes them): the model's fields before
    /// `graph` (7), the graph's `node` and `name` (1, 2), its initializers (5), its later fields,
    /// the model's later fields. An unchanged initializer's message is copied from the mapped
    /// input file as it was (never decoded); a changed or new one is its fields up to `name` (8),
    /// a raw_data field (9) written from the tensor's own bytes, then its later fields. The
    /// weights are copied once, by write(2), instead of decoded, encoded and buffered. Returns
    /// the temporary file, written and flushed, for the caller to commit or abandon.
    static func writeStreaming(_ model: Model, to url: URL) throws -> AtomicFile.Pending {
        var pieces: [InitializerPiece] = []
        pieces.reserveCapacity(model.graph.initializers.count)
        for i in model.graph.initializers {
            let t = i.tensor
            if let o = i.origin, o.matches(t), o.externalLocation == nil, let msg = o.message,
               o.messageName == i.name, o.messageDocString == i.docString {
                pieces.append(InitializerPiece(head: Data(), rawView: msg))
            } else if t.dtype != .string, t.byteCount > 0, i.origin.map({ !$0.matches(t) }) ?? true {
                var p = Onnx_TensorProto()
                if let o = i.origin {  // keep the original's other fields (segment, metadata…)
                    p = try o.proto()
                    p.clearRawData(); p.floatData = []; p.int32Data = []; p.int64Data = []; p.doubleData = []; p.uint64Data = []
                    p.externalData = []; p.clearDataLocation()
                }
                if p.name != i.name { p.name = i.name }
                if p.docString != i.docString { p.docString = i.docString }
                p.dims = t.shape.map { Int64($0) }
                p.dataType = t.dtype.rawValue
                var head = p, tail = p
                head.clearDocString(); head.metadataProps = []; head.unknownFields = SwiftProtobuf.UnknownStorage()
                tail.dims = []; tail.clearDataType(); tail.clearSegment(); tail.clearName()
                pieces.append(InitializerPiece(head: try head.serializedBytes(), payload: t, tail: try tail.serializedBytes()))
            } else {
                pieces.append(InitializerPiece(head: try initializerProto(i, sink: nil).serializedBytes()))
            }
        }
        let mp = try modelProto(model, sink: nil, initializers: false)
        var modelHead = mp, modelTail = mp
        modelHead.clearGraph(); modelHead.opsetImport = []; modelHead.metadataProps = []; modelHead.trainingInfo = []
        modelHead.functions = []; modelHead.configuration = []; modelHead.unknownFields = SwiftProtobuf.UnknownStorage()
        modelTail.clearGraph(); modelTail.clearIrVersion(); modelTail.clearProducerName(); modelTail.clearProducerVersion()
        modelTail.clearDomain(); modelTail.clearModelVersion(); modelTail.clearDocString()
        var graphHead = mp.graph, graphTail = mp.graph
        graphHead.sparseInitializer = []; graphHead.clearDocString(); graphHead.input = []; graphHead.output = []; graphHead.valueInfo = []
        graphHead.quantizationAnnotation = []; graphHead.metadataProps = []; graphHead.unknownFields = SwiftProtobuf.UnknownStorage()
        graphTail.node = []; graphTail.clearName()
        let gHead: Data = try graphHead.serializedBytes(), gTail: Data = try graphTail.serializedBytes()
        var graphLength = gHead.count + gTail.count
        for p in pieces { graphLength += 1 + varint(p.length).count + p.length }

        let file = try AtomicFile.Pending(for: url)
        do {
            var buffer = Data()
            func flush() throws {
                try file.write(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
            buffer.append(try modelHead.serializedBytes())
            buffer.append(0x3A)  // ModelProto.graph: field 7, length-delimited
            buffer.append(contentsOf: varint(graphLength))
            buffer.append(gHead)
            for p in pieces {
                buffer.append(0x2A)  // GraphProto.initializer: field 5, length-delimited
                buffer.append(contentsOf: varint(p.length))
                buffer.append(p.head)
                if let v = p.rawView {
                    try flush()
                    try file.write(v)
                } else if let t = p.payload {
                    buffer.append(0x4A)  // TensorProto.raw_data: field 9, length-delimited
                    buffer.append(contentsOf: varint(t.byteCount))
                    try flush()
                    try t.withUnsafeBytes { try file.write($0) }
                }
                buffer.append(p.tail)
                if buffer.count > 1 << 20 { try flush() }
            }
            buffer.append(gTail)
            buffer.append(try modelTail.serializedBytes())
            try flush()
            try file.flush()
            return file
        } catch {
            file.abandon()
            throw error
        }
    }

    static func initializerProto(_ i: Initializer, sink: ExternalSink?) throws -> Onnx_TensorProto {
        let t = i.tensor
        var base: Onnx_TensorProto?
        // Only raw payloads move to the side file: an unchanged tensor read from typed fields
        // (float_data, int64_data, …) stays inline as it was, as onnx's
        // `convert_model_to_external_data` does (it moves only tensors with raw_data), so a
        // round trip through external data gives back the original message.
        var toExternal = sink?.takes(t) ?? false
        if let o = i.origin {
            let original = try o.proto()
            if toExternal && o.matches(t) && o.externalLocation == nil && !original.hasRawData { toExternal = false }
            if o.matches(t) && o.externalLocation == nil && !toExternal && original.name == i.name && original.docString == i.docString {
                return original
            }
            var b = original
            b.clearRawData(); b.floatData = []; b.int32Data = []; b.int64Data = []; b.doubleData = []; b.uint64Data = []
            b.externalData = []; b.clearDataLocation()
            base = b
        }
        var p = base ?? Onnx_TensorProto()
        if p.name != i.name { p.name = i.name }
        if p.docString != i.docString { p.docString = i.docString }
        p.dims = t.shape.map { Int64($0) }
        p.dataType = t.dtype.rawValue
        if t.dtype == .string {
            guard let o = i.origin, o.matches(t) else { throw ModelError("", "string tensor '\(i.name)' cannot be rewritten") }
            return try o.proto()
        }
        if let sink, toExternal {
            let (offset, length) = try sink.append(t)
            p.dataLocation = .external
            p.externalData = [("location", sink.location), ("offset", String(offset)), ("length", String(length))].map {
                var e = Onnx_StringStringEntryProto(); e.key = $0.0; e.value = $0.1; return e
            }
        } else {
            p.rawData = t.withUnsafeBytes { Data($0) }
        }
        return p
    }

    static func nodeProto(_ n: Node) throws -> Onnx_NodeProto {
        var p = n.residual ?? Onnx_NodeProto()
        if p.name != n.name { p.name = n.name }
        if p.opType != n.opType { p.opType = n.opType }
        if p.domain != n.domain { p.domain = n.domain }
        if p.docString != n.docString { p.docString = n.docString }
        if p.input != n.inputs { p.input = n.inputs }
        if p.output != n.outputs { p.output = n.outputs }
        p.attribute = try n.attributes.map(attributeProto)
        return p
    }

    static func attributeProto(_ a: Attribute) throws -> Onnx_AttributeProto {
        var p = a.residual ?? Onnx_AttributeProto()
        if p.name != a.name { p.name = a.name }
        func setType(_ t: Onnx_AttributeProto.AttributeType) { if !(p.hasType && p.type == t) { p.type = t } }
        func tensorProto(_ t: Tensor, original: Onnx_TensorProto?, origin: TensorStorage?) -> Onnx_TensorProto {
            if let original, let origin, t.storage === origin, original.dims.map({ Int($0) }) == t.shape, original.dataType == t.dtype.rawValue {
                return original
            }
            var q = TensorCodec.proto(t, name: original?.name ?? "")
            if let original, original.hasDocString { q.docString = original.docString }
            return q
        }
        switch a.value {
        case .opaque:
            guard a.residual != nil else { throw ModelError("", "attribute '\(a.name)' has no value") }
        case .float(let v): if !(p.hasF && p.f == v) || p.f.bitPattern != v.bitPattern { p.f = v }; setType(.float)
        case .int(let v): if !(p.hasI && p.i == v) { p.i = v }; setType(.int)
        case .string(let v): if !(p.hasS && p.s == v) { p.s = v }; setType(.string)
        case .floats(let v): if p.floats.map(\.bitPattern) != v.map(\.bitPattern) { p.floats = v }; setType(.floats)
        case .ints(let v): if p.ints != v { p.ints = v }; setType(.ints)
        case .strings(let v): if p.strings != v { p.strings = v }; setType(.strings)
        case .tensor(let t):
            p.t = tensorProto(t, original: a.residual?.hasT == true ? a.residual!.t : nil, origin: a.originTensors.first); setType(.tensor)
        case .tensors(let ts):
            let originals = a.residual?.tensors ?? []
            p.tensors = ts.enumerated().map { i, t in
                tensorProto(t, original: i < originals.count ? originals[i] : nil, origin: i < a.originTensors.count ? a.originTensors[i] : nil)
            }
            setType(.tensors)
        case .graph(let g): p.g = try graphProto(g, sink: nil); setType(.graph)
        case .graphs(let gs): p.graphs = try gs.map { try graphProto($0, sink: nil) }; setType(.graphs)
        }
        return p
    }

    static func valueInfoProto(_ v: ValueInfo) -> Onnx_ValueInfoProto {
        var p = v.residual ?? Onnx_ValueInfoProto()
        if p.name != v.name { p.name = v.name }
        if p.docString != v.docString { p.docString = v.docString }
        if v.hasOpaqueType { return p }
        let current: TensorType? = {
            if p.hasType, case .tensorType(let t)? = p.type.value { return ModelReader.tensorType(t) }
            return nil
        }()
        if current != v.type {
            if let t = v.type {
                var tt = Onnx_TypeProto.Tensor()
                if let e = t.elementType { tt.elemType = e.rawValue }
                if let s = t.shape {
                    var sp = Onnx_TensorShapeProto()
                    sp.dim = s.map { d in
                        var x = Onnx_TensorShapeProto.Dimension()
                        switch d {
                        case .fixed(let n): x.dimValue = Int64(n)
                        case .symbolic(let s): x.dimParam = s
                        case .unknown: break
                        }
                        return x
                    }
                    tt.shape = sp
                }
                var tp = p.hasType ? p.type : Onnx_TypeProto()
                tp.tensorType = tt
                p.type = tp
            } else {
                p.clearType()
            }
        }
        return p
    }
}

/// Collects initializer payloads into one external-data file, written to a temporary file and
/// renamed into place together with the model.
final class ExternalSink {
    let location: String
    let target: URL
    let threshold: Int
    /// Created fresh (unnamed, or O_EXCL on a new temporary name) and renamed over the target
    /// when the model is complete: a stale data file of the same name is replaced, never
    /// appended to.
    private let file: AtomicFile.Pending
    private var offset = 0
    /// Payload offsets are aligned so a memory map can be read in place.
    static let alignment = 64

    init(location: String, target: URL, threshold: Int) throws {
        guard !location.hasPrefix("/"), !location.split(separator: "/").contains("..") else {
            throw ModelError(target.path, "external data location must be a relative file name beside the model")
        }
        self.location = location
        self.target = target
        self.threshold = threshold
        file = try AtomicFile.Pending(for: target)
    }

    func takes(_ t: Tensor) -> Bool { t.dtype != .string && t.byteCount >= threshold && t.byteCount > 0 }

    func append(_ t: Tensor) throws -> (Int, Int) {
        let pad = (ExternalSink.alignment - offset % ExternalSink.alignment) % ExternalSink.alignment
        if pad > 0 {
            try file.write(Data(count: pad))
            offset += pad
        }
        let start = offset
        try t.withUnsafeBytes { try file.write($0) }
        offset += t.byteCount
        return (start, t.byteCount)
    }

    /// Flushes the side file's bytes to disk (before `finish`).
    func flush() throws { if offset > 0 { try file.flush() } }

    /// Puts the side file in place (flushed); when no tensor went to it, none is written.
    func finish() throws {
        if offset == 0 { abandon(); return }
        try file.commit()
    }

    func abandon() { file.abandon() }
}
