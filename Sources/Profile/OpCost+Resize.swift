import ModelIR
import Runtime

extension OpCost {
    /// Resize and Upsample by output elements. Nearest is a gather (no arithmetic). Linear
    /// interpolation over d resized axes is 2^d − 1 one-dimensional lerps per output element at
    /// 3 FLOPs each (sub, mul, add); cubic is (4^d − 1)/3 four-tap interpolations at 7 FLOPs
    /// (4 mul, 3 add). An axis is resized when its input and output sizes differ.
    static func resize(_ node: Node, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?]) throws -> Work {
        let x = try required(inputs, 0, "X")
        let y = try output(outputs)
        guard x.shape.count == y.shape.count else { throw CostError("input \(x) and output \(y) ranks differ") }
        let mode = node.string("mode") ?? "nearest"
        let d = zip(x.shape, y.shape).filter { $0 != $1 }.count
        var p = 1
        switch mode {
        case "linear", "bilinear", "trilinear":
            for _ in 0..<d { p *= 2 }
            return Work(flops: y.count * 3 * (p - 1))
        case "cubic", "bicubic":
            for _ in 0..<d { p *= 4 }
            return Work(flops: y.count * 7 * ((p - 1) / 3))
        default:
            return .movement
        }
    }
}
