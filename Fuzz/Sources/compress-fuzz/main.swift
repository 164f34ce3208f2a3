// libFuzzer entry point: COMPRESS_FUZZ_TARGET names the target (FuzzTargets.all); libFuzzer
// supplies `main`, so this file has no top-level code.
import FuzzTargets
import Foundation

private let target: String = {
    guard let t = ProcessInfo.processInfo.environment["COMPRESS_FUZZ_TARGET"], FuzzTargets.all.contains(t) else {
        fputs("set COMPRESS_FUZZ_TARGET to one of: \(FuzzTargets.all.joined(separator: ", "))\n", stderr)
        exit(2)
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    FuzzTargets.run(target, bytes)
    return 0
}
