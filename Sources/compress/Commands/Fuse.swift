import ArgumentParser
import Foundation
import Fuse
import ModelIR
import Profile
import Runtime
import TensorCore

struct FuseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuse",
        abstract: "Fold layers the way deploying runtimes do (BN folding, RepVGG merging, constant folding), verified.",
        discussion: """
        The passes are the ones compress's executor plans with (one implementation of each \
        rewrite) and a few more, applied once each in order: ConstantToInitializer, \
        IdentityElimination (Identity, inference Dropout), ConstantFolding (with the executor's \
        kernels; Shape arithmetic too when every input shape is fixed or pinned with --input), \
        ReshapeTransposeElimination, BatchNormIntoConv, BatchNormIntoConvTranspose, \
        BatchNormIntoGemm (Gemm, MatMul with a constant weight), RepVGGMerge, MulAddIntoConv, \
        CommonSubexpressionElimination, BatchNormToMulAdd (a BN nothing absorbed), PadIntoConv, DeadCodeElimination. Weights are \
        computed in Double and rounded once. Choose with --passes / --skip. \
        The model before and after is run on --data or on seeded random inputs (--samples) and \
        every output compared; beyond --rtol/--atol nothing is written (unless --force) and the \
        exit status is 3. The report gives the passes with their counts, the nodes a guard left \
        alone (and why), nodes before → after and memory traffic before → after (profile's \
        figures). See Docs/fuse.md.

        Examples:
          compress fuse model.onnx -o fused.onnx
          compress fuse model.onnx -o fused.onnx --skip PadIntoConv --samples 8
          compress fuse model.onnx -o fused.onnx --data val/ --rtol 1e-5 --format json
        """)

    @Argument(help: "The ONNX model (never modified).") var model: String
    @Option(name: .shortAndLong, help: "Where to write the fused model.") var output: String
    @Option(parsing: .singleValue, help: ArgumentHelp("Apply only these passes (repeatable; names as listed in the help).", valueName: "PASS")) var passes: [String] = []
    @Option(parsing: .singleValue, help: ArgumentHelp("Do not apply this pass (repeatable).", valueName: "PASS")) var skip: [String] = []
    @Option(help: ArgumentHelp("Verify on this folder's samples instead of random inputs.", valueName: "DIR")) var data: String?
    @Option(help: "Samples to verify on (default: 1 seeded random sample; with --data its first 4).") var samples: Int?
    @Option(help: "Seed of the random samples.") var seed: UInt64 = 0
    @Option(help: "Relative tolerance of the verification: |a − b| ≤ atol + rtol·|a|.") var rtol: Double = 1e-4
    @Option(help: "Absolute tolerance of the verification.") var atol: Double = 1e-5
    @Flag(help: "Write even when verification fails; allow -o to name the input.") var force = false
    @OptionGroup var inputs: InputOptions
    @OptionGroup var format: FormatOption

    func validate() throws {
        if let samples, samples < 1 { throw ValidationError("--samples must be ≥ 1") }
        if !(rtol >= 0) || !(atol >= 0) { throw ValidationError("--rtol and --atol must be ≥ 0") }
    }

    struct Report: Encodable {
        var schema = "compress.fuse/1"
        let model: String
        let output: String?
        let passes: [Fuser.Applied]
        let left_alone: [Fuser.LeftAlone]
        let nodes_before: Int
        let nodes_after: Int
        let traffic_bytes_before: Int
        let traffic_bytes_after: Int
        let verification_samples: Int
        let rtol: Double
        let atol: Double
        let outputs: [Fuser.OutputCheck]
        let verified: Bool
    }

    func run() throws {
        try reportingErrors(naming: [model]) {
            try OutputPath.check(output, input: model, force: force)
            let pins = try inputs.pins()
            let m = try ModelReader.read(path: model)
            var inputFiles = InputFiles()
            inputFiles.add(model: m, path: model)
            let result = try Fuser.fuse(m, passes: passes.isEmpty ? nil : passes, skip: skip, pins: pins)
            let fused = result.model, applied = result.applied
            let source = try data.map { try DataSource(directory: $0, graph: m.graph, pins: pins) }
            if let source { inputFiles.add(source) }
            try inputFiles.check(output, flag: "-o", force: force)
            // The output is written and flushed (fsync) on a thread of its own while both graphs
            // run; it is put in place only once verification passed (or with --force), and
            // dropped otherwise: until then it is an unnamed temporary file (see AtomicFile).
            let writing = ModelWriter.BackgroundWrite(fused, to: URL(fileURLWithPath: output))
            var settled = false
            defer { if !settled { writing.abandon() } }
            let feeds: [[String: Tensor]]
            if let data, let source {
                feeds = try source.entries.prefix(samples ?? 4).map { e in
                    try source.load(e).inputs  // (its errors name the file)
                }
                guard !feeds.isEmpty else { throw CLIError("--data \(data): no samples found") }
            } else {
                do { feeds = try Fuser.randomSamples(m, pins: pins, count: samples ?? 1, seed: seed) } catch { throw CLIError("\(model): \(error)") }
            }
            let checks: [Fuser.OutputCheck]
            do { checks = try Fuser.verify(m, fused, samples: feeds, rtol: rtol, atol: atol) } catch let e as DataError { throw e } catch {
                throw CLIError("\(model): \(error)")
            }
            let ok = checks.allSatisfy(\.within)
            let before = try ModelProfile(model: m, pins: pins).totals, after = try ModelProfile(model: fused, pins: pins).totals
            settled = true
            if ok || force { try writing.commit() } else { writing.abandon() }
            let report = Report(model: model, output: ok || force ? output : nil, passes: applied, left_alone: result.leftAlone, nodes_before: m.graph.nodes.count,
                                nodes_after: fused.graph.nodes.count, traffic_bytes_before: before.trafficBytes,
                                traffic_bytes_after: after.trafficBytes, verification_samples: feeds.count, rtol: rtol, atol: atol,
                                outputs: checks, verified: ok)
            switch format.format {
            case .json: try printJSON(report)
            case .table, .csv:
                var out = ["model      \(model) -> " + (report.output ?? "(not written)"),
                           "passes     " + applied.map { "\($0.pass) \($0.rewrites)" }.joined(separator: ", "),
                           "nodes      \(report.nodes_before) → \(report.nodes_after)",
                           "left alone " + (result.leftAlone.isEmpty ? "none" : result.leftAlone.map { "\($0.node) (\($0.reason))" }.joined(separator: ", ")),
                           "traffic    \(Units.bytes(Double(report.traffic_bytes_before))) → \(Units.bytes(Double(report.traffic_bytes_after)))",
                           "verified   on \(feeds.count) \(data == nil ? "random" : "data") samples (rtol \(rtol), atol \(atol)): " + (ok ? "equal" : "DIFFERENT")]
                for c in checks { out.append(String(format: "  %@: max |diff| %.3g, relative to its scale %.3g%@", c.name, c.max_abs, c.max_rel, c.within ? "" : "  (beyond tolerance)")) }
                print(out.joined(separator: "\n"))
            }
            if !ok {
                FileHandle.standardError.write(Data("verification failed: outputs differ beyond rtol \(rtol) / atol \(atol)\(force ? "; written anyway (--force)" : "; nothing written")\n".utf8))
                throw ExitCode(3)
            }
        }
    }
}
