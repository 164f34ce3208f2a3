import ArgumentParser
import Foundation
import ModelIR
import Quantize
import Runtime
import TensorCore

/// `compress quantize`'s calibration pass, statistics files, quality report, mixed precision and
/// plot (the qfid part of the command; its options are in Quantize.swift's qfid block).
extension QuantizeCommand {
    func validateCalibrationAndReport() throws {
        if calib == nil && statsFiles.isEmpty { throw ValidationError("give --calib DIR or --stats FILE…") }
        if maxEval < 1 { throw ValidationError("--max-eval must be ≥ 1") }
        if mixedPrecision != (targetSQNR != nil) { throw ValidationError("--mixed-precision and --target-sqnr DB go together") }
        if let p = plot, !p.lowercased().hasSuffix(".svg") { throw ValidationError("--plot \(p): the chart is SVG; name a .svg file") }
    }

    struct Calibrated {
        let calibrator: MinMaxCalibrator
        let stats: CalibrationStats
        /// The calibration samples (nil with --stats only) and, when the report uses them and
        /// they fit the budget, the float model's outputs on each (from the calibration pass).
        let source: DataSource?
        let entries: [DataSource.Entry]
        let references: [[Tensor]]?
    }

    /// One pass of the deployed float model over --calib, its hooks accumulating each calibrated
    /// activation's min, max and (for a saturating method, --save-stats or --stats) |x| histogram;
    /// merged with the --stats files; saved with --save-stats.
    func calibrate(_ calibSource: DataSource?, prepared: (model: Model, nodes: [Int], activations: [String])) throws -> Calibrated {
        let keepHistograms = method.needsHistogram || saveStats != nil || !statsFiles.isEmpty
        var stats = CalibrationStats(bins: keepHistograms ? bins : 0)
        var source: DataSource?
        var entries: [DataSource.Entry] = []
        var kept = ReferenceOutputs()
        if let calib, let s = calibSource {
            entries = Array(s.entries.prefix(maxSamples))
            guard !entries.isEmpty else { throw CLIError("--calib \(calib): no samples found") }
            source = s
            let exec = try Quantizer.observing(prepared.model, names: prepared.activations)
            let names = Set(prepared.activations)
            let outputs = prepared.model.graph.outputs.map(\.name)
            let keep = eval == nil
            let bar = ProgressBar(total: entries.count, label: "calibrate", enabled: !quiet && ProgressBar.stderrIsTerminal)
            let loader = s.prefetching(entries)
            // Samples run concurrently, each into its own statistics, merged in sample order:
            // the same statistics, bit for bit, as one sample after another (the histograms add
            // exactly, the sums in the same order). Load errors name the file.
            let bins = stats.bins
            try loader.forEachConcurrently(workers: loader.defaultWorkers) { _, sample in
                var one = CalibrationStats(bins: bins)
                let out = try exec.run(sample.inputs, hooks: ExecutionHooks(names: names) { name, t in one.observe(name, t) })
                one.samples = 1
                return (one, keep ? outputs.map { out[$0]! } : [])
            } consume: { (_, r: (CalibrationStats, [Tensor])) in
                try stats.merge(r.0)
                if keep { kept.keep(r.1) }
                bar.advance()
            }
            bar.finish()
        }
        for path in statsFiles {
            let other = try CalibrationStats.load(path: path)
            do { try stats.merge(other) } catch { throw CLIError("--stats \(path): \(error)") }
        }
        if let saveStats {
            do { try AtomicFile.write(try stats.encoded(), to: URL(fileURLWithPath: saveStats)) } catch {
                throw CLIError("--save-stats \(saveStats): cannot write (\(error))")
            }
        }
        if method.needsHistogram, stats.bins == 0 { throw CLIError("--method \(method.rawValue) needs histograms: the statistics were saved without them") }
        let cal: MinMaxCalibrator
        do { cal = try stats.calibrator(for: prepared.activations, method: method, percentile: percentile) } catch {
            throw CLIError("\(statsFiles.isEmpty ? "--calib" : "--stats") : \(error) (statistics of another model?)")
        }
        return Calibrated(calibrator: cal, stats: stats, source: source, entries: entries,
                          references: calib != nil && eval == nil && kept.complete ? kept.kept : nil)
    }

    struct Quality {
        var output = OutputQuality()
        var report: QualityReport
        var layers: [QuantChart.Layer] = []
    }

