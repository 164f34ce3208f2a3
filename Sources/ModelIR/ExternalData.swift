import Foundation
import TensorCore

/// Resolves ONNX external data (`data_location = EXTERNAL`, keys `location`, `offset`, `length`)
/// to tensor storage borrowed from a memory map of the side file.
///
/// A location must stay inside the model's folder: absolute paths, `..` components that climb
/// out of it, and symlinks that resolve outside it are rejected (ONNX's own checker rejects the
/// same; a model file must not make a tool read arbitrary files).
final class ExternalDataResolver {
    let directory: URL
    let modelPath: String
    private var maps: [String: MappedFile] = [:]
    private(set) var usedFiles: [String] = []

    init(directory: URL, modelPath: String) {
        self.directory = directory
        self.modelPath = modelPath
    }

    struct Reference {
        var location: String
        var offset: Int
        var length: Int?
    }

    static func parse(_ entries: [(String, String)], tensor: String, path: String) throws -> Reference {
        var location: String?
        var offset = 0
        var length: Int?
        for (k, v) in entries {
            switch k {
            case "location": location = v
            case "offset":
                guard let o = Int(v), o >= 0 else { throw ModelError(path, "tensor '\(tensor)': external data offset '\(v)' is not a non-negative integer") }
                offset = o
            case "length":
                guard let l = Int(v), l >= 0 else { throw ModelError(path, "tensor '\(tensor)': external data length '\(v)' is not a non-negative integer") }
                length = l
            default: break  // "checksum" and others carry no layout
            }
        }
        guard let loc = location, !loc.isEmpty else { throw ModelError(path, "tensor '\(tensor)': external data has no 'location'") }
        return Reference(location: loc, offset: offset, length: length)
    }

    /// Checks `location` against the model folder and returns the file's URL.
    func safeURL(_ location: String, tensor: String) throws -> URL {
        if location.hasPrefix("/") || location.hasPrefix("\\") || location.contains(":") && location.first?.isLetter == true && location.dropFirst().first == ":" {
            throw ModelError(modelPath, "tensor '\(tensor)': external data location '\(location)' is absolute; it must be relative to the model's folder")
        }
        var depth = 0
        for part in location.split(whereSeparator: { $0 == "/" || $0 == "\\" }) {
            if part == ".." { depth -= 1 } else if part != "." { depth += 1 }
            if depth < 0 { throw ModelError(modelPath, "tensor '\(tensor)': external data location '\(location)' escapes the model's folder") }
        }
        // Standardized ("a/./b" and "a/../b" spelled out) so one file is mapped once.
        let url = directory.appendingPathComponent(location).standardizedFileURL
        let root = directory.resolvingSymlinksInPath().standardizedFileURL.path
        let resolved = url.resolvingSymlinksInPath().standardizedFileURL.path
        let prefix = root.hasSuffix("/") ? root : root + "/"
        guard resolved.hasPrefix(prefix) else {
            throw ModelError(modelPath, "tensor '\(tensor)': external data location '\(location)' resolves outside the model's folder (through a symlink)")
        }
        return url
    }

    /// The file must exist and be a regular file with one link: a device or FIFO (`/dev/zero`
    /// reached through a link inside the folder) is not data, and a hard link may be another
    /// name of a file outside the folder, which no path check can see (onnx's checker refuses
    /// hard links to external data for the same reason, CVE-2024-27318).
    func checkFile(_ url: URL, location: String, tensor: String) throws {
        var st = stat()
        guard stat(url.path, &st) == 0 else {
            if errno == ENOENT || errno == ENOTDIR {
                throw ModelError(modelPath, "tensor '\(tensor)': external data file '\(location)' not found")
            }
            throw ModelError(modelPath, "tensor '\(tensor)': external data file '\(location)': \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            let what = st.st_mode & S_IFMT == S_IFDIR ? "is a directory" : "is not a regular file (a device, FIFO or socket)"
            throw ModelError(modelPath, "tensor '\(tensor)': external data location '\(location)' \(what)")
        }
        guard st.st_nlink <= 1 else {
            throw ModelError(modelPath, "tensor '\(tensor)': external data file '\(location)' has \(st.st_nlink) hard links; a hard link may lead outside the model's folder, so it is refused (copy the file instead)")
        }
    }

    /// Storage for `byteCount` bytes of tensor `tensor` described by `ref`.
    func storage(_ ref: Reference, tensor: String, byteCount: Int) throws -> TensorStorage {
        let url = try safeURL(ref.location, tensor: tensor)
        let map: MappedFile
        if let m = maps[url.path] {
            map = m
        } else {
            try checkFile(url, location: ref.location, tensor: tensor)
            do { map = try MappedFile(path: url.path) } catch { throw ModelError(modelPath, "tensor '\(tensor)': \(error)") }
            maps[url.path] = map
            usedFiles.append(ref.location)
        }
        if let l = ref.length, l != byteCount {
            throw ModelError(modelPath, "tensor '\(tensor)': external data length \(l) does not match its dims and type (\(byteCount) bytes)")
        }
        guard ref.offset <= map.count, byteCount <= map.count - ref.offset else {
            throw ModelError(modelPath, "tensor '\(tensor)': external data range \(ref.offset)+\(byteCount) lies past the end of '\(ref.location)' (\(map.count) bytes)")
        }
        if byteCount == 0 { return TensorStorage(byteCount: 0) }
        return TensorStorage(borrowing: map.base! + ref.offset, byteCount: byteCount, owner: map)
    }
}
