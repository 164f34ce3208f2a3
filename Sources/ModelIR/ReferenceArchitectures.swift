/// Reference image classifiers built with `GraphBuilder`, layer for layer as torchvision
/// defines them, so their Conv/Gemm MACs and parameter counts can be checked against
/// torchvision's published figures.
///
/// Two families:
/// - resnet18/34/50, mobilenet_v2, vgg16, squeezenet1_1: BatchNormalization kept, as in a
///   training-mode graph.
/// - mobilenet_v3_small/large, efficientnet_b0 (`isExportStyle`): written the way
///   `torch.onnx.export(model.eval(), …, opset_version=17)` writes them, so benchmarks and tests
///   see what users run: BatchNormalization folded into the convolutions (its default
///   `do_constant_folding=True` in eval mode), SiLU as Sigmoid + Mul, Hardswish as `HardSwish`
///   (large) or as x · HardSigmoid(x) (small, torch's form below opset 14), the SE gate as
///   `HardSigmoid` (large) or as Add(3) → Clip(0, 6) → Div(6) with each scalar in a `Constant`
///   node placed between producer and consumer (small, as `relu6(x + 3) / 6` code exports),
///   Flatten → Gemm heads, and the last classifier weight read through an `Identity`.
///   Dropout and stochastic depth are the identity at inference and are not written.
///
/// Any architecture can be built with BatchNormalization kept or folded (`batchNorm:`); kept is
/// what torchvision's `sum(p.numel() for p in model.parameters())` counts (BN scale and bias
/// are parameters, running mean and variance buffers).
///
/// Input `input` [N, 3, 224, 224] (N symbolic), output `logits` [N, 1000], opset 17.
public enum ReferenceArchitecture: String, CaseIterable, Sendable {
    case resnet18, resnet34, resnet50, mobilenetV2 = "mobilenet_v2", vgg16, squeezenet1_1
    case mobilenetV3Small = "mobilenet_v3_small", mobilenetV3Large = "mobilenet_v3_large", efficientnetB0 = "efficientnet_b0"

    /// How Conv → BatchNormalization pairs are written.
    public enum BatchNorm: String, CaseIterable, Sendable {
        /// Conv (no bias) → BatchNormalization.
        case kept
        /// One Conv with a bias (what an eval-mode export folds them into).
        case folded
    }

    /// Built as torch.onnx.export writes the model (see the type's comment).
    public var isExportStyle: Bool {
        switch self {
        case .mobilenetV3Small, .mobilenetV3Large, .efficientnetB0: return true
        default: return false
        }
    }

    /// `.folded` for the export-style models, `.kept` for the others.
    public var defaultBatchNorm: BatchNorm { isExportStyle ? .folded : .kept }

    public func build(randomWeights: Bool = true, seed: UInt64 = 0, batchNorm: BatchNorm? = nil) -> Model {
        let b = GraphBuilder(name: rawValue, seed: seed, randomWeights: randomWeights)
        b.foldsBatchNorm = (batchNorm ?? defaultBatchNorm) == .folded
        let x = b.input("input", .float32, [.symbolic("N"), .fixed(3), .fixed(224), .fixed(224)])
        let y: String
        switch self {
        case .resnet18: y = Self.resnet(b, x, blocks: [2, 2, 2, 2], bottleneck: false)
        case .resnet34: y = Self.resnet(b, x, blocks: [3, 4, 6, 3], bottleneck: false)
        case .resnet50: y = Self.resnet(b, x, blocks: [3, 4, 6, 3], bottleneck: true)
        case .mobilenetV2: y = Self.mobilenetV2(b, x)
        case .vgg16: y = Self.vgg16(b, x)
        case .squeezenet1_1: y = Self.squeezenet(b, x)
        case .mobilenetV3Small: y = Self.mobilenetV3(b, x, large: false)
        case .mobilenetV3Large: y = Self.mobilenetV3(b, x, large: true)
        case .efficientnetB0: y = Self.efficientnetB0(b, x)
        }
        let out = b.op("Identity", [y], name: "logits_identity")
        b.graph.nodes[b.graph.nodes.count - 1].outputs = ["logits"]
        _ = out
        b.output("logits", .float32, [.symbolic("N"), .fixed(1000)])
        return b.build(opset: 17)
    }