    /// The quality report: the quantized model (QDQ simulated) over --eval or the calibration
    /// samples, against the float model; with --mixed-precision, the search that keeps the most
    /// sensitive nodes in float (rewriting `q` and `summary`).
    func measureQuality(_ evalSource: DataSource?, prepared: (model: Model, nodes: [Int], activations: [String]), cal: Calibrated,
                        options: QuantizeOptions, inputMeans: [Int: BiasCorrection.InputMeans],
                        quantized q: inout Model, summary: inout QuantizeSummary) throws -> Quality {
        var source = cal.source, entries = cal.entries, references = cal.references
        var where_ = "calibration samples"
        if let eval, let s = evalSource {
            entries = Array(s.entries.prefix(maxEval))
            guard !entries.isEmpty else { throw CLIError("--eval \(eval): no samples found") }
            source = s
            references = nil
            where_ = "--eval \(eval)"
        }
        var quality = Quality(report: QualityReport(samples: 0, on: where_))
        guard let source else {
            quality.report.on = "none (--stats without --calib or --eval: no samples to measure on)"
            return quality
        }
        // QuantizeLinear saturates to the whole integer type ([−128, 127] even for symmetric scales).
        let range = options.symmetricActivations ? QuantRange.of(.int8, symmetric: false) : QuantRange.of(.uint8, symmetric: false)
        let outputs = prepared.model.graph.outputs.map(\.name)
        var floatExec: Executor?
        func reference(_ k: Int, _ feeds: [String: Tensor], references: [[Tensor]]?) throws -> [Tensor] {
            if let references { return references[k] }
            let out = try floatExec!.run(feeds)
            return outputs.map { out[$0]! }
        }
        // Float outputs of the report's samples are kept (within a budget) when mixed precision
        // will evaluate several candidates on them.
        var keptRefs = ReferenceOutputs()
        func evaluate(_ model: Model, summary s: QuantizeSummary, perTensor: Bool, progress: String?) throws -> QualityResult {
            let params = Dictionary(uniqueKeysWithValues: s.activations.map { ($0.name, QuantParams(scale: $0.scale, zeroPoint: $0.zero_point)) })
            let pass = try QualityPass(quantized: model, activations: params, range: range)
            var r = QualityResult()
            let bar = ProgressBar(total: entries.count, label: progress ?? "", enabled: progress != nil && !quiet && ProgressBar.stderrIsTerminal)
            defer { bar.finish() }
            let loader = source.prefetching(entries)
            if references == nil && floatExec == nil { floatExec = try Executor(model: prepared.model) }
            let refs = references, keepRefs = mixedPrecision && references == nil && progress != nil
            // Samples run concurrently (the float reference and the quantized model), their
            // results added in sample order.
            try loader.forEachConcurrently(workers: loader.defaultWorkers) { k, sample in
                let ref = try reference(k, sample.inputs, references: refs)
                return (ref, try pass.measure(sample.inputs, reference: ref, label: sample.label, perTensor: perTensor))
            } consume: { _, one in
                if keepRefs { keptRefs.keep(one.0) }
                r.merge(one.1)
                bar.advance()
            }
            if mixedPrecision && references == nil && progress != nil && keptRefs.complete { references = keptRefs.kept }
            return r
        }
        let full = try evaluate(q, summary: summary, perTensor: true, progress: "report")
        for k in summary.activations.indices { summary.activations[k].sqnr_db = full.tensors.sqnr(summary.activations[k].name) }
        quality.output = full.output
        quality.report = QualityReport(samples: entries.count, on: where_, result: full.output)
        quality.layers = summary.activations.map { a in
            QuantChart.Layer(name: a.name, sqnrDB: a.sqnr_db, absMax: cal.stats.tensors[a.name]?.absMax ?? max(abs(a.min), abs(a.max)),
                             threshold: a.threshold ?? max(abs(a.min), abs(a.max)))
        }
        guard mixedPrecision, let target = targetSQNR else { return quality }
        // Mixed precision: rank by sensitivity, search the fewest float nodes meeting the target.
        let sqnrs = Dictionary(uniqueKeysWithValues: summary.activations.compactMap { a in a.sqnr_db.map { (a.name, $0) } })
        let ranked = MixedPrecision.ranked(prepared.model, nodes: prepared.nodes, activationSQNR: sqnrs, options: options)
        var best: (Model, QuantizeSummary, QualityResult)?
        var results: [Int: (Model, QuantizeSummary, QualityResult)] = [:]
        let found = try MixedPrecision.search(ranked: ranked, target: target) { keptFloat in
            if keptFloat.isEmpty { return full.output.sqnrDB }
            let keep = Set(keptFloat)
            let nodes = prepared.nodes.filter { !keep.contains($0) }
            if nodes.isEmpty { return nil }  // nothing quantized: the float model itself
            let (qm, s) = try Quantizer.write(prepared.model, nodes: nodes, calibration: cal.calibrator, options: options, inputMeans: inputMeans)
            let r = try evaluate(qm, summary: s, perTensor: true, progress: nil)
            results[keptFloat.count] = (qm, s, r)
            return r.output.sqnrDB
        }
        if found.floatNodes.count == prepared.nodes.count {
            throw CLIError("--mixed-precision: the target \(target) dB is not met unless every node stays in float (fully quantized: \(full.output.sqnrDB.map { String(format: "%.2f dB", $0) } ?? "∞"))")
        }
        if !found.floatNodes.isEmpty { best = results[found.floatNodes.count] }
        if let (qm, s, r) = best {
            q = qm
            summary = s
            for k in summary.activations.indices { summary.activations[k].sqnr_db = r.tensors.sqnr(summary.activations[k].name) }
            quality.output = r.output
            quality.report = QualityReport(samples: entries.count, on: where_, result: r.output)
            quality.layers = summary.activations.map { a in
                QuantChart.Layer(name: a.name, sqnrDB: a.sqnr_db, absMax: cal.stats.tensors[a.name]?.absMax ?? max(abs(a.min), abs(a.max)),
                                 threshold: a.threshold ?? max(abs(a.min), abs(a.max)))
            }
        }
        quality.report.mixed_precision = .init(
            target_sqnr_db: target, met: found.met, fully_quantized_sqnr_db: full.output.sqnrDB,
            float_nodes: found.floatNodes.map { prepared.model.graph.nodes[$0].label },
            tried: found.tried.map { .init(float_nodes: $0.k, output_sqnr_db: $0.sqnrDB) })
        return quality
    }

