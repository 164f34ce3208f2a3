import ModelIR
import TensorCore

extension StandardOps {
    /// The operators detection and transformer exports add on top of the NN family: box
    /// selection and region pooling for detectors, grid sampling for spatial transformers and
    /// deformable heads, and fused scaled dot-product attention. Each lives in its own file and
    /// follows the ONNX reference evaluator (onnx/reference/ops/op_*.py); see
    /// Docs/ops-detection-attention.md.
    static func registerDetectionOps(_ r: OpRegistry) {
        registerNonMaxSuppression(r)  // DetectionNMS.swift: NonMaxSuppression
        registerRoiAlign(r)           // DetectionRoiAlign.swift: RoiAlign
        registerGridSample(r)         // TensorGridSample.swift: GridSample
        registerAttention(r)          // NNAttention.swift: Attention
    }
}
