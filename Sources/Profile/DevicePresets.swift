import Foundation

/// The bundled roofline devices (`--device NAME`), kept as data: one entry per device with its
/// peak rate per precision (GFLOP/s; int8 in GOP/s), its memory bandwidth (GB/s, 10^9 bytes/s)
/// and the document each figure comes from.
///
/// Rules for the figures: dense rates only (NVIDIA datasheets print FP16/INT8 Tensor Core rates
/// "with sparsity"; those are halved here and the source says so); a precision the device has
/// no datasheet or derivable figure for is left out (the profiler then falls back to the next
/// wider precision and says so); CPU peaks are derived as cores × clock × FLOP/cycle with each
/// factor's source named.
public enum DevicePresets {
    /// Every preset, in the order of `presetJSON`.
    public static let all: [RooflineDevice] = {
        struct Entry: Decodable {
            let name: String
            let description: String
            let peak_gflops: [String: Double]
            let bandwidth_gbs: Double
            let sources: [String: String]
        }
        guard let entries = try? JSONDecoder().decode([Entry].self, from: Data(presetJSON.utf8)) else {
            preconditionFailure("the bundled device presets are not valid JSON")
        }
        return entries.map { e in
            var peak: [Precision: Double] = [:]
            for (k, v) in e.peak_gflops { if let p = Precision(rawValue: k) { peak[p] = v * 1e9 } }
            return RooflineDevice(name: e.name, description: e.description, peak: peak,
                                  bandwidth: e.bandwidth_gbs * 1e9, sources: e.sources)
        }
    }()

    /// The preset called `name` (case-insensitive).
    public static func named(_ name: String) -> RooflineDevice? {
        all.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }

