import ModelIR
import TensorCore

extension StandardOps {
    static func registerControlFlow(_ r: OpRegistry) {
    }
}
