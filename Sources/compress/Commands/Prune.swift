import ArgumentParser
import Foundation
import ModelIR
import Profile
import Prune
import Runtime
import TensorCore

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove whole output channels (structured pruning) directly on the ONNX graph.",
        discussion: """
        Channels are grouped by a dependency analysis: a convolution's filters with the next \
        layer's input channels, with the BatchNormalization, activations, pooling and depthwise \
        convolutions they pass through, across residual Add/Mul branches and Concat offsets, and \
        into a Gemm's columns after Flatten. A group is removed together or not at all; a group \
        the analysis cannot prove safe (a Reshape or Transpose of the channel axis, a graph output, \
        an op it does not model) is left whole and listed with the reason. The written model is a \
        smaller dense model: it runs faster on ordinary hardware without sparse kernels.

        Importance of a channel: l1 = Σ|w| and l2 = √Σw² of its filter, fpgm = Σ of distances to \
        the layer's other filters (closest to the geometric median goes first), slim = |γ| of the \
        BatchNormalization after it (needs BN kept in the export). A group's importance is the mean \
        of its members' mean-normalized importances. Removed per group: floor(C·ratio), or one \
        ranking over all groups with --global. Parameters and MACs before and after are a recount \
        of the written model. See Docs/prune.md.

        Examples:
          compress prune model.onnx -o small.onnx --method fpgm --ratio 0.3
          compress prune model.onnx -o small.onnx --method slim --ratio 0.4 --global --round-to 8
          compress prune model.onnx -o small.onnx --method l1 --target-macs 0.5
          compress prune model.onnx -o small.onnx --method l1 --target-macs 0.5 --ratios sensitivity-ratios.txt
          compress prune model.onnx --method l2 --ratio 0.5 --dry-run --format json
          compress prune model.onnx -o small.onnx --method l1 --ratios ratios.txt --exclude 'head/*'
          compress prune model.onnx -o small.onnx --method fpgm --ratio 0.3 --calib calib/
          compress prune model.onnx --method l1 --sensitivity --data val/ --emit-ratios r.txt --max-drop 0.01 --plot s.svg
        """)

    @Argument(help: "The ONNX model to prune (never modified).")
    var model: String

    @Option(name: .shortAndLong, help: "Where to write the pruned model (not needed with --dry-run).")
    var output: String?

    @Option(help: "Importance criterion: l1, l2, fpgm or slim.")
    var method: PruneCriterion

    @Option(help: "Fraction of each group's channels to remove, in [0, 1).")
    var ratio: Double?

    @Option(name: .customLong("target-macs"), help: "Instead of --ratio: search the ratio that keeps at most this fraction of the MACs, in (0, 1]; with --ratios FILE, one factor scaling every group's ratio.")
    var targetMACs: Double?

    @Flag(help: "Rank channels across all groups (one threshold) instead of removing --ratio from each group.")
    var global = false

    @Option(name: .customLong("round-to"), help: "Keep a multiple of N channels in each group (rounded up).")
    var roundTo: Int = 1

    @Option(name: .customLong("min-channels"), help: "Never keep fewer than N channels in a group.")
    var minChannels: Int = 1

    @Option(parsing: .singleValue, help: ArgumentHelp("Leave groups with a node matching this pattern (* and ? wildcards) whole; repeatable.", valueName: "PATTERN"))
    var exclude: [String] = []

    @Option(help: ArgumentHelp("Per-group ratios: lines 'GROUP RATIO' (GROUP is the producing node's name) or a JSON object; others use --ratio (default 0). With --sensitivity: the ratios to sweep, e.g. 0.1,0.2,0.3 (default 0.1 to 0.9).", valueName: "FILE|LIST"))
    var ratios: String?

    @Flag(help: "Measure instead of pruning: prune each group alone at each ratio and compare the outputs with the unpruned model's on --data (agreement, output SQNR, accuracy with labels).")
    var sensitivity = false

    @Option(help: ArgumentHelp("Samples for --sensitivity (a folder as for `compress run`).", valueName: "DIR"))
    var data: String?

    @Option(name: .customLong("max-samples"), help: "Use at most N samples of --data.")
    var maxSamples: Int = 64

    @Option(name: .customLong("emit-ratios"), help: ArgumentHelp("With --sensitivity: write per group the largest ratio within --max-drop (for --ratios).", valueName: "FILE"))
    var emitRatios: String?

    @Option(name: .customLong("max-drop"), help: "With --emit-ratios: the largest accuracy drop (labels) or disagreement with the unpruned model allowed, as a fraction.")
    var maxDrop: Double = 0.01

    @Option(name: .customLong("min-sqnr"), help: "With --emit-ratios, for models whose output is not a classifier: the lowest output SQNR in dB allowed.")
    var minSQNR: Double = 20

    @Option(help: ArgumentHelp("With --sensitivity: draw the sweep as an SVG chart.", valueName: "FILE.svg"))
    var plot: String?

    @Option(help: ArgumentHelp("Repair from data without training: re-estimate BatchNormalization statistics on the pruned model, or where BN was folded give each remaining channel of the layers that lost inputs the mean and deviation it had before pruning. A folder of samples as for `compress run`.", valueName: "DIR"))
    var calib: String?

    @Flag(help: "With --calib: first refit each layer that lost input channels so its output on the samples matches the unpruned layer's: ridge least squares pulled towards its pruned weights, the strength chosen per layer by 4-fold cross-validation (He et al. 2017; ThiNet). Refit layers get no moment correction afterwards.")
    var reconstruct = false

    @Option(name: .customLong("calib-samples"), help: "Use at most N samples of --calib.")
    var calibSamples: Int = 256

    @Option(name: .customLong("calib-rounds"), help: "Measure-and-correct rounds of --calib (a layer k steps behind the first corrected one is exact after k rounds; 0: none, e.g. with --reconstruct alone).")
    var calibRounds: Int = 2

    @OptionGroup(title: "Image preprocessing (--calib)")
    var preprocess: PreprocessOptions

    @Flag(help: "No progress bar on stderr (it is shown only when stderr is a terminal).")
    var quiet = false

    @Option(help: "Roofline estimate before and after on this device (a `compress profile --list-devices` preset): shows when a smaller model is not a faster one.")
    var device: String?

    @Flag(help: "Measure the executor's latency before and after (median of --measure-runs runs on zero inputs).")
    var measure = false

    @Option(name: .customLong("measure-runs"), help: "Runs per model for --measure.")
    var measureRuns: Int = 20

    @Flag(name: .customLong("dry-run"), help: "Print the plan and the before/after counts; write nothing.")
    var dryRun = false

    @Flag(help: "Allow -o to name the input model.")
    var force = false

    @OptionGroup var inputs: InputOptions

    @OptionGroup var format: FormatOption

    func validate() throws {
        if sensitivity {
            guard data != nil else { throw ValidationError("--sensitivity needs --data DIR") }
            if ratio != nil || targetMACs != nil || output != nil || calib != nil {
                throw ValidationError("--sensitivity measures and writes no model: drop -o, --ratio, --target-macs and --calib")
            }
            if let r = ratios { _ = try Self.sweepRatios(r) }
            if maxSamples < 1 { throw ValidationError("--max-samples must be ≥ 1") }
            if !(maxDrop >= 0 && maxDrop < 1) { throw ValidationError("--max-drop \(maxDrop): must be in [0, 1)") }
            if let plot, !plot.lowercased().hasSuffix(".svg") { throw ValidationError("--plot writes SVG; give a FILE.svg") }
            return
        }
        if emitRatios != nil || plot != nil || data != nil { throw ValidationError("--emit-ratios, --plot and --data go with --sensitivity") }
        if let r = ratio, !(r >= 0 && r < 1) { throw ValidationError("--ratio \(r): must be in [0, 1)") }
        if let t = targetMACs, !(t > 0 && t <= 1) { throw ValidationError("--target-macs \(t): must be in (0, 1]") }
        if ratio != nil && targetMACs != nil { throw ValidationError("--ratio and --target-macs contradict each other: give one") }
        if ratio == nil && targetMACs == nil && ratios == nil { throw ValidationError("give --ratio R, --target-macs F or --ratios FILE") }
        if global && ratios != nil { throw ValidationError("--global ranks every group's channels together; it does not combine with per-group --ratios") }
        if roundTo < 1 { throw ValidationError("--round-to must be ≥ 1") }
        if minChannels < 1 { throw ValidationError("--min-channels must be ≥ 1") }
        if output == nil && !dryRun { throw ValidationError("give -o OUT (or --dry-run to only print the plan)") }
        if calibSamples < 1 { throw ValidationError("--calib-samples must be ≥ 1") }
        if reconstruct && calib == nil { throw ValidationError("--reconstruct needs --calib DIR (the samples it fits on)") }
        if measureRuns < 1 { throw ValidationError("--measure-runs must be ≥ 1") }
        if let device, DevicePresets.named(device) == nil {
            throw ValidationError("--device '\(device)': unknown; `compress profile --list-devices` lists the presets")
        }
        if calibRounds < 0 { throw ValidationError("--calib-rounds must be ≥ 0 (0: no statistics correction, e.g. --reconstruct alone)") }
    }

    /// `--ratios 0.1,0.2,…` in sensitivity mode.
    static func sweepRatios(_ text: String) throws -> [Double] {
        let parts = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! > 0 && $0! < 1 }) else {
            throw ValidationError("--ratios '\(text)': with --sensitivity, a comma-separated list of ratios in (0, 1), e.g. 0.1,0.3,0.5")
        }
        return parts.map { $0! }.sorted()
    }

    func runSensitivity() throws {
        let pins = try inputs.pins()
        let m = try ModelReader.read(path: model)
        let folder = data!
        let source = try DataSource(directory: folder, graph: m.graph, pins: pins, preprocessing: try preprocess.preprocessing())
        var inputFiles = InputFiles()
        inputFiles.add(model: m, path: model)
        inputFiles.add(source)
        if let emitRatios { try inputFiles.check(emitRatios, flag: "--emit-ratios") }
        if let plot { try inputFiles.check(plot, flag: "--plot") }
        try InputFiles.checkDistinct([("--emit-ratios", emitRatios), ("--plot", plot)])
        let entries = Array(source.entries.prefix(maxSamples))
        guard !entries.isEmpty else { throw CLIError("--data \(folder): no samples found") }
        let samples: [Sensitivity.Sample] = try entries.map { e in
            let s = try source.load(e)  // (its errors name the file)
            return (s.inputs, s.label)
        }
        let sweep = try ratios.map(Self.sweepRatios) ?? [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
        let groups = try ChannelGroupAnalysis(model: m, pins: pins).prunable.count
        let bar = ProgressBar(total: groups * sweep.count, label: "sensitivity", enabled: !quiet && ProgressBar.stderrIsTerminal)
        defer { bar.finish() }
        var report = try Sensitivity.sweep(m, path: model, criterion: method, ratios: sweep, samples: samples, pins: pins,
                                           progress: { bar.advance() })
        bar.finish()
        if let emitRatios {
            let (chosen, rule) = report.ratios(maxDrop: maxDrop, minSQNR: minSQNR)
            report.emitted = chosen
            report.rule = rule
            let text = "# compress prune --sensitivity: largest ratio per group with \(rule) (\(report.samples) samples, \(method.rawValue))\n"
                + chosen.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "\n") + "\n"
            do { try AtomicFile.write(Data(text.utf8), to: URL(fileURLWithPath: emitRatios)) } catch {
                throw CLIError("--emit-ratios \(emitRatios): cannot write (\(error))")
            }
        }
        if let plot {
            do { try AtomicFile.write(Data(SensitivityChart(report: report).svg().utf8), to: URL(fileURLWithPath: plot)) } catch {
                throw CLIError("--plot \(plot): cannot write (\(error))")
            }
        }
        switch format.format {
        case .json: try printJSON(report)
        case .table: print(PruneTable.sensitivity(report))
        case .csv: print(PruneTable.sensitivityCSV(report))
        }
    }

    func run() throws {
        if sensitivity { return try reportingErrors(naming: [model]) { try runSensitivity() } }
        try reportingErrors(naming: [model]) {
            if let output { try OutputPath.check(output, input: model, force: force) }
            let pins = try inputs.pins()
            let m = try ModelReader.read(path: model)
            var options = PruneOptions(criterion: method, ratio: ratio ?? 0, global: global, roundTo: roundTo,
                                       minChannels: minChannels, exclude: exclude, ratios: try ratios.map(Self.readRatios) ?? [:])
            if let targetMACs {
                let found = try Pruner.options(keepingMACs: targetMACs, m, options: options, pins: pins)
                options = found.options
                if found.kept > targetMACs + 1e-9 {
                    FileHandle.standardError.write(Data(String(format: "warning: --target-macs %g: the closest reachable keeps %.4g of the MACs\n", targetMACs, found.kept).utf8))
                }
            }
            var result = try Pruner.prune(m, path: model, options: options, pins: pins)
            var report = result.report
            if let calib { report.repair = try repair(&result, original: m, folder: calib, pins: pins) }
            if device != nil || measure {
                var speed = PruneSpeed()
                if let device, let d = DevicePresets.named(device) {
                    speed.estimate(result.before, result.after, settings: RooflineSettings(device: d, precision: nil))
                }
                if measure {
                    do { speed.measured_ms_before = try PruneSpeed.measure(m, pins: pins, runs: measureRuns) } catch { throw CLIError("\(model): \(error)") }
                    speed.measured_ms_after = try PruneSpeed.measure(result.model, pins: pins, runs: measureRuns)
                    speed.runs = measureRuns
                    speed.threads = Parallel.threads
                }
                report.speed = speed
            }
            if let output, !dryRun {
                var inputFiles = InputFiles()
                inputFiles.add(model: m, path: model)
                if let ratios, FileManager.default.fileExists(atPath: ratios) { inputFiles.add(ratios, what: "the --ratios file") }
                if let calib { inputFiles.add(try DataSource(directory: calib, graph: m.graph, pins: pins)) }
                try inputFiles.check(output, flag: "-o", force: force)
                try ModelWriter.write(result.model, to: URL(fileURLWithPath: output))
                report.output = output
            }
            for w in report.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
            switch format.format {
            case .json: try printJSON(report)
            case .table: print(PruneTable.table(report, targetMACs: targetMACs))
            case .csv: print(PruneTable.csv(report))
            }
        }
    }

    /// Runs `PruneRepair` over `--calib`, with accuracy before and after when the folder has labels.
    func repair(_ result: inout Pruner.Result, original: Model, folder: String, pins: [String: [Int]]) throws -> PruneReport.Repair {
        let source = try DataSource(directory: folder, graph: original.graph, pins: pins, preprocessing: try preprocess.preprocessing())
        let entries = Array(source.entries.prefix(calibSamples))
        guard !entries.isEmpty else { throw CLIError("--calib \(folder): no samples found") }
        let labelled = entries.filter { $0.label != nil }
        let evaluate = labelled.count == entries.count && result.model.graph.outputs.count >= 1
        let rounds = calibRounds
        let consumers = Set(result.plan.decisions.filter { !$0.removed.isEmpty }.flatMap { $0.group.slices.filter { $0.role == .input }.map(\.node) })
        let total = entries.count * (rounds + 1) + (evaluate ? 3 * entries.count : 0) + (reconstruct ? consumers.count * entries.count : 0)
        let bar = ProgressBar(total: total, label: "calib", enabled: !quiet && ProgressBar.stderrIsTerminal)
        defer { bar.finish() }
        // Each pass decodes the next samples on another thread while one runs.
        let samples: PruneRepair.Samples = { body in
            let loader = source.prefetching(entries)
            while let s = try loader.next() { try body(s.inputs) }
        }
        let withLabels: PruneRepair.LabelledSamples = { body in
            let loader = source.prefetching(entries)
            while let s = try loader.next() { try body(s.inputs, s.label ?? -1); bar.advance() }
        }
        let before = evaluate ? try PruneRepair.top1(original, labelled: withLabels) : nil
        let pruned = evaluate ? try PruneRepair.top1(result.model, labelled: withLabels) : nil
        let refit = reconstruct ? try PruneReconstruction.reconstruct(&result.model, original: original, plan: result.plan, samples: samples,
                                                                      progress: { bar.advance() }) : nil
        let summary = try PruneRepair.repair(&result.model, original: original, plan: result.plan, samples: samples,
                                             rounds: rounds, refit: Set(refit?.layers ?? []), progress: { bar.advance() })
        let after = evaluate ? try PruneRepair.top1(result.model, labelled: withLabels) : nil
        func rate(_ x: (correct: Int, total: Int)?) -> Double? { x.map { Double($0.correct) / Double(max($0.total, 1)) } }
        return PruneReport.Repair(folder: folder, summary: summary, reconstruction: refit, accuracy_original: rate(before),
                                  accuracy_pruned: rate(pruned), accuracy_repaired: rate(after))
    }

    /// `GROUP RATIO` lines (# comments) or a JSON object `{"GROUP": RATIO}`.
    static func readRatios(_ path: String) throws -> [String: Double] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw CLIError("\(path): cannot read the --ratios file")
        }
        var out: [String: Double] = [:]
        if text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("{") {
            guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw CLIError("\(path): not a JSON object of group → ratio")
            }
            for (k, v) in obj {
                guard let r = (v as? NSNumber)?.doubleValue else { throw CLIError("\(path): ratio of '\(k)' is not a number") }
                out[k] = r
            }
        } else {
            for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?
                    .trimmingCharacters(in: .whitespaces) ?? ""
                if line.isEmpty { continue }
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard parts.count == 2, let r = Double(parts[1]) else { throw CLIError("\(path):\(i + 1): expected 'GROUP RATIO', got '\(line)'") }
                out[String(parts[0])] = r
            }
        }
        for (k, r) in out where !(r >= 0 && r < 1) { throw CLIError("\(path): ratio \(r) of '\(k)' is outside [0, 1)") }
        return out
    }
}

