import ModelIR
import TensorCore

// Einsum-12: Einstein summation over any number of operands.

extension StandardOps {
    static func registerEinsum(_ r: OpRegistry) {
        r.register("Einsum", since: 12, kernel: { inputs, ctx in
            let xs = inputs.compactMap { $0 }
            guard xs.count == inputs.count, !xs.isEmpty else { throw ctx.error("every input is required") }
            let eq = try EinsumRules.parse(ctx, shapes: xs.map(\.shape))
            return [try EinsumRules.evaluate(eq, xs, ctx)]
        }, infer: { inputs, _, ctx in
            let xs = inputs.compactMap { $0 }
            guard xs.count == inputs.count, let first = xs.first else { throw ctx.error("every input is required") }
            let eq = try EinsumRules.parse(ctx, shapes: xs.map(\.shape))
            return [TensorInfo(first.dtype, eq.output.map { eq.sizes[$0]! })]
        })
    }
}

/// Einsum as a sequence of pairwise contractions (ONNX Einsum-12, NumPy `einsum` semantics).
///
/// Labels are letters; `...` stands for the dimensions not named, broadcast across operands
/// right-aligned (they get labels 1000, 1001, …). Without `->` the output is the ellipsis
/// dimensions followed by the labels that occur once, in alphabetical order. A label repeated
/// within one operand takes the diagonal. Operands are folded left to right: for A and B, labels
/// that no later operand or the output needs are summed out of each side first; the remaining
/// shared labels needed later are batch dimensions, the other shared ones are contracted, and
/// the product is one batched matrix multiply `[batch, M, K] × [batch, K, N]` (OpenBLAS sgemm
/// for float32, float16 and bfloat16; a Double loop for float64 and integers).
private enum EinsumRules {
    struct Equation {
        var inputs: [[Int]]
        var output: [Int]
        var sizes: [Int: Int]
    }

    static func parse(_ ctx: KernelContext, shapes: [[Int]]) throws -> Equation {
        guard let raw = ctx.node.string("equation") else { throw ctx.error("attribute 'equation' is required") }
        let text = raw.filter { !$0.isWhitespace }
        let sides = text.components(separatedBy: "->")
        guard sides.count <= 2 else { throw ctx.error("equation '\(raw)' has more than one '->'") }
        let terms = sides[0].components(separatedBy: ",")
        guard terms.count == shapes.count else { throw ctx.error("equation '\(raw)' names \(terms.count) operands but the node has \(shapes.count) inputs") }

        // Letters, with −1 marking the ellipsis.
        func tokens(_ term: String) throws -> [Int] {
            var out: [Int] = []
            var rest = Substring(term)
            while let c = rest.first {
                if rest.hasPrefix("...") {
                    guard !out.contains(-1) else { throw ctx.error("equation '\(raw)': an operand has two ellipses") }
                    out.append(-1)
                    rest = rest.dropFirst(3)
                } else if c.isASCII && c.isLetter {
                    out.append(Int(c.asciiValue!))
                    rest = rest.dropFirst()
                } else {
                    throw ctx.error("equation '\(raw)' has an invalid character '\(c)'")
                }
            }
            return out
        }
        let parsed = try terms.map(tokens)
        var ellipsisRank = 0
        for (t, s) in zip(parsed, shapes) {
            let letters = t.filter { $0 >= 0 }.count
            let e = s.count - letters
            guard t.contains(-1) ? e >= 0 : e == 0 else {
                throw ctx.error("equation '\(raw)': operand '\(t.map(label).joined())' does not match an input of rank \(s.count)")
            }
            ellipsisRank = max(ellipsisRank, e)
        }
        func expand(_ t: [Int], rank: Int) -> [Int] {
            guard let i = t.firstIndex(of: -1) else { return t }
            let e = rank - (t.count - 1)
            return Array(t[..<i]) + (0..<e).map { 1000 + ellipsisRank - e + $0 } + Array(t[(i + 1)...])
        }
        let inputs = zip(parsed, shapes).map { expand($0, rank: $1.count) }
        var sizes: [Int: Int] = [:]
        for (labels, shape) in zip(inputs, shapes) {
            for (l, d) in zip(labels, shape) {
                if let s = sizes[l], s != d {
                    if s == 1 { sizes[l] = d } else if d != 1 {
                        throw ctx.error("equation '\(raw)': label '\(label(l))' has sizes \(s) and \(d)")
                    }
                } else if sizes[l] == nil { sizes[l] = d }
            }
        }
        var output: [Int]
        if sides.count == 2 {
            let t = try tokens(sides[1])
            output = expand(t, rank: t.count - (t.contains(-1) ? 1 : 0) + ellipsisRank)
            guard Set(output).count == output.count else { throw ctx.error("equation '\(raw)' repeats an output label") }
            for l in output where sizes[l] == nil { throw ctx.error("equation '\(raw)': output label '\(label(l))' is not in any input") }
        } else {
            var counts: [Int: Int] = [:]
            for labels in inputs { for l in labels where l < 1000 { counts[l, default: 0] += 1 } }
            output = (0..<ellipsisRank).map { 1000 + $0 } + counts.filter { $0.value == 1 }.keys.sorted()
        }
        return Equation(inputs: inputs, output: output, sizes: sizes)
    }

