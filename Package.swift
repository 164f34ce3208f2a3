// swift-tools-version:6.0
// compress — make trained neural networks cheaper to deploy.
// Layers (imports only point down): compress -> Profile/Prune/Quantize/Distill/Fuse -> Runtime -> Passes -> ModelIR -> TensorCore -> COpenBLAS
import PackageDescription

let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "compress",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "compress", targets: ["compress"]),
        .library(name: "ModelIR", targets: ["ModelIR"]),
        .library(name: "Passes", targets: ["Passes"]),
        .library(name: "Runtime", targets: ["Runtime"]),
        .library(name: "Profile", targets: ["Profile"]),
        // The fuzzing entry points, for the libFuzzer package in Fuzz/ (built only by `make fuzz`).
        .library(name: "FuzzTargets", targets: ["FuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    ],
    targets: [
        // OpenBLAS, opened with dlopen on the first product (not linked: loading it at start cost
        // every command, `--version` included, its relocations and thread pool); run time needs
        // libopenblas0-pthread (Debian), building needs no OpenBLAS.
        .target(name: "COpenBLAS",
                linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .target(name: "ONNXProto",
                dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["proto"]),
        // Hand-vectorized kernels, compiled for the baseline CPU and for AVX2 + FMA (run-time dispatch).
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-Wno-psabi"])]),
        .target(name: "TensorCore", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: optimize),
        .target(name: "ModelIR", dependencies: ["TensorCore", "ONNXProto"], swiftSettings: optimize),
        .target(name: "Passes", dependencies: ["ModelIR", "TensorCore"], swiftSettings: optimize),
        .target(name: "Runtime", dependencies: ["ModelIR", "Passes", "TensorCore", "CPNG", "CJPEG"], swiftSettings: optimize),
        .target(name: "Profile", dependencies: ["ModelIR", "Runtime"], swiftSettings: optimize),
        // Structured channel pruning; measures before/after through Profile (the shared measuring layer).
        .target(name: "Prune", dependencies: ["ModelIR", "Passes", "Runtime", "Profile", "TensorCore"], swiftSettings: optimize),
        // Post-training static quantization (QDQ); calibrates through the executor's hooks.
        .target(name: "Quantize", dependencies: ["ModelIR", "Passes", "Runtime", "TensorCore"], swiftSettings: optimize),
        // Knowledge-distillation loss evaluation (teacher vs student over one pass of the data).
        .target(name: "Distill", dependencies: ["ModelIR", "Runtime", "TensorCore"], swiftSettings: optimize),
        // Structural re-parameterization: the shared passes applied and written, verified by running both graphs.
        .target(name: "Fuse", dependencies: ["ModelIR", "Passes", "Runtime", "TensorCore"], swiftSettings: optimize),
        // Fuzzing entry points (one per reader); libFuzzer drives them from Fuzz/, the tests replay
        // the seeds and minimized crashers through them (Tests/FuzzRegressionTests).
        .target(name: "FuzzTargets", dependencies: ["ModelIR", "ONNXProto", "Runtime", "TensorCore"]),
        .executableTarget(name: "compress",
                          dependencies: ["ModelIR", "Passes", "Runtime", "Profile", "Prune", "Quantize", "Distill", "Fuse", "TensorCore",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: optimize,
                          // Linked as a position-dependent executable in release: a PIE's ~87,000
                          // relative relocations (Swift metadata, the static Swift runtime and
                          // Foundation) touch ~250 pages at every start, a third of `--version`'s
                          // 3–4 ms. The libraries it loads stay position independent.
                          linkerSettings: [.unsafeFlags(["-Xclang-linker", "-no-pie"], .when(platforms: [.linux], configuration: .release))]),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"]),
        .testTarget(name: "ModelIRTests", dependencies: ["ModelIR", "TensorCore", "ONNXProto"]),
        .testTarget(name: "PassesTests", dependencies: ["Passes", "Runtime", "ModelIR", "TensorCore"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "ModelIR", "TensorCore"]),
        .testTarget(name: "ProfileTests", dependencies: ["Profile", "Runtime", "ModelIR", "TensorCore"]),
        .testTarget(name: "PruneTests", dependencies: ["Prune", "Profile", "Runtime", "ModelIR", "TensorCore"]),
        .testTarget(name: "QuantizeTests", dependencies: ["Quantize", "Runtime", "ModelIR", "TensorCore"]),
        .testTarget(name: "DistillTests", dependencies: ["Distill"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzTargets", "ModelIR", "Runtime"]),
        .testTarget(name: "CLITests", dependencies: ["ModelIR", "TensorCore"]),
    ],
    swiftLanguageModes: [.v5]
)
