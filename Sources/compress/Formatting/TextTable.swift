/// A plain-text table: columns padded to their widest cell, numbers right-aligned.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []
    /// Columns aligned right (numbers).
    var rightAligned: Set<Int> = []

    init(_ headers: [String], rightAligned: Set<Int> = []) {
        self.headers = headers
        self.rightAligned = rightAligned
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        var widths = headers.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
                return rightAligned.contains(i) ? pad + c : c + pad
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
        var out = [line(headers), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }
}

/// Human-readable quantities with units.
enum Units {
    /// 1234567 -> "1.23 M" (SI prefixes, for counts such as MACs and parameters).
    static func count(_ v: Double, digits: Int = 2) -> String {
        let a = abs(v)
        let (d, s): (Double, String) = a >= 1e12 ? (1e12, " T") : a >= 1e9 ? (1e9, " G") : a >= 1e6 ? (1e6, " M") : a >= 1e3 ? (1e3, " K") : (1, "")
        if d == 1 { return v == v.rounded() ? String(Int64(v)) : String(format: "%.\(digits)f", v) }
        return String(format: "%.\(digits)f", v / d) + s
    }

    /// Bytes with binary prefixes: "97.49 MiB".
    static func bytes(_ v: Double) -> String {
        let a = abs(v)
        if a >= 1_073_741_824 { return String(format: "%.2f GiB", v / 1_073_741_824) }
        if a >= 1_048_576 { return String(format: "%.2f MiB", v / 1_048_576) }
        if a >= 1024 { return String(format: "%.2f KiB", v / 1024) }
        return "\(Int64(v)) B"
    }

    /// Integer with thousands separators: 11689512 -> "11,689,512".
    static func grouped(_ v: Int64) -> String {
        let s = String(abs(v))
        var out = ""
        for (i, ch) in s.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (v < 0 ? "-" : "") + String(out.reversed())
    }
}

extension String {
    /// Drops trailing spaces (no regular expression: that would load ICU at start-up).
    func trimmingTrailingSpaces() -> String {
        var end = endIndex
        while end > startIndex, self[index(before: end)] == " " { end = index(before: end) }
        return String(self[..<end])
    }
}
