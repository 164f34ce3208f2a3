// swift-tools-version:6.0
// libFuzzer driver for compress's readers (Sources/FuzzTargets). A package of its own so that the
// main `swift build` never builds it: `make fuzz` builds it with `--sanitize=fuzzer --sanitize=address`
// (scripts/fuzz.sh), which instruments the readers' whole dependency tree.
import PackageDescription

let package = Package(
    name: "compress-fuzz",
    dependencies: [.package(name: "compress", path: "..")],
    targets: [
        .executableTarget(name: "compress-fuzz", dependencies: [.product(name: "FuzzTargets", package: "compress")]),
    ],
    swiftLanguageModes: [.v5]
)
