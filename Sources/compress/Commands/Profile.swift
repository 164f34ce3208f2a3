import ArgumentParser

/// Placeholder until the command lands.
struct Profile: ParsableCommand { static let configuration = CommandConfiguration(abstract: "(in progress)", shouldDisplay: false) }
