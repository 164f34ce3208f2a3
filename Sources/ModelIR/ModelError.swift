import Foundation

/// Why a model could not be read or written. Every case renders as one line that names the
/// file (and the tensor, node or value) and what is wrong.
public struct ModelError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}
