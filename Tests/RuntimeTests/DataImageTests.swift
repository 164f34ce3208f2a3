import Foundation
import XCTest
@testable import Runtime
import TensorCore

/// PNG/JPEG decoding and the preprocessing math. Pillow comparisons on real files (every PNG
/// color type, JPEG within 1) and a NumPy reimplementation of resize/normalize are in
/// Tests/Interop/test_data_loading.py.
final class DataImageTests: XCTestCase {
    // Made with Pillow: a 3x2 RGB PNG, a 2x2 gray+alpha PNG, the same RGB pixels as a
    // palette PNG, and an 8x8 gray JPEG (quality 90) with Pillow's decoded pixels.
    static let rgbPNG = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAF0lEQVR4nGP4z8DAAMFcInInUozY2dkBNkkErasYluEAAAAASUVORK5CYII="
    static let laPNG = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAQAAADYv8WvAAAAEklEQVR4nGNg+N/AwPCfi/kEABBqA1RvDq8oAAAAAElFTkSuQmCC"
    static let palettePNG = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACBAMAAABvWnspAAAAElBMVEUA/wDIZDIKFB4HBwf/AAAAAP/uisCXAAAADklEQVR4nGN0EGB5+AEABEoCJ/iybkkAAAAASUVORK5CYII="
    static let grayJPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/wAALCAAIAAgBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AIvDX/BNv7n/ABK//Idf/9k="
    static let grayJPEGPixels: [UInt8] = [
        0, 4, 8, 12, 16, 20, 25, 28, 32, 35, 40, 44, 47, 52, 56, 60, 64, 68, 73, 77, 80, 84, 89, 93,
        95, 98, 103, 107, 111, 115, 120, 123, 129, 133, 138, 142, 145, 149, 154, 157, 160, 163, 168, 172, 175, 179, 184, 188,
        192, 196, 201, 205, 208, 212, 217, 221, 224, 228, 232, 236, 240, 244, 249, 252]
    static let rgbPixels: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 200, 100, 50, 7, 7, 7]

    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("img-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func file(_ name: String, base64: String) -> String {
        let p = dir.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: p, contents: Data(base64Encoded: base64)!)
        return p
    }

    func testDecodePNG() throws {
        let rgb = try ImageFile.decode(path: file("rgb.png", base64: Self.rgbPNG))
        XCTAssertEqual([rgb.width, rgb.height, rgb.channels], [3, 2, 3])
        XCTAssertEqual(rgb.pixels, Self.rgbPixels)
        let la = try ImageFile.decode(path: file("la.PNG", base64: Self.laPNG))
        XCTAssertEqual([la.width, la.height, la.channels], [2, 2, 1])
        XCTAssertEqual(la.pixels, [0, 128, 255, 3], "alpha dropped, not composited")
        let p = try ImageFile.decode(path: file("p.png", base64: Self.palettePNG))
        XCTAssertEqual(p.channels, 3)
        XCTAssertEqual(p.pixels, Self.rgbPixels)
    }

    func testDecodeJPEG() throws {
        let g = try ImageFile.decode(path: file("g.jpg", base64: Self.grayJPEG))
        XCTAssertEqual([g.width, g.height, g.channels], [8, 8, 1])
        XCTAssertEqual(g.pixels, Self.grayJPEGPixels)
    }

    func testUndecodable() throws {
        let junk = dir.appendingPathComponent("junk.png").path
        _ = FileManager.default.createFile(atPath: junk, contents: Data("not an image".utf8))
        XCTAssertThrowsError(try ImageFile.decode(path: junk)) { e in XCTAssertTrue("\(e)".hasPrefix("\(junk): not a decodable PNG"), "\(e)") }
        let jpg = dir.appendingPathComponent("junk.jpg").path
        _ = FileManager.default.createFile(atPath: jpg, contents: Data("not an image".utf8))
        XCTAssertThrowsError(try ImageFile.decode(path: jpg)) { e in XCTAssertTrue("\(e)".hasPrefix("\(jpg): not a decodable JPEG"), "\(e)") }
        // A truncated JPEG is refused, not padded with gray.
        let full = Data(base64Encoded: Self.grayJPEG)!
        let cut = dir.appendingPathComponent("cut.jpg").path
        _ = FileManager.default.createFile(atPath: cut, contents: full.prefix(full.count - 20))
        XCTAssertThrowsError(try ImageFile.decode(path: cut)) { e in XCTAssertTrue("\(e)".hasPrefix("\(cut): "), "\(e)") }
        let missing = dir.appendingPathComponent("missing.png").path
        XCTAssertThrowsError(try ImageFile.decode(path: missing)) { e in XCTAssertTrue("\(e)".hasPrefix("\(missing): cannot read"), "\(e)") }
    }

    func testGrayAndRGBConversions() {
        let img = DecodedImage(width: 3, height: 2, channels: 3, pixels: Self.rgbPixels)
        // Pillow: Image.fromarray(rgb).convert("L")
        XCTAssertEqual(img.gray().pixels, [76, 150, 29, 18, 124, 7])
        XCTAssertEqual(DecodedImage(width: 1, height: 1, channels: 1, pixels: [9]).rgb().pixels, [9, 9, 9])
    }

    func testSampling() {
        // Bilinear 2 -> 4: src = (d + 0.5)/2 - 0.5 = -0.25 (clamped 0), 0.25, 0.75, 1.25 (-> 1).
        let up = ImageResize.taps(.bilinear, in: 2, out: 4, range: 0..<4, areaShrinks: false)
        XCTAssertEqual(up.first, [0, 0, 0, 1])
        XCTAssertEqual(up.count, [1, 2, 2, 1])
        XCTAssertEqual(up.weights, [1, 0, 0.75, 0.25, 0.25, 0.75, 1, 0])
        // Nearest 4 -> 2: floor((d + 0.5)·2) = 1, 3.
        XCTAssertEqual(ImageResize.taps(.nearest, in: 4, out: 2, range: 0..<2, areaShrinks: true).first, [1, 3])
        // Pillow bilinear 4 -> 2: support 2, centres 1 and 3; taps x in [int(c - 1.5), int(c + 2.5)) cut to
        // the image, weights 1 - |x + 0.5 - c|/2: 0.75, 0.75, 0.25 and 0.25, 0.75, 0.75, renormalized (/1.75).
        let aa = ImageResize.taps(.pilBilinear, in: 4, out: 2, range: 0..<2, areaShrinks: true)
        XCTAssertEqual(aa.first, [0, 1])
        XCTAssertEqual(aa.count, [3, 3])
        for (got, want) in zip(aa.weights[0..<3] + aa.weights[aa.width..<aa.width + 3], [3, 3, 1, 1, 3, 3]) {
            XCTAssertEqual(got * 7, Double(want), accuracy: 1e-12)
        }
        XCTAssertEqual(ImageResize.pillowFixed(3.0 / 7), 1_797_559)  // round(3/7 · 2^22)
        // Area 5 -> 2: cells [0, 2.5) and [2.5, 5): weights 1/2.5 and the half pixel 0.5/2.5.
        let area = ImageResize.taps(.area, in: 5, out: 2, range: 0..<2, areaShrinks: true)
        XCTAssertEqual(area.first, [0, 2])
        XCTAssertEqual(area.count, [3, 3])
        XCTAssertEqual(area.weights[0..<3].map { Float($0) }, [0.4, 0.4, 0.2])
        XCTAssertEqual(area.weights[area.width..<area.width + 3].map { Float($0) }, [0.2, 0.4, 0.4])
        XCTAssertEqual([ImagePreprocessing.cropOffset(256, 224), ImagePreprocessing.cropOffset(5, 4), ImagePreprocessing.cropOffset(7, 4)], [16, 0, 2])
    }

    func testPlacements() throws {
        func place(_ p: ImagePreprocessing, _ h: Int, _ w: Int, _ H: Int, _ W: Int) throws -> [Int] {
            let r = try p.placement(imageHeight: h, imageWidth: w, height: H, width: W, input: "x", path: "i.png")
            return [r.height, r.width, r.top, r.left]
        }
        // torchvision Resize(256) on 375x500: short side 256, long int(256 * 500 / 375) = 341; crop 224 at (16, 58) (58.5 -> 58).
        XCTAssertEqual(try place(ImagePreprocessing(size: [256]), 375, 500, 224, 224), [256, 341, -16, -58])
        // YOLOX 416 on 375x500: r = 0.832, int(312.0) x int(416.0), top-left.
        XCTAssertEqual(try place(ImagePreprocessing(fit: .letterbox, padPosition: .topLeft), 375, 500, 416, 416), [312, 416, 0, 0])
        // ultralytics 640 on 427x640 (r = 1): 427 rows, dh = 213 -> top round(106.5 - 0.1) = 106.
        XCTAssertEqual(try place(ImagePreprocessing(fit: .letterbox), 427, 640, 640, 640), [427, 640, 106, 0])
        // Truncation vs rounding: 7x10 into 4x4 gives r = 0.4 and 2.8 rows: int -> 2 (YOLOX), round -> 3 (ultralytics).
        XCTAssertEqual(try place(ImagePreprocessing(fit: .letterbox, padPosition: .topLeft), 7, 10, 4, 4), [2, 4, 0, 0])
        XCTAssertEqual(try place(ImagePreprocessing(fit: .letterbox), 7, 10, 4, 4), [3, 4, 0, 0])
        // PaddleOCR: 32x100 line into 48x320: ceil(48 * 3.125) = 150; a long line is cut to 320.
        XCTAssertEqual(try place(ImagePreprocessing(fit: .padRight), 32, 100, 48, 320), [48, 150, 0, 0])
        XCTAssertEqual(try place(ImagePreprocessing(fit: .padRight), 32, 400, 48, 320), [48, 320, 0, 0])
        XCTAssertNoThrow(try ImagePreprocessing(size: [200]).validate())
        XCTAssertThrowsError(try ImagePreprocessing(size: [640], fit: .letterbox).validate())
        XCTAssertThrowsError(try ImagePreprocessing(crop: [224, 224], fit: .padRight).validate())
        XCTAssertThrowsError(try ImagePreprocessing(padValue: [1, 2]).validate())
        XCTAssertThrowsError(try place(ImagePreprocessing(size: [200]), 375, 500, 224, 224)) { e in
            XCTAssertTrue("\(e)".contains("--size 200 (200x266 for this 375x500 image) is smaller"), "\(e)")
        }
    }

    func testNormalizeLayoutAndOrder() throws {
        let img = DecodedImage(width: 3, height: 2, channels: 3, pixels: Self.rgbPixels)
        let nchw = DataInput(name: "x", dtype: .float32, shape: [1, 3, 2, 3], flexibleBatch: true, pinned: false)
        let p = ImagePreprocessing(mean: [0.5, 0.25, 0], std: [0.5, 0.5, 2], scale: 1.0 / 255.0)
        let t = try p.tensor(from: img, for: nchw, path: "i.png")
        XCTAssertEqual(t.shape, [1, 3, 2, 3])
        let v = t.scalars(as: Float.self)
        // Red channel of pixel (0,0): (255/255 - 0.5)/0.5 = 1; green of (1,1): (100/255 - 0.25)/0.5.
        XCTAssertEqual(v[0], 1, accuracy: 1e-6)
        XCTAssertEqual(v[1 * 6 + 1 * 3 + 1], (100.0 / 255.0 - 0.25) / 0.5, accuracy: 1e-6)
        // BGR + NHWC: the last channel of pixel (0,0) is red.
        let nhwc = DataInput(name: "x", dtype: .float32, shape: [1, 2, 3, 3], flexibleBatch: true, pinned: false)
        var q = p; q.bgr = true
        let u = try q.tensor(from: img, for: nhwc, path: "i.png").scalars(as: Float.self)
        XCTAssertEqual(u[2], 1, accuracy: 1e-6)
        XCTAssertEqual(u[0], (0 - 0) / 2, accuracy: 1e-6)
        XCTAssertEqual(ImagePreprocessing.layout(of: [1, 224, 224, 3], explicit: nil), .nhwc)
        XCTAssertEqual(ImagePreprocessing.layout(of: [1, 3, 224, 224], explicit: nil), .nchw)
        XCTAssertEqual(ImagePreprocessing.layout(of: [1, 3, 4, 3], explicit: nil), .nchw)
    }

    func testPreprocessingErrors() throws {
        let img = DecodedImage(width: 3, height: 2, channels: 3, pixels: Self.rgbPixels)
        let nchw = DataInput(name: "x", dtype: .float32, shape: [1, 3, 4, 4], flexibleBatch: true, pinned: false)
        XCTAssertThrowsError(try ImagePreprocessing(size: [2, 2]).tensor(from: img, for: nchw, path: "i.png")) { e in
            XCTAssertTrue("\(e)".hasPrefix("i.png: --size 2x2 is smaller than input 'x' (4x4)"), "\(e)")
        }
        let flat = DataInput(name: "x", dtype: .float32, shape: [1, 12], flexibleBatch: true, pinned: false)
        XCTAssertThrowsError(try ImagePreprocessing().tensor(from: img, for: flat, path: "i.png")) { e in
            XCTAssertTrue("\(e)".contains("images need a rank-4"), "\(e)")
        }
        let ints = DataInput(name: "x", dtype: .uint8, shape: [1, 3, 2, 3], flexibleBatch: true, pinned: false)
        XCTAssertThrowsError(try ImagePreprocessing().tensor(from: img, for: ints, path: "i.png"))
        let gray = DataInput(name: "x", dtype: .float32, shape: [1, 1, 2, 3], flexibleBatch: true, pinned: false)
        XCTAssertThrowsError(try ImagePreprocessing(mean: [1, 2, 3]).tensor(from: img, for: gray, path: "i.png"))
        XCTAssertThrowsError(try ImagePreprocessing(std: [0]).validate())
        XCTAssertThrowsError(try ImagePreprocessing(mean: [1, 2]).validate())
        // A center crop after resizing to a larger size.
        let t = try ImagePreprocessing(size: [4, 6], resize: .nearest, scale: 1).tensor(from: img, for: DataInput(name: "x", dtype: .float32, shape: [1, 1, 2, 2], flexibleBatch: true, pinned: false), path: "i.png")
        // Nearest 2->4 rows: 0,0,1,1; 3->6 cols: 0,0,1,1,2,2; crop rows 1..2, cols 2..3 -> src (0,1),(0,1),(1,1),(1,1) in gray.
        XCTAssertEqual(t.scalars(as: Float.self), [150, 150, 124, 124])
    }
}
