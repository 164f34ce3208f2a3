import ArgumentParser
import Foundation
import ModelIR
import Runtime
import TensorCore

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a model over a folder of samples with the built-in executor.",
        discussion: """
        Reads the samples in order (see Docs/run.md for the folder layouts; the next ones are \
        decoded on another thread while one runs), runs each through the executor and reports, per sample, the top-k classes of every classifier \
        output (a float output of shape [B, C]); the top-1/top-k accuracy when the folder has \
        labels (labels.txt or class subfolders), measured on the first classifier output; and \
        the time per sample (mean, p50, p90). --out writes every output as OUT/<sample id>.<k>.npy \
        for graph output k (0-based).

        Examples:
          compress run model.onnx --data samples/
          compress run model.onnx --data test_sets/ --out outputs/ --format json
          compress run resnet.onnx --data val/ --size 256 --crop 224 --resize pil-bilinear \\
              --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
          compress run yolox_s.onnx --data images/ --fit letterbox --pad-position top-left --scale 1 --bgr

        Image preprocessing recipes per model family (torchvision, YOLOX, ultralytics, \
        PaddleOCR, gray digits): Docs/preprocessing.md.
        """)

    @Argument(help: "The ONNX model to run.")
    var model: String

    @OptionGroup var data: DataOptions
    @OptionGroup var inputs: InputOptions

    @Option(help: ArgumentHelp("Write every output as DIR/<sample id>.<k>.npy.", valueName: "DIR"))
    var out: String?

    @Option(name: .customLong("top-k"), help: "Classes to report per sample for classifier outputs (0: none; accuracy is then top-1 only).")
    var topK: Int = 5

    @Option(help: "Threads the kernels may use (default: every core).")
    var threads: Int?

    @OptionGroup var output: FormatOption

    func validate() throws {
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 or more") }
        if let threads, threads < 1 { throw ValidationError("--threads must be 1 or more (got \(threads))") }
    }

    func run() throws {
        try reportingErrors(naming: [model]) {
            if let threads { Parallel.setThreads(threads) }
            let m = try ModelReader.read(path: model)
            let source = try data.source(for: m.graph, pins: try inputs.pins())
            let executor = try Executor(model: m)
            var inputFiles = InputFiles()
            // A run that fails (a bad sample, an output over an input) removes the files and
            // folders it created, so a failed run leaves --out as it was; files it replaced are
            // complete new ones (each is renamed into place whole).
            let written = CreatedOutputs()
            var succeeded = false
            defer { if !succeeded { written.removeAll() } }
            if let out {
                try Run.makeFolder(out, created: written)
                inputFiles.add(model: m, path: model)
                inputFiles.add(source)
            }
            var evaluation = RunEvaluation(outputs: m.graph.outputs.map(\.name), topK: topK)
            let bar = data.progress(total: source.count, label: "run")
            defer { bar.finish() }
            // The next samples are decoded on another thread while this one runs.
            let samples = source.prefetching()
            while let sample = try samples.next() {
                let start = DispatchTime.now().uptimeNanoseconds
                let results: [String: Tensor]
                do { results = try executor.run(sample.inputs) } catch {
                    throw DataError(sample.files.count == 1 ? sample.files[0] : sample.id, "\(error)")
                }
                let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                var files: [String?] = []
                for (k, name) in evaluation.outputs.enumerated() {
                    guard let out, let t = results[name] else { files.append(nil); continue }
                    let path = (out as NSString).appendingPathComponent("\(sample.id).\(k).npy")
                    if sample.id.contains("/") { try Run.makeFolder((path as NSString).deletingLastPathComponent, created: written) }
                    // Each file is complete or absent (temporary file + rename); not fsynced one by
                    // one (360 files: 2.4 s with fsync, 0.8 s without), but all at the end.
                    try inputFiles.check(path, flag: "--out")
                    let existed = FileManager.default.fileExists(atPath: path)
                    try NPYFile.write(t, to: path, durable: false)
                    if !existed { written.files.append(path) }
                    files.append(path)
                }
                evaluation.add(sample: sample, results: results, files: files, milliseconds: ms)
                bar.advance()
            }
            bar.finish()
            // The files were renamed into place without an fsync each: one flush of the
            // filesystem makes them all durable at once.
            if let out { AtomicFile.syncFilesystem(of: URL(fileURLWithPath: out)) }
            succeeded = true
            let report = RunReport(model: model, source: source, evaluation: evaluation, outDir: out)
            switch output.format {
            case .json: try printJSON(report)
            case .table: print(report.table())
            case .csv: print(report.csv())
            }
        }
    }

    /// Creates `path` (and its parents) unless it is already a folder; records what it created.
    static func makeFolder(_ path: String, created: CreatedOutputs) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw CLIError("--out \(path): exists and is not a folder") }
            return
        }
        // The missing folders, outermost first.
        var missing: [String] = []
        var p = path
        while !p.isEmpty, p != "/", !FileManager.default.fileExists(atPath: p) {
            missing.insert(p, at: 0)
            p = (p as NSString).deletingLastPathComponent
        }
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw CLIError("--out \(path): cannot create the folder: \((error as NSError).localizedDescription)")
        }
        created.folders += missing
    }
}

