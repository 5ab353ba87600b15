// swift-tools-version: 6.1
//
// mmulab: a user-space lab for secondary MMUs.
//
// The layering is the design (see README "Architecture"):
//   LabSync       host-owned synchronisation layer: every lock, wait and sleep
//   MMUNotifier   events, ranges, subscriptions, interval notifiers, shrinkers
//   VirtualMemory the primary MMU model: frames, page tables, rmap, reclaim, ...
//   NotifierStormLab  the notifier core alone under a storm (`mmulab notifier-storm`)
//   mmulab        the command-line tool
// Later layers (VirtualMemory, CDevicePluginABI, PluginHost, DevicePluginKit,
// ReclaimLab, Plugins/*) stack on these and never the other way round.

import PackageDescription

let strictSwift6: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// Code built on the Linux shim exports only its plugin entry (which says so itself).
let linuxShimC: [CSetting] = [.unsafeFlags(["-fvisibility=hidden"])]
/// A driver on the Linux shim that calls what the shim does not provide fails to link
/// (an undefined symbol), never loads to fail later.
let everySymbolDefined: [LinkerSetting] = [.unsafeFlags(["-Xlinker", "-z", "-Xlinker", "defs"])]

/// Fixture plugins built from Tests/Fixtures/Plugins/MisuseTemplate, one mistake each (issue 18): a misused
/// host service, something left behind at detach or destroy, a lock-order bug, a crash. Directory, product name.
let misuseFixtures: [(directory: String, name: String)] = [
    ("ForeignPFN", "foreign-pfn"), ("DoubleUnpin", "double-unpin"), ("OverUnpin", "over-unpin"), ("UnpinUnpinned", "unpin-unpinned"),
    ("FreeForeignPage", "free-foreign-page"), ("DoubleFreePage", "double-free-page"), ("DestroyedLock", "destroyed-lock"),
    ("DestroyedCompletion", "destroyed-completion"), ("ForeignUnlock", "foreign-unlock"), ("SetSeqOutside", "set-seq-outside"),
    ("DoubleRemove", "double-remove"), ("NullPointers", "null-pointers"), ("BadExclusive", "bad-exclusive"), ("BadLookup", "bad-lookup"), ("BadReference", "bad-reference"),
    ("LeakSubscription", "leak-subscription"), ("LeakInterval", "leak-interval"), ("LeakShrinker", "leak-shrinker"), ("LeakPin", "leak-pin"),
    ("LeakPageTablePage", "leak-page-table-page"), ("LeakDeviceMemory", "leak-device-memory"),
    ("LockInversion", "lock-inversion"), ("LockOrdered", "lock-ordered"), ("LockHeld", "lock-held"), ("NullDerefStart", "null-deref-start"),
]

