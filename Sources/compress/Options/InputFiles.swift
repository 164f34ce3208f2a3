import Foundation
import ModelIR
import Runtime

/// Every file a command reads, by device and inode, so that no output replaces one of them:
/// a path check alone misses `./m.onnx` vs `m.onnx`, symlinks and hard links. Models (and their
/// external-data files) may be written over with `--force` where a command offers it (the
/// writer replaces the file by rename, so the run that reads it is unaffected); data files,
/// ratio files and the like never.
struct InputFiles {
    struct FileID: Hashable { let device: UInt64; let inode: UInt64 }

    private var files: [FileID: (path: String, what: String, forceable: Bool)] = [:]

    static func id(_ path: String) -> FileID? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// Adds one file (a path that does not exist is ignored: nothing can be written over it).
    mutating func add(_ path: String, what: String, forceable: Bool = false) {
        guard let id = Self.id(path), files[id] == nil else { return }
        files[id] = (path, what, forceable)
    }

    /// A model file and the external-data files it read.
    mutating func add(model: Model, path: String) {
        add(path, what: "the input model", forceable: true)
        let dir = model.directory ?? URL(fileURLWithPath: path).deletingLastPathComponent()
        for loc in model.externalDataFiles {
            add(dir.appendingPathComponent(loc).path, what: "an external-data file of the input model", forceable: true)
        }
    }

    /// Every sample file of a data folder.
    mutating func add(_ source: DataSource) {
        for e in source.entries { for f in e.files { add(f, what: "a sample of --data/--calib") } }
    }

    /// Refuses `output` when it is one of the inputs (unless it is a model and `force`).
    /// - Parameter flag: how the user named the output (`-o`, `--plot`, …), for the message.
    func check(_ output: String, flag: String, force: Bool = false) throws {
        guard let id = Self.id(output), let input = files[id] else { return }
        if force && input.forceable { return }
        let hint = input.forceable ? "; writing over it needs --force" : "; choose another output file"
        throw CLIError("\(flag) \(output): is \(input.what) '\(input.path)'\(hint)")
    }

    /// Refuses two outputs that name the same file (the second would replace the first).
    static func checkDistinct(_ outputs: [(flag: String, path: String?)]) throws {
        var seen: [String: String] = [:]
        var seenIDs: [FileID: String] = [:]
        for (flag, path) in outputs {
            guard let path else { continue }
            let key = URL(fileURLWithPath: path).standardizedFileURL.path
            if let other = seen[key] ?? Self.id(path).flatMap({ seenIDs[$0] }) {
                throw CLIError("\(flag) \(path): is also the file of \(other); give each output its own file")
            }
            seen[key] = flag
            if let id = Self.id(path) { seenIDs[id] = flag }
        }
    }
}
