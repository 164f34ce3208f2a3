import Foundation
import TensorCore

/// How a decoded image becomes a model input tensor (`--size`, `--resize`, `--mean`, `--std`,
/// `--scale`, `--bgr`, `--layout`).
///
/// The steps, in order:
/// 1. Channels: a 1-channel input gets luma (`DecodedImage.gray()`, Pillow's `convert("L")`),
///    a 3-channel input gets RGB (gray files replicated).
/// 2. Resize to `size` (default: the input's H×W). Bilinear samples at half-pixel centres,
///    `src = (dst + 0.5)·in/out − 0.5` clamped to the image, without antialiasing — the rule of
///    OpenCV's `INTER_LINEAR` and PyTorch's `interpolate(align_corners=False)`; Pillow's
///    `resize` low-pass filters when shrinking and differs. Nearest takes
///    `src = min(⌊(dst + 0.5)·in/out⌋, in − 1)`, Pillow's `NEAREST`. Values stay fractional
///    (no rounding back to 8 bits).
/// 3. Centre crop to the input's H×W when `size` is larger (torchvision's `CenterCrop`:
///    offset `round((size − crop) / 2)`, halves to even); a `size` smaller than the input is
///    an error.
/// 4. Per channel c (in R, G, B order): `x = (p·scale − mean[c]) / std[c]`; `mean`/`std`
///    with one value apply it to every channel. Defaults: scale 1/255, mean 0, std 1, so pixels
///    land in [0, 1]. ImageNet: `--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225`.
/// 5. `bgr` reverses the channel order after normalization; `layout` places channels first
///    (NCHW) or last (NHWC). Unset layout: NCHW unless the input's shape is
///    `[N, H, W, 1|3]` and not `[N, 1|3, H, W]`.
/// 6. The tensor is float32, converted when the input is float16 or float64.
public struct ImagePreprocessing: Equatable, Sendable {
    public enum Resize: String, CaseIterable, Sendable { case bilinear, nearest }
    public enum Layout: String, CaseIterable, Sendable { case nchw, nhwc }

    /// Resize target (height, width); nil resizes straight to the input's H×W.
    public var size: [Int]?
    public var resize: Resize
    public var mean: [Float]
    public var std: [Float]
    public var scale: Float
    public var bgr: Bool
    public var layout: Layout?

    public init(size: [Int]? = nil, resize: Resize = .bilinear, mean: [Float] = [0], std: [Float] = [1],
                scale: Float = 1.0 / 255.0, bgr: Bool = false, layout: Layout? = nil) {
        self.size = size
        self.resize = resize
        self.mean = mean
        self.std = std
        self.scale = scale
        self.bgr = bgr
        self.layout = layout
    }

    /// Where an input's channel, height and width dimensions are.
    struct Geometry: Equatable {
        var layout: Layout
        var channels: Int, height: Int, width: Int
        var hasBatch: Bool
    }

    /// The layout of a rank-3 or rank-4 input shape, explicit or inferred.
    static func layout(of shape: [Int], explicit: Layout?) -> Layout {
        if let explicit { return explicit }
        let dims = shape.count == 4 ? Array(shape.dropFirst()) : shape
        guard dims.count == 3 else { return .nchw }
        let first = dims[0] == 1 || dims[0] == 3, last = dims[2] == 1 || dims[2] == 3
        return !first && last ? .nhwc : .nchw
    }

    func geometry(for input: DataInput, path: String) throws -> Geometry {
        let s = input.shape
        guard s.count == 3 || s.count == 4 else {
            throw DataError(path, "an image cannot feed input '\(input.name)' of shape \(input.shapeText): images need a rank-4 [N,C,H,W] or [N,H,W,C] input (or rank 3 without N)")
        }
        let hasBatch = s.count == 4
        if hasBatch && s[0] != 1 {
            throw DataError(path, "an image makes one sample of batch 1; input '\(input.name)' is pinned to batch \(s[0])")
        }
        let d = hasBatch ? Array(s.dropFirst()) : s
        let l = ImagePreprocessing.layout(of: s, explicit: layout)
        let g = l == .nchw ? Geometry(layout: l, channels: d[0], height: d[1], width: d[2], hasBatch: hasBatch)
                           : Geometry(layout: l, channels: d[2], height: d[0], width: d[1], hasBatch: hasBatch)
        guard g.channels == 1 || g.channels == 3 else {
            throw DataError(path, "input '\(input.name)' \(input.shapeText) has \(g.channels) channels in \(l.rawValue.uppercased()) layout; images give 1 or 3 (use --layout \(l == .nchw ? "nhwc" : "nchw") if the channels are elsewhere)")
        }
        guard g.height > 0, g.width > 0 else { throw DataError(path, "input '\(input.name)' \(input.shapeText) has an empty image plane") }
        return g
    }

