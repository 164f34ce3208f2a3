import Foundation
import ModelIR
import Runtime
import TensorCore

public struct DistillOptions: Sendable {
    public var temperature: Double = 4
    /// Weight of the hard-label cross-entropy; the soft term T²·KL gets 1 − W.
    public var hardWeight: Double = 0
    /// Output pairs (teacher name, student name); empty: pair by name, or the single outputs.
    public var outputs: [(teacher: String, student: String)] = []
    /// Hint tensors of equal shape (teacher value, student value).
    public var features: [(teacher: String, student: String)] = []
    /// The class axis of the paired outputs (default: the last).
    public var axis: Int?
    /// kl: the outputs are logits; mse / l1: regression outputs (boxes, embeddings).
    public var loss: Loss = .kl
    public var worst = 5
    public enum Loss: String, Sendable, CaseIterable { case kl, mse, l1 }
    public init() {}
}

public enum DistillError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case .invalid(let s) = self { return s }; return "" }
}

/// The `compress distill --format json` schema (`compress.distill/1`, Docs/distill.md).
public struct DistillReport: Encodable, Sendable {
    public struct Output: Encodable, Sendable {
        public let teacher_output: String
        public let student_output: String
        public let shape: [Int]
        public let class_axis: Int?
        /// Distributions per sample (rows, or positions of the other axes).
        public let distributions_per_sample: Int
        public let loss: String
        public var kl: Double? = nil, kl_t2: Double? = nil, kl_t1: Double? = nil, soft_ce: Double? = nil, teacher_entropy: Double? = nil
        public var hard_ce_student: Double? = nil, hard_ce_teacher: Double? = nil
        public var accuracy_student: Double? = nil, accuracy_teacher: Double? = nil
        public var combined: Double? = nil
        public var top1_agreement: Double? = nil, top5_agreement: Double? = nil
        public var mse: Double? = nil, l1: Double? = nil
    }
    public struct Feature: Encodable, Sendable {
        public let teacher: String
        public let student: String
        public let mse: Double
        public let cosine: Double
        public let max_abs: Double
    }
    public struct Sample: Encodable, Sendable {
        public let id: String
        public let files: [String]
        /// Per paired output: the sample's mean KL at T (or its regression loss).
        public let loss: [Double]
        public let agreement: [Double?]
        /// Per paired output: the teacher's mean top probability at T = 1 (its confidence).
        public let teacher_confidence: [Double?]
    }

    public var schema = "compress.distill/1"
    public let teacher: String
    public let student: String
    public let samples: Int
    public let temperature: Double
    public let hard_weight: Double
    public let convention = "combined = hard_weight·CE(student, label) + (1 − hard_weight)·T²·KL(p_teacher,T ‖ p_student,T); losses averaged over each sample's distributions, then over samples"
    public var outputs: [Output]
    public var features: [Feature]
    /// The samples with the largest loss on the first output, largest first.
    public var worst: [Sample]
    public var per_sample: [Sample]
}

/// Teacher and student on one pass over the data: each sample is decoded once and fed to both.
public struct Distiller {
    public let teacher: Model
    public let student: Model
    public let options: DistillOptions
    let pairs: [(teacher: String, student: String)]
    let studentInput: [String: String]

