import ArgumentParser
import Runtime

/// `--input NAME=DIMS` (repeatable): concrete shapes for a model's dynamic inputs. Shared by
/// every command that runs or sizes a model (`@OptionGroup var inputs: InputOptions`).
struct InputOptions: ParsableArguments {
    @Option(name: .customLong("input"), parsing: .singleValue,
            help: ArgumentHelp("Pin an input's shape, e.g. input=1x3x224x224 (repeatable). Without it a dynamic batch is 1 and any other dynamic dimension is an error.",
                               valueName: "NAME=DIMS"))
    var specs: [String] = []

    func validate() throws {
        do { _ = try InputShapes.parse(specs) } catch { throw ValidationError("\(error)") }
    }

    /// The pins by input name (`InputShapes.parse`).
    func pins() throws -> [String: [Int]] { try InputShapes.parse(specs) }
}