/// Files and folders a command created, removed again when it fails.
final class CreatedOutputs {
    var files: [String] = []
    var folders: [String] = []

    /// Removes the files, then the folders innermost first (only while empty).
    func removeAll() {
        for f in files.reversed() { unlink(f) }
        for d in folders.reversed() { rmdir(d) }
        files = []
        folders = []
    }
}

/// The per-sample results and running totals of a `compress run`.
struct RunEvaluation {
    typealias Ranked = ClassScores.Ranked
    struct OutputResult: Encodable {
        let name: String
        let dtype: String
        let shape: [Int]
        /// The written .npy file (with --out).
        let file: String?
        /// Top-k per row for classifier outputs, nil otherwise.
        let top: [[Ranked]]?
    }
    struct SampleResult: Encodable {
        let id: String
        let files: [String]
        let label: Int?
        let ms: Double
        let outputs: [OutputResult]
    }

    let outputs: [String]
    let topK: Int
    var samples: [SampleResult] = []
    var times: [Double] = []
    /// The output accuracy is measured on: the first classifier output seen.
    var accuracyOutput: String?
    var accuracy = AccuracyCounter()

    init(outputs: [String], topK: Int) {
        self.outputs = outputs
        self.topK = topK
    }

    mutating func add(sample: Sample, results: [String: Tensor], files: [String?], milliseconds ms: Double) {
        var outs: [OutputResult] = []
        for (k, name) in outputs.enumerated() {
            guard let t = results[name] else { continue }
            let classifier = ClassScores.isClassifier(t)
            let ranked = classifier ? ClassScores.ranked(t, k: max(topK, 1)) : nil
            outs.append(OutputResult(name: name, dtype: t.dtype.name, shape: t.shape, file: files[k],
                                     top: ranked.map { rows in rows.map { Array($0.prefix(topK)) } }))
            if classifier && accuracyOutput == nil { accuracyOutput = name }
            if let label = sample.label, let ranked, name == accuracyOutput { accuracy.add(ranked, label: label) }
        }
        samples.append(SampleResult(id: sample.id, files: sample.files, label: sample.label, ms: ms, outputs: outs))
        times.append(ms)
    }
}

/// The `compress run --format json` schema (documented in Docs/run.md).
struct RunReport: Encodable {
    struct Input: Encodable { let name: String; let dtype: String; let shape: [Int] }
    struct Accuracy: Encodable {
        let output: String
        let evaluated: Int
        let top1_correct: Int
        let top1: Double
        let k: Int
        let topk_correct: Int
        let topk: Double
    }
    struct Timing: Encodable {
        let mean: Double, p50: Double, p90: Double, min: Double, max: Double, total: Double
    }

    let model: String
    let data: String
    let layout: String
    let inputs: [Input]
    let samples: Int
    let labeled: Int
    let classes: [String]?
    let top_k: Int
    let accuracy: Accuracy?
    let timing_ms: Timing
    let out_dir: String?
    let results: [RunEvaluation.SampleResult]

    init(model: String, source: DataSource, evaluation e: RunEvaluation, outDir: String?) {
        self.model = model
        data = source.directory
        layout = source.layout.rawValue
        inputs = source.inputs.map { Input(name: $0.name, dtype: $0.dtype.name, shape: $0.shape) }
        samples = e.samples.count
        labeled = e.samples.filter { $0.label != nil }.count
        classes = source.classNames.isEmpty ? nil : source.classNames
        top_k = e.topK
        if let o = e.accuracyOutput, e.accuracy.evaluated > 0 {
            let k = max(e.topK, 1)
            accuracy = Accuracy(output: o, evaluated: e.accuracy.evaluated, top1_correct: e.accuracy.top1Correct,
                                top1: Double(e.accuracy.top1Correct) / Double(e.accuracy.evaluated), k: k,
                                topk_correct: e.accuracy.topKCorrect, topk: Double(e.accuracy.topKCorrect) / Double(e.accuracy.evaluated))
        } else {
            accuracy = nil
        }
        timing_ms = RunReport.timing(e.times)
        out_dir = outDir
        results = e.samples
    }

