import ModelIR
import TensorCore

extension StandardOps {
    static func registerQuantization(_ r: OpRegistry) {
    }
}