let package = Package(
    name: "mmulab",
    products: [
        .library(name: "LabSync", targets: ["LabSync"]),
        .library(name: "MMUNotifier", targets: ["MMUNotifier"]),
        .library(name: "VirtualMemory", targets: ["VirtualMemory"]),
        .library(name: "PluginHost", targets: ["PluginHost"]),
        .library(name: "DevicePluginKit", targets: ["DevicePluginKit"]),
        .library(name: "ReclaimLab", targets: ["ReclaimLab"]),
        .executable(name: "mmulab", targets: ["mmulab"]),
        // The kernel-diff harness's real-kernel side: run beside mmulab (Sources/KernelRunner, C).
        .executable(name: "mmulab-kernel-runner", targets: ["KernelRunner"]),
        .library(name: "mmulab-plugin-gpu", type: .dynamic, targets: ["GPUPlugin"]),
        .library(name: "mmulab-plugin-rdma", type: .dynamic, targets: ["RDMAPlugin"]),
        .library(name: "mmulab-plugin-kvm", type: .dynamic, targets: ["KVMPlugin"]),
        .library(name: "mmulab-plugin-mirror-c", type: .dynamic, targets: ["MirrorPluginC"]),
        .library(name: "mmulab-plugin-mirror-swift", type: .dynamic, targets: ["MirrorPluginSwift"]),
        .library(name: "mmulab-plugin-mirror-broken", type: .dynamic, targets: ["BrokenMirror"]),
        // The Linux shim's runtime as a static library, for drivers built outside this package
        // (scripts/linux-shim-sdk installs it with the headers; README "Bring your driver").
        .library(name: "mmulab-linux-shim", type: .static, targets: ["CLinuxShim"]),
        // A test_hmm-style driver in kernel C on the Linux shim (Examples/KernelStyleMirror).
        .library(name: "mmulab-plugin-kernel-mirror", type: .dynamic, targets: ["KernelStyleMirror"]),
        // Deliberately broken plugins the PluginHost tests load (Tests/Fixtures/Plugins).
        .library(name: "mmulab-fixture-noentry", type: .dynamic, targets: ["FixtureNoEntry"]),
        .library(name: "mmulab-fixture-wrongmajor", type: .dynamic, targets: ["FixtureWrongMajor"]),
        .library(name: "mmulab-fixture-toosmall", type: .dynamic, targets: ["FixtureTooSmall"]),
        .library(name: "mmulab-fixture-missingop", type: .dynamic, targets: ["FixtureMissingOp"]),
        .library(name: "mmulab-fixture-createfails", type: .dynamic, targets: ["FixtureCreateFails"]),
        .library(name: "mmulab-fixture-entryrefuses", type: .dynamic, targets: ["FixtureEntryRefuses"]),
        .library(name: "mmulab-fixture-greedyminor", type: .dynamic, targets: ["FixtureGreedyMinor"]),
        .library(name: "mmulab-fixture-sleepy", type: .dynamic, targets: ["FixtureSleepy"]),
        .library(name: "mmulab-fixture-countingc", type: .dynamic, targets: ["FixtureCountingC"]),
        .library(name: "mmulab-fixture-countingswift", type: .dynamic, targets: ["FixtureCountingSwift"]),
        .library(name: "mmulab-fixture-servicesprobe", type: .dynamic, targets: ["FixtureServicesProbe"]),
        // A plugin that abort()s on its first device access (the CLI tests' crashing campaign run).
        .library(name: "mmulab-fixture-crashes", type: .dynamic, targets: ["FixtureCrashes"]),
        // A plugin that answers retry to blockable starts and logs MMULAB_LOG_MISBEHAVING (the CLI tests' contract findings).
        .library(name: "mmulab-fixture-misbehaving", type: .dynamic, targets: ["FixtureMisbehaving"]),
        // Kernel-style probes of the Linux shim's semantics, driven step by step through `control`.
        .library(name: "mmulab-fixture-linuxshim", type: .dynamic, targets: ["FixtureLinuxShim"]),
    ] + misuseFixtures.map { .library(name: "mmulab-fixture-\($0.name)", type: .dynamic, targets: ["Fixture\($0.directory)"]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        // `swift package generate-documentation` (DocC), which CI runs with warnings as errors.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CLabSyncShims"),
        .target(name: "LabSync", dependencies: ["CLabSyncShims"], swiftSettings: strictSwift6),
        .target(name: "MMUNotifier", dependencies: ["LabSync"], swiftSettings: strictSwift6),
        .target(name: "VirtualMemory", dependencies: ["LabSync", "MMUNotifier"], swiftSettings: strictSwift6),
        // `mmulab notifier-storm`: the notifier core alone, stormed with in-process mirror devices and checked.
        .target(name: "NotifierStormLab", dependencies: ["LabSync", "MMUNotifier"], swiftSettings: strictSwift6),
        .target(name: "CDevicePluginABI"),
        // The plugin oops: per-thread call frames and the crash handler that prints them (C: async-signal-safe).
        .target(name: "CPluginOops", dependencies: ["CLabSyncShims"]),
        // The model checked against the real kernel: scripts, the model side, the comparison.
        .target(name: "KernelDiff", dependencies: ["LabSync", "MMUNotifier", "VirtualMemory"], swiftSettings: strictSwift6),
        // Performs a kernel-diff script on the real kernel with a KVM guest watching (C, Linux only).
        .executableTarget(name: "KernelRunner", path: "Sources/KernelRunner"),
        .target(name: "DevicePluginKit", dependencies: ["CDevicePluginABI"], swiftSettings: strictSwift6),
        // The Linux-API shim: linux/ headers and a C runtime on the plugin ABI's host services, so
        // kernel-style notifier and fault code builds as a plugin with one glue file (README "Bring your driver").
        .target(name: "CLinuxShim", dependencies: ["CDevicePluginABI"], cSettings: linuxShimC),
        // The reclaim lab: scenario files, actors, the oracle, reports.
        .target(
            name: "ReclaimLab",
            dependencies: [
                "LabSync", "MMUNotifier", "VirtualMemory", "PluginHost", .product(name: "Yams", package: "Yams"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strictSwift6
        ),

        // The GPU plugin (Plugins/GPU): libdrm device discovery and the simulated GPU MMU.
        .systemLibrary(name: "CLibDRM", path: "Plugins/GPU/CLibDRM", pkgConfig: "libdrm", providers: [.apt(["libdrm-dev"])]),
        .target(name: "GPUDeviceDiscovery", dependencies: ["CLibDRM"], path: "Plugins/GPU/Discovery", swiftSettings: strictSwift6),
        .target(name: "GPUPlugin", dependencies: ["DevicePluginKit", "CDevicePluginABI", "GPUDeviceDiscovery"], path: "Plugins/GPU/Plugin", swiftSettings: strictSwift6),

        // The RDMA plugin (Plugins/RDMA): a simulated NIC with on-demand paging (mlx5 ODP).
        .target(name: "RDMAPlugin", dependencies: ["DevicePluginKit", "CDevicePluginABI"], path: "Plugins/RDMA", swiftSettings: strictSwift6),

        // The KVM plugin (Plugins/KVM): KVM's MMU (memslots, EPT, vCPU TLBs, aging, change_pte, dirty logging).
        .target(name: "KVMPlugin", dependencies: ["DevicePluginKit", "CDevicePluginABI"], path: "Plugins/KVM", exclude: ["README.md"], swiftSettings: strictSwift6),

        // Example plugins (Examples/): a plugin author's starting points.
        .target(name: "MirrorPluginC", dependencies: ["CDevicePluginABI"], path: "Examples/MirrorPluginC", publicHeadersPath: "."),
        .target(name: "MirrorPluginSwift", dependencies: ["DevicePluginKit", "CDevicePluginABI"], path: "Examples/MirrorPluginSwift", swiftSettings: strictSwift6),
        .target(name: "BrokenMirror", dependencies: ["DevicePluginKit", "CDevicePluginABI"], path: "Examples/BrokenMirror", swiftSettings: strictSwift6),
        .target(
            name: "KernelStyleMirror", dependencies: ["CLinuxShim", "CDevicePluginABI"], path: "Examples/KernelStyleMirror",
            publicHeadersPath: ".", cSettings: linuxShimC, linkerSettings: everySymbolDefined),
        .target(name: "FixtureTemplate", dependencies: ["CDevicePluginABI"], path: "Tests/Fixtures/Plugins/Template"),
        .target(name: "FixtureNoEntry", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/NoEntry", publicHeadersPath: "."),
        .target(name: "FixtureWrongMajor", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/WrongMajor", publicHeadersPath: "."),
        .target(name: "FixtureTooSmall", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/TooSmall", publicHeadersPath: "."),
        .target(name: "FixtureMissingOp", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/MissingOp", publicHeadersPath: "."),
        .target(name: "FixtureCreateFails", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/CreateFails", publicHeadersPath: "."),
        .target(name: "FixtureEntryRefuses", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/EntryRefuses", publicHeadersPath: "."),
        .target(name: "FixtureGreedyMinor", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/GreedyMinor", publicHeadersPath: "."),
        .target(name: "FixtureCrashes", dependencies: ["CDevicePluginABI", "FixtureTemplate"], path: "Tests/Fixtures/Plugins/Crashes", publicHeadersPath: "."),
        .target(name: "FixtureSleepy", dependencies: ["CDevicePluginABI"], path: "Tests/Fixtures/Plugins/Sleepy", publicHeadersPath: "."),
        .target(name: "FixtureCountingC", dependencies: ["CDevicePluginABI"], path: "Tests/Fixtures/Plugins/CountingC", publicHeadersPath: "."),
        .target(name: "FixtureMisbehaving", dependencies: ["CDevicePluginABI"], path: "Tests/Fixtures/Plugins/Misbehaving", publicHeadersPath: "."),
        .target(name: "FixtureServicesProbe", dependencies: ["CDevicePluginABI"], path: "Tests/Fixtures/Plugins/ServicesProbe", publicHeadersPath: "."),
        .target(
            name: "FixtureLinuxShim", dependencies: ["CLinuxShim", "CDevicePluginABI"], path: "Tests/Fixtures/Plugins/LinuxShim",
            publicHeadersPath: ".", cSettings: linuxShimC, linkerSettings: everySymbolDefined),
        .target(name: "FixtureCountingSwift", dependencies: ["DevicePluginKit", "CDevicePluginABI"], path: "Tests/Fixtures/Plugins/CountingSwift", swiftSettings: strictSwift6),
        .target(name: "FixtureMisuseTemplate", dependencies: ["CDevicePluginABI"], path: "Tests/Fixtures/Plugins/MisuseTemplate"),
        .target(
            name: "PluginHost",
            dependencies: ["CDevicePluginABI", "CPluginOops", "LabSync", "MMUNotifier", "VirtualMemory"],
            swiftSettings: strictSwift6
        ),
        // The campaigns' bug database (SQLite through GRDB): runs, bugs, where each was seen.
        .target(name: "BugDatabase", dependencies: [.product(name: "GRDB", package: "GRDB.swift")], swiftSettings: strictSwift6),
        .executableTarget(
            name: "mmulab",
            dependencies: [
                "LabSync",
                "ReclaimLab",
                "BugDatabase",
                "MMUNotifier",
                "NotifierStormLab",
                "VirtualMemory",
                "PluginHost",
                "KernelDiff",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift6
        ),
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strictSwift6),
        // One machine, one address space, one loaded plugin: the bundled plugins' test fixture.
        .target(
            name: "PluginTestSupport",
            dependencies: ["PluginHost", "VirtualMemory", "MMUNotifier", "LabSync", "TestSupport"],
            path: "Tests/PluginTestSupport",
            swiftSettings: strictSwift6
        ),
        // Runs the built mmulab executable (and loads fixture plugins beside it): exit statuses, messages, campaigns.
        .testTarget(name: "MMULabCLITests", swiftSettings: strictSwift6),
        .testTarget(name: "ReclaimLabTests", dependencies: ["ReclaimLab", "VirtualMemory", "MMUNotifier", "TestSupport"], swiftSettings: strictSwift6),
        .testTarget(name: "BugDatabaseTests", dependencies: ["BugDatabase"], swiftSettings: strictSwift6),
        .testTarget(name: "KernelDiffTests", dependencies: ["KernelDiff", "VirtualMemory", "MMUNotifier", "LabSync"], swiftSettings: strictSwift6),
        .testTarget(name: "LabSyncTests", dependencies: ["LabSync", "TestSupport"], swiftSettings: strictSwift6),
        .testTarget(
            name: "MMUNotifierTests",
            // NotifierStormLab: the storm tests drive its devices, so the tests and
            // `mmulab notifier-storm` hold the same devices to the same contract.
            dependencies: ["MMUNotifier", "NotifierStormLab", "LabSync", "TestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "GPUPluginTests",
            dependencies: ["PluginHost", "VirtualMemory", "MMUNotifier", "LabSync", "TestSupport", "PluginTestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "RDMAPluginTests",
            dependencies: ["PluginHost", "VirtualMemory", "MMUNotifier", "LabSync", "TestSupport", "PluginTestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "KVMPluginTests",
            dependencies: ["PluginHost", "VirtualMemory", "MMUNotifier", "LabSync", "TestSupport", "PluginTestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(name: "GPUDiscoveryTests", dependencies: ["GPUDeviceDiscovery", "CLibDRM"], swiftSettings: strictSwift6),
        .testTarget(
            name: "PluginHostTests",
            dependencies: ["PluginHost", "CDevicePluginABI", "VirtualMemory", "MMUNotifier", "LabSync", "TestSupport"],
            exclude: [],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "VirtualMemoryTests",
            dependencies: ["VirtualMemory", "MMUNotifier", "LabSync", "TestSupport"],
            swiftSettings: strictSwift6
        ),
    ] + misuseFixtures.map {
        .target(
            name: "Fixture\($0.directory)", dependencies: ["CDevicePluginABI", "FixtureMisuseTemplate"], path: "Tests/Fixtures/Plugins/\($0.directory)",
            publicHeadersPath: ".")
    }
)
