import ArgumentParser
struct Profile: ParsableCommand { static let configuration = CommandConfiguration(abstract: "(in progress)", shouldDisplay: false) }
struct Run: ParsableCommand { static let configuration = CommandConfiguration(abstract: "(in progress)", shouldDisplay: false) }
struct Ops: ParsableCommand { static let configuration = CommandConfiguration(abstract: "(in progress)", shouldDisplay: false) }
