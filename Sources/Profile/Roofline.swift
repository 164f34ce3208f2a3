import Foundation

/// The arithmetic precision whose peak a roofline uses.
public enum Precision: String, CaseIterable, Codable, Sendable {
    case fp32, fp16, int8
}

/// A device for the roofline model: a peak rate per precision and one memory bandwidth.
public struct RooflineDevice: Equatable, Sendable {
    public var name: String
    public var description: String
    /// Peak rate in FLOP/s (int8: integer OP/s) per precision; a precision the datasheet gives
    /// no figure for is absent.
    public var peak: [Precision: Double]
    /// Memory bandwidth in bytes/s.
    public var bandwidth: Double
    /// Where each figure comes from, keyed "fp32", "fp16", "int8", "bandwidth".
    public var sources: [String: String]

    public init(name: String, description: String = "", peak: [Precision: Double], bandwidth: Double, sources: [String: String] = [:]) {
        self.name = name
        self.description = description
        self.peak = peak
        self.bandwidth = bandwidth
        self.sources = sources
    }

    /// A device given on the command line (`--peak-gflops X --bandwidth-gbs Y`): the one peak
    /// serves every precision.
    public static func custom(peakGFLOPs: Double, bandwidthGBs: Double) -> RooflineDevice {
        RooflineDevice(name: "custom", description: "--peak-gflops \(peakGFLOPs) --bandwidth-gbs \(bandwidthGBs)",
                       peak: Dictionary(uniqueKeysWithValues: Precision.allCases.map { ($0, peakGFLOPs * 1e9) }),
                       bandwidth: bandwidthGBs * 1e9, sources: ["fp32": "command line", "fp16": "command line",
                                                              "int8": "command line", "bandwidth": "command line"])
    }

    /// The ridge point in FLOP/byte: peak ÷ bandwidth. Below it a layer is memory-bound.
    public func ridge(_ p: Precision) -> Double? { peak[p].map { $0 / bandwidth } }

    /// The precision actually used for `wanted`: itself when the device has a figure for it,
    /// otherwise the next wider one (int8 → fp16 → fp32).
    public func available(_ wanted: Precision) -> Precision? {
        let order: [Precision] = wanted == .int8 ? [.int8, .fp16, .fp32] : wanted == .fp16 ? [.fp16, .fp32] : [.fp32]
        return order.first { peak[$0] != nil }
    }
}

/// The roofline estimate for one piece of work (Williams, Waterman & Patterson, CACM 2009).
///
/// With peak P (FLOP/s), bandwidth B (bytes/s), F FLOPs and D bytes of memory traffic:
/// intensity I = F/D, ridge R = P/B, attainable = min(P, I·B), time = max(F/P, D/B), and the
/// work is memory-bound when I < R. Work with no bytes is compute-bound; with neither FLOPs nor
/// bytes it takes no time and has no verdict.
public struct RooflineEstimate: Equatable, Sendable {
    public enum Bound: String, Codable, Sendable { case compute, memory }

    public var precision: Precision
    public var ridge: Double
    /// nil when the work has neither FLOPs nor bytes.
    public var bound: Bound?
    /// Attainable rate in FLOP/s.
    public var attainable: Double
    /// Estimated time in seconds.
    public var time: Double

    public init(flops: Double, bytes: Double, device: RooflineDevice, precision: Precision) {
        let peak = device.peak[precision] ?? device.peak[.fp32] ?? 1
        let bw = device.bandwidth
        self.precision = precision
        ridge = peak / bw
        time = max(flops / peak, bytes / bw)
        if flops == 0 && bytes == 0 {
            bound = nil
            attainable = 0
        } else if bytes == 0 {
            bound = .compute
            attainable = peak
        } else {
            let intensity = flops / bytes
            bound = intensity < ridge ? .memory : .compute
            attainable = min(peak, intensity * bw)
        }
    }
}
