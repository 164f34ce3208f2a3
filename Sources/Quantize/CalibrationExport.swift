import Foundation

/// Calibration tables for other toolchains, from the same thresholds.
public enum CalibrationExport {
    /// TensorRT's calibration cache: a `TRT-<version>-EntropyCalibration2` line, then one
    /// `tensor: <scale>` line per tensor, the scale (threshold / 127) as the 8 hex digits of its
    /// float32 bits, big-endian. Sorted by tensor name.
    public static func tensorRTCache(_ scales: [String: Float], version: String = "8600") -> String {
        var lines = ["TRT-\(version)-EntropyCalibration2"]
        for (name, s) in scales.sorted(by: { $0.key < $1.key }) {
            lines.append("\(name): " + String(format: "%08x", s.bitPattern))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// ncnn's int8 table (ncnn2table's format): one line per tensor, `name scale`, where ncnn's
    /// scale is the inverse of ONNX's (127 / threshold, the multiplier from float to int8).
    public static func ncnnTable(_ thresholds: [String: Float]) -> String {
        thresholds.sorted { $0.key < $1.key }.map { name, t in "\(name) \(t > 0 ? 127 / t : 0)" }.joined(separator: "\n") + "\n"
    }
}
