import Foundation

/// `--plot`: where the gap between student and teacher lies, as a self-contained SVG. Left: the
/// distribution of per-sample KL at T (first paired output), so a gap spread over every sample
/// shows apart from one in a tail. Right: top-1 agreement by the teacher's confidence (its top
/// probability at T = 1, in ten bins), since students usually lose first where the teacher hesitates.
public struct DistillChart {
    public let report: DistillReport
    public init(report: DistillReport) { self.report = report }

    static func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }

    public func svg() -> String {
        let width = 960.0, height = 420.0, top = 60.0, bottom = 56.0, pw = 380.0, ph = height - top - bottom
        let lx = 70.0, rx = 540.0
        let kls = report.per_sample.compactMap(\.loss.first)
        let maxKL = max(kls.max() ?? 0, 1e-12)
        let bins = 20
        var counts = [Int](repeating: 0, count: bins)
        for k in kls { counts[min(Int(k / maxKL * Double(bins)), bins - 1)] += 1 }
        let maxCount = Double(max(counts.max() ?? 1, 1))
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(lx)" y="26" font-size="16" font-weight="bold">\(Self.esc(report.student)) vs \(Self.esc(report.teacher)): \(report.samples) samples, T = \(report.temperature)</text>

        """
        // Left: histogram of per-sample KL.
        s += "<rect x=\"\(lx)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#333\"/>\n"
        for (i, c) in counts.enumerated() where c > 0 {
            let h = ph * Double(c) / maxCount, x = lx + pw * Double(i) / Double(bins)
            s += "<rect x=\"\(x + 1)\" y=\"\(top + ph - h)\" width=\"\(pw / Double(bins) - 2)\" height=\"\(h)\" fill=\"#1f77b4\"><title>\(c) samples with KL in [\(String(format: "%.3g", maxKL * Double(i) / Double(bins))), \(String(format: "%.3g", maxKL * Double(i + 1) / Double(bins))))</title></rect>\n"
        }
        for k in 0...4 {
            let x = lx + pw * Double(k) / 4
            s += "<text x=\"\(x)\" y=\"\(top + ph + 18)\" text-anchor=\"middle\">\(String(format: "%.3g", maxKL * Double(k) / 4))</text>\n"
        }
        s += "<text x=\"\(lx + pw / 2)\" y=\"\(height - 14)\" text-anchor=\"middle\">per-sample KL(teacher ‖ student) at T</text>\n"
        s += "<text x=\"\(lx - 8)\" y=\"\(top + 10)\" text-anchor=\"end\">\(Int(maxCount))</text><text x=\"\(lx - 8)\" y=\"\(top + ph)\" text-anchor=\"end\">0</text>\n"
        s += "<text transform=\"translate(24 \(top + ph / 2)) rotate(-90)\" text-anchor=\"middle\">samples</text>\n"
        // Right: agreement by teacher confidence.
        var agree = [Double](repeating: 0, count: 10), n = [Int](repeating: 0, count: 10)
        for r in report.per_sample {
            guard let c = r.teacher_confidence.first ?? nil, let a = r.agreement.first ?? nil else { continue }
            let b = min(Int(c * 10), 9)
            agree[b] += a; n[b] += 1
        }
        s += "<rect x=\"\(rx)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#333\"/>\n"
        for b in 0..<10 where n[b] > 0 {
            let v = agree[b] / Double(n[b]), h = ph * v, x = rx + pw * Double(b) / 10
            s += "<rect x=\"\(x + 2)\" y=\"\(top + ph - h)\" width=\"\(pw / 10 - 4)\" height=\"\(h)\" fill=\"#ff7f0e\"><title>teacher confidence \(b * 10)–\(b * 10 + 10) %: agreement \(String(format: "%.1f", 100 * v)) % of \(n[b]) samples</title></rect>\n"
            s += "<text x=\"\(x + pw / 20)\" y=\"\(top + ph - h - 4)\" text-anchor=\"middle\" font-size=\"10\">\(n[b])</text>\n"
        }
        for k in 0...5 {
            let x = rx + pw * Double(k) / 5
            s += "<text x=\"\(x)\" y=\"\(top + ph + 18)\" text-anchor=\"middle\">\(k * 20) %</text>\n"
        }
        s += "<text x=\"\(rx - 8)\" y=\"\(top + 10)\" text-anchor=\"end\">100 %</text><text x=\"\(rx - 8)\" y=\"\(top + ph)\" text-anchor=\"end\">0</text>\n"
        s += "<text x=\"\(rx + pw / 2)\" y=\"\(height - 14)\" text-anchor=\"middle\">teacher confidence (top probability); bars: top-1 agreement, labels: samples</text>\n"
        s += "</svg>\n"
        return s
    }
}
