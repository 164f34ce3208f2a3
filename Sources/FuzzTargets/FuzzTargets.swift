import Foundation
import ModelIR
import ONNXProto
import Runtime
import TensorCore

/// The fuzzing entry points: each takes arbitrary bytes, feeds them to one reader as a file
/// from outside would be fed, and checks what must hold for any input. A reader's error
/// (`ModelError`, `DataError`, `RuntimeError`, `GraphError`) is the expected answer to bad
/// input; anything else — a trap, an error of another type, a message that spans lines or does
/// not name the file, a round trip that changes the model, external data read from outside the
/// model's folder — is a finding, reported by `preconditionFailure` so libFuzzer records it.
///
/// The libFuzzer executable (`Fuzz/`, built with `-sanitize=fuzzer,address`) calls `run`; the
/// unit tests (`Tests/FuzzRegressionTests`) replay the committed seeds and minimized crashers
/// through the same function, so a fixed crash stays fixed without a sanitizer build.
public enum FuzzTargets {
    public static let all = ["model", "tensor", "npy", "image", "external"]

    /// Runs target `name` on `bytes`. Returns the error the reader gave (nil when it accepted
    /// the input); traps on a finding.
    @discardableResult
    public static func run(_ name: String, _ bytes: [UInt8]) -> Error? {
        switch name {
        case "model": return model(bytes)
        case "tensor": return tensor(bytes)
        case "npy": return npy(bytes)
        case "image": return image(bytes)
        case "external": return external(bytes)
        default: preconditionFailure("unknown fuzz target '\(name)' (known: \(all.joined(separator: ", ")))")
        }
    }

    // MARK: Scratch folder