    /// Checks the flag values (mean/std counts, positive std and scale, size).
    /// - Throws: `RuntimeError.badInput` naming the flag.
    public func validate() throws {
        if let size, size.count != 2 || size.contains(where: { $0 <= 0 }) {
            throw RuntimeError.badInput("--size: expected HxW with positive H and W, e.g. 256x256")
        }
        guard mean.count == 1 || mean.count == 3 else { throw RuntimeError.badInput("--mean: give 1 or 3 values (r,g,b), not \(mean.count)") }
        guard std.count == 1 || std.count == 3 else { throw RuntimeError.badInput("--std: give 1 or 3 values (r,g,b), not \(std.count)") }
        guard std.allSatisfy({ $0 != 0 && $0.isFinite }) else { throw RuntimeError.badInput("--std: every value must be finite and non-zero") }
        guard mean.allSatisfy(\.isFinite) else { throw RuntimeError.badInput("--mean: every value must be finite") }
        guard scale.isFinite && scale != 0 else { throw RuntimeError.badInput("--scale: must be finite and non-zero") }
    }

    /// The input tensor for `image`, shaped exactly as `input.shape`.
    /// - Throws: `DataError` naming `path` when the image cannot feed the input.
    public func tensor(from image: DecodedImage, for input: DataInput, path: String) throws -> Tensor {
        let g = try geometry(for: input, path: path)
        if g.channels == 1 && (mean.count == 3 || std.count == 3) {
            throw DataError(path, "input '\(input.name)' takes 1-channel (gray) images; --mean/--std need 1 value, not 3")
        }
        let img = g.channels == 1 ? image.gray() : image.rgb()
        let outH = size?[0] ?? g.height, outW = size?[1] ?? g.width
        guard outH >= g.height, outW >= g.width else {
            throw DataError(path, "--size \(outH)x\(outW) is smaller than input '\(input.name)' (\(g.height)x\(g.width)); the resized image is centre-cropped to the input, so --size must be at least as large")
        }
        let top = ImagePreprocessing.cropOffset(outH, g.height), left = ImagePreprocessing.cropOffset(outW, g.width)
        let rows = ImagePreprocessing.sampling(in: img.height, out: outH, mode: resize)
        let cols = ImagePreprocessing.sampling(in: img.width, out: outW, mode: resize)
        let C = g.channels, H = g.height, W = g.width
        let m = (0..<C).map { mean.count == 1 ? mean[0] : mean[$0] }
        let sd = (0..<C).map { std.count == 1 ? std[0] : std[$0] }
        let shape = g.hasBatch ? (g.layout == .nchw ? [1, C, H, W] : [1, H, W, C]) : (g.layout == .nchw ? [C, H, W] : [H, W, C])
        var t = Tensor(uninitialized: .float32, shape: shape)
        img.pixels.withUnsafeBufferPointer { px in
            t.withUnsafeMutableBufferPointer(as: Float.self) { out in
                let rowStride = img.width * C
                for y in 0..<H {
                    let r = rows[y + top]
                    for x in 0..<W {
                        let c0 = cols[x + left]
                        for c in 0..<C {
                            let p00 = Float(px[r.lo * rowStride + c0.lo * C + c]), p01 = Float(px[r.lo * rowStride + c0.hi * C + c])
                            let p10 = Float(px[r.hi * rowStride + c0.lo * C + c]), p11 = Float(px[r.hi * rowStride + c0.hi * C + c])
                            let top = p00 + (p01 - p00) * c0.w, bottom = p10 + (p11 - p10) * c0.w
                            let p = top + (bottom - top) * r.w
                            let v = (p * scale - m[c]) / sd[c]
                            let oc = bgr ? C - 1 - c : c
                            let idx = g.layout == .nchw ? (oc * H + y) * W + x : (y * W + x) * C + oc
                            out[idx] = v
                        }
                    }
                }
            }
        }
        switch input.dtype {
        case .float32: return t
        case .float16, .float64, .bfloat16: return t.converted(to: input.dtype)
        default:
            throw DataError(path, "input '\(input.name)' takes \(input.dtype.name); image preprocessing produces float (use .npy files for other types)")
        }
    }

    /// A source coordinate for one output coordinate: the two neighbours and the weight of
    /// the upper one (nearest uses lo == hi, w = 0).
    struct Tap: Equatable { var lo: Int, hi: Int, w: Float }

    static func sampling(in n: Int, out m: Int, mode: Resize) -> [Tap] {
        let ratio = Double(n) / Double(m)
        return (0..<m).map { d in
            switch mode {
            case .nearest:
                let s = min(Int(((Double(d) + 0.5) * ratio).rounded(.down)), n - 1)
                return Tap(lo: s, hi: s, w: 0)
            case .bilinear:
                let s = max((Double(d) + 0.5) * ratio - 0.5, 0)
                let lo = min(Int(s.rounded(.down)), n - 1)
                let hi = min(lo + 1, n - 1)
                return Tap(lo: lo, hi: hi, w: lo == hi ? 0 : Float(s - Double(lo)))
            }
        }
    }

    /// torchvision's centre-crop offset: `int(round((size − crop) / 2))`, halves to even.
    static func cropOffset(_ size: Int, _ crop: Int) -> Int {
        let diff = size - crop, q = diff / 2
        return diff % 2 == 0 || q % 2 == 0 ? q : q + 1
    }
}
