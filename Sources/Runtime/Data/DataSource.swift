import Foundation
import ModelIR
import TensorCore

/// One model run's worth of data: a tensor per runtime input, and the label when the folder
/// has labels.
public struct Sample: Sendable {
    /// The file stem (`sample_0003`), `class/stem` for class folders, or the test-data-set
    /// folder name (`test_data_set_0`).
    public let id: String
    public var inputs: [String: Tensor]
    public let label: Int?
    /// The files the inputs came from, in input order.
    public let files: [String]
}

/// A folder of samples for a model, listed once and decoded one sample at a time (only file
/// names are held; tensors are read when a sample is asked for).
///
/// Layouts, tried in this order:
/// - ONNX test-data sets: subfolders `test_data_set_N/` holding `input_K.pb` (or
///   `input_K.npy`) for the K-th runtime input; other entries (model.onnx, output_K.pb) are
///   ignored. A folder that itself holds `input_K.pb` files is one set. Any model.
/// - Class folders: one subfolder per class, sorted by name (byte order) to give class
///   indices 0, 1, …; the files inside are samples labelled with that index. Single-input
///   models.
/// - A flat folder of files, one sample per file. Single-input models.
/// Files are `.npy`, `.pb` (a serialized `TensorProto`), `.png`, `.jpg`/`.jpeg`; names
/// starting with `.` and `labels.txt` are skipped; anything else is an error.
///
/// Labels: class folders, or `labels.txt` in the folder with lines `NAME LABEL` (NAME is a
/// file name, its stem, or a test-data-set name; LABEL a non-negative integer; blank lines and
/// `#` comments are skipped). Unlisted samples are unlabelled.
public struct DataSource: Sendable {
    public enum Layout: String, Sendable { case files, classFolders = "class_folders", testDataSets = "test_data_sets" }

    /// One sample's files and label, before anything is read.
    public struct Entry: Equatable, Sendable {
        public let id: String
        /// One file per runtime input, in input order.
        public let files: [String]
        public let label: Int?
    }

    public let directory: String
    public let inputs: [DataInput]
    public let preprocessing: ImagePreprocessing
    public let layout: Layout
    public let entries: [Entry]
    /// Class folder names by index (class-folder layout only).
    public let classNames: [String]

    public var count: Int { entries.count }
    /// Whether any sample carries a label.
    public var hasLabels: Bool { entries.contains { $0.label != nil } }

    static let dataExtensions: Set<String> = ["npy", "pb", "png", "jpg", "jpeg"]
    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Lists `directory` for `graph`'s runtime inputs resolved with `pins` (`--input`).
    ///
    /// When the folder holds images, `preprocessing.canvas` is set (`--crop`, or a two-number
    /// `--size`) and the single input's H/W dimensions are dynamic and unpinned, the input is
    /// pinned to that size (batch 1).
    /// - Throws: `DataError` naming the folder or file; `RuntimeError.badInput` for shapes.
    public init(directory: String, graph: Graph, pins: [String: [Int]], preprocessing: ImagePreprocessing = .init()) throws {
        try preprocessing.validate()
        let listing = try DataSource.scan(directory, inputCount: graph.runtimeInputs.count,
                                          inputNames: graph.runtimeInputs.map(\.name))
        var pins = pins
        let runtime = graph.runtimeInputs
        if listing.hasImages, let size = preprocessing.canvas, runtime.count == 1, pins[runtime[0].name] == nil,
           let declared = runtime[0].type?.shape, declared.count == 4 {
            let fixed = declared.map(\.value)
            let l = ImagePreprocessing.layout(of: fixed.map { $0 ?? 0 }, explicit: preprocessing.layout)
            let (hi, wi, ci) = l == .nchw ? (2, 3, 1) : (1, 2, 3)
            if fixed[hi] == nil || fixed[wi] == nil {
                var pin = [1, 0, 0, 0]
                pin[ci] = fixed[ci] ?? 3
                pin[hi] = fixed[hi] ?? size[0]
                pin[wi] = fixed[wi] ?? size[1]
                pins[runtime[0].name] = pin
            }
        }
        try self.init(listing: listing, inputs: try DataInput.resolve(graph: graph, pins: pins), preprocessing: preprocessing)
    }

    /// Lists `directory` for already-resolved inputs.
    public init(directory: String, inputs: [DataInput], preprocessing: ImagePreprocessing = .init()) throws {
        try preprocessing.validate()
        let listing = try DataSource.scan(directory, inputCount: inputs.count, inputNames: inputs.map(\.name))
        try self.init(listing: listing, inputs: inputs, preprocessing: preprocessing)
    }

    private init(listing: Listing, inputs: [DataInput], preprocessing: ImagePreprocessing) throws {
        directory = listing.directory
        layout = listing.layout
        entries = listing.entries
        classNames = listing.classNames
        self.inputs = inputs
        self.preprocessing = preprocessing
    }

    // MARK: Reading samples