    func writePlot(summary: QuantizeSummary, quality: Quality) throws {
        guard let plot else { return }
        let title = "\((model as NSString).lastPathComponent): QDQ SQNR per quantized activation (\(method.rawValue), \(quality.report.on))"
        let svg = QuantChart.svg(quality.layers, title: title, outputSQNR: quality.output.sqnrDB)
        do { try AtomicFile.write(Data(svg.utf8), to: URL(fileURLWithPath: plot)) } catch { throw CLIError("--plot \(plot): cannot write (\(error))") }
    }
}

/// The end-to-end part of the report (`quality` in `compress.quantize/1`).
struct QualityReport: Encodable {
    struct Mixed: Encodable {
        struct Try: Encodable { let float_nodes: Int; let output_sqnr_db: Double? }
        let target_sqnr_db: Double
        let met: Bool
        let fully_quantized_sqnr_db: Double?
        /// Nodes kept in float, most sensitive first.
        let float_nodes: [String]
        let tried: [Try]
    }
    var samples: Int
    /// Which samples: "calibration samples" or "--eval DIR".
    var on: String
    var output_sqnr_db: Double?
    /// Mean over samples of the cosine similarity of all outputs (flattened) with the float ones.
    var cosine_similarity: Double?
    var top1_agreement: Double?
    var float_accuracy: Double?
    var quantized_accuracy: Double?
    var mixed_precision: Mixed?

    init(samples: Int, on: String, result r: OutputQuality? = nil) {
        self.samples = samples
        self.on = on
        output_sqnr_db = r?.sqnrDB
        cosine_similarity = r?.cosine
        top1_agreement = r?.agreement
        float_accuracy = r?.floatAccuracy
        quantized_accuracy = r?.quantizedAccuracy
    }

    func lines(outputSQNR: Double?, top1: Double?) -> [String] {
        guard samples > 0 else { return ["quality    not measured: \(on)"] }
        var out = ["output SQNR " + (outputSQNR.map { String(format: "%.2f dB", $0) } ?? "∞ (outputs identical)")
                   + (cosine_similarity.map { String(format: ", cosine %.6f", $0) } ?? "")
                   + (top1.map { String(format: ", top-1 agreement %.2f %%", 100 * $0) } ?? "")
                   + " (quantized vs float on \(samples) \(on == "calibration samples" ? "calibration samples" : "samples of \(on)"))"]
        if let a = float_accuracy, let b = quantized_accuracy {
            out.append(String(format: "accuracy    float %.2f %%, quantized %.2f %% (top-1 against the labels)", 100 * a, 100 * b))
        }
        if let mp = mixed_precision {
            out.append("mixed precision: target \(mp.target_sqnr_db) dB " + (mp.met ? "met" : "NOT met") + " with \(mp.float_nodes.count) node(s) kept in float"
                       + (mp.float_nodes.isEmpty ? "" : ": " + mp.float_nodes.joined(separator: ", "))
                       + (mp.fully_quantized_sqnr_db.map { String(format: " (fully quantized: %.2f dB)", $0) } ?? ""))
        }
        return out
    }
}

extension QuantizeReport {
    /// One row per quantized activation, then the end-to-end figures as `#`-free key rows.
    func csv() -> String {
        func field(_ s: String) -> String { s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        func num(_ x: Double?) -> String { x.map { String($0) } ?? "" }
        var rows = ["activation,min,max,threshold,scale,zero_point,sqnr_db"]
        for a in summary.activations {
            rows.append([field(a.name), String(a.min), String(a.max), a.threshold.map { String($0) } ?? "", String(a.scale), String(a.zero_point), num(a.sqnr_db)].joined(separator: ","))
        }
        rows.append("")
        rows.append("metric,value")
        rows.append("output_sqnr_db,\(num(output_sqnr_db))")
        rows.append("cosine_similarity,\(num(quality.cosine_similarity))")
        rows.append("top1_agreement,\(num(top1_agreement))")
        rows.append("float_accuracy,\(num(quality.float_accuracy))")
        rows.append("quantized_accuracy,\(num(quality.quantized_accuracy))")
        rows.append("samples,\(quality.samples)")
        return rows.joined(separator: "\n") + "\n"
    }
}
