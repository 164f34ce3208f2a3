/// How a sliding-window operator (Conv, ConvTranspose, pooling) chooses its padding
/// (ONNX `auto_pad`).
public enum AutoPad: String, Sendable, CaseIterable {
    /// Explicit `pads`.
    case notSet = "NOTSET"
    /// Pad so that `out = ceil(in / stride)`; an odd total puts the extra element at the end.
    case sameUpper = "SAME_UPPER"
    /// As `sameUpper`, with the extra element at the beginning.
    case sameLower = "SAME_LOWER"
    /// No padding.
    case valid = "VALID"
}

/// The geometry of a sliding window over the spatial dims of an NC[D]HW tensor: input extent,
/// window (kernel) extent, strides, dilations, padding on both sides and the output extent.
///
/// The window of output position `o` along an axis covers input positions
/// `o·stride − padBegin + k·dilation` for `k` in `0..<kernel`; positions outside `0..<input`
/// are padding.
public struct WindowGeometry: Equatable, Sendable, CustomStringConvertible {
    public var input: [Int]
    public var kernel: [Int]
    public var strides: [Int]
    public var dilations: [Int]
    public var padsBegin: [Int]
    public var padsEnd: [Int]
    public var output: [Int]

    public init(input: [Int], kernel: [Int], strides: [Int], dilations: [Int], padsBegin: [Int], padsEnd: [Int], output: [Int]) {
        self.input = input
        self.kernel = kernel
        self.strides = strides
        self.dilations = dilations
        self.padsBegin = padsBegin
        self.padsEnd = padsEnd
        self.output = output
    }

    public var rank: Int { input.count }
    public var inputCount: Int { input.reduce(1, *) }
    public var kernelCount: Int { kernel.reduce(1, *) }
    public var outputCount: Int { output.reduce(1, *) }
    /// Extent of a dilated window along axis `i`: `(kernel − 1)·dilation + 1`.
    public func span(_ i: Int) -> Int { (kernel[i] - 1) * dilations[i] + 1 }

    /// Whether the window is the identity map: 1×…×1 kernel, stride 1, no padding (the output
    /// equals the input positions, so a convolution is a plain matrix product).
    public var isPointwise: Bool {
        kernel.allSatisfy { $0 == 1 } && strides.allSatisfy { $0 == 1 }
            && padsBegin.allSatisfy { $0 == 0 } && padsEnd.allSatisfy { $0 == 0 }
    }

    public var description: String {
        "in \(input) kernel \(kernel) strides \(strides) dilations \(dilations) pads \(padsBegin + padsEnd) -> out \(output)"
    }

    /// Errors of window arithmetic; the op layer turns them into node errors.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Geometry of a convolution or pooling window (ONNX Conv / MaxPool / AveragePool).
    ///
    /// - NOTSET: `out = floor((in + padBegin + padEnd − span) / stride) + 1`, or `ceil(…) + 1`
    ///   when `ceilMode`; with `ceilMode` a last window that would start past the input and the
    ///   begin padding (in the end padding) is dropped (ONNX pooling spec, PyTorch's rule).
    /// - VALID: no padding, same formula.
    /// - SAME_UPPER / SAME_LOWER: `out = ceil(in / stride)`, total padding
    ///   `max(0, (out − 1)·stride + span − in)` split in half, the odd element at the end
    ///   (UPPER) or the beginning (LOWER).
    /// - Parameters:
    ///   - pads: `[x1_begin, x2_begin, …, x1_end, x2_end, …]`; empty means zeros.
    /// - Throws: `Failure` when a window does not fit or the attribute lengths disagree.
    public static func forward(input: [Int], kernel: [Int], strides: [Int], dilations: [Int], pads: [Int],
                               autoPad: AutoPad, ceilMode: Bool = false) throws -> WindowGeometry {
        let r = input.count
        let strides = strides.isEmpty ? Array(repeating: 1, count: r) : strides
        let dilations = dilations.isEmpty ? Array(repeating: 1, count: r) : dilations
        let pads = pads.isEmpty ? Array(repeating: 0, count: 2 * r) : pads
        guard kernel.count == r else { throw Failure("kernel_shape has \(kernel.count) dims, the input has \(r) spatial dims") }
        guard strides.count == r else { throw Failure("strides has \(strides.count) values, expected \(r)") }
        guard dilations.count == r else { throw Failure("dilations has \(dilations.count) values, expected \(r)") }
        guard pads.count == 2 * r else { throw Failure("pads has \(pads.count) values, expected \(2 * r)") }
        guard kernel.allSatisfy({ $0 >= 1 }) else { throw Failure("kernel_shape \(kernel) has a dim below 1") }
        guard strides.allSatisfy({ $0 >= 1 }) else { throw Failure("strides \(strides) has a value below 1") }
        guard dilations.allSatisfy({ $0 >= 1 }) else { throw Failure("dilations \(dilations) has a value below 1") }
        guard pads.allSatisfy({ $0 >= 0 }) else { throw Failure("pads \(pads) has a negative value") }
        var g = WindowGeometry(input: input, kernel: kernel, strides: strides, dilations: dilations,
                               padsBegin: Array(repeating: 0, count: r), padsEnd: Array(repeating: 0, count: r),
                               output: Array(repeating: 0, count: r))
        for i in 0..<r {
            let span = g.span(i), s = strides[i]
            switch autoPad {
            case .notSet, .valid:
                let pb = autoPad == .valid ? 0 : pads[i], pe = autoPad == .valid ? 0 : pads[r + i]
                let room = input[i] + pb + pe - span
                guard room >= 0 else {
                    throw Failure("window of extent \(span) on axis \(i) does not fit the padded input \(input[i] + pb + pe)")
                }
                var out = (ceilMode ? (room + s - 1) / s : room / s) + 1
                if ceilMode && (out - 1) * s >= input[i] + pb { out -= 1 }
                g.padsBegin[i] = pb
                g.padsEnd[i] = pe
                g.output[i] = out
            case .sameUpper, .sameLower:
                let out = (input[i] + s - 1) / s
                let total = max(0, (out - 1) * s + span - input[i])
                g.padsBegin[i] = autoPad == .sameUpper ? total / 2 : total - total / 2
                g.padsEnd[i] = total - g.padsBegin[i]
                g.output[i] = out
            }
        }
        return g
    }

