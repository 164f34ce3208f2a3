import CJPEG
import CPNG
import Foundation
import TensorCore

/// An 8-bit image in row-major, channel-interleaved (HWC) order: `channels` is 1 (gray) or 3
/// (RGB). Alpha is dropped when decoding, as Pillow's `convert("RGB")` does.
public struct DecodedImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// This image as 3-channel RGB: gray is replicated into every channel.
    public func rgb() -> DecodedImage {
        if channels == 3 { return self }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { let v = pixels[i]; out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v }
        return DecodedImage(width: width, height: height, channels: 3, pixels: out)
    }

    /// This image as 1-channel luma, with Pillow's `convert("L")` formula (ITU-R 601-2):
    /// `L = (19595·R + 38470·G + 7471·B + 2¹⁵) >> 16`, i.e. 0.299 R + 0.587 G + 0.114 B rounded.
    public func gray() -> DecodedImage {
        if channels == 1 { return self }
        var out = [UInt8](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            let r = UInt32(pixels[3 * i]), g = UInt32(pixels[3 * i + 1]), b = UInt32(pixels[3 * i + 2])
            out[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
        }
        return DecodedImage(width: width, height: height, channels: 1, pixels: out)
    }
}

/// Decodes PNG (libpng's simplified API) and JPEG (libjpeg-turbo's TurboJPEG API) files. Both
/// APIs report errors by return value, so a corrupt file is a thrown `DataError`, never a
/// `longjmp` through Swift frames or an `exit()`.
public enum ImageFile {
    /// The largest image decoded, in pixels (16384 × 16384), so a forged header cannot ask
    /// for gigabytes.
    public static let maxPixels = 1 << 28

    /// Decodes `path` by its extension (`.png`, `.jpg`, `.jpeg`, any case).
    public static func decode(path: String) throws -> DecodedImage {
        switch (path as NSString).pathExtension.lowercased() {
        case "png": return try decodePNG(path: path)
        case "jpg", "jpeg": return try decodeJPEG(path: path)
        default: throw DataError(path, "not a PNG or JPEG file name")
        }
    }

    /// Decodes a PNG to 8-bit gray or RGB, keeping the file's samples: gray files stay gray,
    /// palette and color files become RGB, alpha is dropped (not composited). 16-bit samples
    /// are scaled to 8 bits (v·255/65535, rounded) as sRGB-encoded values; a gAMA chunk other
    /// than sRGB's makes libpng re-encode to sRGB.
    public static func decodePNG(path: String) throws -> DecodedImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        func message() -> String {
            withUnsafeBytes(of: image.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        guard png_image_begin_read_from_file(&image, path) != 0 else {
            let m = message()
            png_image_free(&image)
            if access(path, R_OK) != 0 { throw DataError(path, "cannot read: \(String(cString: strerror(errno)))") }
            throw DataError(path, "not a decodable PNG (\(m))")
        }
        let width = Int(image.width), height = Int(image.height)
        guard width > 0, height > 0, width.multipliedReportingOverflow(by: height).partialValue <= maxPixels else {
            png_image_free(&image)
            throw DataError(path, "image is \(width)x\(height); at most \(maxPixels) pixels are decoded")
        }
        let color = image.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
        let alpha = image.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
        if image.format & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0 {
            // 16-bit samples: treat them as sRGB-encoded, so they are scaled, not gamma-encoded.
            image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        }
        let channels = color ? 3 : 1
        let stored = channels + (alpha ? 1 : 0)
        image.format = (color ? UInt32(PNG_FORMAT_RGB) : UInt32(PNG_FORMAT_GRAY)) | (alpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
        var buffer = [UInt8](repeating: 0, count: width * height * stored)
        let ok = buffer.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * stored), nil) }
        guard ok != 0 else {
            let m = message()
            png_image_free(&image)
            throw DataError(path, "not a decodable PNG (\(m))")
        }
        png_image_free(&image)
        if !alpha { return DecodedImage(width: width, height: height, channels: channels, pixels: buffer) }
        var out = [UInt8](repeating: 0, count: width * height * channels)
        for i in 0..<(width * height) { for c in 0..<channels { out[i * channels + c] = buffer[i * stored + c] } }
        return DecodedImage(width: width, height: height, channels: channels, pixels: out)
    }

    /// Decodes a baseline or progressive JPEG to 8-bit gray (gray files) or RGB, with
    /// libjpeg-turbo's accurate integer IDCT and fancy upsampling (libjpeg's and Pillow's
    /// defaults). Warnings about recoverable damage are accepted as Pillow accepts them; a
    /// truncated file is an error. CMYK/YCCK files are refused.
    public static func decodeJPEG(path: String) throws -> DecodedImage {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as MappedFile.Failure { throw DataError("", e.description) }
        guard let base = file.base, file.count > 0 else { throw DataError(path, "empty file, not a JPEG") }
        return try withExtendedLifetime(file) { try decodeJPEG(UnsafeRawBufferPointer(start: base, count: file.count), path: path) }
    }

    /// Decodes JPEG bytes; `path` only names the file in errors.
    public static func decodeJPEG(_ buffer: UnsafeRawBufferPointer, path: String) throws -> DecodedImage {
        guard let base = buffer.baseAddress, buffer.count > 0 else { throw DataError(path, "empty file, not a JPEG") }
        guard let handle = tjInitDecompress() else { throw DataError(path, "cannot start the JPEG decoder") }
        defer { tjDestroy(handle) }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        func why() -> String { String(cString: tjGetErrorStr2(handle)) }
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        guard tjDecompressHeader3(handle, bytes, UInt(buffer.count), &w, &h, &subsampling, &colorspace) == 0 else {
            throw DataError(path, "not a decodable JPEG (\(why()))")
        }
        let width = Int(w), height = Int(h)
        guard width > 0, height > 0 else { throw DataError(path, "not a decodable JPEG (no image size in the header)") }
        guard width * height <= maxPixels else {
            throw DataError(path, "image is \(width)x\(height); at most \(maxPixels) pixels are decoded")
        }
        if colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue) {
            throw DataError(path, "CMYK JPEG images are not supported; convert it to RGB")
        }
        let gray = colorspace == Int32(TJCS_GRAY.rawValue)
        let channels = gray ? 1 : 3
        let format = gray ? TJPF_GRAY : TJPF_RGB
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        let rc = pixels.withUnsafeMutableBufferPointer {
            tjDecompress2(handle, bytes, UInt(buffer.count), $0.baseAddress, w, 0, h, format.rawValue, 0)
        }
        if rc != 0 {
            let message = why()
            let warning = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
            if !warning || message.contains("Premature end") {
                throw DataError(path, "not a decodable JPEG (\(message))")
            }
        }
        return DecodedImage(width: width, height: height, channels: channels, pixels: pixels)
    }
}
