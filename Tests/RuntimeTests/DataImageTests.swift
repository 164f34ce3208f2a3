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
        let up = ImagePreprocessing.sampling(in: 2, out: 4, mode: .bilinear)
        XCTAssertEqual(up, [.init(lo: 0, hi: 1, w: 0), .init(lo: 0, hi: 1, w: 0.25), .init(lo: 0, hi: 1, w: 0.75), .init(lo: 1, hi: 1, w: 0)])
        // Nearest 4 -> 2: floor((d + 0.5)·2) = 1, 3.
        XCTAssertEqual(ImagePreprocessing.sampling(in: 4, out: 2, mode: .nearest).map(\.lo), [1, 3])
        XCTAssertEqual([ImagePreprocessing.cropOffset(256, 224), ImagePreprocessing.cropOffset(5, 4), ImagePreprocessing.cropOffset(7, 4)], [16, 0, 2])
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
