import Foundation
import ModelIR
import TensorCore

extension StandardOps {
    /// Gemm (C optional from opset 11; unidirectional broadcast of C from opset 7, which also
    /// covers the older `broadcast` attribute) and MatMul (NumPy semantics since opset 1).
    static func registerMatrixOps(_ r: OpRegistry) {
        r.register("Gemm", since: 1, kernel: { try GemmOp.kernel($0, $1, cOptional: false) },
                   infer: { try GemmOp.infer($0, $1, $2, cOptional: false) })
        r.register("Gemm", since: 11, kernel: { try GemmOp.kernel($0, $1, cOptional: true) },
                   infer: { try GemmOp.infer($0, $1, $2, cOptional: true) })
        r.register("MatMul", since: 1, kernel: MatMulOp.kernel, infer: MatMulOp.infer)
    }
}

/// ONNX Gemm: `Y = alpha · A' · B' + beta · C`, `A' = transA ? Aᵀ : A` (`[M, K]`),
/// `B' = transB ? Bᵀ : B` (`[K, N]`), C unidirectionally broadcastable to `[M, N]`.
enum GemmOp {
    struct Plan { var m: Int, n: Int, k: Int, transA: Bool, transB: Bool }

    static func plan(a: [Int], b: [Int], c: [Int]?, cOptional: Bool, _ ctx: KernelContext) throws -> Plan {
        guard a.count == 2, b.count == 2 else {
            throw ctx.error("A \(NNSupport.shapeText(a)) and B \(NNSupport.shapeText(b)) must be 2-D")
        }
        let ta = NNSupport.int(ctx, "transA", 0) != 0, tb = NNSupport.int(ctx, "transB", 0) != 0
        let m = ta ? a[1] : a[0], k = ta ? a[0] : a[1]
        let kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1]
        guard k == kb else {
            throw ctx.error("inner dims differ: A\(ta ? "ᵀ" : "") is [\(m), \(k)], B\(tb ? "ᵀ" : "") is [\(kb), \(n)]")
        }
        if let c {
            guard c.count <= 2, Broadcast.isUnidirectional(c, to: [m, n]) else {
                throw ctx.error("C \(NNSupport.shapeText(c)) does not broadcast to [\(m), \(n)]")
            }
        } else if !cOptional {
            throw ctx.error("input C is required before opset 11")
        }
        return Plan(m: m, n: n, k: k, transA: ta, transB: tb)
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext, cOptional: Bool) throws -> [TensorInfo] {
        let a = try ctx.required(inputs, 0), b = try ctx.required(inputs, 1)
        try NNSupport.checkFloat(a, "input A", ctx)
        let c = inputs.count > 2 ? inputs[2] : nil
        let p = try plan(a: a.shape, b: b.shape, c: c?.shape, cOptional: cOptional, ctx)
        return [TensorInfo(a.dtype, [p.m, p.n])]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext, cOptional: Bool) throws -> [Tensor] {
        // Weights converted to float32 here are a new tensor every run: packing them would be redone each time.
        let floatWeights = inputs.count > 1 && inputs[1]?.dtype == .float32
        return try NNSupport.asFloat32(inputs, ctx) { inputs in
            let a = try ctx.required(inputs, 0), b = try ctx.required(inputs, 1)
            let c = inputs.count > 2 ? inputs[2] : nil
            guard b.dtype == .float32, c == nil || c!.dtype == .float32 else {
                throw ctx.error("B and C must have A's float type (B is \(b.dtype))")
            }
            let p = try plan(a: a.shape, b: b.shape, c: c?.shape, cOptional: cOptional, ctx)
            let alpha = ctx.node.float("alpha") ?? 1, beta = ctx.node.float("beta") ?? 1
            var y = Tensor(uninitialized: .float32, shape: [p.m, p.n])
            if y.count == 0 { return [y] }
            // K = 0 reads no element of A or B; one-element stand-ins keep the pointers valid.
            let a1 = a.count == 0 ? Tensor(dtype: .float32, shape: [1]) : a
            let b1 = b.count == 0 ? Tensor(dtype: .float32, shape: [1]) : b
            let act = ctx.fusedActivation
            if floatWeights && gemvApplies(p, a: a, b: b, c: c, alpha: alpha, beta: beta, ctx) {
                guard case .activation(let kernelActivation) = NNSupport.convEpilogue(act) else { preconditionFailure("every fused activation has a kernel form") }
                gemv(p, a: a, b: b, c: c, activation: kernelActivation, into: &y)
                return [y]
            }
            func run(_ cArg: (UnsafePointer<Float>, [Int])?) {
                a1.withUnsafeBufferPointer(as: Float.self) { ap in
                    b1.withUnsafeBufferPointer(as: Float.self) { bp in
                        y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                            MatrixProduct.gemm(a: ap.baseAddress!, b: bp.baseAddress!, c: cArg, y: yp.baseAddress!, m: p.m, n: p.n, k: p.k,
                                               transA: p.transA, transB: p.transB, alpha: alpha, beta: beta)
                            act?.apply(yp.baseAddress!, count: yp.count)
                        }
                    }
                }
            }
            if let c, c.count > 0 {
                c.withUnsafeBufferPointer(as: Float.self) { cp in run((cp.baseAddress!, c.shape)) }
            } else {
                run(nil)
            }
            return [y]
        }
    }
}

