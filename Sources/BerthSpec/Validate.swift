import Glibc

/// A problem with a bundle's configuration: which file, where in it (a JSON path such as
/// `linux.namespaces[2].type`), and what is wrong.
public struct SpecError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var path: String
    public var reason: String
    public init(file: String = "config.json", _ path: String, _ reason: String) {
        self.file = file; self.path = path; self.reason = reason
    }
    public var description: String {
        path.isEmpty ? "\(file): \(reason)" : "\(file): \(path): \(reason)"
    }
}

public enum NamespaceKind: String, CaseIterable, Sendable {
    case pid, network, mount, ipc, uts, user, cgroup, time
}

extension Spec {
    /// Decodes and validates a config.json. Every error names the file and the JSON path.
    public static func load(_ bytes: [UInt8], file: String = "config.json") throws(SpecError) -> Spec {
        let tree: JSONValue
        do { tree = try JSONValue.parse(bytes) } catch {
            throw SpecError(file: file, "", "invalid JSON: \(error)")
        }
        let spec = try Spec(JSONReader(tree, file: file))
        try spec.validate(file: file)
        return spec
    }

    /// Checks what the types alone cannot. Fields a later Berth implements are refused by
    /// name, never ignored.
    public func validate(file: String = "config.json") throws(SpecError) {
        func bad(_ path: String, _ why: String) -> SpecError { SpecError(file: file, path, why) }
        func notYet(_ path: String, _ v: JSONValue?) throws(SpecError) {
            if let v, !v.isEmptyRequest { throw bad(path, "not supported by berth yet") }
        }

        guard ociVersion.hasPrefix("1.") else {
            throw bad("ociVersion", "unsupported version \"\(ociVersion)\" (berth implements \(ociSpecVersion))")
        }
        for (k, v) in [("solaris", solaris), ("windows", windows), ("vm", vm), ("zos", zos)] {
            if v != nil && v != .null { throw bad(k, "not a Linux configuration; berth runs Linux containers only") }
        }
        guard let root else { throw bad("root", "missing required field") }
        if root.path.isEmpty { throw bad("root.path", "must not be empty") }

        guard let process else { throw bad("process", "missing required field") }
        if (process.args ?? []).isEmpty {
            if process.commandLine != nil { throw bad("process.commandLine", "is for Windows; use process.args") }
            throw bad("process.args", "must name the program to run")
        }
        if !process.cwd.hasPrefix("/") { throw bad("process.cwd", "must be an absolute path, got \"\(process.cwd)\"") }
        for (i, e) in (process.env ?? []).enumerated() where !e.contains("=") || e.hasPrefix("=") {
            throw bad("process.env[\(i)]", "must be KEY=value, got \"\(e)\"")
        }
        if let u = process.user.umask, u > 0o777 { throw bad("process.user.umask", "must be at most 0777") }
        var seenLimits = Set<String>()
        for (i, l) in (process.rlimits ?? []).enumerated() {
            guard rlimitNumbers[l.type] != nil else {
                throw bad("process.rlimits[\(i)].type", "unknown rlimit \"\(l.type)\"")
            }
            if !seenLimits.insert(l.type).inserted { throw bad("process.rlimits[\(i)].type", "\(l.type) appears twice") }
            if l.soft > l.hard { throw bad("process.rlimits[\(i)]", "soft limit \(l.soft) is above hard limit \(l.hard)") }
        }
        if let o = process.oomScoreAdj, o < -1000 || o > 1000 {
            throw bad("process.oomScoreAdj", "must be between -1000 and 1000, got \(o)")
        }
        if let s = process.scheduler {
            guard schedulerPolicies[s.policy] != nil else { throw bad("process.scheduler.policy", "unknown policy \"\(s.policy)\"") }
            for (i, f) in (s.flags ?? []).enumerated() where schedulerFlags[f] == nil {
                throw bad("process.scheduler.flags[\(i)]", "unknown flag \"\(f)\"")
            }
            if let n = s.nice, n < -20 || n > 19 { throw bad("process.scheduler.nice", "must be between -20 and 19") }
        }
        if let p = process.ioPriority {
            guard ioPriorityClasses[p.ioClass] != nil else { throw bad("process.ioPriority.class", "unknown class \"\(p.ioClass)\"") }
            if p.priority < 0 || p.priority > 7 { throw bad("process.ioPriority.priority", "must be between 0 and 7") }
        }
        if let a = process.execCPUAffinity {
            if let i = a.initial, parseCPUList(i) == nil { throw bad("process.execCPUAffinity.initial", "invalid CPU list \"\(i)\"") }
            if let f = a.final, parseCPUList(f) == nil { throw bad("process.execCPUAffinity.final", "invalid CPU list \"\(f)\"") }
        }
        for k in HookKind.allCases {
            for (i, h) in (hooks?[k] ?? []).enumerated() {
                if !h.path.hasPrefix("/") { throw bad("hooks.\(k.rawValue)[\(i)].path", "must be an absolute path, got \"\(h.path)\"") }
                if let t = h.timeout, t <= 0 { throw bad("hooks.\(k.rawValue)[\(i)].timeout", "must be a positive number of seconds") }
            }
        }

        for (i, m) in (mounts ?? []).enumerated() {
            if !m.destination.hasPrefix("/") {
                throw bad("mounts[\(i)].destination", "must be an absolute path, got \"\(m.destination)\"")
            }
            if m.uidMappings != nil || m.gidMappings != nil {
                throw bad("mounts[\(i)]", "idmapped mounts (uidMappings/gidMappings) are not supported by berth yet")
            }
        }

        let linux = self.linux ?? Linux()
        var seen = Set<String>()
        var kinds: [String: Namespace] = [:]
        for (i, ns) in (linux.namespaces ?? []).enumerated() {
            guard NamespaceKind(rawValue: ns.type) != nil else {
                throw bad("linux.namespaces[\(i)].type", "unknown namespace type \"\(ns.type)\"")
            }
            if !seen.insert(ns.type).inserted {
                throw bad("linux.namespaces[\(i)].type", "namespace type \"\(ns.type)\" appears twice")
            }
            if let p = ns.path, !p.isEmpty, !p.hasPrefix("/") {
                throw bad("linux.namespaces[\(i)].path", "must be an absolute path, got \"\(p)\"")
            }
            kinds[ns.type] = ns
        }
        func isNew(_ k: NamespaceKind) -> Bool {
            guard let ns = kinds[k.rawValue] else { return false }
            return (ns.path ?? "").isEmpty
        }
        // As runc: a uts namespace must be listed, new or joined (a joined one gets the name:
        // Kubernetes' pod containers share the sandbox's).
        if let h = hostname, !h.isEmpty, kinds["uts"] == nil {
            throw bad("hostname", "setting the hostname requires a uts namespace")
        }
        if let d = domainname, !d.isEmpty, kinds["uts"] == nil {
            throw bad("domainname", "setting the domainname requires a uts namespace")
        }
        let hasMaps = !(linux.uidMappings ?? []).isEmpty || !(linux.gidMappings ?? []).isEmpty
        if isNew(.user) {
            if (linux.uidMappings ?? []).isEmpty { throw bad("linux.uidMappings", "a new user namespace needs uid mappings") }
            if (linux.gidMappings ?? []).isEmpty { throw bad("linux.gidMappings", "a new user namespace needs gid mappings") }
        } else if hasMaps {
            throw bad(linux.uidMappings?.isEmpty == false ? "linux.uidMappings" : "linux.gidMappings",
                      "id mappings need a new user namespace in linux.namespaces")
        }
        for (name, maps) in [("uidMappings", linux.uidMappings ?? []), ("gidMappings", linux.gidMappings ?? [])] {
            for (i, m) in maps.enumerated() where m.size == 0 {
                throw bad("linux.\(name)[\(i)].size", "must be at least 1")
            }
        }
        if let t = linux.timeOffsets, !t.isEmpty {
            if !isNew(.time) { throw bad("linux.timeOffsets", "time offsets need a new time namespace") }
            for k in t.keys where k != "monotonic" && k != "boottime" {
                throw bad("linux.timeOffsets.\(k)", "unknown clock (monotonic or boottime)")
            }
        }
        for (i, d) in (linux.devices ?? []).enumerated() {
            guard ["c", "b", "u", "p"].contains(d.type) else {
                throw bad("linux.devices[\(i)].type", "unknown device type \"\(d.type)\" (c, b, u or p)")
            }
            // runc takes any path, joined inside the rootfs (a ".." cannot leave it: the
            // child resolves it in the root), e.g. /dev/fuse or a node outside /dev.
            var depth = 0  // what the path names once cleaned: "/" itself is no device
            for c in d.path.split(separator: "/") where c != "." { depth = c == ".." ? max(0, depth - 1) : depth + 1 }
            if depth == 0 {
                throw bad("linux.devices[\(i)].path", "must name a file, got \"\(d.path)\"")
            }
            if d.type != "p" && (d.major == nil || d.minor == nil) {
                throw bad("linux.devices[\(i)]", "major and minor are required for type \"\(d.type)\"")
            }
            if let m = d.major, m < 0 || m > 0xfff_ffff { throw bad("linux.devices[\(i)].major", "out of range") }
            if let m = d.minor, m < 0 || m > 0xfff_ffff { throw bad("linux.devices[\(i)].minor", "out of range") }
        }
        if let p = linux.rootfsPropagation, !p.isEmpty,
           !["shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable"].contains(p) {
            throw bad("linux.rootfsPropagation", "unknown propagation \"\(p)\"")
        }
        if let sc = linux.seccomp { try sc.validate(bad) }
        for (key, _) in (linux.sysctl ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard sysctlPath(key) != nil else { throw bad("linux.sysctl.\(key)", "malformed sysctl name") }
            if let why = sysctlRefusal(key, own: { k in
                guard let ns = kinds[k.rawValue] else { return false }
                return (ns.path ?? "").isEmpty || !isCallersNamespace(ns.path!, k)
            }) {
                throw bad("linux.sysctl.\(key)", why)
            }
            // The spec's domainname field and this sysctl set the same thing: two different
            // values cannot both hold.
            if key.replacingSlashes() == "kernel.domainname", let d = domainname, !d.isEmpty,
               let v = linux.sysctl?[key], v != d {
                throw bad("linux.sysctl.\(key)", "\"\(v)\" conflicts with the OCI \"domainname\" field (\"\(d)\")")
            }
        }
        for (name, paths) in [("maskedPaths", linux.maskedPaths), ("readonlyPaths", linux.readonlyPaths)] {
            for (i, p) in (paths ?? []).enumerated() where !p.hasPrefix("/") {
                throw bad("linux.\(name)[\(i)]", "must be an absolute path, got \"\(p)\"")
            }
            if !(paths ?? []).isEmpty && kinds["mount"] == nil {
                throw bad("linux.\(name)", "needs a mount namespace")
            }
        }
        if let p = linux.personality {
            guard p.domain == "LINUX" || p.domain == "LINUX32" else {
                throw bad("linux.personality.domain", "unknown domain \"\(p.domain)\" (LINUX or LINUX32)")
            }
            if !(p.flags ?? []).isEmpty { throw bad("linux.personality.flags", "personality flags are not supported") }
        }
        try notYet("linux.intelRdt", linux.intelRdt)
        try notYet("linux.memoryPolicy", linux.memoryPolicy)
        try notYet("linux.netDevices", linux.netDevices)
    }
}



