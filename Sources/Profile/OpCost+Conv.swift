import ModelIR
import Runtime

extension OpCost {
    /// Conv of any rank, group and dilation (also ConvInteger and QLinearConv).
    ///
    /// MACs = N·Cout·∏out_spatial·(Cin/group)·∏kernel, which is the output element count times
    /// the weight's elements per output channel (W is [Cout, Cin/group, k1, …, kr]). Dilation
    /// spreads the taps but does not change their number. FLOPs = 2·MACs + one per output
    /// element when a bias is given (ONNX Conv, §Operators.md "Conv").
    static func conv(_ node: Node, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?], weight: Int, bias: Int?) throws -> Work {
        let w = try required(inputs, weight, "weight")
        let y = try output(outputs)
        guard w.shape.count >= 3, w.shape[0] > 0 else {
            throw CostError("weight must be [Cout, Cin/group, k…], got \(w)")
        }
        guard y.shape.count == w.shape.count, y.shape[1] == w.shape[0] else {
            throw CostError("output \(y) does not match weight \(w)")
        }
        let macs = y.count * (w.count / w.shape[0])
        let biasFlops = bias.map { present(inputs, $0) } == true ? y.count : 0
        return Work(macs: macs, flops: 2 * macs + biasFlops)
    }

    /// ConvTranspose of any rank, group and dilation.
    ///
    /// Every input element is multiplied by the (Cout/group)·∏kernel weights of its channel and
    /// scattered into the output: MACs = N·Cin·∏in_spatial·(Cout/group)·∏kernel = input elements
    /// × weight elements per input channel (W is [Cin, Cout/group, k1, …, kr]). Stride spaces the
    /// scatter out but adds no products (onnx-tool 1.0.1 multiplies by the stride product and
    /// counts stride-2 layers 8× too high in 3-D). FLOPs = 2·MACs + one per output element for a bias.
    static func convTranspose(_ node: Node, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?]) throws -> Work {
        let x = try required(inputs, 0, "input")
        let w = try required(inputs, 1, "weight")
        let y = try output(outputs)
        guard w.shape.count >= 3, w.shape[0] > 0, x.shape.count == w.shape.count, x.shape[1] == w.shape[0] else {
            throw CostError("weight \(w) does not fit input \(x) (expected [Cin, Cout/group, k…])")
        }
        let macs = x.count * (w.count / w.shape[0])
        return Work(macs: macs, flops: 2 * macs + (present(inputs, 2) ? y.count : 0))
    }

    /// MaxPool, AveragePool and LpPool of any rank: one operation per window element per
    /// output element (a comparison for max, an addition for average; LpPool two, |x|^p and add).
    /// The window is `kernel_shape` over all spatial axes, so 3-D pooling counts k1·k2·k3
    /// (onnx-tool 1.0.1 counts only two of the three axes).
    static func pool(_ node: Node, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?]) throws -> Work {
        let y = try output(outputs)
        guard let k = node.ints("kernel_shape"), !k.isEmpty else { throw CostError("kernel_shape is missing") }
        guard y.shape.count == k.count + 2 else { throw CostError("kernel_shape \(k) does not fit output \(y)") }
        let window = k.reduce(1) { $0 * Int($1) }
        return Work(flops: y.count * window * (node.opType == "LpPool" ? 2 : 1))
    }
}