    static func label(_ l: Int) -> String { l < 0 ? "..." : l >= 1000 ? "…\(l - 1000)" : String(UnicodeScalar(UInt8(l))) }

    /// One operand in the working dtype with unique labels.
    struct Term {
        var tensor: Tensor
        var labels: [Int]
    }

    static func evaluate(_ eq: Equation, _ xs: [Tensor], _ ctx: KernelContext) throws -> Tensor {
        let dtype = xs[0].dtype
        guard xs.allSatisfy({ $0.dtype == dtype }) else { throw ctx.error("inputs mix element types \(xs.map(\.dtype))") }
        guard TensorOperands.isNumeric(dtype), dtype != .bool else { throw ctx.error("Einsum of \(dtype) tensors is not supported") }
        let work: DType = [.float32, .float16, .bfloat16].contains(dtype) ? .float32 : .float64
        var terms = try zip(xs, eq.inputs).map { try diagonal(Term(tensor: $0.converted(to: work), labels: $1)) }
        var acc = terms.removeFirst()
        func needed(after i: Int) -> Set<Int> {
            Set(eq.output).union(terms[i...].flatMap(\.labels))
        }
        for i in 0..<terms.count {
            acc = try contract(acc, terms[i], keep: needed(after: i + 1), sizes: eq.sizes)
        }
        acc = try sumOut(acc, keep: Set(eq.output), sizes: eq.sizes)
        let out = try view(acc, order: eq.output, sizes: eq.sizes)
        return out.converted(to: dtype)
    }

    /// The diagonal over labels repeated in one operand (the view whose stride along a repeated
    /// label is the sum of its strides).
    static func diagonal(_ t: Term) throws -> Term {
        guard Set(t.labels).count != t.labels.count else { return t }
        let st = Movement.strides(t.tensor.shape)
        var labels: [Int] = [], shape: [Int] = [], strides: [Int] = []
        for (k, l) in t.labels.enumerated() {
            if let j = labels.firstIndex(of: l) {
                guard shape[j] == t.tensor.shape[k] else { throw Movement.Failure("diagonal over label '\(label(l))' of unequal sizes \(shape[j]) and \(t.tensor.shape[k])") }
                strides[j] += st[k]
            } else {
                labels.append(l)
                shape.append(t.tensor.shape[k])
                strides.append(st[k])
            }
        }
        return Term(tensor: try Movement.copyView(t.tensor, shape: shape, strides: strides), labels: labels)
    }

    /// The operand's data laid out in `order` (a subset of its labels plus any labels it lacks,
    /// which become broadcast dimensions), size-1 dimensions broadcast to the global sizes.
    static func view(_ t: Term, order: [Int], sizes: [Int: Int]) throws -> Tensor {
        let st = Movement.strides(t.tensor.shape)
        var shape: [Int] = [], strides: [Int] = []
        for l in order {
            shape.append(sizes[l]!)
            if let k = t.labels.firstIndex(of: l), t.tensor.shape[k] == sizes[l]! { strides.append(st[k]) } else { strides.append(0) }
        }
        if order == t.labels && shape == t.tensor.shape { return t.tensor }
        return try Movement.copyView(t.tensor, shape: shape, strides: strides)
    }

