import Foundation
import ModelIR
@testable import Profile
import Runtime
import XCTest

final class RooflineTests: XCTestCase {
    let device = RooflineDevice(name: "t", peak: [.fp32: 100e9, .int8: 400e9], bandwidth: 10e9)

    func testRooflineMath() {
        // Ridge = 100e9 / 10e9 = 10 FLOP/B. 1 GFLOP over 10 MB: I = 100 -> compute-bound,
        // time = max(1e9/1e11, 1e7/1e10) = 10 ms, attainable = peak.
        var e = RooflineEstimate(flops: 1e9, bytes: 1e7, device: device, precision: .fp32)
        XCTAssertEqual(e.ridge, 10)
        XCTAssertEqual(e.bound, .compute)
        XCTAssertEqual(e.time, 0.01, accuracy: 1e-15)
        XCTAssertEqual(e.attainable, 100e9)
        // 1 MFLOP over 1 MB: I = 1 < 10 -> memory-bound, time = 1e6/1e10 = 0.1 ms, attainable 10 GFLOP/s.
        e = RooflineEstimate(flops: 1e6, bytes: 1e6, device: device, precision: .fp32)
        XCTAssertEqual(e.bound, .memory)
        XCTAssertEqual(e.time, 1e-4, accuracy: 1e-18)
        XCTAssertEqual(e.attainable, 10e9, accuracy: 1)
        // Same work at int8: ridge 40.
        e = RooflineEstimate(flops: 1e9, bytes: 1e7, device: device, precision: .int8)
        XCTAssertEqual(e.ridge, 40)
        XCTAssertEqual(e.time, 1e9 / 400e9, accuracy: 1e-15)
        // No bytes: compute-bound; nothing at all: no verdict.
        XCTAssertEqual(RooflineEstimate(flops: 5, bytes: 0, device: device, precision: .fp32).bound, .compute)
        XCTAssertNil(RooflineEstimate(flops: 0, bytes: 0, device: device, precision: .fp32).bound)
        // A missing fp16 figure falls back to fp32; int8 is there.
        XCTAssertEqual(device.available(.fp16), .fp32)
        XCTAssertEqual(device.available(.int8), .int8)
    }

    func testPresetsAreCitedData() throws {
        XCTAssertGreaterThanOrEqual(DevicePresets.all.count, 10)
        for d in DevicePresets.all {
            XCTAssertNotNil(d.peak[.fp32], d.name)
            XCTAssertGreaterThan(d.bandwidth, 0, d.name)
            XCTAssertFalse(d.sources["bandwidth"]?.isEmpty ?? true, "\(d.name): bandwidth has no source")
            for p in d.peak.keys { XCTAssertFalse(d.sources[p.rawValue]?.isEmpty ?? true, "\(d.name): \(p) has no source") }
            // Dense peaks only: NVIDIA Tensor Cores run int8 at twice the fp16 rate; a figure
            // "with sparsity" would double it again (datasheet rounding allowed: L4 485/242).
            if d.name.hasPrefix("nvidia") || d.name.hasPrefix("jetson"), let a = d.peak[.fp16], let b = d.peak[.int8] {
                XCTAssertLessThanOrEqual(b / a, 2.01, d.name)
            }
        }
        let names = Set(DevicePresets.all.map(\.name))
        XCTAssertEqual(names.count, DevicePresets.all.count, "duplicate preset names")
        for required in ["nvidia-h100-sxm", "nvidia-a100-sxm4-80gb", "jetson-agx-orin-64gb", "jetson-orin-nano-8gb", "raspberry-pi-5", "intel-xeon-8480plus"] {
            XCTAssertTrue(names.contains(required), required)
        }
        XCTAssertEqual(DevicePresets.named("NVIDIA-T4")?.peak[.fp32], 8.1e12)
        // H100 SXM datasheet: 1,979 TFLOPS FP16 "with sparsity" -> 989.5 dense.
        XCTAssertEqual(DevicePresets.named("nvidia-h100-sxm")?.peak[.fp16], 989.5e12)
    }

    func testBudgetsAndTopN() {
        var a = NodeProfile(name: "a", opType: "Conv", domain: "", scope: "")
        a.macs = 2_000_000_000; a.flops = 4_000_000_000; a.params = 10; a.inputBytes = 1 << 20
        var b = NodeProfile(name: "b", opType: "Add", domain: "", scope: "")
        b.flops = 1000; b.inputBytes = 4 << 20; b.outputBytes = 1 << 20
        let p = ModelProfile(nodes: [a, b])
        XCTAssertEqual(Budget(.gmacs, 1.5).value(of: p, nil), 2)
        XCTAssertEqual(Budget(.trafficMiB, 0).value(of: p, nil), 6)
        XCTAssertNil(Budget(.timeMs, 1).value(of: p, nil))
        let s = RooflineSettings(device: device)
        // a: max(4e9/1e11, 1 MiB/1e10) = 40 ms; b: 5 MiB / 1e10 = 0.524 ms.
        XCTAssertEqual(Budget(.timeMs, 1).value(of: p, s)!, 40 + 5 * 1_048_576 / 1e7, accuracy: 1e-9)
        XCTAssertEqual(p.top(1, by: .traffic, nil), [1])
        XCTAssertEqual(p.top(2, by: .flops, nil), [0, 1])
        XCTAssertEqual(p.byOp(nil).map(\.op), ["Conv", "Add"])
    }

    func testComparisonMatchesByName() {
        func node(_ n: String, _ macs: Int) -> NodeProfile { var x = NodeProfile(name: n, opType: "Conv", domain: "", scope: ""); x.macs = macs; return x }
        let c = ProfileComparison(ModelProfile(nodes: [node("c1", 100), node("c2", 50), node("gone", 5)]),
                                  ModelProfile(nodes: [node("c1", 60), node("new", 1), node("c2", 50)]))
        XCTAssertEqual(c.matched.map { [$0.a, $0.b] }, [[0, 0], [1, 2]])
        XCTAssertEqual(c.onlyInA, [2])
        XCTAssertEqual(c.onlyInB, [1])
        XCTAssertEqual(ProfileComparison.change(100, 60)!, -0.4, accuracy: 1e-12)
    }

    func testChartIsSVGWithOnePointPerNode() throws {
        var m = ModelProfile(nodes: [])
        for i in 0..<5 {
            var n = NodeProfile(name: "conv\(i) <&>", opType: i < 3 ? "Conv" : "Add", domain: "", scope: "")
            n.flops = (i + 1) * 1_000_000; n.inputBytes = 100_000 * (5 - i)
            m.nodes.append(n)
        }
        var moveOnly = NodeProfile(name: "t", opType: "Transpose", domain: "", scope: "")
        moveOnly.inputBytes = 1000; moveOnly.outputBytes = 1000
        m.nodes.append(moveOnly)
        let svg = RooflineChart(title: "t", series: [("m.onnx", m)], settings: RooflineSettings(device: device)).svg()
        XCTAssertTrue(svg.hasPrefix("<svg"))
        XCTAssertEqual(svg.components(separatedBy: "<title>").count - 1, 5)
        XCTAssertTrue(svg.contains("conv0 &lt;&amp;&gt;"))
        XCTAssertTrue(svg.contains("1 node with no arithmetic"))
    }
}
