import Foundation

/// A roofline chart as a self-contained SVG document (no scripts, no external resources):
/// log-log axes of arithmetic intensity (FLOP/byte) against attainable GFLOP/s, the roof
/// min(peak, I·bandwidth) for each precision the nodes use, a dashed line at each ridge point,
/// and one point per node sized by its share of the estimated time and coloured by op type.
/// Each point carries a `<title>` (shown on hover in a browser) with its figures.
///
/// Nodes with no arithmetic (data movement) have intensity 0 and no place on a log axis; the
/// chart says how many there are and the time they take.
public struct RooflineChart {
    public var title: String
    /// One or two profiles; with two, the first is drawn as rings and the second filled
    /// (before/after).
    public var series: [(label: String, profile: ModelProfile)]
    public var settings: RooflineSettings

    public init(title: String, series: [(label: String, profile: ModelProfile)], settings: RooflineSettings) {
        self.title = title
        self.series = series
        self.settings = settings
    }

    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    static let otherColour = "#8a8a8a"

    struct Point {
        var x: Double, y: Double, share: Double
        var op: String, name: String, tip: String
        var series: Int
    }

    public func svg() -> String {
        let width = 980.0, height = 620.0
        let left = 78.0, right = 250.0, top = 56.0, bottom = 64.0
        let plotW = width - left - right, plotH = height - top - bottom
        let device = settings.device

        // Points and the time they stand for.
        var points: [Point] = []
        var opTime: [String: Double] = [:]
        var hidden = 0, hiddenTime = 0.0
        var precisions = Set<Precision>()
        for (si, s) in series.enumerated() {
            let est = s.profile.estimates(settings)
            let total = max(s.profile.time(settings) ?? 0, 1e-30)
            for (n, e) in zip(s.profile.nodes, est) where n.inTotal {
                guard let e else { continue }
                opTime[n.opType, default: 0] += e.time
                guard n.flops > 0, n.trafficBytes > 0, e.time > 0 else {
                    if e.time > 0 { hidden += 1; hiddenTime += e.time }
                    continue
                }
                precisions.insert(e.precision)
                let ai = Double(n.flops) / Double(n.trafficBytes)
                let tip = "\(n.name) (\(n.opType))\n\(Self.si(Double(n.flops)))FLOP, \(Self.si(Double(n.trafficBytes)))B, "
                    + String(format: "%.3g FLOP/B\n", ai) + "\(e.bound?.rawValue ?? "-")-bound at \(e.precision.rawValue), "
                    + String(format: "%.4g ms (%.1f%%)", e.time * 1e3, 100 * e.time / total)
                points.append(Point(x: ai, y: e.attainable / 1e9, share: e.time / total, op: n.opType, name: n.name, tip: tip, series: si))
            }
        }
        if precisions.isEmpty, let p = device.available(settings.precision ?? .fp32) { precisions.insert(p) }
        let roofs = Precision.allCases.filter { precisions.contains($0) && device.peak[$0] != nil }

        // Colours: the costliest op types get their own, the rest share grey.
        let ranked = opTime.filter { $0.value > 0 }.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        var colour: [String: String] = [:]
        for (i, op) in ranked.enumerated() where i < Self.palette.count { colour[op] = Self.palette[i] }

        // Axis ranges, whole decades around the points and ridges.
        let peaks = roofs.compactMap { device.peak[$0] }.map { $0 / 1e9 }
        let ridges = roofs.compactMap { device.ridge($0) }
        let xs = points.map(\.x) + ridges, ys = points.map(\.y) + peaks
        // A margin of ×1.5 keeps points off the frame.
        var x0 = floor(log10((xs.min() ?? 0.1) / 1.5)), x1 = ceil(log10((xs.max() ?? 100) * 1.5))
        if x1 - x0 < 2 { x0 -= 1; x1 += 1 }
        var y1 = ceil(log10((ys.max() ?? 1) * 1.5)), y0 = floor(log10((ys.min() ?? 1) / 1.5))
        if y1 - y0 < 2 { y0 = y1 - 2 }
        func px(_ v: Double) -> Double { left + (log10(v) - x0) / (x1 - x0) * plotW }
        func py(_ v: Double) -> Double { top + plotH - (log10(v) - y0) / (y1 - y0) * plotH }

        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="24" font-size="16" font-weight="bold">\(Self.escape(title))</text>
        <text x="\(left)" y="42" font-size="11" fill="#555">\(Self.escape(subtitle(roofs)))</text>

        """
        // Grid and ticks.
        s += "<g font-size=\"11\" fill=\"#333\">\n"
        for e in Int(x0)...Int(x1) {
            let x = px(pow(10, Double(e)))
            s += line(x, top, x, top + plotH, stroke: "#e3e3e3")
            s += "<text x=\"\(f(x))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\">\(Self.tick(e))</text>\n"
        }
        for e in Int(y0)...Int(y1) {
            let y = py(pow(10, Double(e)))
            s += line(left, y, left + plotW, y, stroke: "#e3e3e3")
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(Self.tick(e))</text>\n"
        }
        s += "</g>\n"
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#444\"/>\n"
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 22))\" font-size=\"12\" text-anchor=\"middle\">arithmetic intensity (FLOP/byte)</text>\n"
        s += "<text transform=\"translate(20 \(f(top + plotH / 2))) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">attainable GFLOP/s</text>\n"

        // Roofs and ridges, clipped to the plot.
        s += "<defs><clipPath id=\"plot\"><rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\"/></clipPath></defs>\n"
        s += "<g clip-path=\"url(#plot)\">\n"
        let dashes: [Precision: String] = [.fp32: "", .fp16: "8 4", .int8: "2 3"]
        for p in roofs {
            guard let peak = device.peak[p].map({ $0 / 1e9 }), let ridge = device.ridge(p) else { continue }
            let bw = device.bandwidth / 1e9
            let xa = pow(10, x0), xb = pow(10, x1)
            let dash = dashes[p]!.isEmpty ? "" : " stroke-dasharray=\"\(dashes[p]!)\""
            s += "<polyline points=\"\(f(px(xa))),\(f(py(max(xa * bw, pow(10, y0 - 1))))) \(f(px(ridge))),\(f(py(peak))) \(f(px(xb))),\(f(py(peak)))\" fill=\"none\" stroke=\"#222\" stroke-width=\"2\"\(dash)/>\n"
            s += line(px(ridge), top, px(ridge), top + plotH, stroke: "#999", dash: "5 5")
        }
        // Point area ∝ share of time, the largest 16 px in radius; larger points first so small
        // ones stay visible on top.
        let maxShare = points.map(\.share).max() ?? 1
        func radius(_ share: Double) -> Double { max(2.5, 16 * (share / maxShare).squareRoot()) }
        for p in points.sorted(by: { $0.share > $1.share }) {
            let r = radius(p.share)
            let c = colour[p.op] ?? Self.otherColour
            let style = (series.count == 2 && p.series == 0)
                ? "fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.5\""
                : "fill=\"\(c)\" fill-opacity=\"0.7\" stroke=\"#fff\" stroke-width=\"0.8\""
            s += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"\(f(r))\" \(style)><title>\(Self.escape(p.tip))</title></circle>\n"
        }
        s += "</g>\n"
        // Labels inside the plot, placed where they collide with nothing placed before.
        var placed: [(Double, Double, Double, Double)] = []
        func free(_ x: Double, _ y: Double, _ w: Double, _ h: Double) -> Bool {
            !placed.contains { x < $0.0 + $0.2 && $0.0 < x + w && y < $0.1 + $0.3 && $0.1 < y + h }
        }
        s += "<g font-size=\"11\" fill=\"#222\">\n"
        // Each ridge line is named at its top; the roofs' figures are in the legend.
        for p in roofs {
            guard let ridge = device.ridge(p) else { continue }
            let x = px(ridge) + 3
            placed.append((x, top + 2, 30, 12))
            s += "<text x=\"\(f(x))\" y=\"\(f(top + 12))\" font-size=\"10\" fill=\"#666\">ridge \(p.rawValue)</text>\n"
        }
        let bwText = "memory \(String(format: "%.4g", device.bandwidth / 1e9)) GB/s"
        // Below the roof on the right is always empty: the bandwidth goes there.
        let bwX = left + plotW - Double(bwText.count) * 6.5 - 6, bwY = top + plotH - 10
        placed.append((bwX, bwY - 11, Double(bwText.count) * 6, 14))
        s += "<text x=\"\(f(bwX))\" y=\"\(f(bwY))\" fill=\"#555\">\(bwText)</text>\n"
        // Names of the costliest nodes above their points (nothing lies above the roof),
        // stacked upwards when they would collide, with a leader line when moved.
        for p in points.sorted(by: { $0.share > $1.share }).prefix(5) where p.share >= 0.01 {
            let r = radius(p.share)
            let label = p.name.count > 28 ? String(p.name.prefix(27)) + "…" : p.name
            let w = Double(label.count) * 5.6
            let cx = px(p.x), cy = py(p.y)
            let x = min(max(cx - w / 2, left + 2), left + plotW - w - 2)
            var y = cy - r - 5
            var tries = 0
            while !free(x, y - 10, w, 12) && tries < 8 { y -= 12; tries += 1 }
            guard tries < 8, y - 10 > top else { continue }
            placed.append((x, y - 10, w, 12))
            if tries > 0 { s += line(cx, cy - r, cx, y + 2, stroke: "#999") }
            s += "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"10\" fill=\"#333\">\(Self.escape(label))</text>\n"
        }
        s += "</g>\n"

        // Legend: op types by time share.
        let lx = left + plotW + 18
        var ly = top + 4
        let allTime = opTime.values.reduce(0, +)
        s += "<g font-size=\"11\" fill=\"#222\">\n<text x=\"\(f(lx))\" y=\"\(f(ly + 8))\" font-weight=\"bold\">op type (share of time)</text>\n"
        ly += 24
        var otherShare = 0.0
        for op in ranked where (opTime[op] ?? 0) > 0 {
            let share = allTime > 0 ? (opTime[op] ?? 0) / allTime : 0
            guard let c = colour[op] else { otherShare += share; continue }
            s += "<circle cx=\"\(f(lx + 6))\" cy=\"\(f(ly - 4))\" r=\"6\" fill=\"\(c)\" fill-opacity=\"0.8\"/>"
            s += "<text x=\"\(f(lx + 18))\" y=\"\(f(ly))\">\(Self.escape(op)) (\(String(format: "%.1f", share * 100))%)</text>\n"
            ly += 18
        }
        if otherShare > 0 {
            s += "<circle cx=\"\(f(lx + 6))\" cy=\"\(f(ly - 4))\" r=\"6\" fill=\"\(Self.otherColour)\"/>"
            s += "<text x=\"\(f(lx + 18))\" y=\"\(f(ly))\">other (\(String(format: "%.1f", otherShare * 100))%)</text>\n"
            ly += 18
        }
        ly += 10
        s += "<text x=\"\(f(lx))\" y=\"\(f(ly))\" fill=\"#555\">point area ∝ share of time</text>\n"
        ly += 16
        if series.count == 2 {
            s += "<circle cx=\"\(f(lx + 6))\" cy=\"\(f(ly - 4))\" r=\"5\" fill=\"none\" stroke=\"#444\" stroke-width=\"1.5\"/>"
            s += "<text x=\"\(f(lx + 18))\" y=\"\(f(ly))\">\(Self.escape(Self.short(series[0].label)))</text>\n"
            ly += 18
            s += "<circle cx=\"\(f(lx + 6))\" cy=\"\(f(ly - 4))\" r=\"5\" fill=\"#444\" fill-opacity=\"0.7\"/>"
            s += "<text x=\"\(f(lx + 18))\" y=\"\(f(ly))\">\(Self.escape(Self.short(series[1].label)))</text>\n"
            ly += 18
        }
        ly += 6
        for p in roofs {
            guard let peak = device.peak[p], let ridge = device.ridge(p) else { continue }
            let dash = dashes[p]!.isEmpty ? "" : " stroke-dasharray=\"\(dashes[p]!)\""
            s += "<line x1=\"\(f(lx))\" y1=\"\(f(ly - 4))\" x2=\"\(f(lx + 22))\" y2=\"\(f(ly - 4))\" stroke=\"#222\" stroke-width=\"2\"\(dash)/>"
            let unit = p == .int8 ? "OP/s" : "FLOP/s"
            s += "<text x=\"\(f(lx + 28))\" y=\"\(f(ly))\">\(p.rawValue) \(Self.si(peak))\(unit), ridge \(String(format: "%.3g", ridge))</text>\n"
            ly += 18
        }
        if hidden > 0 {
            s += "<text x=\"\(f(lx))\" y=\"\(f(ly + 6))\" fill=\"#555\">\(hidden) node\(hidden == 1 ? "" : "s") with no arithmetic</text>\n"
            s += "<text x=\"\(f(lx))\" y=\"\(f(ly + 20))\" fill=\"#555\">(data movement, \(String(format: "%.3g", hiddenTime * 1e3)) ms) not shown</text>\n"
        }
        s += "</g>\n</svg>\n"
        return s
    }

    func subtitle(_ roofs: [Precision]) -> String {
        let d = settings.device
        var parts = ["device \(d.name)", "bandwidth \(String(format: "%.4g", d.bandwidth / 1e9)) GB/s"]
        parts.append("precision \(settings.precision?.rawValue ?? "auto (per node)")")
        let times = series.compactMap { $0.profile.time(settings) }.map { String(format: "%.4g ms", $0 * 1e3) }
        if !times.isEmpty { parts.append("estimated " + times.joined(separator: " → ")) }
        return parts.joined(separator: " · ")
    }

    func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, dash: String? = nil) -> String {
        "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" stroke=\"\(stroke)\"" + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>\n"
    }

    func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func tick(_ e: Int) -> String {
        switch e {
        case ..<(-3): return "1e\(e)"
        case -3: return "0.001"
        case -2: return "0.01"
        case -1: return "0.1"
        case 0...2: return String(Int(pow(10, Double(e))))
        case 3...5: return "\(Int(pow(10, Double(e - 3))))k"
        case 6...8: return "\(Int(pow(10, Double(e - 6))))M"
        default: return "1e\(e)"
        }
    }

    static func si(_ v: Double) -> String {
        let a = abs(v)
        if a >= 1e15 { return String(format: "%.3g P", v / 1e15) }
        if a >= 1e12 { return String(format: "%.3g T", v / 1e12) }
        if a >= 1e9 { return String(format: "%.3g G", v / 1e9) }
        if a >= 1e6 { return String(format: "%.3g M", v / 1e6) }
        if a >= 1e3 { return String(format: "%.3g k", v / 1e3) }
        return String(format: "%.3g ", v)
    }

    static func short(_ path: String) -> String {
        let name = (path as NSString).lastPathComponent
        return name.count > 32 ? String(name.prefix(31)) + "…" : name
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
