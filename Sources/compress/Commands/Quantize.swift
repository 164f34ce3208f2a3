import ArgumentParser
import Foundation
import ModelIR
import Quantize
import Runtime
import TensorCore

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Post-training static int8 quantization to QDQ, calibrated on a folder of samples.",
        discussion: """
        The model is first rewritten as it is deployed (BatchNormalization folded into the \
        convolutions, Constant nodes lifted, Identity nodes removed), then run over --calib \
        through the executor's hooks to find each activation's range, and written with \
        QuantizeLinear → DequantizeLinear pairs that ONNX Runtime runs and TensorRT takes for \
        explicit quantization (--quant-format qoperator: integer operators instead). The ops \
        quantized are those of ONNX Runtime's QDQ registry (Conv, ConvTranspose, Gemm, MatMul, \
        Add, Mul, Concat, pooling, Resize, Sigmoid, HardSwish, Softmax, pass-through reshapes). Weights: int8 symmetric per output channel in [−127, 127] (axis 0 \
        for Conv; per-channel needs opset 13: an older model, from opset 7, is first raised to 13 \
        exactly, as `compress convert --opset 13` does, and the report says so). Activations: int8 symmetric by default (zero point 0, TensorRT-compatible) or \
        uint8 with a zero point (--asymmetric). Bias: int32 with scale = input scale × weight \
        scale. Calibration: minmax is non-saturating (the threshold is the largest |x| seen); \
        percentile, entropy (TensorRT's KL divergence over a 2048-bin histogram, 128 levels) and \
        mse are saturating (a threshold below it; values beyond are clipped). \
        The report compares the float and quantized models' outputs on the calibration samples \
        (output SQNR, top-1 agreement). See Docs/quantize.md.

        Examples:
          compress quantize model.onnx --calib calib/ -o model.int8.onnx
          compress quantize model.onnx --calib calib/ -o q.onnx --method entropy
          compress quantize model.onnx --calib calib/ -o q.onnx --asymmetric --per-tensor --max-samples 64
          compress quantize model.onnx --calib calib/ -o q.onnx --quant-format qoperator --asymmetric --reduce-range
          compress quantize mobilenet.onnx --calib calib/ -o q.onnx --equalize --bias-correction --per-tensor
          compress quantize model.onnx --calib images/ -o q.onnx --size 256 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
          compress quantize model.onnx --calib calib/ -o q.onnx --eval val/ --plot sqnr.svg --format csv
          compress quantize model.onnx --calib part1/ -o q.onnx --save-stats part1.json   (one per machine, then:)
          compress quantize model.onnx --stats part1.json part2.json -o q.onnx --method entropy --eval val/
          compress quantize model.onnx --calib calib/ -o q.onnx --mixed-precision --target-sqnr 40
        """)

    @Argument(help: "The ONNX model to quantize (never modified).")
    var model: String

    @Option(name: .shortAndLong, help: "Where to write the quantized model.")
    var output: String

    @Option(help: ArgumentHelp("Calibration samples: .npy/.pb files, images, class subfolders or test_data_set_N folders (optional with --stats).", valueName: "DIR"))
    var calib: String?

    @Option(help: "Calibration: minmax (non-saturating: the threshold is the largest |x|), or saturating (a threshold below it, values beyond clipped): percentile, entropy (TensorRT's KL), mse, mean-minmax (the mean of each sample's min and max, NNCF's default).")
    var method: CalibrationMethod = .minmax

    @Option(help: "With --method percentile: the percentile of |x| kept.")
    var percentile: Double = 99.999

    @Option(help: "Histogram bins of the saturating methods.")
    var bins: Int = 2048

    @Flag(name: .customLong("per-tensor"), help: "One weight scale per tensor instead of one per output channel.")
    var perTensor = false

    @Flag(help: "Activations as uint8 with a zero point instead of symmetric int8.")
    var asymmetric = false

    @Option(parsing: .singleValue, help: ArgumentHelp("Leave nodes matching this pattern (* and ? wildcards) in float; repeatable.", valueName: "PATTERN"))
    var exclude: [String] = []

    @Option(name: .customLong("max-samples"), help: "Use at most N calibration samples.")
    var maxSamples: Int = 256

    @Option(name: .customLong("min-sqnr"), help: ArgumentHelp("Quality gate: when the output SQNR (dB, quantized vs float on the samples) is below this, print the report, write nothing (unless --force) and exit 3.", valueName: "DB"))
    var minSQNR: Double?

    @Option(name: .customLong("trt-cache"), help: ArgumentHelp("Also write a TensorRT calibration cache of the activation scales.", valueName: "FILE"))
    var trtCache: String?

    @Option(name: .customLong("ncnn-table"), help: ArgumentHelp("Also write an ncnn int8 table of the activation thresholds (ncnn's scale = 127 / threshold).", valueName: "FILE"))
    var ncnnTable: String?

    // MARK: formats and rewrites (qops)
    @Option(name: .customLong("quant-format"), help: ArgumentHelp("qdq: QuantizeLinear → DequantizeLinear pairs around float ops (ONNX Runtime, TensorRT); qoperator: integer operators (QLinearConv, QLinearMatMul; com.microsoft QGemm, QLinearAdd, QLinearMul, QLinearConcat, QLinearGlobalAveragePool, …). (--format is the report's format.)", valueName: "qdq|qoperator"))
    var quantFormat: QuantFormat = .qdq

    @Flag(name: .customLong("reduce-range"), help: "Weights in 7 bits ([−64, 64], ONNX Runtime's reduce_range): avoids the saturation of the U8S8 kernels on x86 CPUs without VNNI.")
    var reduceRange = false

    @Flag(help: "Cross-layer equalization (Nagel et al. 2019) of Conv → (Relu) → Conv pairs before calibration: per-channel weight ranges balanced, the float function unchanged. Helps depthwise (MobileNet-style) layers whose channel ranges differ widely.")
    var equalize = false

    @Option(name: .customLong("equalized-model"), help: ArgumentHelp("With --equalize: also write the equalized float model (for another toolchain's quantizer).", valueName: "FILE"))
    var equalizedModel: String?

    @Option(name: .customLong("op-types"), help: ArgumentHelp("Quantize only these operator types (comma-separated; default all: Conv, ConvTranspose, Gemm, MatMul, Add, Mul, Concat, GlobalAveragePool, Sigmoid, HardSigmoid, HardSwish, LeakyRelu, Softmax and the pass-through Reshape, Transpose, Squeeze, Unsqueeze, Flatten, MaxPool, AveragePool, Resize), as ONNX Runtime's op_types_to_quantize.", valueName: "OPS"))
    var opTypes: String?

    @Flag(name: .customLong("quantize-epilogues"), help: "Also quantize the activation functions a Conv/Gemm/MatMul feeds (SiLU's Sigmoid and Mul, HardSwish, HardSigmoid, LeakyRelu, Sigmoid) at their inputs, as ONNX Runtime's quantize_static does. By default they stay in float as the layer's fused epilogue, like a Relu (TensorRT fuses them; fewer rounding points).")
    var quantizeEpilogues = false

    @Flag(name: .customLong("bias-correction"), help: "Subtract each int8 weight's expected output shift, (W_q − W)·E[x] per output channel with E[x] the input's channel means on --calib, from the bias (Conv, ConvTranspose, Gemm; one more pass over the samples).")
    var biasCorrection = false

    @Flag(help: "Allow -o to name the input model; with --min-sqnr, write even when the gate fails.")
    var force = false

    @Flag(help: "No progress bar on stderr (it is shown only when stderr is a terminal).")
    var quiet = false

    // MARK: calibration and report (qfid)
    @Option(name: .customLong("save-stats"), help: ArgumentHelp("Also write the merged calibration statistics (min, max and |x| histogram per activation; JSON, schema compress.quantize-stats/1) for a later --stats.", valueName: "FILE"))
    var saveStats: String?

    @Option(name: .customLong("stats"), parsing: .upToNextOption, help: ArgumentHelp("Quantize from saved statistics files (merged; with --calib, merged with its samples' too), e.g. one per machine.", valueName: "FILE"))
    var statsFiles: [String] = []

    @Option(help: ArgumentHelp("Measure the quality report on these samples instead of the calibration samples (labels from class subfolders give accuracy).", valueName: "DIR"))
    var eval: String?

    @Option(name: .customLong("max-eval"), help: "Use at most N samples of --eval.")
    var maxEval: Int = 256

    @Option(help: ArgumentHelp("Draw the per-layer QDQ SQNR in graph order, with each activation's range and threshold, as SVG.", valueName: "FILE.svg"))
    var plot: String?

    @Flag(name: .customLong("mixed-precision"), help: "Keep the most sensitive quantized nodes in float until the output SQNR reaches --target-sqnr (measured on the report's samples).")
    var mixedPrecision = false

    @Option(name: .customLong("target-sqnr"), help: ArgumentHelp("With --mixed-precision: the end-to-end output SQNR to reach.", valueName: "DB"))
    var targetSQNR: Double?
    // (end of qfid block)

    @OptionGroup(title: "Image preprocessing") var preprocess: PreprocessOptions
    @OptionGroup var inputs: InputOptions
    @OptionGroup var format: FormatOption

    func validate() throws {
        if maxSamples < 1 { throw ValidationError("--max-samples must be ≥ 1") }
        if !(percentile > 0 && percentile <= 100) { throw ValidationError("--percentile \(percentile): must be in (0, 100]") }
        if bins < 256 || bins & (bins - 1) != 0 { throw ValidationError("--bins \(bins): must be a power of two ≥ 256 (entropy merges into 128 levels; power-of-two histograms merge exactly)") }
        try validateCalibrationAndReport()
    }

    func run() throws {
        try reportingErrors(naming: [model]) {
            try OutputPath.check(output, input: model, force: force)
            if let equalizedModel { try OutputPath.check(equalizedModel, input: model, force: force) }
            let pins = try inputs.pins()
            var m = try ModelReader.read(path: model)
            var options = QuantizeOptions()
            options.perChannel = !perTensor
            options.symmetricActivations = !asymmetric
            options.exclude = exclude
            options.quantizeEpilogues = quantizeEpilogues
            options.format = quantFormat
            options.reduceRange = reduceRange
            options.equalize = equalize
            options.biasCorrection = biasCorrection
            if let opTypes {
                let list = opTypes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                if let bad = list.first(where: { !QuantizeOptions.allOps.contains($0) }) {
                    throw CLIError("--op-types: '\(bad)' is not an operator compress quantizes (\(QuantizeOptions.allOps.sorted().joined(separator: ", ")))")
                }
                guard !list.isEmpty else { throw CLIError("--op-types: empty list") }
                options.ops = Set(list)
            }
            if equalizedModel != nil && !equalize { throw CLIError("--equalized-model needs --equalize") }
            let raisedFrom = try Quantizer.raiseOpsetIfNeeded(&m, options: options)
            // Every output against every input (device and inode) and against each other.
            var inputFiles = InputFiles()
            inputFiles.add(model: m, path: model)
            let preprocessing = try preprocess.preprocessing()
            let calibSource = try calib.map { try DataSource(directory: $0, graph: m.graph, pins: pins, preprocessing: preprocessing) }
            let evalSource = try eval.map { try DataSource(directory: $0, graph: m.graph, pins: pins, preprocessing: preprocessing) }
            for source in [calibSource, evalSource].compactMap({ $0 }) { inputFiles.add(source) }
            for path in statsFiles { inputFiles.add(path, what: "--stats") }
            try inputFiles.check(output, flag: "-o", force: force)
            let sideOutputs: [(flag: String, path: String?)] = [("--trt-cache", trtCache), ("--ncnn-table", ncnnTable), ("--save-stats", saveStats),
                                                                 ("--plot", plot), ("--equalized-model", equalizedModel)]
            for (flag, path) in sideOutputs { if let path { try inputFiles.check(path, flag: flag) } }
            try InputFiles.checkDistinct([("-o", output)] + sideOutputs)
            let prepared = try Quantizer.prepare(m, options: options)
            // Calibration (one streamed pass, statistics merged with --stats files), the bias
            // correction's pass, the quantized model, and the quality report on --eval or the
            // calibration samples (QuantizeCalibration.swift).
            let cal = try calibrate(calibSource, prepared: prepared)
            var means: [Int: BiasCorrection.InputMeans] = [:]
            if biasCorrection {
                guard let source = cal.source else { throw CLIError("--bias-correction needs --calib samples (not only --stats)") }
                means = try Quantizer.inputMeans(prepared.model, nodes: prepared.nodes, samples: { body in
                    let loader = source.prefetching(cal.entries)
                    while let s = try loader.next() { try body(s.inputs) }
                })
            }
            var (q, summary) = try Quantizer.write(prepared.model, nodes: prepared.nodes, calibration: cal.calibrator, options: options, inputMeans: means)
            let quality = try measureQuality(evalSource, prepared: prepared, cal: cal, options: options, inputMeans: means, quantized: &q, summary: &summary)
            let agreement = quality.output
            let gateFailed = minSQNR.map { limit in (agreement.sqnrDB ?? .infinity) < limit } ?? false
            if !gateFailed || force {
                // TensorRT takes symmetric scales: the model's own when activations are symmetric.
                let scales = Dictionary(uniqueKeysWithValues: summary.activations.map { a in
                    (a.name, asymmetric ? Float(Double(max(abs(a.min), abs(a.max))) / 127) : a.scale)
                })
                let thresholds = Dictionary(uniqueKeysWithValues: summary.activations.map { ($0.name, max(abs($0.min), abs($0.max))) })
                // The side files are written (unseen) before the models and put in place after
                // them: a side file that cannot be written (no such folder, no permission) fails
                // the command before any model exists, so a failed run leaves nothing.
                var sideFiles: [(flag: String, file: AtomicFile.Pending)] = []
                var committed = false
                defer { if !committed { for s in sideFiles { s.file.abandon() } } }
                for (flag, path, text) in [("--trt-cache", trtCache, CalibrationExport.tensorRTCache(scales)), ("--ncnn-table", ncnnTable, CalibrationExport.ncnnTable(thresholds))] {
                    guard let path else { continue }
                    do {
                        let file = try AtomicFile.Pending(for: URL(fileURLWithPath: path))
                        sideFiles.append((flag, file))
                        try file.write(Data(text.utf8))
                    } catch { throw CLIError("\(flag) \(path): cannot write (\(error))") }
                }
                var models: [String] = []
                do {
                    if let equalizedModel {
                        try ModelWriter.write(prepared.model, to: URL(fileURLWithPath: equalizedModel))
                        models.append(equalizedModel)
                    }
                    try ModelWriter.write(q, to: URL(fileURLWithPath: output))
                    models.append(output)
                    for s in sideFiles {
                        do { try s.file.commit() } catch { throw CLIError("\(s.flag) \(s.file.destination.path): cannot write (\(error))") }
                    }
                    committed = true
                } catch {
                    // Take back the models this run wrote (the command failed as a whole).
                    for m in models { unlink(m) }
                    throw error
                }
            }
            let report = QuantizeReport(model: model, output: output, method: method.rawValue, per_channel: !perTensor,
                                        activations: asymmetric ? "uint8 asymmetric" : "int8 symmetric", summary: summary,
                                        output_sqnr_db: agreement.sqnrDB, top1_agreement: agreement.agreement, quality: quality.report,
                                        opset_raised_from: raisedFrom)
            try writePlot(summary: summary, quality: quality)
            switch format.format {
            case .json: try printJSON(report)
            case .table: print(report.table())
            case .csv: print(report.csv(), terminator: "")
            }
            if gateFailed, let minSQNR {
                let got = agreement.sqnrDB.map { String(format: "%.2f dB", $0) } ?? "∞"
                FileHandle.standardError.write(Data("quality gate failed: --min-sqnr \(minSQNR) dB (output SQNR \(got))\(force ? "; written anyway (--force)" : "; nothing written")\n".utf8))
                throw ExitCode(3)
            }
        }
    }
}

