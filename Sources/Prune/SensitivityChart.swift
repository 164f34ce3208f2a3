import Foundation

/// The sensitivity sweep as a self-contained SVG line chart: one line per group of the quality
/// measure (accuracy, else top-1 agreement, else output SQNR) against the pruning ratio, so the
/// groups that cannot take pruning stand out. Each point has a `<title>` with its figures.
public struct SensitivityChart {
    public let report: SensitivityReport

    public init(report: SensitivityReport) { self.report = report }

    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]

    /// The measure drawn and how to read a point's value of it.
    var measure: (label: String, value: (SensitivityReport.Point) -> Double?, lo: Double, hi: Double) {
        let points = report.rows.flatMap(\.points)
        if report.baseline_accuracy != nil, points.allSatisfy({ $0.accuracy != nil }) {
            return ("top-1 accuracy (%)", { $0.accuracy.map { 100 * $0 } }, 0, 100)
        }
        if points.allSatisfy({ $0.agreement != nil }) {
            return ("top-1 agreement with the unpruned model (%)", { $0.agreement.map { 100 * $0 } }, 0, 100)
        }
        let finite = points.compactMap(\.sqnr_db)
        let hi = max(10, ((finite.max() ?? 60) / 10).rounded(.up) * 10)
        return ("output SQNR (dB)", { p in p.sqnr_db ?? hi }, min(0, ((finite.min() ?? 0) / 10).rounded(.down) * 10), hi)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    public func svg() -> String {
        let width = 900.0, height = 560.0, left = 70.0, right = 230.0, top = 50.0, bottom = 60.0
        let plotW = width - left - right, plotH = height - top - bottom
        let m = measure
        let ratios = report.rows.flatMap { $0.points.map(\.ratio) }
        let xMax = max(ratios.max() ?? 1, 0.1)
        func x(_ r: Double) -> Double { left + plotW * r / xMax }
        func y(_ v: Double) -> Double { top + plotH * (1 - (min(max(v, m.lo), m.hi) - m.lo) / (m.hi - m.lo)) }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="28" font-size="16" font-weight="bold">Pruning sensitivity: \(Self.escape(report.model)) (\(report.method), \(report.samples) samples)</text>

        """
        // Grid and axes.
        for k in 0...5 {
            let v = m.lo + (m.hi - m.lo) * Double(k) / 5
            s += "<line x1=\"\(left)\" y1=\"\(y(v))\" x2=\"\(left + plotW)\" y2=\"\(y(v))\" stroke=\"#e0e0e0\"/>\n"
            s += "<text x=\"\(left - 8)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(String(format: "%.0f", v))</text>\n"
        }
        for r in Set(ratios).sorted() {
            s += "<line x1=\"\(x(r))\" y1=\"\(top)\" x2=\"\(x(r))\" y2=\"\(top + plotH)\" stroke=\"#f0f0f0\"/>\n"
            s += "<text x=\"\(x(r))\" y=\"\(top + plotH + 18)\" text-anchor=\"middle\">\(String(format: "%.2g", r))</text>\n"
        }
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(left + plotW / 2)\" y=\"\(height - 16)\" text-anchor=\"middle\">pruning ratio of the group (others unpruned)</text>\n"
        s += "<text transform=\"translate(18 \(top + plotH / 2)) rotate(-90)\" text-anchor=\"middle\">\(Self.escape(m.label))</text>\n"
        if let b = report.baseline_accuracy, m.label.hasPrefix("top-1 accuracy") {
            s += "<line x1=\"\(left)\" y1=\"\(y(100 * b))\" x2=\"\(left + plotW)\" y2=\"\(y(100 * b))\" stroke=\"#333\" stroke-dasharray=\"5 4\"/>\n"
        }
        // One line per group; the legend lists the most sensitive first (lowest value at the largest ratio).
        let order = report.rows.indices.sorted { a, b in
            (report.rows[a].points.last.flatMap(m.value) ?? 0) < (report.rows[b].points.last.flatMap(m.value) ?? 0)
        }
        for (rank, i) in order.enumerated() {
            let row = report.rows[i]
            let colour = rank < Self.palette.count ? Self.palette[rank] : "#bbbbbb"
            let pts = row.points.compactMap { p in m.value(p).map { (x(p.ratio), y($0), p) } }
            guard !pts.isEmpty else { continue }
            s += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"" + pts.map { "\($0.0),\($0.1)" }.joined(separator: " ") + "\"/>\n"
            for (px, py, p) in pts {
                let tip = "\(row.group) at \(p.ratio): \(p.channels_after)/\(row.channels) channels, "
                    + (p.accuracy.map { String(format: "accuracy %.2f%%, ", 100 * $0) } ?? "")
                    + (p.agreement.map { String(format: "agreement %.2f%%, ", 100 * $0) } ?? "")
                    + (p.sqnr_db.map { String(format: "SQNR %.1f dB", $0) } ?? "SQNR ∞")
                s += "<circle cx=\"\(px)\" cy=\"\(py)\" r=\"3\" fill=\"\(colour)\"><title>\(Self.escape(tip))</title></circle>\n"
            }
            if rank < 18 {
                let ly = top + 14 + Double(rank) * 18
                s += "<line x1=\"\(left + plotW + 16)\" y1=\"\(ly - 4)\" x2=\"\(left + plotW + 36)\" y2=\"\(ly - 4)\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
                s += "<text x=\"\(left + plotW + 42)\" y=\"\(ly)\">\(Self.escape(String(row.group.prefix(24))))</text>\n"
            } else if rank == 18 {
                s += "<text x=\"\(left + plotW + 16)\" y=\"\(top + 14 + 18 * 18)\">… \(report.rows.count - 18) more (grey)</text>\n"
            }
        }
        s += "</svg>\n"
        return s
    }
}
