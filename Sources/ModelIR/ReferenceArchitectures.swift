/// Reference image classifiers built with `GraphBuilder`, layer for layer as torchvision
/// defines them (BatchNormalization kept, as in a training-mode graph), so their Conv/Gemm MACs
/// and parameter counts can be checked against torchvision's published figures.
///
/// Input `input` [N, 3, 224, 224] (N symbolic), output `logits` [N, 1000], opset 17.
public enum ReferenceArchitecture: String, CaseIterable, Sendable {
    case resnet18, resnet34, resnet50, mobilenetV2 = "mobilenet_v2", vgg16, squeezenet1_1

    public func build(randomWeights: Bool = true, seed: UInt64 = 0) -> Model {
        let b = GraphBuilder(name: rawValue, seed: seed, randomWeights: randomWeights)
        let x = b.input("input", .float32, [.symbolic("N"), .fixed(3), .fixed(224), .fixed(224)])
        let y: String
        switch self {
        case .resnet18: y = Self.resnet(b, x, blocks: [2, 2, 2, 2], bottleneck: false)
        case .resnet34: y = Self.resnet(b, x, blocks: [3, 4, 6, 3], bottleneck: false)
        case .resnet50: y = Self.resnet(b, x, blocks: [3, 4, 6, 3], bottleneck: true)
        case .mobilenetV2: y = Self.mobilenetV2(b, x)
        case .vgg16: y = Self.vgg16(b, x)
        case .squeezenet1_1: y = Self.squeezenet(b, x)
        }
        let out = b.op("Identity", [y], name: "logits_identity")
        b.graph.nodes[b.graph.nodes.count - 1].outputs = ["logits"]
        _ = out
        b.output("logits", .float32, [.symbolic("N"), .fixed(1000)])
        return b.build(opset: 17)
    }

    static func convBN(_ b: GraphBuilder, _ x: String, _ cin: Int, _ cout: Int, k: Int, s: Int = 1, p: Int = 0, g: Int = 1, name: String) -> String {
        b.batchNorm(b.conv(x, cin, cout, kernel: k, stride: s, pad: p, group: g, name: name + ".conv"), cout, name: name + ".bn")
    }

    /// ResNet v1.5 (torchvision): the stride of a downsampling bottleneck sits in its 3×3 conv.
    static func resnet(_ b: GraphBuilder, _ x: String, blocks: [Int], bottleneck: Bool) -> String {
        var h = b.relu(convBN(b, x, 3, 64, k: 7, s: 2, p: 3, name: "conv1"))
        h = b.maxPool(h, kernel: 3, stride: 2, pad: 1)
        var cin = 64
        let expansion = bottleneck ? 4 : 1
        for (stage, n) in blocks.enumerated() {
            let width = 64 << stage
            for i in 0..<n {
                let stride = (i == 0 && stage > 0) ? 2 : 1
                let name = "layer\(stage + 1).\(i)"
                let cout = width * expansion
                var y: String
                if bottleneck {
                    y = b.relu(convBN(b, h, cin, width, k: 1, name: name + ".1"))
                    y = b.relu(convBN(b, y, width, width, k: 3, s: stride, p: 1, name: name + ".2"))
                    y = convBN(b, y, width, cout, k: 1, name: name + ".3")
                } else {
                    y = b.relu(convBN(b, h, cin, width, k: 3, s: stride, p: 1, name: name + ".1"))
                    y = convBN(b, y, width, width, k: 3, p: 1, name: name + ".2")
                }
                let shortcut = (stride != 1 || cin != cout) ? convBN(b, h, cin, cout, k: 1, s: stride, name: name + ".downsample") : h
                h = b.relu(b.add(y, shortcut))
                cin = cout
            }
        }
        return b.linear(b.flatten(b.globalAveragePool(h)), cin, 1000, name: "fc")
    }

    static func mobilenetV2(_ b: GraphBuilder, _ x: String) -> String {
        var h = b.relu6(convBN(b, x, 3, 32, k: 3, s: 2, p: 1, name: "features.0"))
        var cin = 32
        let settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        var idx = 1
        for (t, c, n, s) in settings {
            for i in 0..<n {
                let stride = i == 0 ? s : 1
                let hidden = cin * t
                let name = "features.\(idx)"
                var y = h
                if t != 1 { y = b.relu6(convBN(b, y, cin, hidden, k: 1, name: name + ".expand")) }
                y = b.relu6(convBN(b, y, hidden, hidden, k: 3, s: stride, p: 1, g: hidden, name: name + ".dw"))
                y = convBN(b, y, hidden, c, k: 1, name: name + ".project")
                h = (stride == 1 && cin == c) ? b.add(h, y) : y
                cin = c
                idx += 1
            }
        }
        h = b.relu6(convBN(b, h, cin, 1280, k: 1, name: "features.18"))
        return b.linear(b.flatten(b.globalAveragePool(h)), 1280, 1000, name: "classifier")
    }

    static func vgg16(_ b: GraphBuilder, _ x: String) -> String {
        let cfg: [Int] = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]
        var h = x, cin = 3, i = 0
        for v in cfg {
            if v == 0 { h = b.maxPool(h, kernel: 2, stride: 2) } else {
                h = b.relu(b.conv(h, cin, v, kernel: 3, pad: 1, bias: true, name: "features.\(i)"))
                cin = v
            }
            i += 1
        }
        h = b.flatten(h)  // 7×7 already: torchvision's AdaptiveAvgPool2d(7) is the identity here
        h = b.relu(b.linear(h, 512 * 7 * 7, 4096, name: "classifier.0"))
        h = b.relu(b.linear(h, 4096, 4096, name: "classifier.3"))
        return b.linear(h, 4096, 1000, name: "classifier.6")
    }

    static func squeezenet(_ b: GraphBuilder, _ x: String) -> String {
        func fire(_ h: String, _ cin: Int, _ sq: Int, _ e1: Int, _ e3: Int, _ name: String) -> String {
            let s = b.relu(b.conv(h, cin, sq, kernel: 1, bias: true, name: name + ".squeeze"))
            let a = b.relu(b.conv(s, sq, e1, kernel: 1, bias: true, name: name + ".expand1x1"))
            let c = b.relu(b.conv(s, sq, e3, kernel: 3, pad: 1, bias: true, name: name + ".expand3x3"))
            return b.concat([a, c], axis: 1)
        }
        var h = b.relu(b.conv(x, 3, 64, kernel: 3, stride: 2, bias: true, name: "features.0"))
        h = b.maxPool(h, kernel: 3, stride: 2, ceil: true)
        h = fire(h, 64, 16, 64, 64, "features.3")
        h = fire(h, 128, 16, 64, 64, "features.4")
        h = b.maxPool(h, kernel: 3, stride: 2, ceil: true)
        h = fire(h, 128, 32, 128, 128, "features.6")
        h = fire(h, 256, 32, 128, 128, "features.7")
        h = b.maxPool(h, kernel: 3, stride: 2, ceil: true)
        h = fire(h, 256, 48, 192, 192, "features.9")
        h = fire(h, 384, 48, 192, 192, "features.10")
        h = fire(h, 384, 64, 256, 256, "features.11")
        h = fire(h, 512, 64, 256, 256, "features.12")
        h = b.relu(b.conv(h, 512, 1000, kernel: 1, bias: true, name: "classifier.1"))
        return b.flatten(b.globalAveragePool(h))
    }
}
