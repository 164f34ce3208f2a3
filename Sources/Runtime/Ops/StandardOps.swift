/// The list of operator families. Each family lives in its own file under Ops/ and registers its
/// operators here; keep one line per family.
enum StandardOps {
    static func registerAll(_ r: OpRegistry) {
        registerElementwise(r)     // Ops/Elementwise*.swift: unary, binary, comparison, logic, Where, Cast, Clip, activations
        registerReductions(r)      // Ops/Reduce*.swift: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax, CumSum
        registerNN(r)              // Ops/Conv*.swift, Gemm, MatMul, pooling, normalization
        registerTensorOps(r)       // Ops/Tensor*.swift: shape and movement ops, constants, Resize, TopK, NonZero, Einsum
        registerSequenceOps(r)     // Ops/Recurrent.swift: LSTM, GRU
        registerQuantization(r)    // Ops/Quantize*.swift: QuantizeLinear, DequantizeLinear, QLinear*, *Integer
        registerMicrosoftQuantization(r) // Ops/QuantizationMicrosoft*.swift: com.microsoft QLinearAdd/Mul/Concat/pools/activations, QGemm, DynamicQuantize*
        registerControlFlow(r)     // Ops/ControlFlow.swift: If, Loop
        registerDetectionOps(r)    // Ops/Detection*.swift, TensorGridSample.swift, NNAttention.swift: NonMaxSuppression, RoiAlign, GridSample, Attention
        registerMicrosoftContrib(r) // Ops/MicrosoftContrib.swift: com.microsoft FusedConv, Gelu family, SkipLayerNormalization
    }
}
