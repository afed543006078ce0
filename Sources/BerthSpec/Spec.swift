// OCI runtime-spec v1.3.0 configuration types (config.md, config-linux.md).
//
// Only fields Berth acts on are typed; fields it does not implement yet are kept as
// `JSONValue?` so `Spec.validate` can refuse them by name. Unknown keys are ignored, as
// runc (Go's encoding/json) ignores them.

public let ociSpecVersion = "1.3.0"

public struct Spec: Decodable, Sendable {
    public var ociVersion: String
    public var process: Process?
    public var root: Root?
    public var hostname: String?
    public var domainname: String?
    public var mounts: [Mount]?
    public var hooks: JSONValue?
    public var annotations: [String: String]?
    public var linux: Linux?
    // Other platforms: refused when present.
    public var solaris: JSONValue?
    public var windows: JSONValue?
    public var vm: JSONValue?
    public var zos: JSONValue?
}

public struct Process: Decodable, Sendable {
    public var terminal: Bool?
    public var consoleSize: JSONValue?
    public var user: User
    public var args: [String]?
    public var commandLine: String?
    public var env: [String]?
    public var cwd: String
    public var capabilities: JSONValue?
    public var rlimits: JSONValue?
    public var noNewPrivileges: Bool?
    public var apparmorProfile: String?
    public var oomScoreAdj: Int?
    public var selinuxLabel: String?
    public var scheduler: JSONValue?
    public var ioPriority: JSONValue?
    public var execCPUAffinity: JSONValue?
}

public struct User: Decodable, Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var umask: UInt32?
    public var additionalGids: [UInt32]?
    public var username: String?
}

public struct Root: Decodable, Sendable {
    public var path: String
    public var readonly: Bool?
}

public struct Mount: Decodable, Sendable {
    public var destination: String
    public var type: String?
    public var source: String?
    public var options: [String]?
    public var uidMappings: JSONValue?
    public var gidMappings: JSONValue?
}

public struct Linux: Decodable, Sendable {
    public var namespaces: [Namespace]?
    public var uidMappings: [IDMapping]?
    public var gidMappings: [IDMapping]?
    public var timeOffsets: [String: TimeOffset]?
    public var devices: [Device]?
    public var cgroupsPath: String?
    public var rootfsPropagation: String?
    public var resources: JSONValue?
    public var seccomp: JSONValue?
    public var sysctl: JSONValue?
    public var maskedPaths: JSONValue?
    public var readonlyPaths: JSONValue?
    public var mountLabel: String?
    public var personality: JSONValue?
    public var intelRdt: JSONValue?
    public var memoryPolicy: JSONValue?
    public var netDevices: JSONValue?

    public init() {}
}

public struct Namespace: Decodable, Sendable {
    public var type: String
    public var path: String?
}

public struct IDMapping: Decodable, Sendable, Equatable {
    public var containerID: UInt32
    public var hostID: UInt32
    public var size: UInt32
}

public struct TimeOffset: Decodable, Sendable {
    public var secs: Int64?
    public var nanosecs: UInt32?
}

public struct Device: Decodable, Sendable {
    public var type: String
    public var path: String
    public var major: Int64?
    public var minor: Int64?
    public var fileMode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
}
