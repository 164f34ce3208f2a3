import ModelIR
import TensorCore

extension StandardOps {
    static func registerNN(_ r: OpRegistry) {
    }
}
