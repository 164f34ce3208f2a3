import ArgumentParser

/// Placeholder until the command lands.
struct Ops: ParsableCommand { static let configuration = CommandConfiguration(abstract: "(in progress)", shouldDisplay: false) }