    /// Mean, and the p-th percentiles by the nearest-rank method: the value at sorted index
    /// ⌈p/100 · n⌉ − 1 (so p50 of 4 values is the 2nd smallest; p90 of 10 is the 9th).
    static func timing(_ t: [Double]) -> Timing {
        guard !t.isEmpty else { return Timing(mean: 0, p50: 0, p90: 0, min: 0, max: 0, total: 0) }
        let s = t.sorted()
        func pct(_ p: Double) -> Double { s[Swift.max(Int((p / 100 * Double(s.count)).rounded(.up)) - 1, 0)] }
        let total = t.reduce(0, +)
        return Timing(mean: total / Double(t.count), p50: pct(50), p90: pct(90), min: s.first!, max: s.last!, total: total)
    }

    static func number(_ v: Double) -> String {
        v.isNaN ? "nan" : String(format: abs(v) >= 1e5 || (abs(v) < 1e-3 && v != 0) ? "%.4g" : "%.4f", v)
    }

    func table() -> String {
        var lines: [String] = []
        let labelsText = labeled == 0 ? "no labels" : classes != nil ? "\(labeled) labelled by class folder" : "\(labeled) labelled"
        lines.append("model    \(model)")
        lines.append("data     \(data) (\(samples) sample\(samples == 1 ? "" : "s"), \(layout.replacingOccurrences(of: "_", with: " ")), \(labelsText))")
        lines.append("inputs   " + inputs.map { "\($0.name) \($0.dtype)[\($0.shape.map(String.init).joined(separator: "x"))]" }.joined(separator: ", "))
        lines.append("")
        let classifierNames = results.first?.outputs.filter { $0.top != nil }.map(\.name) ?? []
        if top_k > 0 && !classifierNames.isEmpty {
            var headers = ["sample"]
            if labeled > 0 { headers.append("label") }
            headers += classifierNames.map { "\($0) top-\(top_k) (class score)" }
            headers.append("ms")
            var t = TextTable(headers, rightAligned: Set(labeled > 0 ? [1, headers.count - 1] : [headers.count - 1]))
            for r in results {
                let rows = r.outputs.compactMap(\.top).map(\.count).max() ?? 1
                for row in 0..<rows {
                    var cells = [rows == 1 ? r.id : "\(r.id)[\(row)]"]
                    if labeled > 0 { cells.append(r.label.map(String.init) ?? "-") }
                    for name in classifierNames {
                        let top = r.outputs.first { $0.name == name }?.top
                        cells.append(top.flatMap { row < $0.count ? $0[row] : nil }.map { $0.map { "\($0.class) \(RunReport.number($0.score))" }.joined(separator: ", ") } ?? "-")
                    }
                    cells.append(String(format: "%.3f", r.ms))
                    t.add(cells)
                }
            }
            lines.append(t.render())
            lines.append("")
        } else if classifierNames.isEmpty, let first = results.first {
            lines.append("outputs  " + first.outputs.map { "\($0.name) \($0.dtype)[\($0.shape.map(String.init).joined(separator: "x"))]" }.joined(separator: ", "))
        }
        if let a = accuracy {
            var s = String(format: "accuracy (%@): top-1 %.4f (%d/%d)", a.output, a.top1, a.top1_correct, a.evaluated)
            if a.k > 1 { s += String(format: ", top-%d %.4f (%d/%d)", a.k, a.topk, a.topk_correct, a.evaluated) }
            lines.append(s)
        } else if labeled > 0 {
            lines.append("accuracy: not measured (no output of shape [B, C] with C ≥ 2)")
        }
        lines.append(String(format: "time per sample: mean %.3f ms, p50 %.3f ms, p90 %.3f ms (%d sample%@, %.1f ms total)",
                            timing_ms.mean, timing_ms.p50, timing_ms.p90, samples, samples == 1 ? "" : "s", timing_ms.total))
        if let out_dir {
            let n = results.reduce(0) { $0 + $1.outputs.filter { $0.file != nil }.count }
            lines.append("outputs  \(n) .npy file\(n == 1 ? "" : "s") in \(out_dir)")
        }
        return lines.joined(separator: "\n")
    }

    /// One line per sample, output row and rank: `id,label,ms,output,row,rank,class,score`
    /// (output fields empty for samples without a classifier output).
    func csv() -> String {
        func q(_ s: String) -> String { s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        var lines = ["id,label,ms,output,row,rank,class,score"]
        for r in results {
            let head = [q(r.id), r.label.map(String.init) ?? "", String(format: "%.4f", r.ms)].joined(separator: ",")
            var any = false
            for o in r.outputs {
                guard let top = o.top else { continue }
                for (row, ranked) in top.enumerated() {
                    for (rank, c) in ranked.enumerated() {
                        lines.append([head, q(o.name), String(row), String(rank + 1), String(c.class), "\(c.score)"].joined(separator: ","))
                        any = true
                    }
                }
            }
            if !any { lines.append(head + ",,,,,") }
        }
        return lines.joined(separator: "\n")
    }
}
