import ModelIR
import TensorCore

extension StandardOps {
    static func registerSequenceOps(_ r: OpRegistry) {
    }
}
