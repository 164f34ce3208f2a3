import Foundation

/// A one-line progress bar on stderr: `label [#######.......] 120/360  85.2/s  ETA 3s`.
///
/// Redrawn at most ten times a second, erased by `finish()`. Disabled (draws nothing) when
/// stderr is not a terminal or the user asked for `--quiet`, so scripts and logs stay clean.
final class ProgressBar {
    let total: Int
    let label: String
    let enabled: Bool
    private(set) var done = 0
    private let start = DispatchTime.now().uptimeNanoseconds
    private var lastDraw: UInt64 = 0
    private var drawn = false

    static var stderrIsTerminal: Bool { isatty(2) != 0 }

    init(total: Int, label: String, enabled: Bool) {
        self.total = total
        self.label = label
        self.enabled = enabled
    }

    /// Marks `n` more steps done and redraws when due.
    func advance(_ n: Int = 1) {
        done += n
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        if done < total && now - lastDraw < 100_000_000 { return }
        lastDraw = now
        draw(now: now)
    }

    /// Erases the bar.
    func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
        drawn = false
    }

    private func draw(now: UInt64) {
        let width = 30
        let fraction = total > 0 ? Double(min(done, total)) / Double(total) : 1
        let filled = Int(fraction * Double(width))
        let seconds = Double(now - start) / 1e9
        let rate = seconds > 0 ? Double(done) / seconds : 0
        var line = "\r\u{1B}[2K\(label) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total)"
        if rate > 0 {
            line += String(format: "  %.1f/s", rate)
            if done < total { line += "  ETA \(Int((Double(total - done) / rate).rounded(.up)))s" }
        }
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }
}
