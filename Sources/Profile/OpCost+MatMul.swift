import ModelIR
import Runtime

extension OpCost {
    /// Gemm: Y = alpha·A'·B' + beta·C with A' [M, K]. MACs = M·N·K; FLOPs = 2·MACs + M·N for C.
    /// alpha and beta scaling (1 in every exporter's output) is not counted.
    static func gemm(_ node: Node, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?]) throws -> Work {
        let a = try required(inputs, 0, "A")
        let y = try output(outputs)
        guard a.shape.count == 2 else { throw CostError("A must be 2-D, got \(a)") }
        let k = node.int("transA") == 1 ? a.shape[0] : a.shape[1]
        let macs = y.count * k
        return Work(macs: macs, flops: 2 * macs + (present(inputs, 2) ? y.count : 0))
    }

    /// MatMul with NumPy semantics, batch dims included (attention's Q·Kᵀ and P·V): every output
    /// element is a K-long dot product, so MACs = output elements × K where K is A's last
    /// dimension (also when A is 1-D). FLOPs = 2·MACs. Also MatMulInteger and QLinearMatMul.
    static func matMul(_ inputs: [TensorInfo?], _ outputs: [TensorInfo?], a: Int) throws -> Work {
        let x = try required(inputs, a, "A")
        let y = try output(outputs)
        guard let k = x.shape.last else { throw CostError("A must have rank ≥ 1, got a scalar") }
        let macs = y.count * k
        return Work(macs: macs, flops: 2 * macs)
    }

    /// Einsum, contracted pairwise from left to right as `numpy.einsum(optimize=False)` pairs
    /// operands. A pairwise product costs its iteration space (the product of the sizes of every
    /// index either operand carries): MACs when an index is summed away in that step, plain
    /// multiplies otherwise. An index left in a single operand that the output lacks is summed
    /// at one FLOP per element. Ellipses broadcast from the right.
    static func einsum(_ node: Node, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?]) throws -> Work {
        guard let equation = node.string("equation") else { throw CostError("equation is missing") }
        let ops = inputs.compactMap { $0 }
        let parsed = try EinsumEquation(equation, ranks: ops.map(\.shape.count))
        var size: [Character: Int] = [:]
        for (terms, t) in zip(parsed.inputs, ops) {
            for (c, d) in zip(terms, t.shape) { size[c] = max(size[c] ?? 1, d) }
        }
        func volume(_ s: Set<Character>) -> Int { s.reduce(1) { $0 * (size[$1] ?? 1) } }
        let output = Set(parsed.output)
        var macs = 0, flops = 0
        var current = Set(parsed.inputs.first ?? [])
        if parsed.inputs.count == 1 {
            // A single operand: a sum when indices disappear, otherwise a permutation/diagonal.
            if !current.subtracting(output).isEmpty { flops += ops[0].count }
            return Work(flops: flops)
        }
        for j in 1..<parsed.inputs.count {
            let next = Set(parsed.inputs[j])
            let later = parsed.inputs[(j + 1)...].reduce(into: output) { $0.formUnion($1) }
            let space = current.union(next)
            let kept = space.intersection(later)
            if kept.count < space.count {
                macs += volume(space)
                flops += 2 * volume(space)
            } else {
                flops += volume(space)
            }
            current = kept
        }
        return Work(macs: macs, flops: flops)
    }
}

/// An Einsum equation with ellipses expanded to one index per broadcast axis.
struct EinsumEquation {
    var inputs: [[Character]]
    var output: [Character]

    init(_ equation: String, ranks: [Int]) throws {
        let text = equation.filter { !$0.isWhitespace }
        let parts = text.components(separatedBy: "->")
        guard parts.count <= 2 else { throw CostError("equation '\(equation)' has more than one '->'") }
        let lhs = parts[0].components(separatedBy: ",")
        guard lhs.count == ranks.count else {
            throw CostError("equation '\(equation)' names \(lhs.count) operands, the node has \(ranks.count)")
        }
        // Ellipsis axes get private-use characters, numbered from the right so they broadcast.
        func ellipsis(_ n: Int) -> [Character] {
            (0..<n).reversed().map { Character(UnicodeScalar(0xE000 + $0)!) }
        }
        var maxEllipsis = 0
        var expanded: [[Character]] = []
        for (term, rank) in zip(lhs, ranks) {
            if let r = term.range(of: "...") {
                let before = Array(term[..<r.lowerBound]), after = Array(term[r.upperBound...])
                let n = rank - before.count - after.count
                guard n >= 0 else { throw CostError("term '\(term)' has more indices than its operand's rank \(rank)") }
                maxEllipsis = max(maxEllipsis, n)
                expanded.append(before + ellipsis(n) + after)
            } else {
                guard term.count == rank else { throw CostError("term '\(term)' has \(term.count) indices, its operand rank \(rank)") }
                expanded.append(Array(term))
            }
        }
        inputs = expanded
        if parts.count == 2 {
            let rhs = parts[1]
            if let r = rhs.range(of: "...") {
                output = Array(rhs[..<r.lowerBound]) + ellipsis(maxEllipsis) + Array(rhs[r.upperBound...])
            } else {
                output = Array(rhs)
            }
        } else {
            // Implicit output: the ellipsis axes, then indices appearing once, alphabetically.
            var counts: [Character: Int] = [:]
            for t in expanded { for c in t { counts[c, default: 0] += 1 } }
            output = ellipsis(maxEllipsis) + counts.filter { $0.value == 1 && $0.key.isLetter }.keys.sorted()
        }
    }
}
