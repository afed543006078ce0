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
        if process.terminal == true { throw bad("process.terminal", "not supported by berth yet") }
        try notYet("process.consoleSize", process.consoleSize)
        try notYet("process.capabilities", process.capabilities)
        try notYet("process.rlimits", process.rlimits)
        if process.noNewPrivileges == true { throw bad("process.noNewPrivileges", "not supported by berth yet") }
        if let a = process.apparmorProfile, !a.isEmpty { throw bad("process.apparmorProfile", "AppArmor is not supported by berth") }
        if let s = process.selinuxLabel, !s.isEmpty { throw bad("process.selinuxLabel", "SELinux is not supported by berth") }
        if process.oomScoreAdj != nil { throw bad("process.oomScoreAdj", "not supported by berth yet") }
        try notYet("process.scheduler", process.scheduler)
        try notYet("process.ioPriority", process.ioPriority)
        try notYet("process.execCPUAffinity", process.execCPUAffinity)
        try notYet("hooks", hooks)

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
        if kinds["mount"] == nil {
            throw bad("linux.namespaces", "a mount namespace is required (berth will not pivot the host's root)")
        }
        if let h = hostname, !h.isEmpty, !isNew(.uts) {
            throw bad("hostname", "setting the hostname requires a new uts namespace")
        }
        if let d = domainname, !d.isEmpty, !isNew(.uts) {
            throw bad("domainname", "setting the domainname requires a new uts namespace")
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
            if !d.path.hasPrefix("/dev/") || d.path.split(separator: "/").contains("..") {
                throw bad("linux.devices[\(i)].path", "must be an absolute path under /dev, got \"\(d.path)\"")
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
        try notYet("linux.resources", linux.resources)
        try notYet("linux.seccomp", linux.seccomp)
        try notYet("linux.sysctl", linux.sysctl)
        try notYet("linux.maskedPaths", linux.maskedPaths)
        try notYet("linux.readonlyPaths", linux.readonlyPaths)
        if let l = linux.mountLabel, !l.isEmpty { throw bad("linux.mountLabel", "SELinux is not supported by berth") }
        try notYet("linux.personality", linux.personality)
        try notYet("linux.intelRdt", linux.intelRdt)
        try notYet("linux.memoryPolicy", linux.memoryPolicy)
        try notYet("linux.netDevices", linux.netDevices)
    }
}


