import XCTest
import ModelIR
import Passes
import Runtime
import TensorCore

/// Seeded data and a before/after check: every pass is run on data, the graph before and the
/// graph after, each executed as written (`passes: .none`).
struct PassCheck {
    var state: UInt64 = 0x5EED

    /// Uniform in [-2, 2), from a 64-bit LCG (Knuth's MMIX constants): reproducible test data.
    mutating func random(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) * 4 - 2
        })
    }

    /// Positive values in [0.5, 1.5) (BN variances and scales).
    mutating func positive(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, scalars: random(shape).scalars(as: Float.self).map { abs($0) / 2 + 0.5 })
    }

    /// Runs `before` and `after` on `feeds` and asserts equal outputs within `tolerance`
    /// (relative to max(1, |expected|)).
    static func assertSameOutputs(_ before: Graph, _ after: Graph, _ feeds: [String: Tensor], opset: Int64 = 17,
                                  tolerance: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) throws {
        let ops = [OpsetImport(domain: "", version: opset)]
        let want = try Executor(model: Model(graph: before, opsetImports: ops), passes: .none).run(feeds)
        let got = try Executor(model: Model(graph: after, opsetImports: ops), passes: .none).run(feeds)
        XCTAssertEqual(Set(want.keys), Set(got.keys), "graph outputs keep their names", file: file, line: line)
        for (name, w) in want {
            guard let g = got[name] else { continue }
            XCTAssertEqual(g.shape, w.shape, name, file: file, line: line)
            for (a, b) in zip(g.floatValues(), w.floatValues()) {
                XCTAssertEqual(a, b, accuracy: tolerance * max(1, abs(b)), name, file: file, line: line)
            }
        }
    }
}

extension Graph {
    /// Applies `pass` to a copy.
    func applying(_ pass: some GraphPass) throws -> (Graph, PassResult) {
        var g = self
        let r = try pass.apply(to: &g)
        return (g, r)
    }
}

func conv(_ name: String, _ inputs: [String], _ output: String, pads: [Int64]? = nil) -> Node {
    Node(name: name, opType: "Conv", inputs: inputs, outputs: [output],
         attributes: pads.map { [Attribute(name: "pads", value: .ints($0))] } ?? [])
}

func constant(_ output: String, _ value: AttributeValue, attribute: String = "value") -> Node {
    Node(name: output + "_const", opType: "Constant", inputs: [], outputs: [output], attributes: [Attribute(name: attribute, value: value)])
}
