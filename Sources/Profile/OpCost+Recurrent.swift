import ModelIR
import Runtime

extension OpCost {
    /// LSTM, GRU and RNN, multiplied by sequence length, batch and directions.
    ///
    /// Per time step, batch element and direction with G gates (LSTM 4, GRU 3, RNN 1), hidden
    /// size H and input size I: MACs = G·H·(I + H) (the W·x and R·h products). FLOPs = 2·MACs,
    /// plus 2·G·H for the two bias vectors when B is given, plus the gate arithmetic:
    /// LSTM 9·H (4 activations, c = f⊙c + i⊙g, h = o⊙tanh(c)) and 6·H more with peepholes;
    /// GRU 8·H (3 activations, r⊙(R·h), h = (1−z)⊙h̃ + z⊙h); RNN 1·H (the activation).
    /// X is [seq, batch, I] (layout 0) or [batch, seq, I] (layout 1); `sequence_lens` is
    /// ignored, so every step of the padded length is counted (an upper bound).
    static func recurrent(_ node: Node, _ inputs: [TensorInfo?], _ outputs: [TensorInfo?]) throws -> Work {
        let x = try required(inputs, 0, "X")
        let w = try required(inputs, 1, "W")
        guard x.shape.count == 3, w.shape.count == 3 else { throw CostError("X and W must be 3-D, got \(x) and \(w)") }
        let gates = ["LSTM": 4, "GRU": 3, "RNN": 1][node.opType]!
        let layout = node.int("layout") ?? 0
        let seq = layout == 0 ? x.shape[0] : x.shape[1]
        let batch = layout == 0 ? x.shape[1] : x.shape[0]
        let directions = w.shape[0]
        let h = node.int("hidden_size").map(Int.init) ?? w.shape[1] / gates
        let i = w.shape[2]
        let macsPerStep = gates * h * (i + h)
        var flopsPerStep = 2 * macsPerStep + (present(inputs, 3) ? 2 * gates * h : 0)
        switch node.opType {
        case "LSTM": flopsPerStep += 9 * h + (present(inputs, 7) ? 6 * h : 0)
        case "GRU": flopsPerStep += 8 * h
        default: flopsPerStep += h
        }
        let steps = seq * batch * directions
        return Work(macs: steps * macsPerStep, flops: steps * flopsPerStep)
    }
}
