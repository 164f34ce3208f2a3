import Foundation

/// Crash-safe file replacement: bytes go to a temporary file in the destination folder, are
/// flushed, and the file is renamed over the destination, so a reader sees the old file or the
/// new one, never half of one.
public enum AtomicFile {
    /// A temporary path beside `url` (same folder, so rename stays within one filesystem).
    public static func temporaryURL(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }

    /// - Parameter durable: flush the bytes to disk before the rename (fsync), so the new file
    ///   survives a power loss too. Without it the replacement is still all-or-nothing for a
    ///   crashed or killed process, which is what many small result files (`compress run --out`)
    ///   need, at a fraction of the cost.
    public static func write(_ data: Data, to url: URL, durable: Bool = true) throws {
        let tmp = temporaryURL(for: url)
        do {
            try writeFully(data, to: tmp, reportingAs: url, durable: durable)
            try commit(tmp, to: url)
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw error
        }
    }

    /// Writes `data` to `url` (a new file) and flushes it to disk. Errors name `shown` (the
    /// destination the user asked for) rather than the temporary file.
    static func writeFully(_ data: Data, to url: URL, reportingAs shown: URL? = nil, durable: Bool = true) throws {
        let name = (shown ?? url).path
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ModelError(name, "cannot create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ModelError(name, "write failed: \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }
        guard !durable || fsync(fd) == 0 else { throw ModelError(name, "fsync failed: \(String(cString: strerror(errno)))") }
    }

    /// Renames a finished temporary file into place.
    static func commit(_ tmp: URL, to url: URL) throws {
        guard rename(tmp.path, url.path) == 0 else {
            throw ModelError(url.path, "cannot move the finished file into place: \(String(cString: strerror(errno)))")
        }
    }
}
