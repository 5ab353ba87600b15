// swift-tools-version: 6.1
//
// Benchmarks for mmulab, kept in their own package (as swift-nio does) so
// the main package's build and tests never pay for the benchmark harness.
//
//     cd Benchmarks && swift package benchmark
//
// See the README's "Benchmarks" section for the figures and how to read them.

import PackageDescription

let package = Package(
    name: "mmulab-benchmarks",
    dependencies: [
        .package(name: "mmulab", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The hot paths the README gives instruction counts for, shared by
        // the benchmarks that time them and by InstructionCounts.
        .target(
            name: "HotPaths",
            dependencies: [
                .product(name: "PluginHost", package: "mmulab"),
                .product(name: "VirtualMemory", package: "mmulab"),
                .product(name: "MMUNotifier", package: "mmulab"),
                .product(name: "LabSync", package: "mmulab"),
            ],
            path: "Sources/HotPaths",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Runs one hot path N times: scripts/instruction-counts runs it under
        // callgrind (instruction counts hold on a loaded or different machine).
        .executableTarget(
            name: "InstructionCounts",
            dependencies: [
                "HotPaths",
                // Built beside it so it can dlopen them.
                .product(name: "mmulab-plugin-mirror-c", package: "mmulab"),
                .product(name: "mmulab-plugin-mirror-swift", package: "mmulab"),
            ],
            path: "Sources/InstructionCounts",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "NotifierBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MMUNotifier", package: "mmulab"),
                .product(name: "LabSync", package: "mmulab"),
            ],
            path: "Benchmarks/NotifierBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "VirtualMemoryBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VirtualMemory", package: "mmulab"),
                .product(name: "MMUNotifier", package: "mmulab"),
                .product(name: "LabSync", package: "mmulab"),
                "HotPaths",
            ],
            path: "Benchmarks/VirtualMemoryBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "PluginCallbackBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "PluginHost", package: "mmulab"),
                .product(name: "VirtualMemory", package: "mmulab"),
                .product(name: "MMUNotifier", package: "mmulab"),
                // Built beside the benchmark so it can dlopen them.
                .product(name: "mmulab-fixture-countingc", package: "mmulab"),
                .product(name: "mmulab-fixture-countingswift", package: "mmulab"),
                .product(name: "mmulab-plugin-mirror-c", package: "mmulab"),
                .product(name: "mmulab-plugin-mirror-swift", package: "mmulab"),
                "HotPaths",
            ],
            path: "Benchmarks/PluginCallbackBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "ReclaimLabBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ReclaimLab", package: "mmulab"),
                .product(name: "PluginHost", package: "mmulab"),
                .product(name: "LabSync", package: "mmulab"),
                // The reclaim-storm scenario's plugins, built beside the benchmark so the lab can dlopen them.
                .product(name: "mmulab-plugin-gpu", package: "mmulab"),
                .product(name: "mmulab-plugin-rdma", package: "mmulab"),
                .product(name: "mmulab-plugin-kvm", package: "mmulab"),
            ],
            path: "Benchmarks/ReclaimLabBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Issue 21, item 4: lab time to the first finding of every BrokenMirror
        // bug and fault switch in its matching scenario, over ten seeds.
        .executableTarget(
            name: "BugFindingBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ReclaimLab", package: "mmulab"),
                .product(name: "PluginHost", package: "mmulab"),
                .product(name: "VirtualMemory", package: "mmulab"),
                // The catalogue scenarios' plugins and the broken mirror, built
                // beside the benchmark so the lab can dlopen them.
                .product(name: "mmulab-plugin-gpu", package: "mmulab"),
                .product(name: "mmulab-plugin-rdma", package: "mmulab"),
                .product(name: "mmulab-plugin-kvm", package: "mmulab"),
                .product(name: "mmulab-plugin-mirror-broken", package: "mmulab"),
            ],
            path: "Benchmarks/BugFindingBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
