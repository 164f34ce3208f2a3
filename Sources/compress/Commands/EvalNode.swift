import ArgumentParser
import Foundation
import ModelIR
import Runtime
import TensorCore

/// Developer command: runs a model once on TensorProto inputs and writes its outputs as
/// TensorProto files (the ONNX backend node tests' layout), or times repeated runs.
///
/// Used by Tests/Interop/test_nn_ops.py (conformance against the backend test data) and
/// Tests/Bench/bench_executor.py (latency against ONNX Runtime). Hidden from help.
struct EvalNode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "_eval",
        abstract: "Run a model on .pb inputs and write .pb outputs (developer tool).",
        discussion: """
        Inputs bind to the graph's runtime inputs in order; --random-input NAME=DIMS feeds uniform \
        [-1, 1) data (seeded) to an input instead. With --repeat N the model runs once to warm up, \
        then N times, and per-run latency is printed as JSON: {"runs", "median_ms", "p90_ms", "min_ms"}.

        Example:
          compress _eval model.onnx --inputs input_0.pb input_1.pb --outputs-dir out/
          compress _eval resnet18.onnx --random-input input=1x3x224x224 --repeat 20 --threads 2
        """,
        shouldDisplay: false)

    @Argument(help: "The ONNX model.")
    var model: String

    @Option(name: .long, parsing: .upToNextOption, help: "TensorProto (.pb) files, one per runtime input, in order.")
    var inputs: [String] = []

    @Option(name: .long, help: "Feed uniform random data of this shape to input NAME (NAME=1x3x224x224); repeatable.")
    var randomInput: [String] = []

    @Option(name: .long, help: "Write output k as DIR/output_k.pb.")
    var outputsDir: String?

    @Option(name: .customLong("repeat"), help: "Time this many runs after one warm-up run; prints JSON.")
    var repeatCount: Int = 0

    @Option(name: .long, help: "Threads for the kernels' pool, which also runs OpenBLAS products (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Seed for --random-input.")
    var seed: UInt64 = 0

    @Flag(name: .long, help: "With --repeat: also print the wall time per operator type (stderr), of the plan as it runs (fused).")
    var profileOps = false

    @Flag(name: .long, help: "With --profile-ops: also print the wall time per node of the plan (stderr), slowest first.")
    var profileNodes = false

    func validate() throws {
        if repeatCount < 0 { throw ValidationError("--repeat must be ≥ 0") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be ≥ 1") }
        if profileNodes && !profileOps { throw ValidationError("--profile-nodes needs --profile-ops (and --repeat)") }
    }

    struct Timing: Encodable {
        let runs: Int
        let median_ms: Double
        let p90_ms: Double
        let min_ms: Double
        /// Median process CPU time per run (all threads), less sensitive than wall time to other
        /// processes on a busy machine.
        let cpu_median_ms: Double
    }

    /// CPU time consumed by this process so far, in milliseconds.
    static func processCPUms() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) * 1e3 + Double(ts.tv_nsec) / 1e6
    }

    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func run() throws {
        try reportingErrors {
            if let t = threads { Parallel.setThreads(t) }
            let m = try ModelReader.read(path: model)
            let runtimeInputs = m.graph.runtimeInputs
            var feeds: [String: Tensor] = [:]
            let shapes = try InputShapes.parse(randomInput)
            var rng = SplitMix64(seed: seed)
            for (name, dims) in shapes {
                guard let v = runtimeInputs.first(where: { $0.name == name }) else {
                    throw CLIError("--random-input \(name)=…: the model has no input '\(name)' (inputs: \(runtimeInputs.map(\.name).joined(separator: ", ")))")
                }
                let count = dims.reduce(1, *)
                let values = (0..<count).map { _ in rng.uniform(-1, 1) }
                let t = Tensor(shape: dims, scalars: values)
                feeds[name] = t.converted(to: v.type?.elementType ?? .float32)
            }
            let unbound = runtimeInputs.filter { feeds[$0.name] == nil }
            guard inputs.count <= unbound.count else {
                throw CLIError("--inputs: \(inputs.count) files for \(unbound.count) unbound model inputs (\(unbound.map(\.name).joined(separator: ", ")))")
            }
            for (path, v) in zip(inputs, unbound) { feeds[v.name] = try TensorCodec.readTensorFile(path).tensor }
            if unbound.count > inputs.count {
                throw CLIError("no data for model input '\(unbound[inputs.count].name)' (give --inputs or --random-input)")
            }
            let executor = try Executor(model: m)
            var outputs = try executor.run(feeds)
            if repeatCount > 0 {
                var times: [Double] = [], cpu: [Double] = []
                for _ in 0..<repeatCount {
                    let c0 = Self.processCPUms()
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    outputs = try executor.run(feeds)
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                    cpu.append(Self.processCPUms() - c0)
                }
                if profileOps { try printOpProfile(executor, m, feeds, runs: repeatCount) }
                times.sort()
                let p90 = times[min(times.count - 1, Int((Double(times.count) * 0.9).rounded(.up)) - 1)]
                let median = Self.median(times)
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys]
                print(String(decoding: try enc.encode(Timing(runs: times.count, median_ms: median, p90_ms: p90, min_ms: times[0], cpu_median_ms: Self.median(cpu))), as: UTF8.self))
            }
            if let dir = outputsDir {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for (k, o) in m.graph.outputs.enumerated() {
                    guard let t = outputs[o.name] else { throw CLIError("graph output '\(o.name)' was not produced") }
                    try TensorCodec.writeTensorFile(t, name: o.name, to: (dir as NSString).appendingPathComponent("output_\(k).pb"))
                }
            }
        }
    }
}