    public init(teacher: Model, student: Model, options: DistillOptions) throws {
        self.teacher = teacher
        self.student = student
        self.options = options
        guard options.temperature > 0, options.temperature.isFinite else {
            throw DistillError.invalid("--temperature \(options.temperature): must be a positive number")
        }
        let tOut = teacher.graph.outputs.map(\.name), sOut = student.graph.outputs.map(\.name)
        if !options.outputs.isEmpty {
            pairs = options.outputs
        } else if tOut.count == 1 && sOut.count == 1 {
            pairs = [(tOut[0], sOut[0])]
        } else {
            pairs = tOut.filter(sOut.contains).map { ($0, $0) }
            guard !pairs.isEmpty else {
                throw DistillError.invalid("teacher outputs (\(tOut.joined(separator: ", "))) and student outputs (\(sOut.joined(separator: ", "))) share no name: pair them with --outputs T_NAME=S_NAME")
            }
        }
        for (t, s) in pairs {
            guard tOut.contains(t) else { throw DistillError.invalid("the teacher has no output '\(t)' (outputs: \(tOut.joined(separator: ", ")))") }
            guard sOut.contains(s) else { throw DistillError.invalid("the student has no output '\(s)' (outputs: \(sOut.joined(separator: ", ")))") }
        }
        for (t, s) in options.features {
            try Self.checkValue(t, in: teacher.graph, model: "teacher")
            try Self.checkValue(s, in: student.graph, model: "student")
        }
        // Inputs: the same names, or one input each.
        let ti = teacher.graph.runtimeInputs.map(\.name), si = student.graph.runtimeInputs.map(\.name)
        if Set(ti) == Set(si) {
            studentInput = Dictionary(uniqueKeysWithValues: ti.map { ($0, $0) })
        } else if ti.count == 1 && si.count == 1 {
            studentInput = [ti[0]: si[0]]
        } else {
            throw DistillError.invalid("the student's inputs (\(si.joined(separator: ", "))) differ from the teacher's (\(ti.joined(separator: ", ")))")
        }
    }

