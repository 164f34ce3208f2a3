import ModelIR
@testable import Profile
import XCTest

/// The reference architectures against torchvision's published figures (weight metadata:
/// "GFLOPS" = Conv + Linear MACs without bias; parameters without BatchNormalization running
/// statistics, which torchvision keeps as buffers). Exact equality, no tolerance.
final class ReferenceArchitectureTests: XCTestCase {
    func check(_ arch: ReferenceArchitecture, macs: Int, params: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try ModelProfile(model: arch.build(randomWeights: false))
        XCTAssertTrue(p.warnings.isEmpty, "\(p.warnings)", file: file, line: line)
        XCTAssertEqual(p.macs(ofOps: ["Conv", "Gemm"]), macs, "\(arch) Conv+Gemm MACs", file: file, line: line)
        XCTAssertEqual(p.totals.macs, macs, "\(arch) total MACs", file: file, line: line)
        XCTAssertEqual(p.totals.params, params, "\(arch) parameters", file: file, line: line)
    }

    func testResNet18() throws { try check(.resnet18, macs: 1_814_073_344, params: 11_689_512) }
    func testResNet50() throws { try check(.resnet50, macs: 4_089_184_256, params: 25_557_032) }
    func testMobileNetV2() throws { try check(.mobilenetV2, macs: 300_774_272, params: 3_504_872) }
    func testVGG16() throws { try check(.vgg16, macs: 15_470_264_320, params: 138_357_544) }
    func testSqueezeNet11() throws { try check(.squeezenet1_1, macs: 349_151_936, params: 1_235_496) }

    /// Batch 8 scales MACs (not parameters) by 8.
    func testBatchPin() throws {
        let p = try ModelProfile(model: ReferenceArchitecture.resnet18.build(randomWeights: false), pins: ["input": [8, 3, 224, 224]])
        XCTAssertEqual(p.totals.macs, 8 * 1_814_073_344)
        XCTAssertEqual(p.totals.params, 11_689_512)
    }
}
