import ModelIR
import TensorCore

extension StandardOps {
    static func registerTensorOps(_ r: OpRegistry) {
    }
}
