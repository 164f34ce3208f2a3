import ModelIR

/// Where a channel group's channels sit inside one constant tensor: channels
/// `start ..< start + count` of the group are indices `offset + (c − start)·block ..< … + block`
/// along `axis` of the constant named `tensor`.
///
/// `block` is 1 except after a Flatten: a Gemm after `Flatten([N, C, H, W])` reads channel c as
/// the H·W columns `[c·H·W, (c+1)·H·W)` (DepGraph's Flatten rule).
public struct ChannelSlice: Hashable, Sendable {
    public enum Role: String, Sendable, Codable {
        /// The filters of a layer that produces the channels (Conv weight axis 0, its bias, Gemm rows).
        case output
        /// Per-channel parameters of a layer the channels pass through (BN, depthwise conv, PRelu).
        case passThrough = "pass-through"
        /// The input side of a layer that consumes the channels (Conv weight axis 1, Gemm columns).
        case input
    }

    public var tensor: String
    public var axis: Int
    public var offset: Int
    public var start: Int
    public var count: Int
    public var block: Int
    public var role: Role
    /// The node that reads the tensor.
    public var node: String
    /// 0, or for the input side of a grouped convolution the input channels per convolution
    /// group: channel c is weight index `(c − start) mod period` of its convolution group (the
    /// plan removes the same positions from every convolution group, so the index goes once).
    public var period = 0

    /// Indices along `axis` that removing the group's channels `removed` takes out.
    public func indices(removing removed: [Int]) -> [Int] {
        var out: [Int] = []
        var seen = Set<Int>()
        for c in removed where c >= start && c < start + count {
            let base = offset + (period > 0 ? (c - start) % period : c - start) * block
            if period > 0 && !seen.insert(base).inserted { continue }
            out.append(contentsOf: base ..< base + block)
        }
        return out
    }

    /// Positions along the reading value's channel axis (before any `period`) of the removed
    /// channels: what the reader sees at those channels.
    public func channels(removing removed: [Int]) -> [Int] {
        var out: [Int] = []
        for c in removed where c >= start && c < start + count {
            let base = offset + (c - start) * block
            out.append(contentsOf: base ..< base + block)
        }
        return out
    }
}

/// A run of channels of a value: channels `start ..< start + count` of group `space`, or `count`
/// channels no group owns (`space` nil: a graph input's, a grouped convolution's).
struct ChannelSegment: Equatable {
    var space: Int?
    var start: Int
    var count: Int
}

/// How a value's channel axis (axis 1) is made of groups' channels; `block` as in `ChannelSlice`.
struct ChannelLayout: Equatable {
    var segments: [ChannelSegment]
    var block = 1

    var channels: Int { segments.reduce(0) { $0 + $1.count } }
    var spaces: [Int] { segments.compactMap(\.space) }

    /// Segments with their position along the value's channel axis.
    var positioned: [(position: Int, segment: ChannelSegment)] {
        var pos = 0
        return segments.map { s in defer { pos += s.count }; return (pos, s) }
    }
}