    /// One folder per process for the files the readers are given (they read paths).
    static let scratch: URL = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compress-fuzz-\(getpid())", isDirectory: true)
        try? FileManager.default.removeItem(at: dir)
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }()

    /// Writes `bytes` to a fresh file (new inode: a model still mapping the previous file of
    /// this name keeps its pages).
    static func file(_ name: String, _ bytes: [UInt8], in dir: URL = scratch) -> String {
        let url = dir.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: url)
        try! Data(bytes).write(to: url)
        return url.path
    }

    /// A reader's error must be one of the project's error types and render as one line that
    /// names `path` (or, for `RuntimeError`, says what is wrong).
    static func checkClean(_ error: Error, path: String, target: String) -> Error {
        let text: String
        switch error {
        case let e as ModelError: text = e.description; precondition(e.path == path || text.contains(path), "\(target): ModelError does not name the file: \(text)")
        case let e as DataError: text = e.description; precondition(e.path == path || text.contains(path), "\(target): DataError does not name the file: \(text)")
        case let e as RuntimeError: text = e.description
        case let e as GraphError: text = e.description
        default: preconditionFailure("\(target): unexpected error type \(type(of: error)): \(error)")
        }
        precondition(!text.isEmpty && !text.contains("\n") && !text.contains("\r"), "\(target): error is not one line: \(text.debugDescription)")
        return error
    }

    // MARK: model

    /// ModelProto bytes → IR → order check → encode → decode: the re-decoded IR must equal the
    /// first (same canonical description) and encoding it again must give the same bytes.
    static func model(_ bytes: [UInt8]) -> Error? {
        let path = file("model.onnx", bytes)
        let first: Model
        do { first = try ModelReader.read(path: path) } catch { return checkClean(error, path: path, target: "model") }
        _ = try? first.graph.checkTopologicalOrder()
        let encoded: Data
        do { encoded = try ModelWriter.serialize(first) } catch {
            // A model that was read must be writable (the writer starts from what was read).
            preconditionFailure("model: a model that was read cannot be encoded: \(error)")
        }
        let path2 = file("model-2.onnx", Array(encoded))
        let second: Model
        do { second = try ModelReader.read(path: path2) } catch {
            preconditionFailure("model: the encoded model does not decode: \(error)")
        }
        let a = describe(first), b = describe(second)
        precondition(a == b, "model: round trip changed the IR:\n\(firstDifference(a, b))")
        let reencoded: Data
        do { reencoded = try ModelWriter.serialize(second) } catch { preconditionFailure("model: second encode failed: \(error)") }
        precondition(reencoded == encoded, "model: encoding is not stable (\(encoded.count) then \(reencoded.count) bytes)")
        return nil
    }

    static func firstDifference(_ a: String, _ b: String) -> String {
        let la = a.split(separator: "\n", omittingEmptySubsequences: false), lb = b.split(separator: "\n", omittingEmptySubsequences: false)
        for i in 0..<max(la.count, lb.count) where i >= la.count || i >= lb.count || la[i] != lb[i] {
            return "line \(i): \(i < la.count ? String(la[i]) : "<none>") | \(i < lb.count ? String(lb[i]) : "<none>")"
        }
        return "(none)"
    }

    /// Everything the IR holds, one item per line, floats by bit pattern (NaN compares equal
    /// to itself), tensors with their bytes.
    static func describe(_ m: Model) -> String {
        var out = "ir \(m.irVersion) producer \(m.producerName.debugDescription) \(m.producerVersion.debugDescription) domain \(m.domain.debugDescription) version \(m.modelVersion) doc \(m.docString.debugDescription)\n"
        for o in m.opsetImports { out += "opset \(o.domain.debugDescription) \(o.version)\n" }
        for p in m.metadataProps { out += "meta \(p.key.debugDescription)=\(p.value.debugDescription)\n" }
        out += "functions \(m.functionNames)\n"
        describe(m.graph, into: &out, indent: "")
        return out
    }

    static func describe(_ g: Graph, into out: inout String, indent: String) {
        out += "\(indent)graph \(g.name.debugDescription) doc \(g.docString.debugDescription) sparse \(g.sparseInitializerNames)\n"
        for v in g.inputs { out += "\(indent)input \(describe(v))\n" }
        for v in g.outputs { out += "\(indent)output \(describe(v))\n" }
        for v in g.valueInfo { out += "\(indent)value \(describe(v))\n" }
        for i in g.initializers { out += "\(indent)init \(i.name.debugDescription) \(describe(i.tensor)) doc \(i.docString.debugDescription)\n" }
        for n in g.nodes {
            out += "\(indent)node \(n.name.debugDescription) \(n.domain.debugDescription)::\(n.opType.debugDescription) \(n.inputs) -> \(n.outputs) doc \(n.docString.debugDescription)\n"
            for a in n.attributes {
                out += "\(indent)  attr \(a.name.debugDescription) "
                switch a.value {
                case .float(let f): out += "f \(f.bitPattern)\n"
                case .int(let i): out += "i \(i)\n"
                case .string(let s): out += "s \(Array(s))\n"
                case .tensor(let t): out += "t \(describe(t))\n"
                case .floats(let fs): out += "fs \(fs.map(\.bitPattern))\n"
                case .ints(let v): out += "is \(v)\n"
                case .strings(let v): out += "ss \(v.map { Array($0) })\n"
                case .tensors(let ts): out += "ts \(ts.map(describe))\n"
                case .graph(let sub): out += "g\n"; describe(sub, into: &out, indent: indent + "    ")
                case .graphs(let subs): out += "gs \(subs.count)\n"; for s in subs { describe(s, into: &out, indent: indent + "    ") }
                case .opaque: out += "opaque\n"
                }
            }
        }
    }

    static func describe(_ v: ValueInfo) -> String {
        let type = v.type.map { "\($0.elementType.map { "\($0.rawValue)" } ?? "?") \($0.shapeDescription)" } ?? "untyped"
        return "\(v.name.debugDescription) \(type) doc \(v.docString.debugDescription)"
    }

    static func describe(_ t: Tensor) -> String {
        if t.dtype == .string { return "string \(t.shape)" }
        var h = Hasher()
        t.withUnsafeBytes { h.combine(bytes: $0) }
        let bytes = t.withUnsafeBytes { Array($0.prefix(64)) }
        return "\(t.dtype.rawValue) \(t.shape) \(t.byteCount)B \(bytes) #\(h.finalize())"
    }

    // MARK: tensor

    /// A serialized TensorProto file (`input_0.pb`): decoded, then written and read back, equal.
    static func tensor(_ bytes: [UInt8]) -> Error? {
        let path = file("tensor.pb", bytes)
        let read: (name: String, tensor: Tensor)
        do { read = try TensorCodec.readTensorFile(path) } catch { return checkClean(error, path: path, target: "tensor") }
        precondition(read.tensor.count == read.tensor.shape.reduce(1, *), "tensor: count does not match the shape")
        guard read.tensor.dtype != .string else { return nil }
        precondition(read.tensor.byteCount == read.tensor.dtype.byteCount(elements: read.tensor.count), "tensor: byte count does not match the shape")
        let back = scratch.appendingPathComponent("tensor-2.pb").path
        do { try TensorCodec.writeTensorFile(read.tensor, name: read.name, to: back) } catch { preconditionFailure("tensor: write failed: \(error)") }
        let again: (name: String, tensor: Tensor)
        do { again = try TensorCodec.readTensorFile(back) } catch { preconditionFailure("tensor: written file does not read: \(error)") }
        precondition(again.name == read.name && describe(again.tensor) == describe(read.tensor), "tensor: round trip changed the tensor")
        return nil
    }

    // MARK: npy

    /// `.npy` bytes (header and payload): decoded; a decoded array is encoded and decoded again, equal.
    static func npy(_ bytes: [UInt8]) -> Error? {
        let path = "fuzz.npy"
        let t: Tensor
        do { t = try bytes.withUnsafeBytes { try NPYFile.decode($0, path: path) } } catch { return checkClean(error, path: path, target: "npy") }
        precondition(t.count == t.shape.reduce(1, *), "npy: count does not match the shape")
        let encoded: Data
        do { encoded = try NPYFile.encode(t, path: path) } catch { return checkClean(error, path: path, target: "npy") }
        let back: Tensor
        do { back = try encoded.withUnsafeBytes { try NPYFile.decode($0, path: path) } } catch { preconditionFailure("npy: encoded array does not decode: \(error)") }
        precondition(describe(back) == describe(t), "npy: round trip changed the array")
        return nil
    }

    // MARK: image

    static let pngMagic: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// PNG (by its signature) or JPEG bytes, decoded from a file as `compress` decodes data
    /// files, then turned into input tensors by both resize modes, gray and RGB, NCHW and NHWC,
    /// enlarged and shrunk (sizes picked from the input's length): every value must be finite.
    static func image(_ bytes: [UInt8]) -> Error? {
        let isPNG = bytes.starts(with: pngMagic)
        let path = file(isPNG ? "image.png" : "image.jpg", bytes)
        let img: DecodedImage
        do { img = try ImageFile.decode(path: path) } catch { return checkClean(error, path: path, target: "image") }
        precondition(img.pixels.count == img.width * img.height * img.channels && (img.channels == 1 || img.channels == 3),
                     "image: decoded buffer does not match \(img.width)x\(img.height)x\(img.channels)")
        let h = 1 + bytes.count % 13, w = 1 + (bytes.count / 13) % 17
        let cases: [(DataInput, ImagePreprocessing)] = [
            (DataInput(name: "x", dtype: .float32, shape: [1, 3, h, w], flexibleBatch: false, pinned: true),
             ImagePreprocessing(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])),
            (DataInput(name: "x", dtype: .float16, shape: [1, h, w, 1], flexibleBatch: false, pinned: true),
             ImagePreprocessing(size: [h + 3, w + 1], resize: .nearest, layout: .nhwc)),
            (DataInput(name: "x", dtype: .float32, shape: [3, 2 * h, 3 * w], flexibleBatch: false, pinned: true),
             ImagePreprocessing(resize: .bilinear, scale: 1, bgr: true)),
        ]
        for (input, prep) in cases {
            let t: Tensor
            do { t = try prep.tensor(from: img, for: input, path: path) } catch { return checkClean(error, path: path, target: "image") }
            precondition(t.shape.reduce(1, *) == input.shape.reduce(1, *), "image: tensor \(t.shape) for input \(input.shape)")
            precondition(t.floatValues().allSatisfy(\.isFinite), "image: non-finite value after preprocessing")
        }
        return nil
    }

    // MARK: external

    /// The model folder for `external`: files inside hold 0x11 bytes, the file outside (and
    /// every link that leads to it) 0xEE bytes, so a tensor with an 0xEE byte was read from
    /// outside the folder.
    static let externalFolder: URL = {
        let fm = FileManager.default
        let root = scratch.appendingPathComponent("ext", isDirectory: true)
        let model = root.appendingPathComponent("model", isDirectory: true)
        let outside = root.appendingPathComponent("outside", isDirectory: true)
        for d in [model.appendingPathComponent("sub/deeper"), outside] { try! fm.createDirectory(at: d, withIntermediateDirectories: true) }
        let inside = [UInt8](repeating: 0x11, count: 64), secret = [UInt8](repeating: 0xEE, count: 64)
        for f in ["w.bin", "sub/w.bin", "sub/deeper/w.bin"] { try! Data(inside).write(to: model.appendingPathComponent(f)) }
        try! Data(secret).write(to: outside.appendingPathComponent("secret.bin"))
        // Links: one folder link inside (allowed), folder and file links that leave the folder.
        try! fm.createSymbolicLink(atPath: model.appendingPathComponent("sub/up").path, withDestinationPath: "..")
        try! fm.createSymbolicLink(atPath: model.appendingPathComponent("escape").path, withDestinationPath: "../outside")
        try! fm.createSymbolicLink(atPath: model.appendingPathComponent("sub/secret.bin").path, withDestinationPath: "../../outside/secret.bin")
        try! fm.createSymbolicLink(atPath: model.appendingPathComponent("abs").path, withDestinationPath: outside.path)
        return model
    }()

    /// External-data location strings against a model folder: the input is `location`,
    /// optionally followed by NUL, `offset`, NUL, `length`. A model with one uint8[4] initializer
    /// stored there is written and read: it either fails with a clean error or its bytes come
    /// from a file inside the folder.
    static func external(_ bytes: [UInt8]) -> Error? {
        let parts = bytes.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        var t = Onnx_TensorProto()
        t.name = "w"
        t.dataType = DType.uint8.rawValue
        t.dims = [4]
        t.dataLocation = .external
        var entries = [("location", parts[0])]
        if parts.count > 1 { entries.append(("offset", parts[1])) }
        if parts.count > 2 { entries.append(("length", parts[2])) }
        t.externalData = entries.map { k, v in var e = Onnx_StringStringEntryProto(); e.key = k; e.value = v; return e }
        var g = Onnx_GraphProto()
        g.name = "g"
        g.initializer = [t]
        var out = Onnx_ValueInfoProto()
        out.name = "w"
        g.output = [out]
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var op = Onnx_OperatorSetIdProto()
        op.version = 17
        m.opsetImport = [op]
        m.graph = g
        let path = file("model.onnx", Array(try! m.serializedBytes() as Data), in: externalFolder)
        let model: Model
        do { model = try ModelReader.read(path: path) } catch { return checkClean(error, path: path, target: "external") }
        guard let w = model.graph.initializer(named: "w") else { preconditionFailure("external: initializer lost") }
        let values = w.tensor.withUnsafeBytes { Array($0) }
        // Four 0xEE bytes in a row occur only in the outside file: in valid UTF-8 (the model's
        // strings, which a location may point back into) 0xEE is a lead byte, never repeated.
        precondition(values != [0xEE, 0xEE, 0xEE, 0xEE], "external: location \(parts[0].debugDescription) read data from outside the model's folder")
        return nil
    }
}
