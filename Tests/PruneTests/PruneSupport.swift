import Foundation
import ModelIR

/// The repository's Fixtures folder (found from this file's path).
let fixturesURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

func fixture(_ name: String) -> String { fixturesURL.appendingPathComponent(name).path }
