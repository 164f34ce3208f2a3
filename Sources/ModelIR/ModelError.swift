import Foundation

/// Why a model could not be read or written. Every case renders as one line that names the
/// file (and the tensor, node or value) and what is wrong.
public struct ModelError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) { self.path = path; self.message = message }

    /// `path: message` on one line: names taken from a model may hold line breaks or other
    /// control characters, which are shown escaped (`\n`, `\u{1B}`) so a message never spans
    /// lines or drives the terminal.
    public var description: String { ModelError.oneLine(path.isEmpty ? message : "\(path): \(message)") }

    /// `s` with control characters escaped (also used by the data layer's `DataError`).
    public static func oneLine(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            if u.properties.generalCategory == .control {
                switch u {
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default: out += "\\u{\(String(u.value, radix: 16, uppercase: true))}"
                }
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
