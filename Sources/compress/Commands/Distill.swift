import ArgumentParser
import Distill
import Foundation
import ModelIR
import Runtime
import TensorCore

struct DistillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Knowledge-distillation losses of a student against a teacher on a folder of samples.",
        discussion: """
        Teacher and student run on one pass over --data (each sample decoded once, fed to both). \
        Per paired output, averaged over each sample's distributions and then over the samples: \
        KL(p_teacher‖p_student) at temperature T and T²·KL, KL at T = 1, the soft cross-entropy \
        and the teacher's entropy (soft CE = entropy + KL), with labels the hard cross-entropy and \
        accuracy of both models, the combined loss, and top-1 / top-5 agreement. Convention: \
        combined = W·CE(student, label) + (1 − W)·T²·KL with W = --hard-weight. Numerics in Double \
        with max-subtracted log-softmax. See Docs/distill.md.

        Examples:
          compress distill --teacher t.onnx --student s.onnx --data val/
          compress distill --teacher t.onnx --student pruned.onnx --data val/ --temperature 2 --hard-weight 0.5
          compress distill --teacher t.onnx --student s.onnx --data val/ --outputs logits=output --feature t/feat=s/feat
          compress distill --teacher seg.onnx --student seg_small.onnx --data val/ --axis 1 --max-kl 0.05
        """)

    @Option(help: "The teacher model.") var teacher: String
    @Option(help: "The student model (same output shapes).") var student: String
    @OptionGroup var data: DataOptions
    @Option(help: "Softmax temperature T (> 0).") var temperature: Double = 4
    @Option(name: .customLong("hard-weight"), help: "Weight W of the hard-label cross-entropy; the soft term T²·KL gets 1 − W.") var hardWeight: Double = 0
    @Option(help: ArgumentHelp("An output both models have, to evaluate alone.", valueName: "NAME")) var output: String?
    @Option(parsing: .singleValue, help: ArgumentHelp("Pair outputs whose names differ (repeatable).", valueName: "T_NAME=S_NAME")) var outputs: [String] = []
    @Option(parsing: .singleValue, help: ArgumentHelp("A pair of intermediate hint tensors of equal shape: MSE, cosine, max |difference| (repeatable).", valueName: "T_TENSOR=S_TENSOR")) var feature: [String] = []
    @Option(help: "The class axis of the outputs (default: the last); other axes are positions, averaged.") var axis: Int?
    @Option(help: "kl for logits, or mse / l1 for regression outputs (boxes, embeddings).") var loss: DistillOptions.Loss = .kl
    @Option(help: "List the N samples with the largest loss.") var worst: Int = 5
    @Option(name: .customLong("max-samples"), help: "Use at most N samples.") var maxSamples: Int?
    @Option(help: ArgumentHelp("Draw the per-sample KL distribution and agreement by teacher confidence (SVG).", valueName: "FILE.svg")) var plot: String?
    @Option(name: .customLong("max-kl"), help: "Gate: exit 3 when the first output's mean KL at T is above this.") var maxKL: Double?
    @Option(name: .customLong("min-agreement"), help: "Gate: exit 3 when the first output's top-1 agreement is below this fraction.") var minAgreement: Double?
    @OptionGroup var inputs: InputOptions
    @OptionGroup var format: FormatOption

    func validate() throws {
        if !(temperature > 0) || !temperature.isFinite { throw ValidationError("--temperature \(temperature): must be > 0") }
        if !(hardWeight >= 0 && hardWeight <= 1) { throw ValidationError("--hard-weight \(hardWeight): must be in [0, 1]") }
        if output != nil && !outputs.isEmpty { throw ValidationError("--output and --outputs contradict each other") }
        for pair in outputs + feature where pair.split(separator: "=").count != 2 { throw ValidationError("'\(pair)': expected T_NAME=S_NAME") }
        if worst < 0 { throw ValidationError("--worst must be ≥ 0") }
        if let m = maxSamples, m < 1 { throw ValidationError("--max-samples must be ≥ 1") }
        if let plot, !plot.lowercased().hasSuffix(".svg") { throw ValidationError("--plot writes SVG; give a FILE.svg") }
        if loss != .kl && (maxKL != nil || minAgreement != nil) {
            throw ValidationError("--max-kl and --min-agreement gate logits (--loss kl); with --loss \(loss.rawValue) there is no KL or agreement")
        }
    }

    func run() throws {
        try reportingErrors(naming: [teacher, student]) {
            let pins = try inputs.pins()
            let t = try ModelReader.read(path: teacher), s = try ModelReader.read(path: student)
            var options = DistillOptions()
            options.temperature = temperature
            options.hardWeight = hardWeight
            func pair(_ p: String) -> (teacher: String, student: String) {
                let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
                return (parts[0], parts[1])
            }
            options.outputs = output.map { [($0, $0)] } ?? outputs.map(pair)
            options.features = feature.map(pair)
            options.axis = axis
            options.loss = loss
            options.worst = worst
            let distiller = try Distiller(teacher: t, student: s, options: options)
            let source = try data.source(for: t.graph, pins: pins)
            if let plot {
                var inputFiles = InputFiles()
                inputFiles.add(model: t, path: teacher)
                inputFiles.add(model: s, path: student)
                inputFiles.add(source)
                try inputFiles.check(plot, flag: "--plot")
            }
            let entries = Array(source.entries.prefix(maxSamples ?? Int.max))
            guard !entries.isEmpty else { throw CLIError("--data \(data.data): no samples found") }
            let unlabelled = entries.filter { $0.label == nil }
            if unlabelled.count > 0 && unlabelled.count < entries.count {
                throw CLIError("--data \(data.data): \(entries.count - unlabelled.count) of \(entries.count) samples have labels; missing for "
                               + unlabelled.prefix(3).map { $0.files.first ?? $0.id }.joined(separator: ", ")
                               + (unlabelled.count > 3 ? ", … \(unlabelled.count - 3) more" : "") + " (label every sample or none)")
            }
            let bar = data.progress(total: entries.count, label: "distill")
            defer { bar.finish() }
            // A student with other input sizes gets each sample prepared for it too (images are
            // resized to each model's input; other data must already fit both).
            let studentSource = distiller.inputsMatch(pins: pins) ? nil : try data.source(for: s.graph, pins: [:])
            let report = try distiller.evaluate({ body in
                // Decoded on another thread while the models run; DataSource.load names the
                // file in its errors.
                let loader = PrefetchingLoader(count: entries.count) { i in
                    (try source.load(entries[i]), try studentSource.map { try $0.load(entries[i]).inputs })
                }
                while let (sample, studentFeeds) = try loader.next() {
                    try body(sample.id, sample.files, sample.inputs, studentFeeds, sample.label)
                }
            }, teacherPath: teacher, studentPath: student, progress: { bar.advance() })
            bar.finish()
            if let plot {
                do { try AtomicFile.write(Data(DistillChart(report: report).svg().utf8), to: URL(fileURLWithPath: plot)) } catch {
                    throw CLIError("--plot \(plot): cannot write (\(error))")
                }
            }
            switch format.format {
            case .json: try printJSON(report)
            case .table: print(Self.table(report))
            case .csv: print(Self.csv(report))
            }
            var breached: [String] = []
            if let maxKL, let kl = report.outputs.first?.kl, kl > maxKL { breached.append("--max-kl \(maxKL) (mean KL \(kl))") }
            if let minAgreement, let a = report.outputs.first?.top1_agreement, a < minAgreement { breached.append("--min-agreement \(minAgreement) (agreement \(a))") }
            if !breached.isEmpty {
                FileHandle.standardError.write(Data(("gate failed: " + breached.joined(separator: "; ") + "\n").utf8))
                throw ExitCode(3)
            }
        }
    }

    /// Rows `section,teacher,student,figure,value`: one per figure of each paired output and feature.
    static func csv(_ r: DistillReport) -> String {
        var lines = ["section,teacher,student,figure,value"]
        func add(_ section: String, _ t: String, _ s: String, _ name: String, _ v: Double?) {
            if let v { lines.append("\(section),\(t),\(s),\(name),\(v)") }
        }
        for o in r.outputs {
            for (name, v) in [("kl", o.kl), ("kl_t2", o.kl_t2), ("kl_t1", o.kl_t1), ("soft_ce", o.soft_ce), ("teacher_entropy", o.teacher_entropy),
                              ("hard_ce_student", o.hard_ce_student), ("hard_ce_teacher", o.hard_ce_teacher), ("accuracy_student", o.accuracy_student),
                              ("accuracy_teacher", o.accuracy_teacher), ("combined", o.combined), ("top1_agreement", o.top1_agreement),
                              ("top5_agreement", o.top5_agreement), ("mse", o.mse), ("l1", o.l1)] {
                add("output", o.teacher_output, o.student_output, name, v)
            }
        }
        for f in r.features {
            add("feature", f.teacher, f.student, "mse", f.mse)
            add("feature", f.teacher, f.student, "cosine", f.cosine)
            add("feature", f.teacher, f.student, "max_abs", f.max_abs)
        }
        return lines.joined(separator: "\n")
    }

    static func table(_ r: DistillReport) -> String {
        var out = ["teacher    \(r.teacher)", "student    \(r.student)",
                   "samples    \(r.samples), T = \(r.temperature), hard weight \(r.hard_weight)", ""]
        func f(_ x: Double?) -> String { x.map { String(format: "%.6g", $0) } ?? "-" }
        func pc(_ x: Double?) -> String { x.map { String(format: "%.2f %%", 100 * $0) } ?? "-" }
        for o in r.outputs {
            out.append("output \(o.teacher_output) ↔ \(o.student_output) \(o.shape)" + (o.class_axis.map { ", class axis \($0), \(o.distributions_per_sample) distributions a sample" } ?? ""))
            if o.loss == "kl" {
                out.append("  KL(T) \(f(o.kl))   T²·KL \(f(o.kl_t2))   KL(T=1) \(f(o.kl_t1))")
                out.append("  soft CE \(f(o.soft_ce)) = teacher entropy \(f(o.teacher_entropy)) + KL")
                out.append("  top-1 agreement \(pc(o.top1_agreement))   top-5 agreement \(pc(o.top5_agreement))")
                if o.hard_ce_student != nil {
                    out.append("  hard CE student \(f(o.hard_ce_student)), teacher \(f(o.hard_ce_teacher));  accuracy student \(pc(o.accuracy_student)), teacher \(pc(o.accuracy_teacher))")
                }
                out.append("  combined \(f(o.combined))")
            } else {
                out.append("  MSE \(f(o.mse))   L1 \(f(o.l1))")
            }
        }
        for x in r.features { out.append("feature \(x.teacher) ↔ \(x.student): MSE \(f(x.mse)), cosine \(f(x.cosine)), max |diff| \(f(x.max_abs))") }
        if !r.worst.isEmpty {
            out.append("")
            out.append("largest loss (first output):")
            for w in r.worst { out.append("  \(w.id)  \(f(w.loss.first))") }
        }
        return out.joined(separator: "\n")
    }
}

extension DistillOptions.Loss: ExpressibleByArgument {}