    /// Conv → BatchNormalization, or one Conv with a bias when the builder folds BN.
    static func convBN(_ b: GraphBuilder, _ x: String, _ cin: Int, _ cout: Int, k: Int, s: Int = 1, p: Int = 0, g: Int = 1,
                       eps: Float = 1e-5, gain: Float = 1, name: String) -> String {
        if b.foldsBatchNorm {
            return b.conv(x, cin, cout, kernel: k, stride: s, pad: p, group: g, bias: true, gain: gain, name: name + ".conv")
        }
        return b.batchNorm(b.conv(x, cin, cout, kernel: k, stride: s, pad: p, group: g, gain: gain, name: name + ".conv"), cout,
                           epsilon: eps, name: name + ".bn")
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

    /// Weight gains of the export-style models' random weights (a conv's gain undoes the variance
    /// its input lost to the activation before it, E[f(x)²] for x ~ N(0, 1), as He initialization
    /// does for ReLU; a project conv after an SE block also undoes the gate). Without them the signal of a random MobileNetV3 or EfficientNet dies out and the
    /// logits are the last biases whatever the input, which would make output comparisons
    /// vacuous.
    enum Gain {
        static let relu = Float(2).squareRoot()          // E[relu²] = 1/2
        static let hardSwish = Float(3).squareRoot()     // E[hardswish²] ≈ 0.332
        static let silu = Float(1 / 0.356).squareRoot()  // E[silu²] ≈ 0.356
        /// After an SE gate (1/2 near 0, nearer 1 where the squeezed signal grows), chosen per
        /// model so that, with seed 0 and a uniform ±1 input, the blocks' outputs keep a standard
        /// deviation between 0.1 and 3 from stem to logits (2 everywhere made the large model's
        /// grow to ~200, √2 everywhere made the others' fade to ~0.1).
        static func gate(_ arch: ReferenceArchitecture) -> Float {
            switch arch {
            case .mobilenetV3Small: return 2
            case .efficientnetB0: return 1.8
            default: return Float(2).squareRoot()
            }
        }
    }

    /// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, at least 8, never
    /// below 90 % of v.
    static func makeDivisible(_ v: Int, _ divisor: Int = 8) -> Int {
        var n = max(divisor, (v + divisor / 2) / divisor * divisor)
        if 10 * n < 9 * v { n += divisor }
        return n
    }

    /// torchvision.ops.SqueezeExcitation: GlobalAveragePool → Conv (bias) → act → Conv (bias)
    /// → gate, then `scale * input`.
    static func squeezeExcite(_ b: GraphBuilder, _ x: String, _ c: Int, _ squeeze: Int, act: (String) -> String,
                              actGain: Float, gate: (String) -> String, name: String) -> String {
        var s = b.globalAveragePool(x)
        s = act(b.conv(s, c, squeeze, kernel: 1, bias: true, name: name + ".fc1"))
        s = gate(b.conv(s, squeeze, c, kernel: 1, bias: true, gain: actGain, name: name + ".fc2"))
        return b.op("Mul", [s, x])
    }

    /// torchvision's mobilenet_v3_small / mobilenet_v3_large (width 1.0, BN eps 0.001): the
    /// inverted-residual settings of `_mobilenet_v3_conf`, SE squeeze `_make_divisible(exp / 4)`,
    /// last conv 6 × the last block's channels, classifier Linear → Hardswish → Dropout → Linear.
    static func mobilenetV3(_ b: GraphBuilder, _ x: String, large: Bool) -> String {
        // (input channels, kernel, expanded channels, output channels, SE, Hardswish, stride)
        typealias Setting = (cin: Int, k: Int, exp: Int, cout: Int, se: Bool, hs: Bool, s: Int)
        let settings: [Setting] = large ? [
            (16, 3, 16, 16, false, false, 1), (16, 3, 64, 24, false, false, 2), (24, 3, 72, 24, false, false, 1),
            (24, 5, 72, 40, true, false, 2), (40, 5, 120, 40, true, false, 1), (40, 5, 120, 40, true, false, 1),
            (40, 3, 240, 80, false, true, 2), (80, 3, 200, 80, false, true, 1), (80, 3, 184, 80, false, true, 1),
            (80, 3, 184, 80, false, true, 1), (80, 3, 480, 112, true, true, 1), (112, 3, 672, 112, true, true, 1),
            (112, 5, 672, 160, true, true, 2), (160, 5, 960, 160, true, true, 1), (160, 5, 960, 160, true, true, 1),
        ] : [
            (16, 3, 16, 16, true, false, 2), (16, 3, 72, 24, false, false, 2), (24, 3, 88, 24, false, false, 1),
            (24, 5, 96, 40, true, true, 2), (40, 5, 240, 40, true, true, 1), (40, 5, 240, 40, true, true, 1),
            (40, 5, 120, 48, true, true, 1), (48, 5, 144, 48, true, true, 1), (48, 5, 288, 96, true, true, 2),
            (96, 5, 576, 96, true, true, 1), (96, 5, 576, 96, true, true, 1),
        ]
        let eps: Float = 1e-3
        let hardSwish: (String) -> String = large ? { b.hardSwish($0) } : { b.hardSwishAsMul($0) }
        let gate: (String) -> String = large ? { b.hardSigmoid($0) } : { b.hardSigmoidAsClip($0) }
        var h = hardSwish(convBN(b, x, 3, 16, k: 3, s: 2, p: 1, eps: eps, name: "features.0"))
        var hGain = Gain.hardSwish
        for (i, c) in settings.enumerated() {
            let name = "features.\(i + 1)"
            let act: (String) -> String = c.hs ? hardSwish : { b.relu($0) }
            let actGain = c.hs ? Gain.hardSwish : Gain.relu
            var y = h, yGain = hGain
            if c.exp != c.cin {
                y = act(convBN(b, y, c.cin, c.exp, k: 1, eps: eps, gain: yGain, name: name + ".expand"))
                yGain = actGain
            }
            y = act(convBN(b, y, c.exp, c.exp, k: c.k, s: c.s, p: (c.k - 1) / 2, g: c.exp, eps: eps, gain: yGain, name: name + ".dw"))
            yGain = actGain
            if c.se {
                y = squeezeExcite(b, y, c.exp, makeDivisible(c.exp / 4), act: { b.relu($0) }, actGain: Gain.relu, gate: gate,
                                  name: name + ".se")
                yGain *= Gain.gate(large ? .mobilenetV3Large : .mobilenetV3Small)
            }
            y = convBN(b, y, c.exp, c.cout, k: 1, eps: eps, gain: yGain, name: name + ".project")
            h = (c.s == 1 && c.cin == c.cout) ? b.add(y, h) : y
            hGain = 1
        }
        let cin = settings[settings.count - 1].cout, lastConv = 6 * cin, hidden = large ? 1280 : 1024
        h = hardSwish(convBN(b, h, cin, lastConv, k: 1, eps: eps, name: "features.\(settings.count + 1)"))
        h = hardSwish(b.linear(b.flatten(b.globalAveragePool(h)), lastConv, hidden, gain: Gain.hardSwish, name: "classifier.0"))
        return b.linear(h, hidden, 1000, weightThroughIdentity: true, gain: Gain.hardSwish, name: "classifier.3")
    }

    /// torchvision's efficientnet_b0 (width and depth 1.0): MBConv stages of `_efficientnet_conf`,
    /// expanded `_make_divisible(cin × t)`, SE squeeze max(1, cin / 4) with SiLU and Sigmoid,
    /// last conv 4 × 320 = 1280, classifier Dropout → Linear.
    static func efficientnetB0(_ b: GraphBuilder, _ x: String) -> String {
        // (expand ratio, kernel, stride, input channels, output channels, layers)
        let stages = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
        var h = b.silu(convBN(b, x, 3, 32, k: 3, s: 2, p: 1, name: "features.0"))
        var hGain = Gain.silu
        for (si, (t, k, s, firstIn, cout, n)) in stages.enumerated() {
            for i in 0..<n {
                let cin = i == 0 ? firstIn : cout, stride = i == 0 ? s : 1
                let exp = makeDivisible(cin * t)
                let name = "features.\(si + 1).\(i)"
                var y = h, yGain = hGain
                if exp != cin {
                    y = b.silu(convBN(b, y, cin, exp, k: 1, gain: yGain, name: name + ".expand"))
                    yGain = Gain.silu
                }
                y = b.silu(convBN(b, y, exp, exp, k: k, s: stride, p: (k - 1) / 2, g: exp, gain: yGain, name: name + ".dw"))
                y = squeezeExcite(b, y, exp, max(1, cin / 4), act: { b.silu($0) }, actGain: Gain.silu,
                                  gate: { b.op("Sigmoid", [$0]) }, name: name + ".se")
                y = convBN(b, y, exp, cout, k: 1, gain: Gain.silu * Gain.gate(.efficientnetB0), name: name + ".project")
                h = (stride == 1 && cin == cout) ? b.add(y, h) : y
                hGain = 1
            }
        }
        h = b.silu(convBN(b, h, 320, 1280, k: 1, name: "features.8"))
        return b.linear(b.flatten(b.globalAveragePool(h)), 1280, 1000, weightThroughIdentity: true, gain: Gain.silu,
                        name: "classifier.1")
    }
}
