// swift-tools-version: 6.1
//
// mmulab: a user-space lab for secondary MMUs.
//
// The layering is the design (see README "Architecture"):
//   LabSync       host-owned synchronisation layer: every lock, wait and sleep
//   MMUNotifier   events, ranges, subscriptions, interval notifiers, shrinkers
//   VirtualMemory the primary MMU model: frames, page tables, rmap, reclaim, ...
//   mmulab        the command-line tool
// Later layers (VirtualMemory, CDevicePluginABI, PluginHost, DevicePluginKit,
// ReclaimLab, Plugins/*) stack on these and never the other way round.

import PackageDescription

let strictSwift6: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "mmulab",
    products: [
        .library(name: "LabSync", targets: ["LabSync"]),
        .library(name: "MMUNotifier", targets: ["MMUNotifier"]),
        .library(name: "VirtualMemory", targets: ["VirtualMemory"]),
        .executable(name: "mmulab", targets: ["mmulab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .target(name: "CLabSyncShims"),
        .target(name: "LabSync", dependencies: ["CLabSyncShims"], swiftSettings: strictSwift6),
        .target(name: "MMUNotifier", dependencies: ["LabSync"], swiftSettings: strictSwift6),
        .target(name: "VirtualMemory", dependencies: ["LabSync", "MMUNotifier"], swiftSettings: strictSwift6),
        .executableTarget(
            name: "mmulab",
            dependencies: [
                "LabSync",
                "MMUNotifier",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift6
        ),
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strictSwift6),
        .testTarget(name: "LabSyncTests", dependencies: ["LabSync", "TestSupport"], swiftSettings: strictSwift6),
        .testTarget(
            name: "MMUNotifierTests",
            dependencies: ["MMUNotifier", "LabSync", "TestSupport"],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "VirtualMemoryTests",
            dependencies: ["VirtualMemory", "MMUNotifier", "LabSync", "TestSupport"],
            swiftSettings: strictSwift6
        ),
    ]
)