    /// A value of `graph` by name, or an error listing the closest names.
    static func checkValue(_ name: String, in graph: Graph, model: String) throws {
        var names = Set(graph.inputs.map(\.name))
        for n in graph.nodes { names.formUnion(n.outputs.filter { !$0.isEmpty }) }
        guard !names.contains(name) else { return }
        let closest = names.sorted { (editDistance($0, name), $0) < (editDistance($1, name), $1) }.prefix(3)
        throw DistillError.invalid("--feature: the \(model) has no tensor '\(name)'; closest: \(closest.joined(separator: ", "))")
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        var prev = Array(0...y.count)
        for i in 1...max(x.count, 1) where !x.isEmpty {
            var cur = [i] + [Int](repeating: 0, count: y.count)
            for j in 1...max(y.count, 1) where !y.isEmpty {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return x.isEmpty ? y.count : prev[y.count]
    }

    /// One sample's feeds by the teacher's input names, its label, id and files, and — when the
    /// student takes other input sizes — the same sample prepared for the student (by its names).
    public typealias Samples = ((_ id: String, _ files: [String], _ feeds: [String: Tensor], _ studentFeeds: [String: Tensor]?, _ label: Int?) throws -> Void) throws -> Void

    /// Whether the student's inputs, renamed as the teacher's, have the teacher's declared shapes;
    /// when not, each sample must be prepared for each model (`Samples`' `studentFeeds`).
    public func inputsMatch(pins: [String: [Int]]) -> Bool {
        guard let t = try? InputShapes.resolve(graph: teacher.graph, pins: pins),
              let s = try? InputShapes.resolve(graph: student.graph, pins: [:]) else { return false }
        return studentInput.allSatisfy { tn, sn in t[tn] == s[sn] }
    }

    public func evaluate(_ samples: Samples, teacherPath: String, studentPath: String, progress: (() -> Void)? = nil) throws -> DistillReport {
        let te = try Executor.observing(teacher, names: options.features.map(\.teacher))
        let se = try Executor.observing(student, names: options.features.map(\.student))
        let T = options.temperature, W = options.hardWeight
        struct Acc { var n = 0.0; var sums: [String: Double] = [:]; var counted: [String: Double] = [:] }
        var acc = [Acc](repeating: Acc(), count: pairs.count)
        var featureAcc = [(mse: Double, cos: Double, mx: Double)](repeating: (0, 0, 0), count: options.features.count)
        var shapes = [[Int]](repeating: [], count: pairs.count), axes = [Int?](repeating: nil, count: pairs.count)
        var perDist = [Int](repeating: 0, count: pairs.count)
        var records: [DistillReport.Sample] = []
        var count = 0
        try samples { id, files, feeds, studentFeeds, label in
            var sFeeds: [String: Tensor] = studentFeeds ?? [:]
            if studentFeeds == nil { for (k, v) in feeds { if let s = studentInput[k] { sFeeds[s] = v } } }
            var tFeat: [String: Tensor] = [:], sFeat: [String: Tensor] = [:]
            let tNames = Set(options.features.map(\.teacher)), sNames = Set(options.features.map(\.student))
            let to = try te.run(feeds, hooks: tNames.isEmpty ? nil : ExecutionHooks(names: tNames) { n, t in tFeat[n] = t })
            let so = try se.run(sFeeds, hooks: sNames.isEmpty ? nil : ExecutionHooks(names: sNames) { n, t in sFeat[n] = t })
            var sampleLoss: [Double] = [], sampleAgree: [Double?] = [], sampleConf: [Double?] = []
            for (k, (tn, sn)) in pairs.enumerated() {
                guard let t = to[tn], let s = so[sn] else { throw DistillError.invalid("output '\(tn)'/'\(sn)' was not produced") }
                guard t.shape == s.shape else {
                    throw DistillError.invalid("teacher output '\(tn)' has shape \(t.shape) but student output '\(sn)' has \(s.shape)")
                }
                shapes[k] = t.shape
                if options.loss != .kl {
                    let f = FeatureLosses.compute(t.converted(to: .float64).scalars(as: Double.self), s.converted(to: .float64).scalars(as: Double.self))
                    let l1 = zip(t.converted(to: .float64).scalars(as: Double.self), s.converted(to: .float64).scalars(as: Double.self)).reduce(0) { $0 + abs($1.0 - $1.1) } / Double(max(t.count, 1))
                    acc[k].sums["mse", default: 0] += f.mse
                    acc[k].sums["l1", default: 0] += l1
                    acc[k].n += 1
                    sampleLoss.append(options.loss == .mse ? f.mse : l1)
                    sampleAgree.append(nil)
                    sampleConf.append(nil)
                    continue
                }
                guard t.rank >= 1 else { throw DistillError.invalid("output '\(tn)' is a scalar, not logits") }
                let axis = options.axis.map { $0 < 0 ? $0 + t.rank : $0 } ?? (t.rank - 1)
                guard axis >= 0, axis < t.rank, t.shape[axis] >= 2 else {
                    throw DistillError.invalid("--axis \(options.axis ?? -1) is not a class axis of '\(tn)' (shape \(t.shape))")
                }
                axes[k] = axis
                let td = ClassAxis.distributions(t, axis: axis), sd = ClassAxis.distributions(s, axis: axis)
                guard !td.isEmpty else { throw DistillError.invalid("output '\(tn)' (shape \(t.shape)) holds no distributions") }
                perDist[k] = td.count
                var sums: [String: Double] = [:], labelled = 0.0
                var confidence = 0.0
                for (a, b) in zip(td, sd) {
                    confidence += exp(DistributionLosses.logSoftmax(a).max() ?? 0)
                    // A label applies per row of an [N, C] output only.
                    if let y = label, t.rank == 2, !(y >= 0 && y < a.count) {
                        throw DistillError.invalid("sample '\(id)': label \(y) is not a class of output '\(tn)' (\(a.count) classes)")
                    }
                    let l = DistributionLosses.compute(teacher: a, student: b, temperature: T, label: t.rank == 2 ? label : nil)
                    sums["kl", default: 0] += l.kl
                    sums["kl_t2", default: 0] += l.klT2
                    sums["kl_t1", default: 0] += l.kl1
                    sums["soft_ce", default: 0] += l.softCE
                    sums["teacher_entropy", default: 0] += l.teacherEntropy
                    sums["top1", default: 0] += l.teacherTop == l.studentTop ? 1 : 0
                    sums["top5", default: 0] += l.top5Agrees ? 1 : 0
                    if let hs = l.studentHardCE, let ht = l.teacherHardCE, let y = label {
                        labelled += 1
                        sums["hard_ce_student", default: 0] += hs
                        sums["hard_ce_teacher", default: 0] += ht
                        sums["accuracy_student", default: 0] += l.studentTop == y ? 1 : 0
                        sums["accuracy_teacher", default: 0] += l.teacherTop == y ? 1 : 0
                        sums["combined", default: 0] += W * hs + (1 - W) * l.klT2
                    }
                }
                let d = Double(td.count)
                for (key, v) in sums {
                    let per = key.hasPrefix("hard_") || key.hasPrefix("accuracy_") || key == "combined" ? labelled : d
                    guard per > 0 else { continue }
                    acc[k].sums[key, default: 0] += v / per
                    acc[k].counted[key, default: 0] += 1
                }
                acc[k].n += 1
                sampleLoss.append(sums["kl"]! / d)
                sampleAgree.append(sums["top1"]! / d)
                sampleConf.append(confidence / d)
            }
            for (k, (tn, sn)) in options.features.enumerated() {
                guard let a = tFeat[tn], let b = sFeat[sn] else { throw DistillError.invalid("feature '\(tn)'/'\(sn)' was not observed") }
                guard a.shape == b.shape else { throw DistillError.invalid("--feature \(tn)=\(sn): shapes \(a.shape) and \(b.shape) differ") }
                let f = FeatureLosses.compute(a.converted(to: .float64).scalars(as: Double.self), b.converted(to: .float64).scalars(as: Double.self))
                featureAcc[k].mse += f.mse
                featureAcc[k].cos += f.cosine
                featureAcc[k].mx = max(featureAcc[k].mx, f.maxAbs)
            }
            records.append(DistillReport.Sample(id: id, files: files, loss: sampleLoss, agreement: sampleAgree, teacher_confidence: sampleConf))
            count += 1
            progress?()
        }
        guard count > 0 else { throw DistillError.invalid("no samples") }
        var outs: [DistillReport.Output] = []
        for (k, (tn, sn)) in pairs.enumerated() {
            var o = DistillReport.Output(teacher_output: tn, student_output: sn, shape: shapes[k], class_axis: axes[k],
                                         distributions_per_sample: perDist[k], loss: options.loss.rawValue)
            let a = acc[k]
            func mean(_ key: String) -> Double? { a.counted[key].map { _ in a.sums[key]! / a.counted[key]! } }
            func all(_ key: String) -> Double? { a.sums[key].map { $0 / max(a.n, 1) } }
            if options.loss == .kl {
                o.kl = mean("kl"); o.kl_t2 = mean("kl_t2"); o.kl_t1 = mean("kl_t1"); o.soft_ce = mean("soft_ce")
                o.teacher_entropy = mean("teacher_entropy"); o.top1_agreement = mean("top1"); o.top5_agreement = mean("top5")
                let labelledAll = a.counted["hard_ce_student"] == a.n
                if labelledAll {
                    o.hard_ce_student = mean("hard_ce_student"); o.hard_ce_teacher = mean("hard_ce_teacher")
                    o.accuracy_student = mean("accuracy_student"); o.accuracy_teacher = mean("accuracy_teacher")
                    o.combined = mean("combined")
                } else {
                    o.combined = (1 - W) * (o.kl_t2 ?? 0)
                }
            } else {
                o.mse = all("mse"); o.l1 = all("l1")
            }
            outs.append(o)
        }
        let feats = options.features.enumerated().map { k, p in
            DistillReport.Feature(teacher: p.teacher, student: p.student, mse: featureAcc[k].mse / Double(count),
                                  cosine: featureAcc[k].cos / Double(count), max_abs: featureAcc[k].mx)
        }
        let worst = Array(records.sorted { ($0.loss.first ?? 0, $1.id) > ($1.loss.first ?? 0, $0.id) }.prefix(options.worst))
        return DistillReport(teacher: teacherPath, student: studentPath, samples: count, temperature: T, hard_weight: W,
                             outputs: outs, features: feats, worst: worst, per_sample: records)
    }
}