    /// Geometry of a transposed convolution (ONNX ConvTranspose). Here `input` is the
    /// ConvTranspose's input extent and `output` its (larger) output extent; the window maps input
    /// position `i` to outputs `i·stride − padBegin + k·dilation`.
    ///
    /// `out = stride·(in − 1) + outputPadding + span − padBegin − padEnd`. When `outputShape` is
    /// given (or auto_pad is SAME_*, where `outputShape = in·stride`), the pads are derived from
    /// `total = stride·(in − 1) + outputPadding + span − outputShape`: SAME_UPPER puts
    /// `total/2` first, any other mode puts `total − total/2` first (ONNX ConvTranspose spec).
    public static func transposed(input: [Int], kernel: [Int], strides: [Int], dilations: [Int], pads: [Int],
                                  outputPadding: [Int], outputShape: [Int]?, autoPad: AutoPad) throws -> WindowGeometry {
        let r = input.count
        let strides = strides.isEmpty ? Array(repeating: 1, count: r) : strides
        let dilations = dilations.isEmpty ? Array(repeating: 1, count: r) : dilations
        var pads = pads.isEmpty ? Array(repeating: 0, count: 2 * r) : pads
        let outputPadding = outputPadding.isEmpty ? Array(repeating: 0, count: r) : outputPadding
        guard kernel.count == r else { throw Failure("kernel_shape has \(kernel.count) dims, the input has \(r) spatial dims") }
        guard strides.count == r, strides.allSatisfy({ $0 >= 1 }) else { throw Failure("strides \(strides) must be \(r) values ≥ 1") }
        guard dilations.count == r, dilations.allSatisfy({ $0 >= 1 }) else { throw Failure("dilations \(dilations) must be \(r) values ≥ 1") }
        guard pads.count == 2 * r, pads.allSatisfy({ $0 >= 0 }) else { throw Failure("pads \(pads) must be \(2 * r) values ≥ 0") }
        guard outputPadding.count == r, outputPadding.allSatisfy({ $0 >= 0 }) else {
            throw Failure("output_padding \(outputPadding) must be \(r) values ≥ 0")
        }
        var target = outputShape
        if let t = target {
            guard t.count == r else { throw Failure("output_shape \(t) has \(t.count) values, expected \(r)") }
        } else if autoPad == .sameUpper || autoPad == .sameLower {
            target = zip(input, strides).map { $0 * $1 }
        }
        if autoPad == .valid { pads = Array(repeating: 0, count: 2 * r) }
        var g = WindowGeometry(input: input, kernel: kernel, strides: strides, dilations: dilations,
                               padsBegin: Array(pads[0..<r]), padsEnd: Array(pads[r...]), output: Array(repeating: 0, count: r))
        for i in 0..<r {
            let full = strides[i] * (input[i] - 1) + outputPadding[i] + g.span(i)
            if let t = target {
                // A negative total (output_shape larger than the full result) extends the end;
                // halves round toward −∞ as in the spec's reference (Python `//`).
                let total = full - t[i]
                let half = total >= 0 ? total / 2 : -((-total + 1) / 2)
                g.padsBegin[i] = autoPad == .sameUpper ? half : total - half
                g.padsEnd[i] = total - g.padsBegin[i]
                g.output[i] = t[i]
            } else {
                g.output[i] = full - g.padsBegin[i] - g.padsEnd[i]
            }
            guard g.output[i] >= 1 else { throw Failure("output extent \(g.output[i]) on axis \(i) is not positive") }
        }
        return g
    }
}
