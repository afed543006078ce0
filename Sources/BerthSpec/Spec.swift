// OCI runtime-spec v1.3.0 configuration types (config.md, config-linux.md).
//
// Only fields Berth acts on are typed; fields it does not implement yet are kept as
// `JSONValue?` so `Spec.validate` can refuse them by name. Unknown keys are ignored, as
// runc (Go's encoding/json) ignores them. Each type reads itself from a `JSONReader`
// (explicit code rather than Codable: errors name the path, and start-up stays fast).

public let ociSpecVersion = "1.3.0"

public struct Spec: Sendable {
    public var ociVersion: String
    public var process: Process?
    public var root: Root?
    public var hostname: String?
    public var domainname: String?
    public var mounts: [Mount]?
    public var hooks: Hooks?
    public var annotations: [String: String]?
    public var linux: Linux?
    // Other platforms: refused when present.
    public var solaris: JSONValue?
    public var windows: JSONValue?
    public var vm: JSONValue?
    public var zos: JSONValue?
}

public struct Process: Sendable {
    public var terminal: Bool?
    public var consoleSize: (height: UInt16, width: UInt16)?
    public var user: User
    public var args: [String]?
    public var commandLine: String?
    public var env: [String]?
    public var cwd: String
    public var capabilities: Capabilities?
    public var rlimits: [Rlimit]?
    public var noNewPrivileges: Bool?
    public var apparmorProfile: String?
    public var oomScoreAdj: Int?
    public var selinuxLabel: String?
    public var scheduler: Scheduler?
    public var ioPriority: IOPriority?
    public var execCPUAffinity: CPUAffinity?
}

public struct Capabilities: Sendable {
    public init(bounding: [String]? = nil, effective: [String]? = nil, inheritable: [String]? = nil,
                permitted: [String]? = nil, ambient: [String]? = nil) {
        self.bounding = bounding; self.effective = effective; self.inheritable = inheritable
        self.permitted = permitted; self.ambient = ambient
    }
    public var bounding: [String]?
    public var effective: [String]?
    public var inheritable: [String]?
    public var permitted: [String]?
    public var ambient: [String]?
}

public struct Rlimit: Sendable {
    public var type: String
    public var hard: UInt64
    public var soft: UInt64
}

public struct Scheduler: Sendable {
    public var policy: String
    public var nice: Int32?
    public var priority: Int32?
    public var flags: [String]?
    public var runtime: UInt64?
    public var deadline: UInt64?
    public var period: UInt64?
}

public struct IOPriority: Sendable {
    public var ioClass: String
    public var priority: Int32
}

public struct CPUAffinity: Sendable {
    public var initial: String?
    public var final: String?
}

public struct Hook: Sendable, Equatable {
    public var path: String
    public var args: [String]?
    public var env: [String]?
    public var timeout: Int?
    public init(path: String, args: [String]? = nil, env: [String]? = nil, timeout: Int? = nil) {
        self.path = path; self.args = args; self.env = env; self.timeout = timeout
    }
}

/// The six hook lists, by the spec's names, in the order the lifecycle runs them.
public enum HookKind: String, CaseIterable, Sendable {
    case prestart, createRuntime, createContainer, startContainer, poststart, poststop
}

public struct Hooks: Sendable {
    public var lists: [HookKind: [Hook]] = [:]
    public init() {}
    public subscript(_ k: HookKind) -> [Hook] { lists[k] ?? [] }
}

public struct Seccomp: Sendable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    public var architectures: [String]?
    public var flags: [String]?
    public var listenerPath: String?
    public var listenerMetadata: String?
    public var syscalls: [SeccompRule]?
}

public struct SeccompRule: Sendable {
    public var names: [String]
    public var action: String
    public var errnoRet: UInt32?
    public var args: [SeccompArg]?
}

public struct SeccompArg: Sendable {
    public var index: UInt32
    public var value: UInt64
    public var valueTwo: UInt64?
    public var op: String
}

public struct Personality: Sendable {
    public var domain: String
    public var flags: [String]?
}

public struct User: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var umask: UInt32?
    public var additionalGids: [UInt32]?
    public var username: String?
}

public struct Root: Sendable {
    public var path: String
    public var readonly: Bool?
}

public struct Mount: Sendable {
    public var destination: String
    public var type: String?
    public var source: String?
    public var options: [String]?
    public var uidMappings: JSONValue?
    public var gidMappings: JSONValue?
}

