import ArgumentParser
import Runtime

/// Image preprocessing flags (`--size`, `--crop`, `--resize`, `--fit`, `--pad-value`,
/// `--pad-position`, `--mean`, `--std`, `--scale`, `--bgr`, `--layout`); they apply to PNG/JPEG
/// samples only. The math is `ImagePreprocessing`'s; recipes per model family are in
/// Docs/preprocessing.md.
struct PreprocessOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Images: resize to HxW, or with one number N the shorter side to N keeping the aspect ratio (torchvision Resize(N)), before the centre crop to the input's size (default: the input's size). With --fit letterbox/pad-right: the input's HxW, for models whose H and W are dynamic.", valueName: "HxW|N"))
    var size: String?

    @Option(help: ArgumentHelp("Images: centre-crop size after the resize (torchvision CenterCrop; default and only allowed value: the input's HxW; pins a dynamic one).", valueName: "HxW|N"))
    var crop: String?

    @Option(help: ArgumentHelp("Images: resampling filter. bilinear: OpenCV INTER_LINEAR (half-pixel, no antialiasing); pil-bilinear: Pillow/torchvision BILINEAR (antialiased when shrinking, Pillow's 8-bit result exactly); area: OpenCV INTER_AREA; nearest: Pillow NEAREST.", valueName: "bilinear|pil-bilinear|area|nearest"))
    var resize: ImagePreprocessing.Resize = .bilinear

    @Option(help: ArgumentHelp("Images: how the image meets the input's HxW. crop: resize (--size) then centre-crop; letterbox: keep the aspect ratio, pad to HxW (YOLO); pad-right: height H, aspect kept, pad on the right (OCR text lines, PaddleOCR).", valueName: "crop|letterbox|pad-right"))
    var fit: ImagePreprocessing.Fit = .crop

    @Option(name: .customLong("pad-value"), help: ArgumentHelp("Images: pixel value of the padding of letterbox/pad-right, before --scale/--mean/--std; one value or r,g,b (default 114, YOLO's gray).", valueName: "V|r,g,b"))
    var padValue: String?

    @Option(name: .customLong("pad-position"), help: ArgumentHelp("Images: where --fit letterbox puts the image. center: ultralytics LetterBox (size round(s*r), padding split evenly); top-left: YOLOX preproc (size int(s*r), padding right and bottom).", valueName: "center|top-left"))
    var padPosition: ImagePreprocessing.PadPosition?

    @Option(help: ArgumentHelp("Images: per-channel mean subtracted after scaling, r,g,b or one value (default 0).", valueName: "r,g,b"))
    var mean: String?

    @Option(help: ArgumentHelp("Images: per-channel divisor applied after the mean, r,g,b or one value (default 1).", valueName: "r,g,b"))
    var std: String?

    @Option(help: ArgumentHelp("Images: pixel multiplier applied first, a number or a fraction like 1/255 (default 1/255).", valueName: "F"))
    var scale: String?

    @Flag(help: "Images: feed channels in B,G,R order (mean/std are still given as r,g,b).")
    var bgr = false

    @Option(help: ArgumentHelp("Images: channel position, nchw or nhwc (default: nchw unless the input's shape is [N,H,W,1|3]).", valueName: "nchw|nhwc"))
    var layout: ImagePreprocessing.Layout?

    func validate() throws {
        do { try preprocessing().validate() } catch let e as ValidationError { throw e } catch { throw ValidationError("\(error)") }
    }

    /// The flags as an `ImagePreprocessing` value.
    /// - Throws: `ValidationError` naming the flag that does not parse.
    func preprocessing() throws -> ImagePreprocessing {
        var p = ImagePreprocessing(resize: resize, fit: fit, padPosition: padPosition ?? .center, bgr: bgr, layout: layout)
        if padPosition != nil && fit != .letterbox {
            throw ValidationError("--pad-position: only with --fit letterbox (the image's place on the padded input)")
        }
        if padValue != nil && fit == .crop {
            throw ValidationError("--pad-value: only with --fit letterbox or pad-right (--fit crop does not pad)")
        }
        func dims(_ text: String, _ flag: String, square: Bool) throws -> [Int] {
            let parts = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 1 || parts.count == 2, parts.allSatisfy({ ($0 ?? 0) > 0 }) else {
                throw ValidationError("--\(flag) '\(text)': expected HxW or one number with positive integers, e.g. 256x256 or 256")
            }
            let v = parts.map { $0! }
            return square && v.count == 1 ? [v[0], v[0]] : v
        }
        if let size { p.size = try dims(size, "size", square: false) }
        if let crop { p.crop = try dims(crop, "crop", square: true) }
        func list(_ text: String, _ flag: String) throws -> [Float] {
            let v = text.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard v.count == 1 || v.count == 3, v.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--\(flag) '\(text)': expected one number or three (r,g,b), e.g. 0.485,0.456,0.406")
            }
            return v.map { $0! }
        }
        if let mean { p.mean = try list(mean, "mean") }
        if let std { p.std = try list(std, "std") }
        if let padValue { p.padValue = try list(padValue, "pad-value") }
        if let scale {
            let parts = scale.split(separator: "/", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard (parts.count == 1 || parts.count == 2), parts.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--scale '\(scale)': expected a number or a fraction, e.g. 0.00392 or 1/255")
            }
            p.scale = Float(parts.count == 1 ? parts[0]! : parts[0]! / parts[1]!)
        }
        return p
    }
}

extension ImagePreprocessing.Resize: ExpressibleByArgument {}
extension ImagePreprocessing.Layout: ExpressibleByArgument {}
extension ImagePreprocessing.Fit: ExpressibleByArgument {}
extension ImagePreprocessing.PadPosition: ExpressibleByArgument {}
