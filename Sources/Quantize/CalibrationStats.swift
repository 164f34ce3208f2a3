import Foundation
import TensorCore

/// What calibration keeps of one activation: its running minimum and maximum, and (for the
/// saturating methods) a histogram of |x|. Everything is merged sample by sample, so memory is
/// the bins, whatever the size of the data set, and two partial statistics merge into exactly
/// what one pass over all their samples gives.
///
/// The histogram's range is a power of two strictly above every |x| seen (`bins`, itself a power
/// of two, equal bins over [0, range)). When a sample brings a larger value the range doubles
/// and adjacent bin pairs merge; since bin k of range R holds [k·R/n, (k+1)·R/n), merging pair
/// (2j, 2j+1) gives exactly bin j of range 2R, and binning is exact (x·n/R multiplies by a power
/// of two). So the histogram does not depend on the order the samples came in, and partial
/// histograms reconcile exactly: each is brought to the larger range by pair merging, then the
/// counts add.
public struct ActivationStats: Sendable, Equatable {
    public var min: Float = .infinity
    public var max: Float = -.infinity
    /// Sums over samples (one per `add`) of each sample's minimum and of its maximum, and how
    /// many of each were summed (`mean-minmax`): a sample's minimum counts when finite, its
    /// maximum likewise (an attention mask's −inf drops the minimum only).
    public var sumMin = 0.0, sumMax = 0.0
    public var minCount = 0, maxCount = 0
    /// False when part of these statistics came from a file written before the sums existed:
    /// the sums then cover only some samples, and `meanRange` is unknown.
    public var extremesKnown = true
    /// The histogram's range (0 until a non-zero finite |x| was seen), and its bin counts.
    public var histRange: Float = 0
    public var counts: [Double]

    public init(bins: Int) { counts = [Double](repeating: 0, count: bins) }

    public var absMax: Float { Swift.max(abs(min), abs(max)) }
    public var hasHistogram: Bool { !counts.isEmpty }

    /// The smallest power of two strictly above `a` (a finite, ≥ 0).
    static func powerOfTwoAbove(_ a: Float) -> Float {
        guard a > 0 else { return 0 }
        var r = Float(sign: .plus, exponent: a.exponent, significand: 1)  // ≤ a
        if r <= a { r *= 2 }
        return r
    }

    /// Doubles the range until it is `newRange`, merging bin pairs.
    mutating func grow(to newRange: Float) {
        guard newRange > histRange else { return }
        if histRange == 0 { histRange = newRange; return }
        let n = counts.count
        counts.withUnsafeMutableBufferPointer { c in
            while histRange < newRange {
                for j in 0..<(n / 2) { c[j] = c[2 * j] + c[2 * j + 1] }
                for j in (n / 2)..<n { c[j] = 0 }
                histRange *= 2
            }
        }
    }

    /// Adds one tensor's values: min and max (vectorized; NaN never moves them), then, when there
    /// is a histogram, |x| of each finite value.
    public mutating func add(_ v: UnsafeBufferPointer<Float>, histogram: Bool) {
        let (lo, hi) = Self.minMax(v)
        min = Swift.min(min, lo)
        max = Swift.max(max, hi)
        if lo.isFinite { sumMin += Double(lo); minCount += 1 }
        if hi.isFinite { sumMax += Double(hi); maxCount += 1 }
        guard histogram, hasHistogram, v.count > 0 else { return }
        var top = Swift.max(abs(lo), abs(hi))
        if !top.isFinite {
            // An infinity (or only NaN): the range must still cover the finite values, whatever
            // range earlier samples left (a sample's statistics alone must merge into what one
            // pass gives).
            top = 0
            for x in v where x.isFinite { top = Swift.max(top, abs(x)) }
        }
        grow(to: Self.powerOfTwoAbove(top))
        let n = counts.count
        guard histRange > 0 else {
            // Every value is 0 (or NaN): all in the first bin.
            var zeros = 0.0
            for x in v where x == 0 { zeros += 1 }
            counts[0] += zeros
            return
        }
        let scale = Float(n) / histRange  // a power of two: x·scale is exact
        let range = histRange
        counts.withUnsafeMutableBufferPointer { c in
            for x in v {
                let a = abs(x)
                // NaN and ±infinity are left out (a < range fails for both).
                if a < range { c[Int(a * scale)] += 1 }
            }
        }
    }