    /// Reads and decodes one entry's files.
    /// - Throws: `DataError` (or `ModelError` for `.pb` files) naming the file and the cause.
    public func load(_ entry: Entry) throws -> Sample {
        var feeds: [String: Tensor] = [:]
        for (input, file) in zip(inputs, entry.files) {
            feeds[input.name] = try loadTensor(file, for: input)
        }
        return Sample(id: entry.id, inputs: feeds, label: entry.label, files: entry.files)
    }

    /// Reads one file for `input`.
    public func loadTensor(_ file: String, for input: DataInput) throws -> Tensor {
        switch (file as NSString).pathExtension.lowercased() {
        case "npy":
            return try input.conform(try NPYFile.read(path: file), path: file)
        case "pb":
            // A TensorProto may carry the name of the input it is for (ONNX's test-data sets
            // do); files are matched to inputs by position, so a name that is not that
            // input's is a sample made for another model: refused, not fed under another name.
            let (name, tensor) = try TensorCodec.readTensorFile(file)
            if !name.isEmpty && name != input.name {
                let all = inputs.map { "'\($0.name)'" }.joined(separator: ", ")
                if inputs.contains(where: { $0.name == name }) {
                    throw DataError(file, "is named for input '\(name)' but stands in the place of input '\(input.name)' (files are matched to the model inputs \(all) by position)")
                }
                throw DataError(file, "is named for input '\(name)', which the model does not have (its inputs: \(all))")
            }
            return try input.conform(tensor, path: file)
        case let ext where DataSource.imageExtensions.contains(ext):
            return try preprocessing.tensor(from: try ImageFile.decode(path: file), for: input, path: file)
        default:
            throw DataError(file, "not a data file (expected .npy, .pb, .png, .jpg or .jpeg)")
        }
    }

    /// Reads the samples in order, one per `next()`. (Not a Swift `Sequence`: a load error
    /// must reach the caller, not end a `for` loop early and silently.)
    public struct Iterator {
        let source: DataSource
        var index = 0

        /// The next sample, or nil at the end.
        /// - Throws: the load error of that sample (the iterator then moves past it).
        public mutating func next() throws -> Sample? {
            guard index < source.entries.count else { return nil }
            defer { index += 1 }
            return try source.load(source.entries[index])
        }
    }

    public func makeIterator() -> Iterator { Iterator(source: self) }

    /// Calls `body` with every sample in order, one at a time, the next ones decoded ahead on a
    /// background thread (`prefetching`); stops at the first error (a load error is thrown when
    /// its sample's turn comes).
    public func forEachSample(_ body: (Sample) throws -> Void) throws {
        let samples = prefetching()
        while let s = try samples.next() { try body(s) }
    }

    // MARK: Listing

    struct Listing {
        var directory: String
        var layout: Layout
        var entries: [Entry]
        var classNames: [String]
        var hasImages: Bool
    }

