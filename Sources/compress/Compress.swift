import ArgumentParser
import Foundation
import ModelIR
import Runtime

@main
struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Measure and shrink trained neural networks (ONNX) for deployment.",
        discussion: """
        Exit status: 0 success; 1 the model or data is bad or the operation failed; 3 a budget \
        or quality gate (--max-gmacs, …) was not met (the report is still printed); 64 usage error.
        """,
        version: versionString,
        subcommands: [Info.self, Profile.self, PruneCommand.self, QuantizeCommand.self, DistillCommand.self, FuseCommand.self, Convert.self, Run.self, Ops.self, BuildReference.self, EvalNode.self, Shapes.self]
    )

    static let versionString = "compress 0.1.0"

    /// `compress --version` is answered before ArgumentParser builds the command tree: that
    /// setup (reflection over every command, first-time protocol-conformance lookups over the
    /// binary's ~7,000 conformance records) was ~15 M instructions, most of the process.
    /// Every other command line goes through ArgumentParser as before.
    static func main() {
        if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "--version" {
            print(versionString)
            return
        }
        main(nil)
    }
}

/// Options every command that reads a model shares.
struct FormatOption: ParsableArguments {
    @Option(name: .long, help: "Output format: table (for people), json (stable schema for scripts) or csv.")
    var format: OutputFormat = .table
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, csv
}

/// A failure the user can act on: printed as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Runs `body`, turning any thrown error into a one-line message on stderr and exit status 1.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ExitCode { throw e } catch let e as CleanExit { throw e } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// `reportingErrors` for a command about `models`: a message that names no file (a model-level
/// refusal such as "nothing to quantize", an executor error naming only the node) is prefixed
/// with the model's path, so every failure names the file it is about. Messages that name a file
/// already (`ModelError`, `DataError` with a path, any starting with the model's path) or a flag
/// (`--calib DIR: …`) are left as they are.
func reportingErrors<T>(naming models: [String], _ body: () throws -> T) throws -> T {
    try reportingErrors {
        do { return try body() } catch let e as ExitCode { throw e } catch let e as CleanExit { throw e } catch {
            if error is ModelError { throw error }
            if let d = error as? DataError, !d.path.isEmpty { throw error }
            let text = "\(error)"
            if text.hasPrefix("-") || models.contains(where: { text.hasPrefix($0) }) { throw error }
            throw CLIError("\(models.joined(separator: ", ")): \(text)")
        }
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try enc.encode(value)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}
