import ModelIR
import TensorCore

/// Concrete shapes for a model's inputs: `--input NAME=1x3x224x224` pins, and the rule that an
/// unpinned dynamic batch (first) dimension is 1 while any other unknown dimension is an error
/// naming the input and the flag.
public enum InputShapes {
    /// Parses `NAME=D1xD2x...` specifications (a scalar is `NAME=`).
    public static func parse(_ specs: [String]) throws -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for spec in specs {
            guard let eq = spec.lastIndex(of: "=") else {
                throw RuntimeError.badInput("--input '\(spec)': expected NAME=DIMS, e.g. input=1x3x224x224")
            }
            let name = String(spec[..<eq])
            let dimsText = spec[spec.index(after: eq)...]
            guard !name.isEmpty else { throw RuntimeError.badInput("--input '\(spec)': the input name is empty") }
            var dims: [Int] = []
            if !dimsText.isEmpty {
                for part in dimsText.split(separator: "x", omittingEmptySubsequences: false) {
                    guard let d = Int(part), d >= 0 else {
                        throw RuntimeError.badInput("--input '\(spec)': '\(part)' is not a dimension (non-negative integer)")
                    }
                    dims.append(d)
                }
            }
            out[name] = dims
        }
        return out
    }

    /// Resolves every runtime input of `graph` to a concrete type.
    public static func resolve(graph: Graph, pins: [String: [Int]]) throws -> [String: TensorInfo] {
        let inputs = graph.runtimeInputs
        for name in pins.keys where !inputs.contains(where: { $0.name == name }) {
            throw RuntimeError.badInput("--input \(name)=…: the model has no input '\(name)' (inputs: \(inputs.map(\.name).joined(separator: ", ")))")
        }
        var out: [String: TensorInfo] = [:]
        for v in inputs {
            guard let t = v.type, let dtype = t.elementType else {
                throw RuntimeError.badInput("input '\(v.name)' has no tensor type; compress handles tensor inputs only")
            }
            let example = "--input \(v.name)=" + (t.shape ?? []).enumerated().map { i, d in d.value.map(String.init) ?? (i == 0 ? "1" : "N") }.joined(separator: "x")
            if let pin = pins[v.name] {
                if let declared = t.shape {
                    guard declared.count == pin.count else {
                        throw RuntimeError.badInput("--input \(v.name): \(pin.count) dims given, the model declares \(declared.count) (\(t.shapeDescription))")
                    }
                    for (i, (d, p)) in zip(declared, pin).enumerated() {
                        if let f = d.value, f != p {
                            throw RuntimeError.badInput("--input \(v.name): dimension \(i) is fixed to \(f) by the model, not \(p)")
                        }
                    }
                }
                out[v.name] = try addressable(TensorInfo(dtype, pin), input: v.name)
                continue
            }
            guard let declared = t.shape else {
                throw RuntimeError.badInput("input '\(v.name)' has no declared shape; give one with --input \(v.name)=DIMS")
            }
            var dims: [Int] = []
            for (i, d) in declared.enumerated() {
                if let f = d.value { dims.append(f); continue }
                if i == 0 { dims.append(1); continue }
                throw RuntimeError.badInput("input '\(v.name)' dimension \(i) ('\(d)') is dynamic; pin it with \(example) (N: the size to run at)")
            }
            out[v.name] = try addressable(TensorInfo(dtype, dims), input: v.name)
        }
        return out
    }

    static func addressable(_ info: TensorInfo, input: String) throws -> TensorInfo {
        guard info.isAddressable else {
            throw RuntimeError.badInput("input '\(input)' has shape \(info.shape): its size overflows (more than 2^50 bytes)")
        }
        return info
    }

    /// The most bytes of one input compress makes up itself (zeros or seeded random values for
    /// `fuse` without --data and `prune --measure`): 4 GiB.
    public static let maxSynthesizedBytes = 1 << 32

    /// Refuses to make up an input larger than `maxSynthesizedBytes` (the allocation would fail
    /// or exhaust memory).
    public static func checkSynthesizable(_ info: TensorInfo, input: String) throws {
        guard info.isAddressable, info.byteCount <= maxSynthesizedBytes else {
            throw RuntimeError.badInput("input '\(input)' of shape \(info.shape) would take \(info.isAddressable ? "\(info.byteCount >> 20) MiB" : "more than 2^50 bytes"); at most \(maxSynthesizedBytes >> 30) GiB is made up as a sample (pin a smaller shape with --input or give samples)")
        }
    }
}