    /// Adds `other` (the statistics of other samples), reconciling the histogram ranges.
    public mutating func merge(_ other: ActivationStats) {
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
        sumMin += other.sumMin; sumMax += other.sumMax
        minCount += other.minCount; maxCount += other.maxCount
        extremesKnown = extremesKnown && other.extremesKnown
        guard hasHistogram, other.counts.count == counts.count else { counts = []; histRange = 0; return }
        var o = other
        let r = Swift.max(histRange, o.histRange)
        if histRange == 0 && r > 0 && counts.reduce(0, +) > 0 {
            // Only zeros so far: they stay in bin 0 of any range.
            histRange = r
        } else {
            grow(to: r)
        }
        if o.histRange == 0 && r > 0 { o.histRange = r } else { o.grow(to: r) }
        for k in counts.indices { counts[k] += o.counts[k] }
    }

    /// The means over samples of each sample's minimum and maximum (nil when no sample had a
    /// finite one, or part of the statistics was saved without them: `extremesKnown`).
    public var meanRange: (min: Float, max: Float)? {
        guard extremesKnown, minCount > 0, maxCount > 0 else { return nil }
        return (Float(sumMin / Double(minCount)), Float(sumMax / Double(maxCount)))
    }

    /// The histogram as the saturating methods read it.
    public var histogram: AbsHistogram { AbsHistogram(range: histRange, counts: counts) }

    /// Smallest and largest value of a buffer, eight lanes at a time; NaN never moves them.
    static func minMax(_ v: UnsafeBufferPointer<Float>) -> (Float, Float) {
        guard let base = v.baseAddress, v.count > 0 else { return (.infinity, -.infinity) }
        let r = QuantizationKernels.minMax(base, count: v.count)
        return (r.min, r.max)
    }
}

/// The statistics of a calibration: per activation (by name) its `ActivationStats`, the number of
/// samples, and the histogram bins (0: none kept). Saved and loaded as JSON (`--save-stats`,
/// `--stats`; schema `compress.quantize-stats/1`, Docs/quantize.md).
public struct CalibrationStats: Sendable, Equatable {
    public static let schema = "compress.quantize-stats/1"
    public var bins: Int
    public var samples = 0
    public var tensors: [String: ActivationStats] = [:]
    /// The order tensors were first seen in (graph order), kept for reports.
    public var order: [String] = []

    public init(bins: Int) { self.bins = bins }

    public mutating func observe(_ name: String, _ t: Tensor) {
        guard t.dtype.isFloatingPoint, t.count > 0 else { return }
        let f = t.dtype == .float32 ? t : t.converted(to: .float32)
        if tensors[name] == nil { tensors[name] = ActivationStats(bins: bins); order.append(name) }
        f.withUnsafeBufferPointer(as: Float.self) { v in tensors[name]!.add(v, histogram: bins > 0) }
    }

    /// Adds the statistics of other samples. Bins must agree when both keep histograms; a tensor
    /// only one side saw is taken as it is.
    public mutating func merge(_ other: CalibrationStats) throws {
        if bins != other.bins {
            throw QuantizeError.invalid("statistics with \(bins) and \(other.bins) histogram bins cannot be merged")
        }
        samples += other.samples
        for name in other.order {
            guard let o = other.tensors[name] else { continue }
            if tensors[name] == nil { tensors[name] = o; order.append(name) } else { tensors[name]!.merge(o) }
        }
    }

    /// Each tensor's threshold under `method` (nil for minmax: the range itself).
    public func threshold(_ name: String, method: CalibrationMethod, percentile: Double) -> Float? {
        guard method.saturating, let s = tensors[name] else { return nil }
        let h = s.histogram
        switch method {
        case .percentile: return h.percentileThreshold(percentile)
        case .entropy: return h.entropyThreshold()
        case .mse: return h.mseThreshold()
        case .meanMinMax: return s.meanRange.map { Swift.max(abs($0.min), abs($0.max)) }
        case .minmax: return nil
        }
    }

