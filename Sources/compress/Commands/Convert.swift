import ArgumentParser
import Foundation
import ModelIR
import Passes

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Re-save a model, moving weights to or from an external-data file.",
        discussion: """
        The round trip is lossless: operators, functions, metadata, doc strings and subgraphs the \
        tool does not model are written back unchanged. By default every tensor is written inline \
        (and external data is used automatically past protobuf's 2 GiB limit). With \
        --external-data, initializers stored as raw_data of at least --external-threshold bytes \
        move to one side file at 64-byte aligned offsets; tensors stored in typed fields stay \
        inline. The input model and its own external-data files are never modified unless \
        --force names them as the output. --opset 13 raises the default-domain opset (from 7 or \
        later) to 13, rewriting exactly each operator whose signature changed \
        (Squeeze/Unsqueeze/Split/ReduceSum attributes to inputs, Softmax's 2-D coercion, Upsample to Resize, …); \
        other domains keep their opsets. See Docs/convert.md.

        Examples:
          compress convert model.onnx -o copy.onnx
          compress convert big.onnx -o out.onnx --external-data          # weights to out.onnx.data
          compress convert out.onnx -o inline.onnx --inline
          compress convert old.onnx -o new.onnx --opset 13                # opset 11 → 13
        """)

    @Argument(help: "The ONNX model to read (never modified).")
    var model: String

    @Option(name: .shortAndLong, help: "Where to write the model.")
    var output: String

    @Flag(help: "Write initializers of at least --external-threshold bytes to OUTPUT.data.")
    var externalData = false

    @Option(help: "Smallest tensor, in bytes, moved to the external-data file.")
    var externalThreshold: Int = 1024

    @Option(help: "Name of the external-data file, relative to the output's folder (default: OUTPUT's file name + .data).")
    var externalLocation: String?

    @Flag(help: "Write every tensor inline (the default; stated for scripts).")
    var inline = false

    @Option(help: ArgumentHelp("Raise the default-domain opset to this version (only 13 is supported; a model already at 13 or later is unchanged).", valueName: "N"))
    var opset: Int?

    @Flag(help: "Allow OUTPUT (or its external-data file) to be the input model or one of its external-data files.")
    var force = false

    func validate() throws {
        if externalData && inline { throw ValidationError("--external-data and --inline contradict each other") }
        if let opset, opset != 13 { throw ValidationError("--opset \(opset): only 13 is supported") }
        if externalThreshold < 0 { throw ValidationError("--external-threshold must be ≥ 0") }
        if let loc = externalLocation, loc.hasPrefix("/") || loc.contains("..") || loc.contains("/") {
            throw ValidationError("--external-location must be a plain file name beside the output")
        }
    }

    func run() throws {
        try reportingErrors {
            try OutputPath.check(output, input: model, force: force)
            var m = try ModelReader.read(path: model)
            if opset != nil {
                do { try OpsetUpgrade.upgrade(&m) } catch let e as OpsetUpgrade.Refusal { throw CLIError("\(model): \(e.message)") }
            }
            // The input's own external-data files are part of the input: never replaced unasked.
            let inputFiles = [model] + m.externalDataFiles.map { loc in
                (m.directory ?? URL(fileURLWithPath: model).deletingLastPathComponent()).appendingPathComponent(loc).path
            }
            var written = [output]
            let layout: ModelWriter.DataLayout = externalData ? .external(location: externalLocation, threshold: externalThreshold) : .inline
            if case .external = layout {
                let loc = externalLocation ?? (URL(fileURLWithPath: output).lastPathComponent + ".data")
                written.append(URL(fileURLWithPath: output).deletingLastPathComponent().appendingPathComponent(loc).path)
            }
            for path in written {
                try OutputPath.check(path, input: model, force: force)
                if !force, let data = inputFiles.dropFirst().first(where: { OutputPath.sameFile(path, $0) }) {
                    throw CLIError("\(path): is the input model's external-data file '\(data)'; writing over it needs --force")
                }
            }
            try ModelWriter.write(m, to: URL(fileURLWithPath: output), layout: layout)
        }
    }
}

/// Checks on an output path made before any work: its folder exists, and it is not the input.
enum OutputPath {
    static func check(_ output: String, input: String, force: Bool) throws {
        let out = URL(fileURLWithPath: output)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDir), isDir.boolValue {
            throw CLIError("\(output): is a directory; -o takes a file path")
        }
        let dir = out.deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw CLIError("\(output): folder '\(dir)' does not exist")
        }
        if !force && sameFile(output, input) {
            throw CLIError("\(output): is the input model; writing over it needs --force")
        }
    }

    static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else {
            return URL(fileURLWithPath: a).standardizedFileURL.path == URL(fileURLWithPath: b).standardizedFileURL.path
        }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}
