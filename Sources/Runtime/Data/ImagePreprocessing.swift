import Foundation
import TensorCore

/// How a decoded image becomes a model input tensor (`--size`, `--crop`, `--resize`, `--fit`,
/// `--pad-value`, `--pad-position`, `--mean`, `--std`, `--scale`, `--bgr`, `--layout`).
///
/// The steps, in order:
/// 1. Channels: a 1-channel input gets luma (`DecodedImage.gray()`, Pillow's `convert("L")`),
///    a 3-channel input gets RGB (gray files replicated).
/// 2. Geometry (`fit`), onto a canvas of the input's H×W:
///    - `crop` (default): resize to `size` — H×W, or one number N for the shorter side with the
///      aspect ratio kept (torchvision's `Resize(N)`: the longer side is ⌊N·long/short⌋) — or
///      to the input's H×W without `size`; then centre-crop to the input (torchvision's
///      `CenterCrop`: offset `round((size − crop) / 2)`, halves to even). A resized image
///      smaller than the input is an error.
///    - `letterbox`: scale by r = min(H/h, W/w) keeping the aspect ratio and pad the rest with
///      `padValue`. `padPosition` `.topLeft` is YOLOX's `preproc` (size ⌊w·r⌋ × ⌊h·r⌋, image at
///      the top left); `.center` is ultralytics' `LetterBox` (size round(w·r) × round(h·r),
///      halves to even, padding split as `round(d/2 − 0.1)` before and the rest after).
///    - `padRight`: text lines (PaddleOCR's `resize_norm_img`): height H, width
///      min(W, ⌈H·w/h⌉), padded on the right with `padValue`.
/// 3. Resampling (`resize`, see `ImageResize`): `bilinear` is OpenCV's `INTER_LINEAR`,
///    `nearest` Pillow's `NEAREST`, `pilBilinear` Pillow's antialiased `BILINEAR` (8-bit
///    result, exactly Pillow's), `area` OpenCV's `INTER_AREA`. Values of `bilinear`, `nearest`
///    and `area` stay fractional (no rounding back to 8 bits).
/// 4. Per channel c (in R, G, B order): `x = (p·scale − mean[c]) / std[c]`; `mean`/`std`
///    with one value apply it to every channel. Pad pixels are `padValue` before this step.
///    Defaults: scale 1/255, mean 0, std 1, so pixels land in [0, 1]. ImageNet:
///    `--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225`.
/// 5. `bgr` reverses the channel order after normalization; `layout` places channels first
///    (NCHW) or last (NHWC). Unset layout: NCHW unless the input's shape is
///    `[N, H, W, 1|3]` and not `[N, 1|3, H, W]`.
/// 6. The tensor is float32, converted when the input is float16 or float64.
public struct ImagePreprocessing: Equatable, Sendable {
    /// The resampling filter (`--resize`).
    public enum Resize: String, CaseIterable, Sendable { case bilinear, nearest, pilBilinear = "pil-bilinear", area }
    /// How the image is placed on the input's H×W (`--fit`).
    public enum Fit: String, CaseIterable, Sendable { case crop, letterbox, padRight = "pad-right" }
    /// Where a letterboxed image sits (`--pad-position`).
    public enum PadPosition: String, CaseIterable, Sendable { case center, topLeft = "top-left" }
    public enum Layout: String, CaseIterable, Sendable { case nchw, nhwc }

    /// Resize target: [H, W], or [N] for the shorter side (crop fit only); nil: the input's H×W.
    public var size: [Int]?
    /// Centre-crop size [H, W] (crop fit only); it must equal the input's H×W and pins a
    /// dynamic one. nil: the input's H×W.
    public var crop: [Int]?
    public var resize: Resize
    public var fit: Fit
    /// Pad pixel value(s) in pixel units (before scale/mean/std), one or r,g,b.
    public var padValue: [Float]
    public var padPosition: PadPosition
    public var mean: [Float]
    public var std: [Float]
    public var scale: Float
    public var bgr: Bool
    public var layout: Layout?

    public init(size: [Int]? = nil, crop: [Int]? = nil, resize: Resize = .bilinear, fit: Fit = .crop,
                padValue: [Float] = [114], padPosition: PadPosition = .center,
                mean: [Float] = [0], std: [Float] = [1],
                scale: Float = 1.0 / 255.0, bgr: Bool = false, layout: Layout? = nil) {
        self.size = size
        self.crop = crop
        self.resize = resize
        self.fit = fit
        self.padValue = padValue
        self.padPosition = padPosition
        self.mean = mean
        self.std = std
        self.scale = scale
        self.bgr = bgr
        self.layout = layout
    }

