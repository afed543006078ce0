// swift-tools-version: 6.0
import PackageDescription

// Berth has no package dependencies: argument parsing is a small table in the CLI
// (swift-argument-parser costs ~1.5 ms a call and does not speak Go's single-dash long
// flags), and JSON comes from FoundationEssentials, never Foundation.
let package = Package(
    name: "berth",
    products: [
        .executable(name: "berth", targets: ["berth"]),
    ],
    targets: [
        // C: the executor that runs between clone and execve (shim.c: no allocation, no
        // stdio), and parent-side helpers in files of their own (hooks, relay, wrappers).
        .target(name: "CBerth",
                cSettings: [.unsafeFlags(["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"])],
                linkerSettings: [.linkedLibrary("cap"), .linkedLibrary("seccomp")]),
        .target(name: "BerthSpec"),
        .target(name: "BerthCore", dependencies: ["BerthSpec", "CBerth"]),
        .executableTarget(name: "berth", dependencies: ["BerthCore", "BerthSpec", "CBerth"]),
        .testTarget(name: "BerthTests", dependencies: ["BerthCore", "BerthSpec", "CBerth"]),
    ]
)
