import ArgumentParser

/// Placeholder until the command lands.
struct Run: ParsableCommand { static let configuration = CommandConfiguration(abstract: "(in progress)", shouldDisplay: false) }
