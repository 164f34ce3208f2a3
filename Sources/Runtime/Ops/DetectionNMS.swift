import ModelIR
import TensorCore

// NonMaxSuppression-10/11 (11 only rewrote the documentation): greedy per-(batch, class)
// selection as in onnx/reference/ops/op_non_max_suppression.py.

extension StandardOps {
    static func registerNonMaxSuppression(_ r: OpRegistry) {
        for since in [10, 11] {
            r.register("NonMaxSuppression", since: since, kernel: { inputs, ctx in
                [try NonMaxSuppressionOp.run(inputs, ctx)]
            }, infer: { inputs, values, ctx in
                // The number of selected boxes depends on the scores, so the shape is known only
                // when every input is (a constant-folded graph); otherwise say why.
                let needed = (0..<min(inputs.count, 5)).filter { inputs[$0] != nil }
                guard needed.allSatisfy({ $0 < values.count && values[$0] != nil }) else {
                    throw ctx.error("the number of selected boxes depends on the scores, which are not known before running")
                }
                return [TensorInfo(try NonMaxSuppressionOp.run(values, ctx))]
            })
        }
    }
}

enum NonMaxSuppressionOp {
    /// selected_indices `[num_selected, 3]` int64 rows `(batch, class, box)`, in batch, class,
    /// then descending-score order.
    static func run(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> Tensor {
        let boxes = try floats(ctx.required(inputs, 0), "boxes", ctx)
        let scores = try floats(ctx.required(inputs, 1), "scores", ctx)
        guard boxes.rank == 3, boxes.shape[2] == 4 else {
            throw ctx.error("boxes must be [num_batches, spatial_dimension, 4], got \(NNSupport.shapeText(boxes.shape))")
        }
        let (nb, nbox) = (boxes.shape[0], boxes.shape[1])
        guard scores.rank == 3, scores.shape[0] == nb, scores.shape[2] == nbox else {
            throw ctx.error("scores must be [\(nb), num_classes, \(nbox)] to match boxes \(NNSupport.shapeText(boxes.shape)), got \(NNSupport.shapeText(scores.shape))")
        }
        let nc = scores.shape[1]
        let centerPoint = ctx.intAttribute("center_point_box", default: 0)
        guard centerPoint == 0 || centerPoint == 1 else { throw ctx.error("center_point_box must be 0 or 1, got \(centerPoint)") }

        // An omitted or empty optional input keeps its default: no boxes, IoU 0, no score filter.
        func scalar(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i].flatMap { $0.count == 0 ? nil : $0 } : nil }
        var maxPerClass = 0
        if let t = scalar(2) { maxPerClass = max(try TensorOperands.ints(t, "max_output_boxes_per_class", ctx)[0], 0) }
        let iouThreshold: Float = scalar(3).map { $0.floatValues()[0] } ?? 0
        let scoreThreshold: Float? = scalar(4).map { $0.floatValues()[0] }

        var selected: [Int64] = []
        boxes.withUnsafeBufferPointer(as: Float.self) { bp in
            scores.withUnsafeBufferPointer(as: Float.self) { sp in
                var order: [Int] = []
                var kept: [Int] = []
                for b in 0..<nb {
                    let batchBoxes = bp.baseAddress! + b * nbox * 4
                    for c in 0..<nc where maxPerClass > 0 {
                        let s = sp.baseAddress! + (b * nc + c) * nbox
                        order.removeAll(keepingCapacity: true)
                        for i in 0..<nbox where scoreThreshold.map({ s[i] > $0 }) ?? true { order.append(i) }
                        // Highest score first; equal scores keep the lower box index first. NaN
                        // scores (kept only without a score threshold) go last, so the order is total.
                        order.sort { a, b in
                            let (na, nb) = (s[a].isNaN, s[b].isNaN)
                            if na != nb { return nb }
                            return (!na && s[a] > s[b]) || ((na || s[a] == s[b]) && a < b)
                        }
                        kept.removeAll(keepingCapacity: true)
                        for i in order {
                            if kept.count >= maxPerClass { break }
                            let suppressed = kept.contains {
                                suppresses(batchBoxes + 4 * i, batchBoxes + 4 * $0, centerPoint: centerPoint == 1, iouThreshold)
                            }
                            if !suppressed {
                                kept.append(i)
                                selected += [Int64(b), Int64(c), Int64(i)]
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [selected.count / 3, 3], scalars: selected)
    }

    /// float32 boxes/scores (float16, bfloat16 and float64 are converted; the reference works in
    /// the input type, which for float32 — every exporter's type — is the same arithmetic).
    static func floats(_ t: Tensor, _ what: String, _ ctx: KernelContext) throws -> Tensor {
        guard t.dtype.isFloatingPoint else { throw ctx.error("\(what) must be a float tensor, got \(t.dtype)") }
        return t.dtype == .float32 ? t : t.converted(to: .float32)
    }

    /// Whether box `a` is suppressed by the already selected box `b`: IoU > threshold. Corner
    /// boxes `[y1, x1, y2, x2]` may give either corner first; center boxes are
    /// `[x_center, y_center, width, height]`. Degenerate (zero-area) boxes never suppress.
    /// Float arithmetic in the reference's order, so IoU ties at the threshold match.
    @inline(__always)
    static func suppresses(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, centerPoint: Bool, _ threshold: Float) -> Bool {
        let ax0, ax1, ay0, ay1, bx0, bx1, by0, by1: Float
        if centerPoint {
            let aw = a[2] / 2, ah = a[3] / 2, bw = b[2] / 2, bh = b[3] / 2
            (ax0, ax1, bx0, bx1) = (a[0] - aw, a[0] + aw, b[0] - bw, b[0] + bw)
            (ay0, ay1, by0, by1) = (a[1] - ah, a[1] + ah, b[1] - bh, b[1] + bh)
        } else {
            (ax0, ax1) = (min(a[1], a[3]), max(a[1], a[3]))
            (bx0, bx1) = (min(b[1], b[3]), max(b[1], b[3]))
            (ay0, ay1) = (min(a[0], a[2]), max(a[0], a[2]))
            (by0, by1) = (min(b[0], b[2]), max(b[0], b[2]))
        }
        let ix0 = max(ax0, bx0), ix1 = min(ax1, bx1)
        if ix1 <= ix0 { return false }
        let iy0 = max(ay0, by0), iy1 = min(ay1, by1)
        if iy1 <= iy0 { return false }
        let inter = (ix1 - ix0) * (iy1 - iy0)
        if inter <= 0 { return false }
        let areaA = (ax1 - ax0) * (ay1 - ay0), areaB = (bx1 - bx0) * (by1 - by0)
        let union = areaA + areaB - inter
        if areaA <= 0 || areaB <= 0 || union <= 0 { return false }
        return inter / union > threshold
    }
}