/// The `compress quantize --format json` schema (`compress.quantize/1`, Docs/quantize.md).
struct QuantizeReport: Encodable {
    var schema = "compress.quantize/1"
    let model: String
    let output: String
    let method: String
    let per_channel: Bool
    let activations: String
    let summary: QuantizeSummary
    /// 10·log10(Σ float² / Σ (float − quantized)²) over every output on the calibration samples.
    let output_sqnr_db: Double?
    let top1_agreement: Double?
    /// The report's samples and the other end-to-end figures (QuantizeCalibration.swift).
    let quality: QualityReport
    /// The model's default-domain opset when quantize raised it to 13 (per-channel QDQ); nil otherwise.
    var opset_raised_from: Int? = nil

    func table() -> String {
        var out = ["model      \(model) -> \(output)",
                   "method     \(method), weights int8 \(per_channel ? "per channel" : "per tensor"), activations \(activations)",
                   "quantized  \(summary.nodes.count) nodes, \(summary.weights) weights, \(summary.activations.count) activations, \(summary.samples) calibration samples"]
        if let from = opset_raised_from {
            out.append("opset      raised from \(from) to 13 (per-channel DequantizeLinear needs 13; every changed op rewritten exactly)")
        }
        var t = TextTable(["activation", "min", "max", "scale", "zero point", "SQNR dB"], rightAligned: [1, 2, 3, 4, 5])
        for a in summary.activations {
            t.add([a.name, String(format: "%.5g", a.min), String(format: "%.5g", a.max), String(format: "%.5g", a.scale), String(a.zero_point),
                   a.sqnr_db.map { String(format: "%.1f", $0) } ?? "∞"])
        }
        out.append("")
        out.append(t.render())
        out.append("")
        out.append(contentsOf: quality.lines(outputSQNR: output_sqnr_db, top1: top1_agreement))
        return out.joined(separator: "\n")
    }
}
extension CalibrationMethod: ExpressibleByArgument {}
extension QuantFormat: ExpressibleByArgument {}