/// RLIMIT_* names and their numbers (asm-generic/resource.h, the same on every Linux
/// architecture Berth builds for).
public let rlimitNumbers: [String: Int32] = [
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
]

public let schedulerPolicies: [String: UInt32] = [
    "SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4,
    "SCHED_IDLE": 5, "SCHED_DEADLINE": 6,
]

public let schedulerFlags: [String: UInt64] = [
    "SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
]

public let ioPriorityClasses: [String: Int32] = ["IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3]

/// "0-3,7" -> the CPU numbers, or nil when malformed. At most CPU 1023.
public func parseCPUList(_ s: String) -> [Int]? {
    var out: [Int] = []
    for part in s.split(separator: ",", omittingEmptySubsequences: false) {
        let p = part.trimmingSpaces()
        let bounds = p.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 1 || bounds.count == 2, let lo = Int(bounds[0]), lo >= 0 else { return nil }
        let hi = bounds.count == 2 ? Int(bounds[1]) : lo
        guard let hi, hi >= lo, hi < 1024 else { return nil }
        out.append(contentsOf: lo...hi)
    }
    return out.isEmpty ? nil : out
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}

/// The path of a sysctl under /proc/sys: "net.ipv4.ip_forward" -> "net/ipv4/ip_forward".
/// A name written with slashes keeps its dots (interface names such as "eth0.1").
public func sysctlPath(_ key: String) -> String? {
    let path = key.contains("/") ? key : key.replacingDots()
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    if parts.isEmpty || parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) { return nil }
    return path
}