extension PruneCriterion: ExpressibleByArgument {}

/// Table and CSV renderings of a `PruneReport`.
enum PruneTable {
    static func table(_ r: PruneReport, targetMACs: Double?) -> String {
        var out: [String] = []
        let how = r.global ? "global ranking" : "per group"
        out.append("model      \(r.model)" + (r.output.map { " -> \($0)" } ?? " (dry run: nothing written)"))
        out.append("method     \(r.method), ratio \(String(format: "%.4g", r.ratio)) \(how)" + (targetMACs.map { " (searched for --target-macs \($0))" } ?? ""))
        out.append("")
        var g = TextTable(["group", "channels", "removed", "members", "note"], rightAligned: [1, 2])
        for x in r.groups {
            g.add([x.label, "\(x.channels_before) → \(x.channels_after)", String(x.channels_before - x.channels_after),
                   String(x.members.count), x.skipped ?? ""])
        }
        out.append(g.render())
        if !r.unprunable.isEmpty {
            out.append("")
            out.append("left whole (\(r.unprunable.count) group\(r.unprunable.count == 1 ? "" : "s")):")
            for u in r.unprunable { out.append("  \(u.label) (\(u.channels) channels): \(u.reasons.joined(separator: "; "))") }
        }
        if !r.approximations.isEmpty {
            out.append("")
            out.append("approximations (removed channels' constant outputs not folded):")
            for a in r.approximations { out.append("  \(a)") }
        }
        out.append("")
        var l = TextTable(["layer", "op", "params", "MACs"], rightAligned: [2, 3])
        for x in r.layers {
            l.add([x.name, x.op, "\(Units.count(Double(x.params_before))) → \(Units.count(Double(x.params_after)))",
                   "\(Units.count(Double(x.macs_before))) → \(Units.count(Double(x.macs_after)))"])
        }
        out.append(l.render())
        out.append("")
        let t = r.totals
        func change(_ a: Int, _ b: Int) -> String { a == 0 ? "" : String(format: " (%+.1f%%)", 100 * (Double(b) - Double(a)) / Double(a)) }
        out.append("parameters \(Units.grouped(Int64(t.params_before))) → \(Units.grouped(Int64(t.params_after)))\(change(t.params_before, t.params_after))")
        out.append("MACs       \(Units.grouped(Int64(t.macs_before))) → \(Units.grouped(Int64(t.macs_after)))\(change(t.macs_before, t.macs_after))")
        out.append("traffic    \(Units.bytes(Double(t.traffic_bytes_before))) → \(Units.bytes(Double(t.traffic_bytes_after)))\(change(t.traffic_bytes_before, t.traffic_bytes_after))")
        if let sp = r.speed {
            if let a = sp.estimated_ms_before, let b = sp.estimated_ms_after, let d = sp.device {
                let share = { (x: Double?) in x.map { String(format: "%.0f %% memory-bound", 100 * $0) } ?? "" }
                out.append(String(format: "estimate   %.4g ms → %.4g ms on %@ (%@ → %@)", a, b, d, share(sp.memory_bound_share_before), share(sp.memory_bound_share_after)))
            }
            if let a = sp.measured_ms_before, let b = sp.measured_ms_after {
                out.append(String(format: "measured   %.4g ms → %.4g ms (%.2f×; executor, median of %d runs, %d threads)", a, b, a / max(b, 1e-9), sp.runs ?? 0, sp.threads ?? 0))
            }
        }
        if let rp = r.repair {
            out.append("")
            if rp.summary.batchnorms.isEmpty && rp.summary.layers.isEmpty {
                out.append("repair     \(rp.folder): no statistics correction" + (rp.reconstruction != nil ? " (refit layers are already fitted to the unpruned output)" : ""))
            } else {
                out.append("repair     \(rp.summary.samples) samples of \(rp.folder), \(rp.summary.rounds) rounds: BN re-estimated in \(rp.summary.batchnorms.count) layers, "
                           + "channel statistics restored in \(rp.summary.layers.count)")
            }
            if let rc = rp.reconstruction {
                let lambdas = rc.layers.compactMap { l in rc.lambdas[l].map { "\(l) \(String(format: "%g", $0))" } }.joined(separator: ", ")
                out.append("refit      \(rc.layers.count) layers by ridge least squares (cross-validated λ: \(lambdas))"
                           + (rc.skipped.isEmpty ? "" : "; left: " + rc.skipped.joined(separator: "; ")))
            }
            if let a = rp.accuracy_original, let p = rp.accuracy_pruned, let q = rp.accuracy_repaired {
                out.append(String(format: "accuracy   %.2f %% original, %.2f %% pruned, %.2f %% pruned + repaired (top-1 on the --calib samples)", 100 * a, 100 * p, 100 * q))
            }
        }
        return out.joined(separator: "\n")
    }

