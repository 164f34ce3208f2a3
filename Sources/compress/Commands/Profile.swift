import ArgumentParser
import Foundation
import Fuse
import ModelIR
import Passes
import Profile
import Runtime
import TensorCore

struct Profile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "FLOPs, MACs, parameters, memory traffic, arithmetic intensity and a roofline verdict per layer.",
        discussion: """
        Reads dims and dtypes only: weights are memory-mapped and never copied. Conventions \
        (Docs/profile.md): a MAC is a multiply whose product is accumulated (Conv, Gemm, MatMul, \
        Einsum, LSTM/GRU/RNN; bias adds are not MACs); FLOPs = 2·MACs + 1 per output element for a \
        bias + per-element costs of elementwise, normalization, pooling and reduction work; \
        parameters = elements of constant weight inputs (BatchNormalization running mean/var are \
        buffers); memory traffic = all input bytes + output bytes, each in its stored dtype; \
        intensity = FLOPs / traffic. Roofline: ridge = peak / bandwidth, time = max(FLOPs/peak, \
        bytes/bandwidth), memory-bound when intensity < ridge.

        Two models print side by side with the change per node (matched by name) and in total. \
        Budgets (--max-*) apply to the last model; a breach prints the report, names the budget \
        on stderr and exits with status 3.

        Examples:
          compress profile model.onnx
          compress profile model.onnx --device jetson-orin-nano-8gb --top 10 --sort time
          compress profile model.onnx --by op --peak-gflops 150 --bandwidth-gbs 17
          compress profile fp32.onnx int8.onnx --device nvidia-t4
          compress profile model.onnx --device nvidia-l4 --plot roofline.svg
          compress profile model.onnx --fused
          compress profile model.onnx --max-gmacs 2 --max-params 5e6 --format json
          compress profile --list-devices
        """)

    @Argument(help: "The ONNX model, or two models to compare (before and after).")
    var models: [String] = []

    @OptionGroup var inputs: InputOptions

    @Option(help: "A bundled roofline device (see --list-devices).")
    var device: String?

    @Option(name: .customLong("peak-gflops"), help: "A custom device's peak rate in GFLOP/s (with --bandwidth-gbs).")
    var peakGFLOPs: Double?

    @Option(name: .customLong("bandwidth-gbs"), help: "A custom device's memory bandwidth in GB/s (with --peak-gflops).")
    var bandwidthGBs: Double?

    @Option(help: "Which peak the roofline uses: auto (per node from its activation dtype), fp32, fp16 or int8.")
    var precision: PrecisionChoice = .auto

    @Option(help: "Table rows: node (every node) or op (one row per operator type).")
    var by: Grouping = .node

    @Option(help: "Show only the N largest nodes (by --sort).")
    var top: Int?

    @Option(help: "Column --top ranks by: flops, macs, params, traffic, time (needs a device) or intensity. Default: time with a device, flops without.")
    var sort: SortColumn?

    @Option(help: ArgumentHelp("Write a roofline chart (SVG; needs a device).", valueName: "FILE.svg"))
    var plot: String?

    @Option(name: .customLong("max-gmacs"), help: "Budget: total GMACs (10^9 MACs).")
    var maxGMACs: Double?

    @Option(name: .customLong("max-params"), help: "Budget: total parameters (e.g. 5e6).")
    var maxParams: Double?

    @Option(name: .customLong("max-traffic-mib"), help: "Budget: total memory traffic in MiB.")
    var maxTrafficMiB: Double?

    @Option(name: .customLong("max-time-ms"), help: "Budget: estimated time in ms on the device.")
    var maxTimeMs: Double?

    @Flag(help: "Profile each model as deploying runtimes execute it: BatchNormalization folded into the Conv, Constants lifted, Identity/Dropout removed, RepVGG branches merged (the passes of `compress fuse`), since that, not the exported graph, is what memory traffic is paid for.")
    var fused = false

    @Flag(name: .customLong("list-devices"), help: "List the bundled devices with their figures and sources, then exit.")
    var listDevices = false

    @OptionGroup var output: FormatOption

    enum PrecisionChoice: String, ExpressibleByArgument, CaseIterable {
        case auto, fp32, fp16, int8
        var precision: Precision? { Precision(rawValue: rawValue) }
    }

    enum Grouping: String, ExpressibleByArgument, CaseIterable { case node, op }

    enum SortColumn: String, ExpressibleByArgument, CaseIterable {
        case flops, macs, params, traffic, time, intensity
        var key: SortKey { SortKey(rawValue: rawValue)! }
    }

    func validate() throws {
        if listDevices { return }
        guard (1...2).contains(models.count) else {
            throw ValidationError(models.isEmpty ? "give a model to profile" : "give one model, or two to compare; got \(models.count)")
        }
        if device != nil && (peakGFLOPs != nil || bandwidthGBs != nil) {
            throw ValidationError("--device and --peak-gflops/--bandwidth-gbs are alternatives; give one")
        }
        if (peakGFLOPs == nil) != (bandwidthGBs == nil) {
            throw ValidationError("--peak-gflops and --bandwidth-gbs go together")
        }
        if let p = peakGFLOPs, !(p > 0 && p.isFinite) { throw ValidationError("--peak-gflops must be a positive number") }
        if let b = bandwidthGBs, !(b > 0 && b.isFinite) { throw ValidationError("--bandwidth-gbs must be a positive number") }
        if let name = device {
            guard let d = DevicePresets.named(name) else {
                throw ValidationError("unknown --device '\(name)'; bundled: " + DevicePresets.all.map(\.name).joined(separator: ", "))
            }
            if let p = precision.precision, d.peak[p] == nil {
                throw ValidationError("--device \(d.name) has no \(p.rawValue) figure in its datasheet; use --precision " +
                                      Precision.allCases.filter { d.peak[$0] != nil }.map(\.rawValue).joined(separator: " or ") + " or auto")
            }
        }
        let hasDevice = device != nil || peakGFLOPs != nil
        if !hasDevice {
            if maxTimeMs != nil { throw ValidationError("--max-time-ms needs a device (--device or --peak-gflops/--bandwidth-gbs)") }
            if plot != nil { throw ValidationError("--plot needs a device (--device or --peak-gflops/--bandwidth-gbs)") }
            if sort == .time { throw ValidationError("--sort time needs a device (--device or --peak-gflops/--bandwidth-gbs)") }
        }
        if let t = top, t < 1 { throw ValidationError("--top must be 1 or more") }
        for (flag, v) in [("--max-gmacs", maxGMACs), ("--max-params", maxParams), ("--max-traffic-mib", maxTrafficMiB), ("--max-time-ms", maxTimeMs)] {
            if let v, !(v >= 0 && v.isFinite) { throw ValidationError("\(flag) must be a non-negative number") }
        }
        if let plot, !plot.lowercased().hasSuffix(".svg") { throw ValidationError("--plot writes SVG; give a FILE.svg") }
    }

    var settings: RooflineSettings? {
        if let name = device, let d = DevicePresets.named(name) { return RooflineSettings(device: d, precision: precision.precision) }
        if let p = peakGFLOPs, let b = bandwidthGBs {
            return RooflineSettings(device: .custom(peakGFLOPs: p, bandwidthGBs: b), precision: precision.precision)
        }
        return nil
    }

    var budgets: [Budget] {
        var out: [Budget] = []
        if let v = maxGMACs { out.append(Budget(.gmacs, v)) }
        if let v = maxParams { out.append(Budget(.params, v)) }
        if let v = maxTrafficMiB { out.append(Budget(.trafficMiB, v)) }
        if let v = maxTimeMs { out.append(Budget(.timeMs, v)) }
        return out
    }

    /// --top/--sort: nil shows every node in graph order.
    var selection: (n: Int, key: SortKey)? {
        guard top != nil || sort != nil else { return nil }
        let key = sort?.key ?? (settings != nil ? .time : .flops)
        return (top ?? Int.max, key)
    }

    func run() throws {
        if listDevices {
            try reportingErrors { try printDevices() }
            return
        }
        let breached: [String] = try reportingErrors {
            let pins = try inputs.pins()
            var inputFiles = InputFiles()
            let profiles = try models.map { path -> ModelProfile in
                var model = try ModelReader.read(path: path)
                inputFiles.add(model: model, path: path)
                // --fused: the model as a deploying runtime executes it (compress fuse's passes).
                if fused { model = try Fuser.fuse(model, passes: nil, skip: [], pins: pins).model }
                do { return try ModelProfile(model: model, pins: pins) } catch { throw CLIError("\(path): \(error)") }
            }
            let settings = self.settings
            if profiles.count == 1 {
                try printSingle(profiles[0], file: models[0], settings)
            } else {
                try printComparison(ProfileComparison(profiles[0], profiles[1]), settings)
            }
            if let plot, let settings {
                let title = profiles.count == 1 ? "Roofline: \(Self.fileName(models[0]))"
                    : "Roofline: \(Self.fileName(models[0])) → \(Self.fileName(models[1]))"
                let chart = RooflineChart(title: title, series: zip(models, profiles).map { ($0, $1) }, settings: settings)
                try inputFiles.check(plot, flag: "--plot")
                do { try AtomicFile.write(Data(chart.svg().utf8), to: URL(fileURLWithPath: plot)) } catch {
                    throw CLIError("--plot \(plot): cannot write (\(error))")
                }
            }
            let last = profiles[profiles.count - 1]
            return budgets.compactMap { b -> String? in
                guard let v = b.value(of: last, settings), v > b.limit else { return nil }
                return "budget exceeded: --\(b.kind.rawValue) \(Self.number(b.limit)) (\(Self.fileName(models.last!)): \(Self.number(v)))"
            }
        }
        if !breached.isEmpty {
            for line in breached { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            throw ExitCode(3)
        }
    }

    // MARK: One model

    func printSingle(_ p: ModelProfile, file: String, _ s: RooflineSettings?) throws {
        switch output.format {
        case .json:
            try printJSON(ProfileReport(profile: p, file: file, settings: s, top: selection, byOp: by == .op, budgets: budgets))
        case .csv:
            print(by == .op ? opCSV(p, s) : nodeCSV(p, s))
            for w in p.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
        case .table:
            var out = [header(p, file: file, s), ""]
            out.append(by == .op ? opTable(p, s) : nodeTable(p, s))
            out.append("")
            out.append(totalsText(p, s))
            out += p.warnings.map { "warning: \($0)" }
            print(out.joined(separator: "\n"))
        }
    }

    func header(_ p: ModelProfile, file: String, _ s: RooflineSettings?) -> String {
        let ins = p.inputs.map { "\($0.name)=\($0.info.dtype.onnxName)[\($0.info.shape.map(String.init).joined(separator: "x"))]" }
        var lines = ["model     \(file): \(p.nodes.count) nodes; inputs \(ins.joined(separator: ", "))"]
        if let s { lines.append("device    " + Self.deviceLine(s)) }
        return lines.joined(separator: "\n")
    }

    static func deviceLine(_ s: RooflineSettings) -> String {
        let d = s.device
        let peaks = Precision.allCases.compactMap { p in d.peak[p].map { "\(p.rawValue) \(Units.rate($0, p))" } }
        let ridges = Precision.allCases.compactMap { p in d.ridge(p).map { "\(p.rawValue) \(String(format: "%.3g", $0))" } }
        return "\(d.name): " + peaks.joined(separator: ", ") + ", \(String(format: "%.4g", d.bandwidth / 1e9)) GB/s; ridge "
            + ridges.joined(separator: ", ") + " FLOP/B; precision \(s.precision?.rawValue ?? "auto (per node)")"
    }

    func nodeTable(_ p: ModelProfile, _ s: RooflineSettings?) -> String {
        var headers = ["node", "op", "output", "MACs", "FLOPs", "params", "weights", "act in", "out", "traffic", "FLOP/B"]
        if s != nil { headers += ["bound", "prec", "ridge", "GFLOP/s", "time", "%time"] }
        headers.append("note")
        var t = TextTable(headers, rightAligned: Set(3...10).union(s != nil ? [13, 14, 15, 16] : []))
        let est = p.estimates(s)
        let total = p.time(s) ?? 0
        let order = selection.map { p.top($0.n, by: $0.key, s) } ?? Array(p.nodes.indices)
        for i in order {
            let n = p.nodes[i]
            let name = Self.truncate(n.scope.isEmpty ? n.name : n.scope + "/" + n.name, 40)
            let shape = n.outputShape.map { $0.isEmpty ? "scalar" : $0.map(String.init).joined(separator: "x") } ?? "?"
            var row = [name, n.opType, shape]
            if n.isCounted {
                row += [Units.count(Double(n.macs)), Units.count(Double(n.flops)), Units.count(Double(n.params)),
                        Units.bytes(Double(n.weightBytes)), Units.bytes(Double(n.inputBytes)), Units.bytes(Double(n.outputBytes)),
                        Units.bytes(Double(n.trafficBytes)), n.intensity.map { String(format: "%.2f", $0) } ?? "-"]
            } else {
                row += [n.status == .notCounted ? "not counted" : "shape?"] + Array(repeating: "-", count: 7)
            }
            if s != nil {
                if let e = est[i] {
                    row += [e.bound?.rawValue ?? "-", e.precision.rawValue, String(format: "%.3g", e.ridge),
                            String(format: "%.4g", e.attainable / 1e9), Units.duration(e.time),
                            total > 0 && n.inTotal ? String(format: "%.1f", 100 * e.time / total) : "-"]
                } else {
                    row += Array(repeating: "-", count: 6)
                }
            }
            row.append(Self.shortNote(n))
            t.add(row)
        }
        return t.render()
    }

    static func shortNote(_ n: NodeProfile) -> String {
        var parts: [String] = []
        switch n.status {
        case .constant: parts.append("constant (folded at load)")
        case .fused: parts.append(n.opType == "DequantizeLinear" ? "QDQ, fused into consumer" : "QDQ, fused into producer")
        case .control: parts.append(n.note ?? "")
        case .notCounted: parts.append("operator unknown to the profiler")
        case .unresolved: parts.append(n.note ?? "shape unknown")
        case .counted: break
        }
        if n.repeats != 1 { parts.append("×\(n.repeats) per inference") }
        if !n.inTotal { parts.append("not in totals (other If branch)") }
        if n.buffers > 0 { parts.append("+\(n.buffers) buffers") }
        return parts.joined(separator: "; ")
    }

    func opTable(_ p: ModelProfile, _ s: RooflineSettings?) -> String {
        var headers = ["op", "nodes", "MACs", "FLOPs", "params", "traffic", "%FLOPs"]
        if s != nil { headers += ["time", "%time"] }
        var t = TextTable(headers, rightAligned: Set(1..<headers.count))
        let totals = p.totals
        let time = p.time(s) ?? 0
        var rows = p.byOp(s)
        if let sel = selection {
            rows.sort { a, b in
                func v(_ o: OpSummary) -> Double {
                    switch sel.key {
                    case .flops: return Double(o.flops)
                    case .macs: return Double(o.macs)
                    case .params: return Double(o.params)
                    case .traffic: return Double(o.trafficBytes)
                    case .time: return o.time ?? 0
                    case .intensity: return o.trafficBytes > 0 ? Double(o.flops) / Double(o.trafficBytes) : 0
                    }
                }
                return v(a) != v(b) ? v(a) > v(b) : a.op < b.op
            }
            rows = Array(rows.prefix(sel.n))
        }
        for o in rows {
            var row = [o.op, String(o.nodes), Units.count(Double(o.macs)), Units.count(Double(o.flops)), Units.count(Double(o.params)),
                       Units.bytes(Double(o.trafficBytes)), totals.flops > 0 ? String(format: "%.1f", 100 * Double(o.flops) / Double(totals.flops)) : "-"]
            if s != nil { row += [o.time.map(Units.duration) ?? "-", time > 0 ? String(format: "%.1f", 100 * (o.time ?? 0) / time) : "-"] }
            t.add(row)
        }
        return t.render()
    }

    func totalsText(_ p: ModelProfile, _ s: RooflineSettings?) -> String {
        let t = p.totals
        var lines = [
            "MACs        \(Units.grouped(Int64(t.macs))) (\(Units.count(Double(t.macs))))",
            "FLOPs       \(Units.grouped(Int64(t.flops))) (\(Units.count(Double(t.flops))))",
            "parameters  \(Units.grouped(Int64(t.params))) (\(Units.count(Double(t.params))))"
                + (t.buffers > 0 ? " + buffers \(Units.grouped(Int64(t.buffers))) (BatchNormalization running mean/var)" : "")
                + ": \(Units.bytes(Double(t.parameterBytes))) as stored",
            "traffic     \(Units.bytes(Double(t.trafficBytes))) = weights \(Units.bytes(Double(t.weightBytes))) + activations in "
                + "\(Units.bytes(Double(t.inputBytes))) + outputs \(Units.bytes(Double(t.outputBytes)))",
            "intensity   " + (t.intensity.map { String(format: "%.2f FLOP/byte", $0) } ?? "-"),
        ]
        if let s, let time = p.time(s) {
            let share = p.memoryBoundShare(s) ?? 0
            lines.append("time        \(Units.duration(time)) on \(s.device.name) (roofline estimate, layers in sequence); "
                         + String(format: "%.0f%% of it in memory-bound layers", 100 * share))
        }
        if t.uncountedNodes > 0 { lines.append("not counted \(t.uncountedNodes) node\(t.uncountedNodes == 1 ? "" : "s") (see warnings): the totals are lower bounds") }
        return lines.joined(separator: "\n")
    }

    func nodeCSV(_ p: ModelProfile, _ s: RooflineSettings?) -> String {
        var lines = ["name,scope,op,status,output_shape,output_dtype,macs,flops,params,buffers,weight_bytes,input_bytes,output_bytes,traffic_bytes,intensity,repeats,in_total,precision,bound,ridge,attainable_gflops,time_ms"]
        let est = p.estimates(s)
        let order = selection.map { p.top($0.n, by: $0.key, s) } ?? Array(p.nodes.indices)
        for i in order {
            let n = p.nodes[i]
            let e = est[i]
            let cells: [String] = [
                n.name, n.scope, n.opType, n.status.rawValue, n.outputShape.map { $0.map(String.init).joined(separator: "x") } ?? "",
                n.outputDType?.onnxName ?? "", String(n.macs), String(n.flops), String(n.params), String(n.buffers),
                String(n.weightBytes), String(n.inputBytes), String(n.outputBytes), String(n.trafficBytes),
                n.intensity.map { String(format: "%.6g", $0) } ?? "", String(n.repeats), n.inTotal ? "true" : "false",
                n.precision.rawValue, e?.bound?.rawValue ?? "", e.map { String(format: "%.6g", $0.ridge) } ?? "",
                e.map { String(format: "%.6g", $0.attainable / 1e9) } ?? "", e.map { String(format: "%.6g", $0.time * 1e3) } ?? "",
            ]
            lines.append(cells.map(Self.csvField).joined(separator: ","))
        }
        let t = p.totals
        let time = p.time(s)
        lines.append(["(total)", "", "", "total", "", "", String(t.macs), String(t.flops), String(t.params), String(t.buffers),
                      String(t.weightBytes), String(t.inputBytes), String(t.outputBytes), String(t.trafficBytes),
                      t.intensity.map { String(format: "%.6g", $0) } ?? "", "", "", "", "", "", "",
                      time.map { String(format: "%.6g", $0 * 1e3) } ?? ""].joined(separator: ","))
        return lines.joined(separator: "\n")
    }

    func opCSV(_ p: ModelProfile, _ s: RooflineSettings?) -> String {
        var lines = ["op,nodes,macs,flops,params,traffic_bytes,time_ms"]
        for o in p.byOp(s) {
            lines.append([Self.csvField(o.op), String(o.nodes), String(o.macs), String(o.flops), String(o.params),
                          String(o.trafficBytes), o.time.map { String(format: "%.6g", $0 * 1e3) } ?? ""].joined(separator: ","))
        }
        return lines.joined(separator: "\n")
    }

    // MARK: Two models

    func printComparison(_ c: ProfileComparison, _ s: RooflineSettings?) throws {
        switch output.format {
        case .json:
            try printJSON(ComparisonReport(c, fileA: models[0], fileB: models[1], settings: s, budgets: budgets))
        case .csv:
            print(comparisonCSV(c, s))
            for w in c.a.warnings { FileHandle.standardError.write(Data("warning: A: \(w)\n".utf8)) }
            for w in c.b.warnings { FileHandle.standardError.write(Data("warning: B: \(w)\n".utf8)) }
        case .table:
            var out = ["A         \(models[0]): \(c.a.nodes.count) nodes", "B         \(models[1]): \(c.b.nodes.count) nodes"]
            if let s { out.append("device    " + Self.deviceLine(s)) }
            out.append("")
            var t = TextTable(["total", "A", "B", "change"], rightAligned: [1, 2, 3])
            for m in ComparisonReport.metrics(c, s) {
                func fmt(_ v: Double?) -> String {
                    guard let v else { return "-" }
                    switch m.name {
                    case "macs", "flops", "params": return Units.count(v)
                    case "intensity": return String(format: "%.2f FLOP/B", v)
                    case "time_ms": return Units.duration(v / 1e3)
                    default: return Units.bytes(v)
                    }
                }
                let label = m.name == "time_ms" ? "time (roofline)" : m.name.replacingOccurrences(of: "_", with: " ")
                t.add([label, fmt(m.a), fmt(m.b), Self.change(m.a, m.b)])
            }
            out.append(t.render())
            out.append("")
            out.append("per node: \(c.matched.count) matched by name; \(c.onlyInA.count) only in A; \(c.onlyInB.count) only in B")
            var headers = ["node", "op", "MACs A", "MACs B", "Δ", "params A", "params B", "Δ", "traffic A", "traffic B", "Δ"]
            if s != nil { headers += ["time A", "time B", "Δ"] }
            var nt = TextTable(headers, rightAligned: Set(2..<headers.count))
            let ea = c.a.estimates(s), eb = c.b.estimates(s)
            var pairs = c.matched
            if let sel = selection {
                let rank = Dictionary(uniqueKeysWithValues: c.b.top(c.b.nodes.count, by: sel.key, s).enumerated().map { ($1, $0) })
                pairs.sort { rank[$0.b, default: .max] < rank[$1.b, default: .max] }
                pairs = Array(pairs.prefix(sel.n))
            }
            for m in pairs {
                let a = c.a.nodes[m.a], b = c.b.nodes[m.b]
                let name = Self.truncate(b.scope.isEmpty ? b.name : b.scope + "/" + b.name, 40)
                var row = [name, a.opType == b.opType ? b.opType : "\(a.opType)→\(b.opType)",
                           Units.count(Double(a.macs)), Units.count(Double(b.macs)), Self.change(Double(a.macs), Double(b.macs)),
                           Units.count(Double(a.params)), Units.count(Double(b.params)), Self.change(Double(a.params), Double(b.params)),
                           Units.bytes(Double(a.trafficBytes)), Units.bytes(Double(b.trafficBytes)),
                           Self.change(Double(a.trafficBytes), Double(b.trafficBytes))]
                if s != nil {
                    let ta = ea[m.a]?.time, tb = eb[m.b]?.time
                    row += [ta.map(Units.duration) ?? "-", tb.map(Units.duration) ?? "-", Self.change(ta, tb)]
                }
                nt.add(row)
            }
            out.append(nt.render())
            if !c.onlyInA.isEmpty { out.append("only in A: " + Self.names(c.onlyInA.map { c.a.nodes[$0] })) }
            if !c.onlyInB.isEmpty { out.append("only in B: " + Self.names(c.onlyInB.map { c.b.nodes[$0] })) }
            out += c.a.warnings.map { "warning: A: \($0)" } + c.b.warnings.map { "warning: B: \($0)" }
            print(out.joined(separator: "\n"))
        }
    }

    func comparisonCSV(_ c: ProfileComparison, _ s: RooflineSettings?) -> String {
        var lines = ["name,scope,op_a,op_b,macs_a,macs_b,flops_a,flops_b,params_a,params_b,traffic_bytes_a,traffic_bytes_b,time_ms_a,time_ms_b"]
        let ea = c.a.estimates(s), eb = c.b.estimates(s)
        for m in c.matched {
            let a = c.a.nodes[m.a], b = c.b.nodes[m.b]
            let ta = ea[m.a].map { String(format: "%.6g", $0.time * 1e3) } ?? ""
            let tb = eb[m.b].map { String(format: "%.6g", $0.time * 1e3) } ?? ""
            lines.append([Self.csvField(b.name), Self.csvField(b.scope), a.opType, b.opType, String(a.macs), String(b.macs),
                          String(a.flops), String(b.flops), String(a.params), String(b.params),
                          String(a.trafficBytes), String(b.trafficBytes), ta, tb].joined(separator: ","))
        }
        let ta = c.a.totals, tb = c.b.totals
        lines.append(["(total)", "", "", "", String(ta.macs), String(tb.macs), String(ta.flops), String(tb.flops), String(ta.params),
                      String(tb.params), String(ta.trafficBytes), String(tb.trafficBytes),
                      c.a.time(s).map { String(format: "%.6g", $0 * 1e3) } ?? "", c.b.time(s).map { String(format: "%.6g", $0 * 1e3) } ?? ""]
            .joined(separator: ","))
        return lines.joined(separator: "\n")
    }

    // MARK: Devices

    func printDevices() throws {
        switch output.format {
        case .json:
            FileHandle.standardOutput.write(Data(DevicePresets.presetJSON.utf8))
            FileHandle.standardOutput.write(Data("\n".utf8))
        case .csv:
            var lines = ["name,fp32_gflops,fp16_gflops,int8_gops,bandwidth_gbs,description"]
            for d in DevicePresets.all {
                let peaks = Precision.allCases.map { p in d.peak[p].map { String(format: "%.6g", $0 / 1e9) } ?? "" }
                lines.append(([d.name] + peaks + [String(format: "%.6g", d.bandwidth / 1e9), Self.csvField(d.description)]).joined(separator: ","))
            }
            print(lines.joined(separator: "\n"))
        case .table:
            var t = TextTable(["device", "fp32", "fp16", "int8", "bandwidth", "ridge fp32", "description"], rightAligned: [1, 2, 3, 4, 5])
            for d in DevicePresets.all {
                t.add([d.name] + Precision.allCases.map { p in d.peak[p].map { Units.rate($0, p) } ?? "-" }
                      + [String(format: "%.4g GB/s", d.bandwidth / 1e9), d.ridge(.fp32).map { String(format: "%.3g FLOP/B", $0) } ?? "-", d.description])
            }
            var out = [t.render(), "", "sources (--format json prints the preset file):"]
            for d in DevicePresets.all {
                out.append("  \(d.name)")
                for key in ["fp32", "fp16", "int8", "bandwidth"] { if let s = d.sources[key] { out.append("    \(key): \(s)") } }
            }
            print(out.joined(separator: "\n"))
        }
    }

    // MARK: Formatting

    static func change(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b else { return "-" }
        if a == b { return "0%" }
        guard let c = ProfileComparison.change(a, b) else { return "new" }
        return String(format: "%+.1f%%", 100 * c)
    }

    static func names(_ nodes: [NodeProfile]) -> String {
        let list = nodes.prefix(8).map { "\($0.name) (\($0.opType))" }.joined(separator: ", ")
        return list + (nodes.count > 8 ? ", … \(nodes.count - 8) more" : "")
    }

    static func truncate(_ s: String, _ n: Int) -> String {
        guard s.count > n else { return s }
        let head = (n - 1) / 2, tail = n - 1 - head
        return String(s.prefix(head)) + "…" + String(s.suffix(tail))
    }

    static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    static func fileName(_ path: String) -> String { (path as NSString).lastPathComponent }

    static func number(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? Units.grouped(Int64(v)) : String(format: "%.4g", v) }
}

extension Units {
    /// Seconds with a unit that keeps 3–4 significant digits: "1.234 ms", "56.7 µs".
    static func duration(_ seconds: Double) -> String {
        let a = abs(seconds)
        if a == 0 { return "0" }
        if a >= 1 { return String(format: "%.4g s", seconds) }
        if a >= 1e-3 { return String(format: "%.4g ms", seconds * 1e3) }
        if a >= 1e-6 { return String(format: "%.4g µs", seconds * 1e6) }
        return String(format: "%.4g ns", seconds * 1e9)
    }

    /// A peak rate: "8.1 TFLOP/s", or "130 TOP/s" for int8.
    static func rate(_ perSecond: Double, _ p: Precision) -> String {
        let unit = p == .int8 ? "OP/s" : "FLOP/s"
        let a = abs(perSecond)
        if a >= 1e12 { return String(format: "%.4g T", perSecond / 1e12) + unit }
        if a >= 1e9 { return String(format: "%.4g G", perSecond / 1e9) + unit }
        return String(format: "%.4g M", perSecond / 1e6) + unit
    }
}