    /// The input H×W these settings imply when the model leaves it open: `crop`, else a
    /// two-number `size`; nil when neither says.
    public var canvas: [Int]? {
        if let crop { return crop }
        if let size, size.count == 2 { return size }
        return nil
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

    /// Checks the flag values (mean/std/pad counts, positive std and scale, size and crop).
    /// - Throws: `RuntimeError.badInput` naming the flag.
    public func validate() throws {
        if let size {
            guard size.count == 1 || size.count == 2, size.allSatisfy({ $0 > 0 }) else {
                throw RuntimeError.badInput("--size: expected HxW or one number N (the shorter side) with positive values, e.g. 256x256 or 256")
            }
            if size.count == 1 && fit != .crop {
                throw RuntimeError.badInput("--size \(size[0]): with --fit \(fit.rawValue), --size is the input's HxW (e.g. 640x640); one number (the shorter side) goes with --fit crop")
            }
        }
        if let crop {
            guard crop.count == 2, crop.allSatisfy({ $0 > 0 }) else { throw RuntimeError.badInput("--crop: expected HxW or one number N (NxN) with positive values, e.g. 224") }
            guard fit == .crop else { throw RuntimeError.badInput("--crop: only with --fit crop (\(fit.rawValue) places the image on the input's HxW itself)") }
        }
        guard mean.count == 1 || mean.count == 3 else { throw RuntimeError.badInput("--mean: give 1 or 3 values (r,g,b), not \(mean.count)") }
        guard std.count == 1 || std.count == 3 else { throw RuntimeError.badInput("--std: give 1 or 3 values (r,g,b), not \(std.count)") }
        guard padValue.count == 1 || padValue.count == 3 else { throw RuntimeError.badInput("--pad-value: give 1 or 3 values (r,g,b), not \(padValue.count)") }
        guard std.allSatisfy({ $0 != 0 && $0.isFinite }) else { throw RuntimeError.badInput("--std: every value must be finite and non-zero") }
        guard mean.allSatisfy(\.isFinite) else { throw RuntimeError.badInput("--mean: every value must be finite") }
        guard padValue.allSatisfy(\.isFinite) else { throw RuntimeError.badInput("--pad-value: every value must be finite") }
        guard scale.isFinite && scale != 0 else { throw RuntimeError.badInput("--scale: must be finite and non-zero") }
    }

    /// Where the resized image lands on the input's canvas: it is `height × width`, and canvas
    /// pixel (y, x) shows resized pixel (y − top, x − left) when that lies inside it (else pad).
    struct Placement: Equatable {
        var height: Int, width: Int
        var top: Int, left: Int
    }

    /// torchvision's shorter-side size: the short side becomes `n`, the long side
    /// `int(n · long / short)` (truncated, computed in double as Python does).
    static func shorterSide(_ n: Int, height h: Int, width w: Int) -> (height: Int, width: Int) {
        let short = min(h, w), long = max(h, w)
        let newLong = Int(Double(n) * Double(long) / Double(short))
        return w <= h ? (newLong, n) : (n, newLong)
    }

    /// The placement of an `h × w` image on an `H × W` input.
    /// - Throws: `DataError` naming `path` when a crop-fit resize is smaller than the input.
    func placement(imageHeight h: Int, imageWidth w: Int, height H: Int, width W: Int, input: String, path: String) throws -> Placement {
        switch fit {
        case .crop:
            var (rh, rw) = (H, W)
            if let size {
                (rh, rw) = size.count == 2 ? (size[0], size[1]) : ImagePreprocessing.shorterSide(size[0], height: h, width: w)
            }
            guard rh >= H, rw >= W else {
                let given = size.map { $0.count == 2 ? "\($0[0])x\($0[1])" : "\($0[0]) (\(rh)x\(rw) for this \(h)x\(w) image)" } ?? ""
                throw DataError(path, "--size \(given) is smaller than input '\(input)' (\(H)x\(W)); the resized image is centre-cropped to the input, so --size must be at least as large")
            }
            return Placement(height: rh, width: rw, top: -ImagePreprocessing.cropOffset(rh, H), left: -ImagePreprocessing.cropOffset(rw, W))
        case .letterbox:
            let r = min(Double(H) / Double(h), Double(W) / Double(w))
            switch padPosition {
            case .topLeft:
                // YOLOX: int(w * r), image at the top left.
                let rh = min(max(Int(Double(h) * r), 1), H), rw = min(max(Int(Double(w) * r), 1), W)
                return Placement(height: rh, width: rw, top: 0, left: 0)
            case .center:
                // ultralytics: round(w * r) (halves to even), top = round(dh / 2 − 0.1).
                let rh = min(max(Int((Double(h) * r).rounded(.toNearestOrEven)), 1), H)
                let rw = min(max(Int((Double(w) * r).rounded(.toNearestOrEven)), 1), W)
                let top = Int((Double(H - rh) / 2 - 0.1).rounded(.toNearestOrEven))
                let left = Int((Double(W - rw) / 2 - 0.1).rounded(.toNearestOrEven))
                return Placement(height: rh, width: rw, top: top, left: left)
            }
        case .padRight:
            // PaddleOCR: resized_w = ceil(imgH * (w / h)), at most imgW.
            let rw = min(max(Int((Double(H) * (Double(w) / Double(h))).rounded(.up)), 1), W)
            return Placement(height: H, width: rw, top: 0, left: 0)
        }
    }

    /// The input tensor for `image`, shaped exactly as `input.shape`.
    /// - Throws: `DataError` naming `path` when the image cannot feed the input.
    public func tensor(from image: DecodedImage, for input: DataInput, path: String) throws -> Tensor {
        let g = try geometry(for: input, path: path)
        if g.channels == 1 && (mean.count == 3 || std.count == 3 || padValue.count == 3) {
            let flag = mean.count == 3 ? "--mean" : std.count == 3 ? "--std" : "--pad-value"
            throw DataError(path, "input '\(input.name)' takes 1-channel (gray) images; \(flag) needs 1 value, not 3")
        }
        let C = g.channels, H = g.height, W = g.width
        if let crop, crop != [H, W] {
            throw DataError(path, "--crop \(crop[0])x\(crop[1]) differs from input '\(input.name)' (\(H)x\(W)); the crop is what the model takes")
        }
        if fit != .crop, let size, size != [H, W] {
            throw DataError(path, "--size \(size.map(String.init).joined(separator: "x")) differs from input '\(input.name)' (\(H)x\(W)); with --fit \(fit.rawValue) it is the input's size")
        }
        let img = g.channels == 1 ? image.gray() : image.rgb()
        let p = try placement(imageHeight: img.height, imageWidth: img.width, height: H, width: W, input: input.name, path: path)
        // The part of the resized image that shows on the canvas.
        let ys = max(0, -p.top)..<min(p.height, H - p.top), xs = max(0, -p.left)..<min(p.width, W - p.left)
        let areaShrinks = img.height >= p.height && img.width >= p.width
        let rows = ImageResize.taps(resize, in: img.height, out: p.height, range: ys, areaShrinks: areaShrinks)
        let cols = ImageResize.taps(resize, in: img.width, out: p.width, range: xs, areaShrinks: areaShrinks)
        let resized: [Float] = resize == .pilBilinear
            ? ImageResize.resamplePillow(img, rows: rows, cols: cols,
                                         verticalFirst: ImageResize.pillowVerticalFirst(height: img.height, width: img.width,
                                                                                        outHeight: p.height, outWidth: p.width)).map(Float.init)
            : ImageResize.resample(img, rows: rows, cols: cols)
        let m = (0..<C).map { mean.count == 1 ? mean[0] : mean[$0] }
        let sd = (0..<C).map { std.count == 1 ? std[0] : std[$0] }
        let pad = (0..<C).map { c in ((padValue.count == 1 ? padValue[0] : padValue[c]) * scale - m[c]) / sd[c] }
        let shape = g.hasBatch ? (g.layout == .nchw ? [1, C, H, W] : [1, H, W, C]) : (g.layout == .nchw ? [C, H, W] : [H, W, C])
        var t = Tensor(uninitialized: .float32, shape: shape)
        resized.withUnsafeBufferPointer { rz in
            t.withUnsafeMutableBufferPointer(as: Float.self) { out in
                let rowLen = xs.count * C
                for y in 0..<H {
                    let ry = y - p.top
                    let inside = ys.contains(ry)
                    for x in 0..<W {
                        let rx = x - p.left
                        let src = inside && xs.contains(rx) ? (ry - ys.lowerBound) * rowLen + (rx - xs.lowerBound) * C : -1
                        for c in 0..<C {
                            let v = src >= 0 ? (rz[src + c] * scale - m[c]) / sd[c] : pad[c]
                            let oc = bgr ? C - 1 - c : c
                            out[g.layout == .nchw ? (oc * H + y) * W + x : (y * W + x) * C + oc] = v
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

    /// torchvision's centre-crop offset: `int(round((size − crop) / 2))`, halves to even.
    static func cropOffset(_ size: Int, _ crop: Int) -> Int {
        let diff = size - crop, q = diff / 2
        return diff % 2 == 0 || q % 2 == 0 ? q : q + 1
    }
}
