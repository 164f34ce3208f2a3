import ModelIR
@testable import Profile
import XCTest

/// The reference architectures against torchvision's published figures (weight metadata:
/// "GFLOPS" = Conv + Linear MACs without bias; parameters without BatchNormalization running
/// statistics, which torchvision keeps as buffers). Exact equality, no tolerance.
final class ReferenceArchitectureTests: XCTestCase {
    func check(_ arch: ReferenceArchitecture, macs: Int, params: Int, batchNorm: ReferenceArchitecture.BatchNorm? = nil,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try ModelProfile(model: arch.build(randomWeights: false, batchNorm: batchNorm))
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

    // Export-style models (torch.onnx.export's form, BN folded by default). torchvision publishes
    // their "GFLOPS" rounded to two decimals (0.06, 0.22, 0.39): the Conv+Gemm MACs are asserted
    // exactly against a recount of torchvision's layer configuration and within that rounding of
    // the published figure; parameters exactly against `sum(p.numel() for p in
    // model.parameters())` on the BN-kept build.

    /// Checks the BN-kept build against torchvision and the default (folded) build against it:
    /// same MACs; parameters less one per BatchNormalization channel (scale + bias become a
    /// conv bias).
    func checkExportStyle(_ arch: ReferenceArchitecture, macs: Int, publishedGFLOPs: Double, params: Int,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertTrue(arch.isExportStyle, file: file, line: line)
        XCTAssertEqual(arch.defaultBatchNorm, .folded, file: file, line: line)
        try check(arch, macs: macs, params: params, batchNorm: .kept, file: file, line: line)
        XCTAssertEqual(Double(macs) / 1e9, publishedGFLOPs, accuracy: 0.005, "\(arch) vs torchvision's published GFLOPS", file: file, line: line)
        let kept = arch.build(randomWeights: false, batchNorm: .kept)
        let bnChannels = kept.graph.nodes.filter { $0.opType == "BatchNormalization" }
            .reduce(0) { $0 + (kept.graph.initializer(named: $1.inputs[1])?.tensor.count ?? 0) }
        XCTAssertGreaterThan(bnChannels, 0, file: file, line: line)
        let folded = arch.build(randomWeights: false)
        XCTAssertFalse(folded.graph.nodes.contains { $0.opType == "BatchNormalization" }, file: file, line: line)
        let p = try ModelProfile(model: folded)
        XCTAssertTrue(p.warnings.isEmpty, "\(p.warnings)", file: file, line: line)
        XCTAssertEqual(p.macs(ofOps: ["Conv", "Gemm"]), macs, "\(arch) folded Conv+Gemm MACs", file: file, line: line)
        XCTAssertEqual(p.totals.params, params - bnChannels, "\(arch) folded parameters", file: file, line: line)
    }

    func testMobileNetV3Small() throws {
        try checkExportStyle(.mobilenetV3Small, macs: 56_510_400, publishedGFLOPs: 0.06, params: 2_542_856)
    }
    func testMobileNetV3Large() throws {
        try checkExportStyle(.mobilenetV3Large, macs: 216_589_760, publishedGFLOPs: 0.22, params: 5_483_032)
    }
    func testEfficientNetB0() throws {
        try checkExportStyle(.efficientnetB0, macs: 385_814_752, publishedGFLOPs: 0.39, params: 5_288_548)
    }

    /// The export-style conventions are in the graph: Constant scalars between the SE's second
    /// Conv and its Clip (small), HardSwish / HardSigmoid ops (large), SiLU as Sigmoid + Mul
    /// (efficientnet), an Identity-read Gemm weight and Flatten → Gemm heads (all three).
    func testExportStyleStructure() throws {
        func ops(_ m: Model) -> [String] { m.graph.nodes.map(\.opType) }
        let small = ReferenceArchitecture.mobilenetV3Small.build(randomWeights: false)
        let large = ReferenceArchitecture.mobilenetV3Large.build(randomWeights: false)
        let effnet = ReferenceArchitecture.efficientnetB0.build(randomWeights: false)
        XCTAssertTrue(ops(small).contains("HardSigmoid") && !ops(small).contains("HardSwish"))
        XCTAssertEqual(ops(small).filter { $0 == "Clip" }.count, 9, "one hard-sigmoid gate per SE block")
        XCTAssertGreaterThan(ops(small).filter { $0 == "Constant" }.count, 0)
        let firstClip = try XCTUnwrap(ops(small).firstIndex(of: "Clip"))
        let convBefore = try XCTUnwrap(ops(small)[..<firstClip].lastIndex(of: "Conv"))
        XCTAssertTrue(ops(small)[(convBefore + 1)..<firstClip].contains("Constant"), "\(ops(small)[convBefore...firstClip])")
        XCTAssertTrue(ops(large).contains("HardSwish") && ops(large).contains("HardSigmoid"))
        XCTAssertFalse(ops(effnet).contains("HardSwish") || ops(effnet).contains("HardSigmoid"))
        XCTAssertEqual(ops(effnet).filter { $0 == "Sigmoid" }.count, 1 + 15 + 16 + 16 + 1 + 16, "SiLUs (stem, expand, depthwise, SE, head) and SE gates")
        for m in [small, large, effnet] {
            XCTAssertTrue(m.graph.nodes.contains { $0.opType == "Identity" && m.graph.initializer(named: $0.inputs[0]) != nil })
            let flatten = try XCTUnwrap(m.graph.nodes.firstIndex { $0.opType == "Flatten" })
            XCTAssertEqual(m.graph.nodes[flatten + 1].opType, "Gemm")
        }
    }

    /// Batch 8 scales MACs (not parameters) by 8.
    func testBatchPin() throws {
        let p = try ModelProfile(model: ReferenceArchitecture.resnet18.build(randomWeights: false), pins: ["input": [8, 3, 224, 224]])
        XCTAssertEqual(p.totals.macs, 8 * 1_814_073_344)
        XCTAssertEqual(p.totals.params, 11_689_512)
    }
}
