import Foundation

/// `--plot FILE.svg`: per quantized activation, in graph order, its QDQ SQNR (top panel, bars;
/// the lowest in red, the end-to-end output SQNR as a dashed line) and its range (bottom panel,
/// log scale: the largest |x| seen as a grey bar, the chosen threshold as a blue tick), so the
/// layer that loses the signal is seen at a glance. Plain SVG 1.1, no scripts or fonts beyond
/// a generic family.
public enum QuantChart {
    public struct Layer: Sendable {
        public let name: String
        public let sqnrDB: Double?
        public let absMax: Float
        public let threshold: Float
        public init(name: String, sqnrDB: Double?, absMax: Float, threshold: Float) {
            self.name = name; self.sqnrDB = sqnrDB; self.absMax = absMax; self.threshold = threshold
        }
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func f(_ x: Double) -> String { String(format: "%.1f", x) }

    public static func svg(_ layers: [Layer], title: String, outputSQNR: Double?) -> String {
        let n = max(layers.count, 1)
        let left = 60.0, right = 20.0, slot = max(6.0, min(60.0, 1100.0 / Double(n)))
        let width = max(720, left + right + slot * Double(n))
        let top1 = 40.0, h1 = 220.0, gap = 30.0, h2 = 120.0, labels = 150.0
        let top2 = top1 + h1 + gap
        let height = top2 + h2 + labels
        // SQNR axis: 0 … the largest finite value (or the output's), rounded up to 10 dB.
        let finite = layers.compactMap(\.sqnrDB).filter(\.isFinite) + (outputSQNR.map { [$0] } ?? [])
        let ymax = max(10, ((finite.max() ?? 10) / 10).rounded(.up) * 10)
        func y1(_ db: Double) -> Double { top1 + h1 - h1 * min(max(db, 0), ymax) / ymax }
        // Range axis: log10 over the values present.
        let vals = layers.flatMap { [Double($0.absMax), Double($0.threshold)] }.filter { $0 > 0 && $0.isFinite }
        let lmin = floor(log10(vals.min() ?? 1)), lmax = max(lmin + 1, ceil(log10(vals.max() ?? 10)))
        func y2(_ v: Double) -> Double { v > 0 ? top2 + h2 - h2 * (log10(v) - lmin) / (lmax - lmin) : top2 + h2 }
        let worst = layers.indices.min { (layers[$0].sqnrDB ?? .infinity) < (layers[$1].sqnrDB ?? .infinity) }
        var s: [String] = []
        s.append("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">")
        s.append("<rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"white\"/>")
        s.append("<text x=\"\(f(left))\" y=\"22\" font-size=\"14\">\(esc(title))</text>")
        // Top panel: grid and axis.
        var tick = 0.0
        let step = ymax > 60 ? 20.0 : 10.0
        while tick <= ymax {
            s.append("<line x1=\"\(f(left))\" y1=\"\(f(y1(tick)))\" x2=\"\(f(width - right))\" y2=\"\(f(y1(tick)))\" stroke=\"#ddd\"/>")
            s.append("<text x=\"\(f(left - 6))\" y=\"\(f(y1(tick) + 4))\" text-anchor=\"end\">\(Int(tick))</text>")
            tick += step
        }
        s.append("<text x=\"14\" y=\"\(f(top1 + h1 / 2))\" transform=\"rotate(-90 14 \(f(top1 + h1 / 2)))\" text-anchor=\"middle\">QDQ SQNR (dB)</text>")
        for (k, l) in layers.enumerated() {
            let x = left + slot * Double(k) + slot * 0.15, w = slot * 0.7
            let db = l.sqnrDB ?? ymax
            let color = k == worst ? "#d62728" : "#4c72b0"
            s.append("<rect x=\"\(f(x))\" y=\"\(f(y1(db)))\" width=\"\(f(w))\" height=\"\(f(top1 + h1 - y1(db)))\" fill=\"\(color)\"><title>\(esc(l.name)): \(l.sqnrDB.map { String(format: "%.2f dB", $0) } ?? "no noise")</title></rect>")
        }
        if let o = outputSQNR {
            s.append("<line x1=\"\(f(left))\" y1=\"\(f(y1(o)))\" x2=\"\(f(width - right))\" y2=\"\(f(y1(o)))\" stroke=\"#d62728\" stroke-dasharray=\"6,4\"/>")
            s.append("<text x=\"\(f(width - right))\" y=\"\(f(y1(o) - 4))\" text-anchor=\"end\" fill=\"#d62728\">output SQNR \(String(format: "%.1f", o)) dB</text>")
        }
        // Bottom panel: ranges, log scale.
        var e = lmin
        while e <= lmax {
            s.append("<line x1=\"\(f(left))\" y1=\"\(f(y2(pow(10, e))))\" x2=\"\(f(width - right))\" y2=\"\(f(y2(pow(10, e))))\" stroke=\"#ddd\"/>")
            s.append("<text x=\"\(f(left - 6))\" y=\"\(f(y2(pow(10, e)) + 4))\" text-anchor=\"end\">1e\(Int(e))</text>")
            e += 1
        }
        s.append("<text x=\"14\" y=\"\(f(top2 + h2 / 2))\" transform=\"rotate(-90 14 \(f(top2 + h2 / 2)))\" text-anchor=\"middle\">range</text>")
        for (k, l) in layers.enumerated() {
            let x = left + slot * Double(k) + slot * 0.15, w = slot * 0.7
            let ya = y2(Double(l.absMax)), yt = y2(Double(l.threshold))
            s.append("<rect x=\"\(f(x))\" y=\"\(f(ya))\" width=\"\(f(w))\" height=\"\(f(top2 + h2 - ya))\" fill=\"#bbb\"><title>\(esc(l.name)): max |x| \(l.absMax), threshold \(l.threshold)</title></rect>")
            s.append("<line x1=\"\(f(x - 1))\" y1=\"\(f(yt))\" x2=\"\(f(x + w + 1))\" y2=\"\(f(yt))\" stroke=\"#1f4e9c\" stroke-width=\"2.5\"/>")
        }
        s.append("<text x=\"\(f(width - right))\" y=\"\(f(top2 - 6))\" text-anchor=\"end\"><tspan fill=\"#888\">■ largest |x| seen</tspan>  <tspan fill=\"#1f4e9c\">— chosen threshold</tspan></text>")
        // Names, rotated, under the bottom panel (every k-th when crowded).
        let every = max(1, Int((12.0 / slot).rounded(.up)))
        for (k, l) in layers.enumerated() where k % every == 0 || k == worst {
            let x = left + slot * (Double(k) + 0.5), y = top2 + h2 + 8
            let name = l.name.count > 28 ? "…" + l.name.suffix(27) : l.name
            s.append("<text x=\"\(f(x))\" y=\"\(f(y))\" transform=\"rotate(60 \(f(x)) \(f(y)))\" fill=\"\(k == worst ? "#d62728" : "#333")\">\(esc(name))</text>")
        }
        s.append("</svg>")
        return s.joined(separator: "\n") + "\n"
    }
}
