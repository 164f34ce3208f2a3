/// Swift types that are the element type of some `DType`.
public protocol TensorScalar {
    static var dtype: DType { get }
}
extension Float: TensorScalar { public static var dtype: DType { .float32 } }
extension Double: TensorScalar { public static var dtype: DType { .float64 } }
extension Float16: TensorScalar { public static var dtype: DType { .float16 } }
extension Int8: TensorScalar { public static var dtype: DType { .int8 } }
extension UInt8: TensorScalar { public static var dtype: DType { .uint8 } }
extension Int16: TensorScalar { public static var dtype: DType { .int16 } }
extension UInt16: TensorScalar { public static var dtype: DType { .uint16 } }
extension Int32: TensorScalar { public static var dtype: DType { .int32 } }
extension UInt32: TensorScalar { public static var dtype: DType { .uint32 } }
extension Int64: TensorScalar { public static var dtype: DType { .int64 } }
extension UInt64: TensorScalar { public static var dtype: DType { .uint64 } }
extension Bool: TensorScalar { public static var dtype: DType { .bool } }