extension GemmOp {
    /// Tests and measurements: `COMPRESS_GEMM_GEMV=0` keeps one-row products on OpenBLAS.
    nonisolated(unsafe) static var gemvEnabled = ProcessInfo.processInfo.environment["COMPRESS_GEMM_GEMV"] != "0"

    /// Whether a Gemm takes `gemv`: one row of A (a classifier at batch 1), B the graph's constant
    /// weights `[N, K]` (transB = 1, as PyTorch exports Linear), alpha 1, and C absent or N
    /// values added with beta 1; weights packed once (`KernelContext.packWeights`).
    static func gemvApplies(_ p: Plan, a: Tensor, b: Tensor, c: Tensor?, alpha: Float, beta: Float, _ ctx: KernelContext) -> Bool {
        guard gemvEnabled, p.m == 1, p.k > 0, p.n > 0, !p.transA, p.transB, alpha == 1, ctx.packWeights,
              ctx.constantInputs.contains(1), !Convolution.convolutionsThroughBLAS else { return false }
        if let c, c.count > 0 { return beta == 1 && c.count == p.n }
        return true
    }

    /// `Y[0, j] = act(C[j] + Σ_p A[0, p] · B[j, p])`, the activation in the store: the weights as the product's A (`PackedWeights`,
    /// packed on first use and kept), A's row as its one column: the one-column loop over
    /// contiguous packed rows, split over row groups, instead of OpenBLAS's sgemm, which
    /// repacked the whole weight matrix on every call.
    static func gemv(_ p: Plan, a: Tensor, b: Tensor, c: Tensor?, activation: KernelActivation, into y: inout Tensor) {
        a.withUnsafeBufferPointer(as: Float.self) { ap in
            b.withUnsafeBufferPointer(as: Float.self) { bp in
                let packed = PackedWeights.packed(storage: b.storage, base: bp.baseAddress!, groups: 1, rows: p.n, k: p.k)
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    func multiply(_ bias: UnsafePointer<Float>?) {
                        DirectGemm.multiply(m: p.n, n: 1, k: p.k, a: bp.baseAddress!, lda: p.k, b: ap.baseAddress!, ldb: 1,
                                            c: yp.baseAddress!, ldc: 1, bias: bias, activation: activation, packedA: packed)
                    }
                    if let c, c.count > 0 {
                        c.withUnsafeBufferPointer(as: Float.self) { multiply($0.baseAddress!) }
                    } else {
                        multiply(nil)
                    }
                }
            }
        }
    }
}

/// ONNX MatMul: NumPy `matmul` (1-D operands promoted and the unit dim removed, batch dims
/// broadcast).
enum MatMulOp {
    static func outputShape(_ a: [Int], _ b: [Int], _ ctx: KernelContext) throws -> [Int] {
        guard let s = MatrixProduct.matmulShape(a, b) else {
            throw ctx.error("shapes \(NNSupport.shapeText(a)) and \(NNSupport.shapeText(b)) do not fit a matrix product")
        }
        return s
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let a = try ctx.required(inputs, 0), b = try ctx.required(inputs, 1)
        try NNSupport.checkFloat(a, "input A", ctx)
        guard a.dtype == b.dtype else { throw ctx.error("A is \(a.dtype) but B is \(b.dtype)") }
        return [TensorInfo(a.dtype, try outputShape(a.shape, b.shape, ctx))]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let a0 = try ctx.required(inputs, 0), b0 = try ctx.required(inputs, 1)
        guard a0.dtype == b0.dtype else { throw ctx.error("A is \(a0.dtype) but B is \(b0.dtype)") }
        return try NNSupport.asFloat32(inputs, ctx) { inputs in
            let a = try ctx.required(inputs, 0), b = try ctx.required(inputs, 1)
            var y = Tensor(dtype: .float32, shape: try outputShape(a.shape, b.shape, ctx))
            if y.count == 0 || a.count == 0 || b.count == 0 { return [y] }
            a.withUnsafeBufferPointer(as: Float.self) { ap in
                b.withUnsafeBufferPointer(as: Float.self) { bp in
                    y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                        MatrixProduct.matmul(a: ap.baseAddress!, aShape: a.shape, b: bp.baseAddress!, bShape: b.shape, y: yp.baseAddress!)
                    }
                }
            }
            if let act = ctx.fusedActivation {
                y.withUnsafeMutableBufferPointer(as: Float.self) { act.apply($0.baseAddress!, count: $0.count) }
            }
            return [y]
        }
    }
}
