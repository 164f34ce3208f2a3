import ArgumentParser
import Runtime

/// Image preprocessing flags (`--size`, `--resize`, `--mean`, `--std`, `--scale`, `--bgr`,
/// `--layout`); they apply to PNG/JPEG samples only. The math is `ImagePreprocessing`'s.
struct PreprocessOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Images: resize to HxW before centre-cropping to the input's size (default: the input's size).", valueName: "HxW"))
    var size: String?

    @Option(help: ArgumentHelp("Images: resize method, bilinear (half-pixel, as OpenCV/PyTorch) or nearest.", valueName: "bilinear|nearest"))
    var resize: ImagePreprocessing.Resize = .bilinear

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
        var p = ImagePreprocessing(resize: resize, bgr: bgr, layout: layout)
        if let size {
            let parts = size.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 2, let h = parts[0], let w = parts[1], h > 0, w > 0 else {
                throw ValidationError("--size '\(size)': expected HxW with positive integers, e.g. 256x256")
            }
            p.size = [h, w]
        }
        func list(_ text: String, _ flag: String) throws -> [Float] {
            let v = text.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard v.count == 1 || v.count == 3, v.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--\(flag) '\(text)': expected one number or three (r,g,b), e.g. 0.485,0.456,0.406")
            }
            return v.map { $0! }
        }
        if let mean { p.mean = try list(mean, "mean") }
        if let std { p.std = try list(std, "std") }
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
