import ArgumentParser
import Foundation
import Runtime

struct Ops: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "List the operators the built-in executor supports, by domain and opset version.",
        discussion: """
        Each implementation serves the opsets from its version up to the next implementation's \
        version minus one; the newest one is open-ended ("13+"). A model whose opset falls in \
        a range runs with that implementation.

        Examples:
          compress ops
          compress ops --format json | jq '.[] | select(.op == "Conv")'
        """)

    @OptionGroup var output: FormatOption

    func run() throws {
        try reportingErrors {
            let rows = OpsReport.rows(OpRegistry.standard)
            switch output.format {
            case .json: try printJSON(rows)
            case .table:
                var t = TextTable(["domain", "op", "opsets"])
                for r in rows { t.add([r.domain, r.op, r.rangeText]) }
                print(t.render())
                let domains = Set(rows.map(\.domain)).count
                print("\n\(rows.count) operators in \(domains) domain\(domains == 1 ? "" : "s")")
            case .csv:
                print("domain,op,since_versions,opsets")
                for r in rows { print("\(r.domain),\(r.op),\(r.since_versions.map(String.init).joined(separator: " ")),\(r.rangeText.replacingOccurrences(of: ", ", with: " "))") }
            }
        }
    }
}

/// The `compress ops --format json` schema: one entry per (domain, op), documented in Docs/run.md.
enum OpsReport {
    struct Range: Encodable, Equatable {
        let from: Int
        /// The last opset served; nil for the newest implementation (open-ended).
        let to: Int?
    }
    struct Row: Encodable {
        let domain: String
        let op: String
        let since_versions: [Int]
        let ranges: [Range]
        var rangeText: String {
            ranges.map { r in r.to.map { $0 == r.from ? "\(r.from)" : "\(r.from)-\($0)" } ?? "\(r.from)+" }.joined(separator: ", ")
        }
    }

    /// Rows sorted by domain (ai.onnx first) and op name.
    static func rows(_ registry: OpRegistry) -> [Row] {
        registry.supported.map { s in
            let v = Array(Set(s.versions)).sorted()
            let ranges = v.enumerated().map { i, from in Range(from: from, to: i + 1 < v.count ? v[i + 1] - 1 : nil) }
            return Row(domain: s.domain.isEmpty || s.domain == "ai.onnx" ? "ai.onnx" : s.domain, op: s.op, since_versions: v, ranges: ranges)
        }.sorted { a, b in
            let ka = (a.domain == "ai.onnx" ? 0 : 1, a.domain, a.op), kb = (b.domain == "ai.onnx" ? 0 : 1, b.domain, b.op)
            return ka < kb
        }
    }
}
