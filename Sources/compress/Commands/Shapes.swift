import ArgumentParser
import Foundation
import ModelIR
import Runtime

/// Developer command: prints the type of every value `ShapeInference` resolves for a model,
/// without running it.
///
/// Output (JSON, keys sorted): `{VALUE: {"dtype": "float", "shape": [1, 3, 224, 224]}, …,
/// "unresolved": [[NODE, REASON], …]}` — one entry per graph input, initializer and node output
/// whose type was inferred (non-strict mode: a node that cannot be inferred is listed under
/// "unresolved" and inference goes on). dtype names are ONNX's (`tensor(float)` → "float").
/// Used by Tests/Interop/test_shape_inference.py to compare with ONNX Runtime's shapes.
/// Hidden from help.
struct Shapes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "_shapes",
        abstract: "Print the inferred type of every value of a model as JSON (developer tool).",
        discussion: """
        Example:
          compress _shapes model.onnx --input images=1x3x416x416
        """,
        shouldDisplay: false)

    @Argument(help: "The ONNX model.")
    var model: String

    @OptionGroup var inputs: InputOptions

    func run() throws {
        try reportingErrors {
            let m = try ModelReader.read(path: model)
            let inference = try ShapeInference(model: m, pins: try inputs.pins(), strict: false)
            try printJSON(ShapesReport(inference))
        }
    }
}

/// The `compress _shapes` schema: value names as keys, plus the reserved key "unresolved".
struct ShapesReport: Encodable {
    struct Entry: Encodable { let dtype: String; let shape: [Int] }
    let types: [String: Entry]
    let unresolved: [[String]]

    init(_ inference: ShapeInference) {
        types = inference.types.mapValues { Entry(dtype: $0.dtype.onnxName, shape: $0.shape) }
        unresolved = inference.unresolved.map { [$0.node, $0.reason] }
    }

    private struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for (name, entry) in types where name != "unresolved" { try c.encode(entry, forKey: Key(stringValue: name)) }
        try c.encode(unresolved, forKey: Key(stringValue: "unresolved"))
    }
}
