import ArgumentParser
import ModelIR
import Runtime

/// `--data DIR`, the image preprocessing flags and `--quiet`: what a command that evaluates a
/// model over a folder of samples shares (`@OptionGroup var data: DataOptions`). Commands that
/// name their folder differently (`quantize --calib DIR`) take `PreprocessOptions` directly.
struct DataOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Folder of samples: .npy/.pb files, PNG/JPEG images, class subfolders or ONNX test_data_set_N folders.", valueName: "DIR"))
    var data: String

    @OptionGroup(title: "Image preprocessing")
    var preprocess: PreprocessOptions

    @Flag(help: "No progress bar on stderr (it is shown only when stderr is a terminal).")
    var quiet = false

    /// The samples of `--data` for `graph`, listed (not yet read).
    func source(for graph: Graph, pins: [String: [Int]]) throws -> DataSource {
        try DataSource(directory: data, graph: graph, pins: pins, preprocessing: try preprocess.preprocessing())
    }

    /// A progress bar for `total` steps, shown only on a terminal and without `--quiet`.
    func progress(total: Int, label: String) -> ProgressBar {
        ProgressBar(total: total, label: label, enabled: !quiet && ProgressBar.stderrIsTerminal)
    }
}
