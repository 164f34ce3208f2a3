import ModelIR

/// Why a data file or folder could not be used. Renders as one line that names the file (or
/// folder) first and then the cause, e.g.
/// `data/x.npy: dtype int64 cannot feed input 'input' (float32): integer data for a float input`.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) { self.path = path; self.message = message }
    /// One line: text quoted from a file (a .npy header, a file name) may hold line breaks or
    /// other control characters, shown escaped as in `ModelError` (found by the npy fuzzer).
    public var description: String { ModelError.oneLine(path.isEmpty ? message : "\(path): \(message)") }
}