    /// The calibration `Quantizer.writeQDQ` takes: each range, saturated at the method's
    /// threshold. The thresholds of different tensors are searched in parallel.
    public func calibrator(for names: [String], method: CalibrationMethod, percentile: Double) throws -> MinMaxCalibrator {
        var ranges: [String: (min: Float, max: Float)] = [:]
        for name in names {
            guard let s = tensors[name], s.min <= s.max else {
                throw QuantizeError.invalid("no statistics for activation '\(name)'" + (samples == 0 ? " (no samples)" : ""))
            }
            ranges[name] = (s.min, s.max)
        }
        var cal = MinMaxCalibrator(ranges: ranges, samples: samples)
        if method == .meanMinMax {
            for name in names {
                let t = tensors[name]!
                guard let m = t.meanRange else {
                    throw QuantizeError.invalid(t.extremesKnown
                        ? "mean-minmax: activation '\(name)' has no sample with a finite minimum and maximum"
                        : "mean-minmax: the statistics of activation '\(name)' include a file saved without per-sample extremes (written before mean-minmax existed); recalibrate it")
                }
                cal.setRange(name, m, threshold: Swift.max(abs(m.min), abs(m.max)))
            }
        } else if method.saturating {
            let list = names
            let results = UnsafeMutableBufferPointer<Float>.allocate(capacity: list.count)
            defer { results.deallocate() }
            let out = UncheckedSendable(results)
            DispatchQueue.concurrentPerform(iterations: list.count) { k in
                out.value[k] = threshold(list[k], method: method, percentile: percentile) ?? .infinity
            }
            for (k, name) in list.enumerated() {
                cal.thresholds[name] = results[k]
                cal.saturate(name, at: results[k])
            }
        }
        return cal
    }

    // MARK: file format

    struct File: Codable {
        struct Entry: Codable {
            let name: String
            let min: Float
            let max: Float
            let hist_range: Float
            let counts: [Double]?
            /// Sums of per-sample extremes and their counts (mean-minmax; absent in older files).
            let sum_min: Double?
            let sum_max: Double?
            let min_count: Int?
            let max_count: Int?
        }
        let schema: String
        let bins: Int
        let samples: Int
        let tensors: [Entry]
    }

    public func encoded() throws -> Data {
        let f = File(schema: Self.schema, bins: bins, samples: samples, tensors: order.compactMap { name in
            tensors[name].map { File.Entry(name: name, min: $0.min, max: $0.max, hist_range: $0.histRange, counts: bins > 0 ? $0.counts : nil,
                                       sum_min: $0.extremesKnown ? $0.sumMin : nil, sum_max: $0.extremesKnown ? $0.sumMax : nil,
                                       min_count: $0.extremesKnown ? $0.minCount : nil, max_count: $0.extremesKnown ? $0.maxCount : nil) }
        })
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try e.encode(f)
    }

    /// Reads a statistics file; errors name the file and the cause.
    public static func load(path: String) throws -> CalibrationStats {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw QuantizeError.invalid("--stats \(path): cannot read (\((error as NSError).localizedDescription))")
        }
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let f: File
        do { f = try d.decode(File.self, from: data) } catch {
            throw QuantizeError.invalid("--stats \(path): not a compress statistics file (\(error))")
        }
        guard f.schema == schema else { throw QuantizeError.invalid("--stats \(path): schema '\(f.schema)', expected '\(schema)'") }
        var s = CalibrationStats(bins: f.bins)
        s.samples = f.samples
        for e in f.tensors {
            var a = ActivationStats(bins: 0)
            a.min = e.min; a.max = e.max; a.histRange = e.hist_range
            a.counts = e.counts ?? []
            if let smin = e.sum_min, let smax = e.sum_max, let nmin = e.min_count, let nmax = e.max_count {
                guard nmin >= 0, nmax >= 0, nmin <= f.samples, nmax <= f.samples, smin.isFinite, smax.isFinite else {
                    throw QuantizeError.invalid("--stats \(path): tensor '\(e.name)' has sums of extremes over \(nmin)/\(nmax) samples (file: \(f.samples)) or non-finite sums")
                }
                a.sumMin = smin; a.sumMax = smax; a.minCount = nmin; a.maxCount = nmax
            } else {
                a.extremesKnown = false
            }
            guard a.counts.count == f.bins, e.hist_range == 0 || (e.hist_range > 0 && e.hist_range.isFinite && e.hist_range.significand == 1) else {
                throw QuantizeError.invalid("--stats \(path): tensor '\(e.name)' has \(a.counts.count) bins (file says \(f.bins)) or a range \(e.hist_range) that is not a power of two")
            }
            s.tensors[e.name] = a
            s.order.append(e.name)
        }
        return s
    }
}

/// A value handed to concurrent workers that write disjoint elements.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
