import ArgumentParser
import Foundation
import ModelIR

/// Writes one of the built-in reference architectures (for benchmarks and interop tests).
struct BuildReference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build-reference",
        abstract: "Write a reference architecture (torchvision layout, random weights) as ONNX.",
        discussion: "Architectures: " + ReferenceArchitecture.allCases.map(\.rawValue).joined(separator: ", "),
        shouldDisplay: false)

    @Argument(help: "Architecture name.")
    var architecture: String

    @Option(name: .shortAndLong, help: "Where to write the model.")
    var output: String

    @Option(help: "Random seed for the weights.")
    var seed: UInt64 = 0

    @Flag(help: "Leave weights zero (faster; enough for profiling).")
    var zeroWeights = false

    @Option(name: .customLong("batch-norm"),
            help: "kept (Conv → BatchNormalization) or folded (Conv with bias, as an eval-mode torch.onnx.export writes it); default: folded for the export-style models (mobilenet_v3_*, efficientnet_b0), kept for the others.")
    var batchNorm: ReferenceArchitecture.BatchNorm?

    func run() throws {
        try reportingErrors {
            guard let arch = ReferenceArchitecture(rawValue: architecture) else {
                throw CLIError("unknown architecture '\(architecture)'; known: " + ReferenceArchitecture.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let m = arch.build(randomWeights: !zeroWeights, seed: seed, batchNorm: batchNorm)
            try ModelWriter.write(m, to: URL(fileURLWithPath: output))
        }
    }
}

extension ReferenceArchitecture.BatchNorm: ExpressibleByArgument {}