public struct Linux: Sendable {
    public var namespaces: [Namespace]?
    public var uidMappings: [IDMapping]?
    public var gidMappings: [IDMapping]?
    public var timeOffsets: [String: TimeOffset]?
    public var devices: [Device]?
    public var cgroupsPath: String?
    public var rootfsPropagation: String?
    public var resources: Resources?
    public var seccomp: Seccomp?
    public var sysctl: [String: String]?
    public var maskedPaths: [String]?
    public var readonlyPaths: [String]?
    public var mountLabel: String?
    public var personality: Personality?
    public var intelRdt: JSONValue?
    public var memoryPolicy: JSONValue?
    public var netDevices: JSONValue?

    public init() {}
}

public struct Namespace: Sendable {
    public var type: String
    public var path: String?
}

public struct IDMapping: Sendable, Equatable {
    public var containerID: UInt32
    public var hostID: UInt32
    public var size: UInt32
}

public struct TimeOffset: Sendable {
    public var secs: Int64?
    public var nanosecs: UInt32?
}

public struct Device: Sendable {
    public var type: String
    public var path: String
    public var major: Int64?
    public var minor: Int64?
    public var fileMode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
}

// MARK: reading

extension Spec {
    public init(_ r: JSONReader) throws(SpecError) {
        ociVersion = try r.string("ociVersion")
        process = try r.optObject("process").map { (o: JSONReader) throws(SpecError) in try Process(o) }
        root = try r.optObject("root").map { (o: JSONReader) throws(SpecError) in try Root(o) }
        hostname = try r.optString("hostname")
        domainname = try r.optString("domainname")
        mounts = try r.optObjects("mounts") { (o: JSONReader) throws(SpecError) in try Mount(o) }
        hooks = try r.optObject("hooks").map { (o: JSONReader) throws(SpecError) in try Hooks(o) }
        annotations = try r.optStringMap("annotations", allowNUL: true)
        linux = try r.optObject("linux").map { (o: JSONReader) throws(SpecError) in try Linux(o) }
        solaris = r.raw("solaris")
        windows = r.raw("windows")
        vm = r.raw("vm")
        zos = r.raw("zos")
    }
}

extension Process {
    public init(_ r: JSONReader) throws(SpecError) {
        terminal = try r.optBool("terminal")
        consoleSize = try r.optObject("consoleSize").map { (o: JSONReader) throws(SpecError) in
            (try o.integer("height", UInt16.self), try o.integer("width", UInt16.self))
        }
        // Go decodes a missing user (or uid, gid) as zeros, and runc runs that as root.
        user = try r.optObject("user").map { (u: JSONReader) throws(SpecError) in try User(u) }
            ?? User(uid: 0, gid: 0, umask: nil, additionalGids: nil, username: nil)
        args = try r.optStrings("args")
        commandLine = try r.optString("commandLine")
        env = try r.optStrings("env")
        cwd = try r.string("cwd")
        capabilities = try r.optObject("capabilities").map { (o: JSONReader) throws(SpecError) in
            Capabilities(bounding: try o.optStrings("bounding"), effective: try o.optStrings("effective"),
                         inheritable: try o.optStrings("inheritable"), permitted: try o.optStrings("permitted"),
                         ambient: try o.optStrings("ambient"))
        }
        rlimits = try r.optObjects("rlimits") { (o: JSONReader) throws(SpecError) in
            Rlimit(type: try o.string("type"), hard: try o.integer("hard", UInt64.self), soft: try o.integer("soft", UInt64.self))
        }
        noNewPrivileges = try r.optBool("noNewPrivileges")
        apparmorProfile = try r.optString("apparmorProfile")
        oomScoreAdj = try r.optInteger("oomScoreAdj", Int.self)
        selinuxLabel = try r.optString("selinuxLabel")
        scheduler = try r.optObject("scheduler").map { (o: JSONReader) throws(SpecError) in
            Scheduler(policy: try o.string("policy"), nice: try o.optInteger("nice", Int32.self),
                      priority: try o.optInteger("priority", Int32.self), flags: try o.optStrings("flags"),
                      runtime: try o.optInteger("runtime", UInt64.self), deadline: try o.optInteger("deadline", UInt64.self),
                      period: try o.optInteger("period", UInt64.self))
        }
        ioPriority = try r.optObject("ioPriority").map { (o: JSONReader) throws(SpecError) in
            IOPriority(ioClass: try o.string("class"), priority: try o.integer("priority", Int32.self))
        }
        execCPUAffinity = try r.optObject("execCPUAffinity").map { (o: JSONReader) throws(SpecError) in
            CPUAffinity(initial: try o.optString("initial"), final: try o.optString("final"))
        }
    }
}