/// Why a sysctl may not be set, or nil: only keys that a namespace of the container's own
/// isolates are allowed (runc's rule), so a container never changes the host's value.
/// `own(kind)`: the namespace is listed, new or joined, and is not the caller's (runc checks
/// this for the network namespace; Berth for ipc and uts too, where a joined host namespace
/// would change the host just the same).
func sysctlRefusal(_ key: String, own: (NamespaceKind) -> Bool) -> String? {
    let dotted = key.replacingSlashes()
    let ipc: Set<String> = ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                            "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"]
    if ipc.contains(dotted) || dotted.hasPrefix("fs.mqueue.") {
        return own(.ipc) ? nil : "not allowed in the host's ipc namespace"
    }
    if dotted.hasPrefix("net.") {
        return own(.network) ? nil : "not allowed in the host's network namespace"
    }
    if own(.uts) {
        if dotted == "kernel.domainname" { return nil }
        // runc's rule and words: the spec has a field of its own for it.
        if dotted == "kernel.hostname" { return "sysctl \"kernel.hostname\" is not allowed as it conflicts with the OCI \"hostname\" field" }
    }
    return "not isolated by any namespace: it would change the host"
}

/// Whether a namespace file (a joined namespace's path) is the caller's own namespace of
/// that kind, i.e. the host's for a runtime run on the host.
func isCallersNamespace(_ path: String, _ kind: NamespaceKind) -> Bool {
    let names: [NamespaceKind: String] = [.ipc: "ipc", .network: "net", .uts: "uts", .mount: "mnt", .pid: "pid",
                                          .user: "user", .cgroup: "cgroup", .time: "time"]
    guard let n = names[kind] else { return false }
    var a = stat(), b = stat()
    guard stat(path, &a) == 0, stat("/proc/self/ns/\(n)", &b) == 0 else { return false }
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

extension String {
    func replacingDots() -> String { String(map { $0 == "." ? "/" : $0 }) }
    func replacingSlashes() -> String { String(map { $0 == "/" ? "." : $0 }) }
}

/// libseccomp's action values (seccomp.h), by the names the spec uses.
public let seccompActions: [String: UInt32] = [
    "SCMP_ACT_KILL": 0x0000_0000, "SCMP_ACT_KILL_THREAD": 0x0000_0000, "SCMP_ACT_KILL_PROCESS": 0x8000_0000,
    "SCMP_ACT_TRAP": 0x0003_0000, "SCMP_ACT_ERRNO": 0x0005_0000, "SCMP_ACT_TRACE": 0x7ff0_0000,
    "SCMP_ACT_LOG": 0x7ffc_0000, "SCMP_ACT_ALLOW": 0x7fff_0000, "SCMP_ACT_NOTIFY": 0x7fc0_0000,
]

/// scmp_compare values.
public let seccompOperators: [String: Int32] = [
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
]

/// seccomp(2) filter flags the spec names.
public let seccompFlags: [String: UInt32] = [
    "SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
]

public let seccompArchitectures: [String] = [
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
]

extension Seccomp {
    /// True when the filter hands syscalls to a user-space agent.
    public var usesNotify: Bool {
        defaultAction == "SCMP_ACT_NOTIFY" || (syscalls ?? []).contains { $0.action == "SCMP_ACT_NOTIFY" }
    }

    func validate(_ bad: (String, String) -> SpecError) throws(SpecError) {
        guard seccompActions[defaultAction] != nil else {
            throw bad("linux.seccomp.defaultAction", "unknown action \"\(defaultAction)\"")
        }
        if defaultAction == "SCMP_ACT_NOTIFY" {
            throw bad("linux.seccomp.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
        }
        for (i, a) in (architectures ?? []).enumerated() where !seccompArchitectures.contains(a) {
            throw bad("linux.seccomp.architectures[\(i)]", "unknown architecture \"\(a)\"")
        }
        for (i, f) in (flags ?? []).enumerated() where seccompFlags[f] == nil {
            throw bad("linux.seccomp.flags[\(i)]", "unknown flag \"\(f)\"")
        }
        for (i, rule) in (syscalls ?? []).enumerated() {
            guard seccompActions[rule.action] != nil else {
                throw bad("linux.seccomp.syscalls[\(i)].action", "unknown action \"\(rule.action)\"")
            }
            if rule.names.isEmpty { throw bad("linux.seccomp.syscalls[\(i)].names", "must name at least one syscall") }
            // runc refuses this (its init writes to its parent after loading the filter,
            // and would hang): no caller sends it, and a profile runc refuses fails here
            // too, in runc's words.
            if rule.action == "SCMP_ACT_NOTIFY" && rule.names.contains("write") {
                throw bad("linux.seccomp.syscalls[\(i)].names", "SCMP_ACT_NOTIFY cannot be used for the write syscall")
            }
            for (j, a) in (rule.args ?? []).enumerated() {
                if a.index > 5 { throw bad("linux.seccomp.syscalls[\(i)].args[\(j)].index", "must be 0 to 5") }
                guard seccompOperators[a.op] != nil else {
                    throw bad("linux.seccomp.syscalls[\(i)].args[\(j)].op", "unknown operator \"\(a.op)\"")
                }
            }
        }
        if usesNotify {
            guard let p = listenerPath, p.hasPrefix("/") else {
                throw bad("linux.seccomp.listenerPath", "an absolute socket path is required with SCMP_ACT_NOTIFY")
            }
        }
        // A listenerPath without any NOTIFY rule is accepted and unused, as runc does.
    }
}