extension EvalNode {
    /// The op type, with Conv split by kernel path (depthwise, 1×1, im2col) when the weight is
    /// an initializer.
    static func profileLabel(_ n: Node, _ g: Graph) -> String {
        guard n.opType == "Conv", n.inputs.count > 1, let w = g.initializer(named: n.inputs[1])?.tensor, w.rank >= 3 else { return n.opType }
        let group = Int(n.int("group") ?? 1)
        if group > 1 && w.shape[1] == 1 { return "Conv (depthwise)" }
        if w.shape[2...].allSatisfy({ $0 == 1 }) && (n.ints("strides") ?? []).allSatisfy({ $0 == 1 }) { return "Conv (1x1)" }
        return "Conv (im2col)"
    }

    /// Times each step of the executor's plan as it runs (fusion and folding on, as in a timed
    /// run), attributing the wall time since the previous step to the step's op type.
    func printOpProfile(_ executor: Executor, _ m: Model, _ feeds: [String: Tensor], runs: Int) throws {
        var totals: [String: Double] = [:]
        var perNode: [String: [Double]] = [:]
        // Each node's op label worked out once, not between steps (it looks the weights up by
        // name), and the clock read again after the bookkeeping, so neither is timed as part of
        // the next step.
        let graph = executor.optimizedGraph
        var labels: [String: String] = [:]
        for n in graph.nodes { labels[n.label] = Self.profileLabel(n, graph) }
        for _ in 0..<runs {
            var last = DispatchTime.now().uptimeNanoseconds
            _ = try executor.run(feeds, stepDone: { node in
                let now = DispatchTime.now().uptimeNanoseconds
                totals[labels[node.label] ?? node.opType, default: 0] += Double(now - last) / 1e6
                if profileNodes { perNode[node.label, default: []].append(Double(now - last) / 1e6) }
                last = DispatchTime.now().uptimeNanoseconds
            })
        }
        // Per node: the mean, and the median, which a busy machine's stray preemptions move less.
        let nodeTimes = perNode.map { (name: $0.key, mean: $0.value.reduce(0, +) / Double(runs), median: Self.median($0.value)) }
        for n in nodeTimes.sorted(by: { $0.mean > $1.mean }) {
            FileHandle.standardError.write(Data("node \(n.name) \(String(format: "%.4f", n.mean)) ms/run median \(String(format: "%.4f", n.median))\n".utf8))
        }
        for (op, t) in totals.sorted(by: { $0.value > $1.value }) {
            let padded = op.padding(toLength: 22, withPad: " ", startingAt: 0)
            FileHandle.standardError.write(Data((padded + String(format: "%8.2f ms/run\n", t / Double(runs))).utf8))
        }
    }
}