    static func sensitivity(_ r: SensitivityReport) -> String {
        var out = ["model      \(r.model)", "method     \(r.method), \(r.samples) samples" + (r.baseline_accuracy.map { String(format: ", unpruned top-1 accuracy %.2f %%", 100 * $0) } ?? ""), ""]
        let ratios = r.rows.first?.points.map(\.ratio) ?? []
        let measure = r.baseline_accuracy != nil ? "accuracy %" : (r.rows.first?.points.first?.agreement != nil ? "agreement %" : "SQNR dB")
        var t = TextTable(["group", "channels"] + ratios.map { String(format: "%.2g", $0) }, rightAligned: Set(1...(ratios.count + 1)))
        for row in r.rows {
            t.add([row.group, String(row.channels)] + row.points.map { p in
                if r.baseline_accuracy != nil, let a = p.accuracy { return String(format: "%.1f", 100 * a) }
                if let g = p.agreement { return String(format: "%.1f", 100 * g) }
                return p.sqnr_db.map { String(format: "%.1f", $0) } ?? "inf"
            })
        }
        out.append("\(measure) with only that group pruned at each ratio:")
        out.append(t.render())
        if let e = r.emitted, let rule = r.rule {
            out.append("")
            out.append("emitted ratios (\(rule)): " + e.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        return out.joined(separator: "\n")
    }

    static func sensitivityCSV(_ r: SensitivityReport) -> String {
        var lines = ["group,channels,ratio,channels_after,macs_after,agreement,sqnr_db,accuracy"]
        func f(_ x: Double?) -> String { x.map { String($0) } ?? "" }
        for row in r.rows {
            for p in row.points {
                lines.append("\(row.group),\(row.channels),\(p.ratio),\(p.channels_after),\(p.macs_after),\(f(p.agreement)),\(f(p.sqnr_db)),\(f(p.accuracy))")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func csv(_ r: PruneReport) -> String {
        var lines = ["section,name,before,after"]
        for g in r.groups { lines.append("group,\(g.label),\(g.channels_before),\(g.channels_after)") }
        for u in r.unprunable { lines.append("unprunable,\(u.label),\(u.channels),\(u.channels)") }
        for l in r.layers {
            lines.append("layer_params,\(l.name),\(l.params_before),\(l.params_after)")
            lines.append("layer_macs,\(l.name),\(l.macs_before),\(l.macs_after)")
        }
        let t = r.totals
        lines.append("total,params,\(t.params_before),\(t.params_after)")
        lines.append("total,macs,\(t.macs_before),\(t.macs_after)")
        lines.append("total,flops,\(t.flops_before),\(t.flops_after)")
        lines.append("total,traffic_bytes,\(t.traffic_bytes_before),\(t.traffic_bytes_after)")
        return lines.joined(separator: "\n")
    }
}