    static func byteOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// Non-hidden entries of a folder, split into files and subfolders, sorted.
    static func list(_ dir: String) throws -> (files: [String], folders: [String]) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else { throw DataError(dir, "no such folder") }
        guard isDir.boolValue else { throw DataError(dir, "not a folder (--data takes a folder of samples)") }
        guard let d = opendir(dir) else { throw DataError(dir, "cannot read the folder: \(String(cString: strerror(errno)))") }
        defer { closedir(d) }
        var files: [String] = [], folders: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            var sub: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent(name), isDirectory: &sub)
            if sub.boolValue { folders.append(name) } else { files.append(name) }
        }
        return (files.sorted(by: byteOrder), folders.sorted(by: byteOrder))
    }

    static func testSetNumber(_ name: String) -> Int? {
        guard name.hasPrefix("test_data_set_") else { return nil }
        return Int(name.dropFirst("test_data_set_".count))
    }

    static func inputIndex(_ name: String) -> Int? {
        let ext = (name as NSString).pathExtension.lowercased()
        guard ext == "pb" || ext == "npy" else { return nil }
        let stem = (name as NSString).deletingPathExtension
        guard stem.hasPrefix("input_") else { return nil }
        return Int(stem.dropFirst("input_".count))
    }

    static func scan(_ directory: String, inputCount: Int, inputNames: [String]) throws -> Listing {
        let dir = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        func path(_ parts: String...) -> String { parts.reduce(dir) { ($0 as NSString).appendingPathComponent($1) } }
        let (files, folders) = try list(dir)
        var entries: [Entry] = []
        var layout = Layout.files
        var classNames: [String] = []

        func testSet(_ folder: String, id: String, files names: [String]) throws -> Entry {
            var byIndex: [Int: String] = [:]
            for n in names {
                guard let k = inputIndex(n) else { continue }
                if let other = byIndex[k] { throw DataError(folder, "both \(other) and \(n) give input \(k)") }
                byIndex[k] = n
            }
            var out: [String] = []
            for k in 0..<inputCount {
                guard let n = byIndex[k] else {
                    throw DataError(folder, "no input_\(k).pb for model input \(k) ('\(inputNames[k])'); a test-data set holds input_0.pb … input_\(inputCount - 1).pb in model input order")
                }
                out.append((folder as NSString).appendingPathComponent(n))
            }
            if let extra = byIndex.keys.filter({ $0 >= inputCount }).min() {
                throw DataError(folder, "has input_\(extra) but the model has \(inputCount) input\(inputCount == 1 ? "" : "s") (\(inputNames.joined(separator: ", ")))")
            }
            return Entry(id: id, files: out, label: nil)
        }

        let sets = folders.compactMap { f in testSetNumber(f).map { (f, $0) } }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }
        if !sets.isEmpty {
            layout = .testDataSets
            for (f, _) in sets {
                entries.append(try testSet(path(f), id: f, files: try list(path(f)).files))
            }
        } else if files.contains(where: { inputIndex($0) != nil }) {
            layout = .testDataSets
            entries.append(try testSet(dir, id: (dir as NSString).lastPathComponent, files: files))
        } else {
            let dataFiles = try files.filter { n in
                if n == "labels.txt" { return false }
                guard dataExtensions.contains((n as NSString).pathExtension.lowercased()) else {
                    throw DataError(path(n), "not a data file (expected .npy, .pb, .png, .jpg or .jpeg)")
                }
                return true
            }
            if !folders.isEmpty {
                guard dataFiles.isEmpty else {
                    throw DataError(dir, "mixes data files (\(dataFiles[0])) with subfolders (\(folders[0])); use a flat folder of files or one subfolder per class")
                }
                layout = .classFolders
                classNames = folders
            }
            if inputCount != 1 {
                throw DataError(dir, "the model has \(inputCount) inputs (\(inputNames.joined(separator: ", "))); plain files feed single-input models only. Use one folder per sample in ONNX's test-data layout: \(dir)/test_data_set_0/input_0.pb … input_\(Swift.max(inputCount - 1, 0)).pb, matched to the inputs by order")
            }
            func add(_ names: [String], folder: String, idPrefix: String, label: Int?) throws {
                var seen: [String: String] = [:]
                for n in names {
                    let stem = (n as NSString).deletingPathExtension
                    if let other = seen[stem] {
                        throw DataError((folder as NSString).appendingPathComponent(n), "has the same stem as \(other); sample ids (file stems) must be unique")
                    }
                    seen[stem] = n
                    entries.append(Entry(id: idPrefix + stem, files: [(folder as NSString).appendingPathComponent(n)], label: label))
                }
            }
            if layout == .classFolders {
                for (k, c) in classNames.enumerated() {
                    let (names, nested) = try list(path(c))
                    if let n = nested.first { throw DataError(path(c, n), "class folders hold files, not further folders") }
                    let data = try names.filter { n in
                        guard dataExtensions.contains((n as NSString).pathExtension.lowercased()) else {
                            throw DataError(path(c, n), "not a data file (expected .npy, .pb, .png, .jpg or .jpeg)")
                        }
                        return true
                    }
                    try add(data, folder: path(c), idPrefix: c + "/", label: k)
                }
            } else {
                try add(dataFiles, folder: dir, idPrefix: "", label: nil)
            }
        }
        guard !entries.isEmpty else {
            throw DataError(dir, "no samples: the folder has no .npy, .pb, .png or .jpg files (nor test_data_set_N folders)")
        }
        if files.contains("labels.txt") {
            if layout == .classFolders {
                throw DataError(path("labels.txt"), "the folder has class subfolders too; give labels one way, not both")
            }
            entries = try applyLabels(path("labels.txt"), to: entries)
        }
        let hasImages = entries.contains { e in e.files.contains { imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) } }
        return Listing(directory: dir, layout: layout, entries: entries, classNames: classNames, hasImages: hasImages)
    }

    /// Labels from `labels.txt`: `NAME LABEL` per line.
    static func applyLabels(_ file: String, to entries: [Entry]) throws -> [Entry] {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw DataError(file, "cannot read as UTF-8 text")
        }
        var keys: [String: Int] = [:]
        for (i, e) in entries.enumerated() {
            keys[e.id] = i
            if let f = e.files.first, e.files.count == 1 { keys[(f as NSString).lastPathComponent] = i }
        }
        var labels: [Int: Int] = [:]
        var lineOf: [Int: Int] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let label = Int(parts.last!), label >= 0 else {
                throw DataError("\(file):\(n + 1)", "expected 'NAME LABEL' with LABEL a non-negative integer, got '\(line.prefix(80))'")
            }
            let name = line.dropLast(parts.last!.count).trimmingCharacters(in: .whitespaces)
            guard let i = keys[name] else {
                throw DataError("\(file):\(n + 1)", "no sample '\(name)' in the folder")
            }
            if let prev = lineOf[i] {
                throw DataError("\(file):\(n + 1)", "'\(name)' already has a label on line \(prev)")
            }
            labels[i] = label
            lineOf[i] = n + 1
        }
        return entries.enumerated().map { i, e in Entry(id: e.id, files: e.files, label: labels[i]) }
    }
}