extension User {
    public init(_ r: JSONReader) throws(SpecError) {
        uid = try r.optInteger("uid", UInt32.self) ?? 0
        gid = try r.optInteger("gid", UInt32.self) ?? 0
        umask = try r.optInteger("umask", UInt32.self)
        let file = r.file
        additionalGids = try r.optArray("additionalGids") { (v, p) throws(SpecError) in
            try JSONReader.integer(v, UInt32.self, path: p, file: file)
        }
        username = try r.optString("username")
    }
}

extension Root {
    public init(_ r: JSONReader) throws(SpecError) {
        path = try r.string("path")
        readonly = try r.optBool("readonly")
    }
}

extension Mount {
    public init(_ r: JSONReader) throws(SpecError) {
        destination = try r.string("destination")
        type = try r.optString("type")
        source = try r.optString("source")
        options = try r.optStrings("options")
        uidMappings = r.raw("uidMappings")
        gidMappings = r.raw("gidMappings")
    }
}

extension Linux {
    public init(_ r: JSONReader) throws(SpecError) {
        namespaces = try r.optObjects("namespaces") { (o: JSONReader) throws(SpecError) in
            Namespace(type: try o.string("type"), path: try o.optString("path"))
        }
        uidMappings = try r.optObjects("uidMappings") { (o: JSONReader) throws(SpecError) in try IDMapping(o) }
        gidMappings = try r.optObjects("gidMappings") { (o: JSONReader) throws(SpecError) in try IDMapping(o) }
        timeOffsets = try r.optObjectMap("timeOffsets") { (o: JSONReader) throws(SpecError) in
            TimeOffset(secs: try o.optInteger("secs", Int64.self), nanosecs: try o.optInteger("nanosecs", UInt32.self))
        }
        devices = try r.optObjects("devices") { (o: JSONReader) throws(SpecError) in try Device(o) }
        cgroupsPath = try r.optString("cgroupsPath")
        rootfsPropagation = try r.optString("rootfsPropagation")
        resources = try r.optObject("resources").map { (o: JSONReader) throws(SpecError) in try Resources(o) }
        seccomp = try r.optObject("seccomp").map { (o: JSONReader) throws(SpecError) in try Seccomp(o) }
        sysctl = try r.optStringMap("sysctl")
        maskedPaths = try r.optStrings("maskedPaths")
        readonlyPaths = try r.optStrings("readonlyPaths")
        mountLabel = try r.optString("mountLabel")
        personality = try r.optObject("personality").map { (o: JSONReader) throws(SpecError) in
            Personality(domain: try o.string("domain"), flags: try o.optStrings("flags"))
        }
        intelRdt = r.raw("intelRdt")
        memoryPolicy = r.raw("memoryPolicy")
        netDevices = r.raw("netDevices")
    }
}

extension IDMapping {
    public init(_ r: JSONReader) throws(SpecError) {
        containerID = try r.integer("containerID", UInt32.self)
        hostID = try r.integer("hostID", UInt32.self)
        size = try r.integer("size", UInt32.self)
    }
}

extension Device {
    public init(_ r: JSONReader) throws(SpecError) {
        type = try r.string("type")
        path = try r.string("path")
        major = try r.optInteger("major", Int64.self)
        minor = try r.optInteger("minor", Int64.self)
        fileMode = try r.optInteger("fileMode", UInt32.self)
        uid = try r.optInteger("uid", UInt32.self)
        gid = try r.optInteger("gid", UInt32.self)
    }
}

extension Seccomp {
    public init(_ r: JSONReader) throws(SpecError) {
        defaultAction = try r.string("defaultAction")
        defaultErrnoRet = try r.optInteger("defaultErrnoRet", UInt32.self)
        architectures = try r.optStrings("architectures")
        flags = try r.optStrings("flags")
        listenerPath = try r.optString("listenerPath")
        listenerMetadata = try r.optString("listenerMetadata")
        syscalls = try r.optObjects("syscalls") { (o: JSONReader) throws(SpecError) in
            SeccompRule(
                names: try o.optStrings("names") ?? [], action: try o.string("action"),
                errnoRet: try o.optInteger("errnoRet", UInt32.self),
                args: try o.optObjects("args") { (a: JSONReader) throws(SpecError) in
                    SeccompArg(index: try a.integer("index", UInt32.self), value: try a.integer("value", UInt64.self),
                               valueTwo: try a.optInteger("valueTwo", UInt64.self), op: try a.string("op"))
                })
        }
    }
}

extension Hooks {
    public init(_ r: JSONReader) throws(SpecError) {
        for k in HookKind.allCases {
            lists[k] = try r.optObjects(k.rawValue) { (o: JSONReader) throws(SpecError) in
                Hook(path: try o.string("path"), args: try o.optStrings("args"), env: try o.optStrings("env"),
                     timeout: try o.optInteger("timeout", Int.self))
            }
        }
    }
}