    /// The presets as JSON (also printed by `compress profile --list-devices --format json`).
    public static let presetJSON = #"""
    [
      {
        "name": "nvidia-h100-sxm",
        "description": "NVIDIA H100 SXM5 80 GB (Hopper), data centre GPU",
        "peak_gflops": {"fp32": 67000, "fp16": 989500, "int8": 1979000},
        "bandwidth_gbs": 3350,
        "sources": {
          "fp32": "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: FP32 67 teraFLOPS",
          "fp16": "NVIDIA H100 datasheet, H100 SXM: FP16 Tensor Core 1,979 teraFLOPS with sparsity; dense = half",
          "int8": "NVIDIA H100 datasheet, H100 SXM: INT8 Tensor Core 3,958 TOPS with sparsity; dense = half",
          "bandwidth": "NVIDIA H100 datasheet, H100 SXM: GPU memory bandwidth 3.35 TB/s"
        }
      },
      {
        "name": "nvidia-h100-pcie",
        "description": "NVIDIA H100 PCIe 80 GB (Hopper), data centre GPU",
        "peak_gflops": {"fp32": 51000, "fp16": 756500, "int8": 1513000},
        "bandwidth_gbs": 2000,
        "sources": {
          "fp32": "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe: FP32 51 teraFLOPS",
          "fp16": "NVIDIA H100 datasheet, H100 PCIe: FP16 Tensor Core 1,513 teraFLOPS with sparsity; dense = half",
          "int8": "NVIDIA H100 datasheet, H100 PCIe: INT8 Tensor Core 3,026 TOPS with sparsity; dense = half",
          "bandwidth": "NVIDIA H100 datasheet, H100 PCIe: GPU memory bandwidth 2 TB/s"
        }
      },
      {
        "name": "nvidia-h200-sxm",
        "description": "NVIDIA H200 SXM 141 GB (Hopper, HBM3e), data centre GPU",
        "peak_gflops": {"fp32": 67000, "fp16": 989500, "int8": 1979000},
        "bandwidth_gbs": 4800,
        "sources": {
          "fp32": "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: FP32 67 TFLOPS",
          "fp16": "NVIDIA H200 datasheet, H200 SXM: FP16 Tensor Core 1,979 TFLOPS with sparsity; dense = half",
          "int8": "NVIDIA H200 datasheet, H200 SXM: INT8 Tensor Core 3,958 TOPS with sparsity; dense = half",
          "bandwidth": "NVIDIA H200 datasheet, H200 SXM: GPU memory bandwidth 4.8 TB/s"
        }
      },
      {
        "name": "nvidia-a100-sxm4-80gb",
        "description": "NVIDIA A100 SXM4 80 GB (Ampere), data centre GPU",
        "peak_gflops": {"fp32": 19500, "fp16": 312000, "int8": 624000},
        "bandwidth_gbs": 2039,
        "sources": {
          "fp32": "NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOPS",
          "fp16": "NVIDIA A100 datasheet: FP16 Tensor Core 312 TFLOPS (624 with sparsity)",
          "int8": "NVIDIA A100 datasheet: INT8 Tensor Core 624 TOPS (1,248 with sparsity)",
          "bandwidth": "NVIDIA A100 datasheet, A100 80GB SXM: GPU memory bandwidth 2,039 GB/s"
        }
      },
      {
        "name": "nvidia-a100-pcie-40gb",
        "description": "NVIDIA A100 PCIe 40 GB (Ampere), data centre GPU",
        "peak_gflops": {"fp32": 19500, "fp16": 312000, "int8": 624000},
        "bandwidth_gbs": 1555,
        "sources": {
          "fp32": "NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOPS",
          "fp16": "NVIDIA A100 datasheet: FP16 Tensor Core 312 TFLOPS (624 with sparsity)",
          "int8": "NVIDIA A100 datasheet: INT8 Tensor Core 624 TOPS (1,248 with sparsity)",
          "bandwidth": "NVIDIA A100 datasheet, A100 40GB PCIe: GPU memory bandwidth 1,555 GB/s"
        }
      },
      {
        "name": "nvidia-l4",
        "description": "NVIDIA L4 24 GB (Ada Lovelace), data centre inference GPU",
        "peak_gflops": {"fp32": 30300, "fp16": 121000, "int8": 242500},
        "bandwidth_gbs": 300,
        "sources": {
          "fp32": "NVIDIA L4 Tensor Core GPU datasheet: FP32 30.3 teraFLOPS",
          "fp16": "NVIDIA L4 datasheet: FP16 Tensor Core 242 teraFLOPS with sparsity; dense = half",
          "int8": "NVIDIA L4 datasheet: INT8 Tensor Core 485 TOPS with sparsity; dense = half",
          "bandwidth": "NVIDIA L4 datasheet: GPU memory bandwidth 300 GB/s"
        }
      },
      {
        "name": "nvidia-t4",
        "description": "NVIDIA T4 16 GB (Turing), data centre inference GPU",
        "peak_gflops": {"fp32": 8100, "fp16": 65000, "int8": 130000},
        "bandwidth_gbs": 320,
        "sources": {
          "fp32": "NVIDIA T4 Tensor Core GPU datasheet: single precision 8.1 TFLOPS",
          "fp16": "NVIDIA T4 datasheet: mixed precision (FP16/FP32) 65 TFLOPS (Turing has no sparsity mode)",
          "int8": "NVIDIA T4 datasheet: INT8 130 TOPS",
          "bandwidth": "NVIDIA T4 datasheet: GPU memory bandwidth 320+ GB/s"
        }
      },
      {
        "name": "jetson-agx-orin-64gb",
        "description": "NVIDIA Jetson AGX Orin 64 GB module, GPU only (2048 CUDA cores, 64 Tensor Cores; DLAs not counted)",
        "peak_gflops": {"fp32": 5300, "fp16": 42500, "int8": 85000},
        "bandwidth_gbs": 204.8,
        "sources": {
          "fp32": "NVIDIA Jetson AGX Orin Series Technical Brief v1.2: GPU 5.3 FP32 TFLOPS",
          "fp16": "Jetson AGX Orin Technical Brief v1.2: GPU 170 sparse INT8 TOPS; dense INT8 = 85, Ampere Tensor Core dense FP16 = half of dense INT8",
          "int8": "Jetson AGX Orin Technical Brief v1.2: GPU 170 sparse INT8 TOPS; dense = half",
          "bandwidth": "NVIDIA Jetson AGX Orin Series datasheet: 64 GB 256-bit LPDDR5, 204.8 GB/s"
        }
      },
      {
        "name": "jetson-orin-nano-8gb",
        "description": "NVIDIA Jetson Orin Nano 8 GB module (1024 CUDA cores, 32 Tensor Cores at 625 MHz), original 15 W clocks",
        "peak_gflops": {"fp32": 1280, "fp16": 10000, "int8": 20000},
        "bandwidth_gbs": 68,
        "sources": {
          "fp32": "derived: 1024 CUDA cores x 0.625 GHz x 2 FLOP/cycle (FMA); NVIDIA Jetson Orin Nano Series datasheet (cores, max GPU frequency 625 MHz)",
          "fp16": "Jetson Orin Nano Series datasheet: 40 TOPS (sparse INT8, GPU only); dense INT8 = 20, dense FP16 = half of dense INT8",
          "int8": "Jetson Orin Nano Series datasheet: AI performance 40 TOPS (INT8 with sparsity); dense = half",
          "bandwidth": "Jetson Orin Nano Series datasheet: 8 GB 128-bit LPDDR5, 68 GB/s"
        }
      },
      {
        "name": "jetson-orin-nano-8gb-super",
        "description": "NVIDIA Jetson Orin Nano 8 GB with JetPack 6.1 'Super' clocks (GPU 1020 MHz, 25 W mode)",
        "peak_gflops": {"fp32": 2089, "fp16": 16750, "int8": 33500},
        "bandwidth_gbs": 102,
        "sources": {
          "fp32": "derived: 1024 CUDA cores x 1.02 GHz x 2 FLOP/cycle (FMA); Jetson Orin Nano Super Developer Kit datasheet (GPU 1020 MHz)",
          "fp16": "Jetson Orin Nano Super Developer Kit datasheet: 67 TOPS (sparse INT8); dense INT8 = 33.5, dense FP16 = half of dense INT8",
          "int8": "Jetson Orin Nano Super Developer Kit datasheet: AI performance 67 TOPS (INT8 with sparsity); dense = half",
          "bandwidth": "Jetson Orin Nano Super Developer Kit datasheet: memory bandwidth 102 GB/s"
        }
      },
      {
        "name": "jetson-nano",
        "description": "NVIDIA Jetson Nano 4 GB (128-core Maxwell GPU at 921 MHz); no INT8 arithmetic",
        "peak_gflops": {"fp32": 236, "fp16": 472},
        "bandwidth_gbs": 25.6,
        "sources": {
          "fp32": "derived: 128 CUDA cores x 0.921 GHz x 2 FLOP/cycle = 236 GFLOPS (half the FP16 rate below)",
          "fp16": "NVIDIA Jetson Nano module datasheet: AI performance 472 GFLOPs (FP16)",
          "bandwidth": "NVIDIA Jetson Nano module datasheet: 4 GB 64-bit LPDDR4, 25.6 GB/s"
        }
      },
      {
        "name": "raspberry-pi-5",
        "description": "Raspberry Pi 5 (Broadcom BCM2712, 4x Arm Cortex-A76 at 2.4 GHz), CPU",
        "peak_gflops": {"fp32": 153.6, "fp16": 307.2, "int8": 614.4},
        "bandwidth_gbs": 17.07,
        "sources": {
          "fp32": "derived: 4 cores x 2.4 GHz x 16 FLOP/cycle (two 128-bit ASIMD pipes V0/V1, FMLA .4s each; Arm Cortex-A76 Software Optimization Guide); cores and clock: Raspberry Pi 5 product brief",
          "fp16": "derived: 4 cores x 2.4 GHz x 32 FLOP/cycle (FMLA .8h on both ASIMD pipes; Armv8.2 FP16, Cortex-A76 Software Optimization Guide)",
          "int8": "derived: 4 cores x 2.4 GHz x 64 OP/cycle (SDOT: 16 int8 MACs per 128-bit instruction on both ASIMD pipes; Cortex-A76 Software Optimization Guide)",
          "bandwidth": "derived: LPDDR4X-4267 on a 32-bit bus = 4.267 GT/s x 4 bytes; Raspberry Pi 5 product brief (LPDDR4X-4267 SDRAM)"
        }
      },
      {
        "name": "intel-xeon-8480plus",
        "description": "Intel Xeon Platinum 8480+ (Sapphire Rapids, 56 cores, 2.0 GHz base), one socket, CPU",
        "peak_gflops": {"fp32": 7168, "fp16": 14336, "int8": 229376},
        "bandwidth_gbs": 307.2,
        "sources": {
          "fp32": "derived: 56 cores x 2.0 GHz base x 64 FLOP/cycle (two AVX-512 FMA units x 16 lanes x 2); Intel ARK Xeon Platinum 8480+ (cores, base frequency); sustained AVX-512 clocks can sit below base",
          "fp16": "derived: 56 cores x 2.0 GHz x 128 FLOP/cycle (AVX512-FP16 on both FMA units); Intel ARK (instruction set extensions)",
          "int8": "derived: 56 cores x 2.0 GHz x 2048 OP/cycle (AMX-INT8: 1024 int8 MACs per cycle per core); Intel Architecture Instruction Set Extensions Programming Reference (AMX); Intel ARK",
          "bandwidth": "derived: 8 channels x DDR5-4800 x 8 bytes = 307.2 GB/s; Intel ARK Xeon Platinum 8480+ (memory types DDR5-4800, 8 channels)"
        }
      },
      {
        "name": "amd-epyc-9654",
        "description": "AMD EPYC 9654 (Zen 4 Genoa, 96 cores, 2.4 GHz base), one socket, CPU; no datasheet FP16/INT8 figure",
        "peak_gflops": {"fp32": 7372.8},
        "bandwidth_gbs": 460.8,
        "sources": {
          "fp32": "derived: 96 cores x 2.4 GHz base x 32 FLOP/cycle (two 256-bit FMA pipes; AVX-512 runs as two 256-bit halves); AMD EPYC 9654 product page (cores, base clock); Software Optimization Guide for AMD Family 19h (Zen 4)",
          "bandwidth": "derived: 12 channels x DDR5-4800 x 8 bytes = 460.8 GB/s; AMD EPYC 9654 product page (12 channels DDR5, per-socket memory bandwidth 460.8 GB/s)"
        }
      },
      {
        "name": "aws-graviton3",
        "description": "AWS Graviton3 (64 Arm Neoverse V1 cores at 2.6 GHz), CPU",
        "peak_gflops": {"fp32": 5324.8, "fp16": 10649.6, "int8": 21299.2},
        "bandwidth_gbs": 307.2,
        "sources": {
          "fp32": "derived: 64 cores x 2.6 GHz x 32 FLOP/cycle (four 128-bit / two 256-bit SVE FMA pipes; Arm Neoverse V1 Software Optimization Guide); AWS Graviton3 (c7g) product page (cores, 2.6 GHz)",
          "fp16": "derived: 64 cores x 2.6 GHz x 64 FLOP/cycle (FP16 FMLA on the same pipes)",
          "int8": "derived: 64 cores x 2.6 GHz x 128 OP/cycle (SDOT on four 128-bit pipes, 16 int8 MACs each)",
          "bandwidth": "derived: 8 channels x DDR5-4800 x 8 bytes = 307.2 GB/s; AWS Graviton3 product page (DDR5-4800)"
        }
      }
    ]
    """#
}
