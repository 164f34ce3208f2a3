import Foundation

/// Crash-safe file replacement: bytes go to a temporary file in the destination folder, are
/// flushed (fsync), the file is renamed over the destination and the folder is flushed, so a
/// reader sees the old file or the new one, never half of one, and the new one survives a
/// power loss once the call returns.
///
/// The temporary file is created unnamed where the filesystem allows (Linux `O_TMPFILE`: ext4,
/// xfs, btrfs, tmpfs) and given a name only just before the rename, so a process killed while
/// writing leaves nothing behind; elsewhere it is a named `.NAME.tmp-PID-RANDOM` beside the
/// destination, created with `O_EXCL` (never an old file reused or appended to).
public enum AtomicFile {
    /// A temporary path beside `url` (same folder, so rename stays within one filesystem).
    public static func temporaryURL(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }

    /// - Parameter durable: flush the bytes to disk before the rename (fsync) and the folder
    ///   after it, so the new file survives a power loss too. Without it the replacement is
    ///   still all-or-nothing for a crashed or killed process, which is what many small result
    ///   files (`compress run --out`, flushed together at the end with `syncFilesystem`) need,
    ///   at a fraction of the cost.
    public static func write(_ data: Data, to url: URL, durable: Bool = true) throws {
        let file = try Pending(for: url)
        do {
            try file.write(data)
            try file.commit(durable: durable)
        } catch {
            file.abandon()
            throw error
        }
    }

    /// A file being written for `destination`: `write` as often as needed, then `commit` (or
    /// `abandon`). Errors name the destination, never the temporary file.
    public final class Pending {
        public let destination: URL
        private var fd: Int32
        /// The named temporary file, when the filesystem has no unnamed ones.
        private var named: URL?

        public init(for destination: URL) throws {
            self.destination = destination
            let folder = destination.deletingLastPathComponent().path
            // TEST ONLY: COMPRESS_TEST_NAMED_TEMPORARIES=1 takes the path of filesystems without
            // O_TMPFILE, so the tests exercise it on any machine.
            let forceNamed = getenv("COMPRESS_TEST_NAMED_TEMPORARIES") != nil
            fd = forceNamed ? -1 : open(folder, O_WRONLY | AtomicFile.oTmpFile | O_CLOEXEC, 0o644)
            if fd < 0 {
                // No O_TMPFILE here (EOPNOTSUPP; overlayfs before Linux 6.6): a named, fresh file.
                AtomicFile.removeStaleTemporaries(for: destination)
                let tmp = AtomicFile.temporaryURL(for: destination)
                fd = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw ModelError(destination.path, "cannot create: \(String(cString: strerror(errno)))") }
                named = tmp
            }
        }

        deinit { if fd >= 0 { close(fd) } }

        /// Appends `data`.
        public func write(_ data: Data) throws {
            try data.withUnsafeBytes { try write($0) }
        }

        public func write(_ buf: UnsafeRawBufferPointer) throws {
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ModelError(destination.path, "write failed: \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }

        /// Whether `flush` has put the bytes written so far on disk.
        private var flushed = false

        /// Puts the bytes written so far on disk (fsync) without moving the file into place, so
        /// the flush can overlap other work (`compress fuse` verifies meanwhile); `commit` then
        /// only renames and flushes the folder. Write nothing after it.
        public func flush() throws {
            guard fsync(fd) == 0 else {
                throw ModelError(destination.path, "fsync failed: \(String(cString: strerror(errno)))")
            }
            flushed = true
        }

        /// Flushes the bytes (when `durable`, unless `flush` did), renames the file into place and
        /// flushes the folder.
        public func commit(durable: Bool = true) throws {
            if durable && !flushed { try flush() }
            pauseBeforeRenameForTests()
            let tmp: URL
            if let named {
                tmp = named
            } else {
                // Give the unnamed file a temporary name, then rename it over the destination
                // (linkat cannot replace an existing file).
                let t = AtomicFile.temporaryURL(for: destination)
                guard linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, t.path, AT_SYMLINK_FOLLOW) == 0 else {
                    throw ModelError(destination.path, "cannot create: \(String(cString: strerror(errno)))")
                }
                named = t
                tmp = t
            }
            close(fd)
            fd = -1
            guard rename(tmp.path, destination.path) == 0 else {
                throw ModelError(destination.path, "cannot move the finished file into place: \(String(cString: strerror(errno)))")
            }
            named = nil
            if durable { syncFolder(of: destination) }
        }

        /// Drops the file (nothing of it stays on disk).
        public func abandon() {
            if fd >= 0 { close(fd); fd = -1 }
            if let named { unlink(named.path) }
            named = nil
        }
    }

    /// Removes `.NAME.tmp-PID-*` files beside `url` left by a process that was killed while
    /// writing (only where temporaries have names): those whose PID no longer runs.
    static func removeStaleTemporaries(for url: URL) {
        let prefix = ".\(url.lastPathComponent).tmp-"
        let folder = url.deletingLastPathComponent()
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return }
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder.appendingPathComponent(name).path) }
        }
    }

    /// fsync of the folder holding `url`. Best effort: a filesystem that cannot sync a folder
    /// (some network and FUSE mounts answer EINVAL) still has the file, renamed in place.
    static func syncFolder(of url: URL) {
        let fd = open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// Flushes the filesystem holding `folder` (syncfs): one flush for many files renamed into
    /// place without an fsync each (`compress run --out`). Best effort, like `syncFolder`.
    public static func syncFilesystem(of folder: URL) {
        let fd = open(folder.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        if let syncfs = syncfsFunction { _ = syncfs(fd) } else { _ = fsync(fd) }
        close(fd)
    }

    /// Linux's `O_TMPFILE` (`__O_TMPFILE | O_DIRECTORY`; the macro is not imported into Swift):
    /// `__O_TMPFILE` is 020000000 on x86-64 and arm64 (asm-generic/fcntl.h).
    static let oTmpFile: Int32 = 0o20000000 | O_DIRECTORY

    /// glibc's `syncfs` (declared only under _GNU_SOURCE, so looked up at run time).
    static let syncfsFunction: (@convention(c) (Int32) -> Int32)? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syncfs") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) (Int32) -> Int32).self)
    }()

    /// TEST ONLY: `COMPRESS_TEST_PAUSE_BEFORE_RENAME=SECONDS` makes every writer print
    /// `compress-test: pausing before rename` on stderr and sleep that long between the finished
    /// temporary file and its rename, so a test can kill the process at exactly the step where
    /// a half-done write would show (Tests/Interop/test_hardening.py). Not a user option; unset,
    /// it costs one getenv per written file.
    static func pauseBeforeRenameForTests() {
        guard let v = getenv("COMPRESS_TEST_PAUSE_BEFORE_RENAME"), let seconds = Double(String(cString: v)), seconds > 0 else { return }
        FileHandle.standardError.write(Data("compress-test: pausing before rename\n".utf8))
        usleep(UInt32(min(seconds, 60) * 1_000_000))
    }
}