    /// Sums out every label not in `keep`.
    static func sumOut(_ t: Term, keep: Set<Int>, sizes: [Int: Int]) throws -> Term {
        let kept = t.labels.filter { keep.contains($0) }
        let gone = t.labels.filter { !keep.contains($0) }
        if gone.isEmpty { return t }
        let v = try view(t, order: kept + gone, sizes: sizes)
        let rows = kept.reduce(1) { $0 * sizes[$1]! }, cols = gone.reduce(1) { $0 * sizes[$1]! }
        var out = Tensor(dtype: v.dtype, shape: kept.map { sizes[$0]! })
        func sum<T: BinaryFloatingPoint>(_: T.Type) {
            v.withUnsafeBufferPointer(as: T.self) { s in
                out.withUnsafeMutableBufferPointer(as: T.self) { d in
                    for r in 0..<rows {
                        var acc: T = 0
                        for c in 0..<cols { acc += s[r * cols + c] }
                        d[r] = acc
                    }
                }
            }
        }
        if v.dtype == .float32 { sum(Float.self) } else { sum(Double.self) }
        return Term(tensor: out, labels: kept)
    }

    static func isFloat32(_ t: Term) -> Bool { t.tensor.dtype == .float32 }

    static func contract(_ a0: Term, _ b0: Term, keep: Set<Int>, sizes: [Int: Int]) throws -> Term {
        let a = try sumOut(a0, keep: keep.union(b0.labels), sizes: sizes)
        let b = try sumOut(b0, keep: keep.union(a.labels), sizes: sizes)
        let shared = a.labels.filter { b.labels.contains($0) }
        let batch = shared.filter { keep.contains($0) }
        let summed = shared.filter { !keep.contains($0) }
        let left = a.labels.filter { !b.labels.contains($0) }
        let right = b.labels.filter { !a.labels.contains($0) }
        func size(_ ls: [Int]) -> Int { ls.reduce(1) { $0 * sizes[$1]! } }
        let nb = size(batch), m = size(left), k = size(summed), n = size(right)
        // An operand already laid out as [batch, K, M] or [batch, N, K] is passed to sgemm
        // transposed instead of being copied.
        let direct = { (t: Term) in t.tensor.shape == t.labels.map { sizes[$0]! } }
        let transA = isFloat32(a) && direct(a) && a.labels == batch + summed + left && a.labels != batch + left + summed
        let transB = isFloat32(b) && direct(b) && b.labels == batch + right + summed && b.labels != batch + summed + right
        let av = transA ? a.tensor : try view(a, order: batch + left + summed, sizes: sizes)
        let bv = transB ? b.tensor : try view(b, order: batch + summed + right, sizes: sizes)
        let labels = batch + left + right
        var out = Tensor(dtype: av.dtype, shape: labels.map { sizes[$0]! })
        if av.dtype == .float32 {
            av.withUnsafeBufferPointer(as: Float.self) { pa in
                bv.withUnsafeBufferPointer(as: Float.self) { pb in
                    out.withUnsafeMutableBufferPointer(as: Float.self) { pc in
                        for i in 0..<nb {
                            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: pa.baseAddress! + i * m * k, lda: max(transA ? m : k, 1),
                                       b: pb.baseAddress! + i * k * n, ldb: max(transB ? k : n, 1), c: pc.baseAddress! + i * m * n, ldc: max(n, 1))
                        }
                    }
                }
            }
        } else {
            av.withUnsafeBufferPointer(as: Double.self) { pa in
                bv.withUnsafeBufferPointer(as: Double.self) { pb in
                    out.withUnsafeMutableBufferPointer(as: Double.self) { pc in
                        for i in 0..<nb {
                            let ao = i * m * k, bo = i * k * n, co = i * m * n
                            for r in 0..<m {
                                for p in 0..<k {
                                    let x = pa[ao + r * k + p]
                                    for c in 0..<n { pc[co + r * n + c] += x * pb[bo + p * n + c] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Term(tensor: out, labels: labels)
    }
}
