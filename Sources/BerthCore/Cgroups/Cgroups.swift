import BerthSpec
import CBerth
import Glibc

/// Which cgroup hierarchies this host has, decided as runc decides: /sys/fs/cgroup being
/// cgroup2 means pure v2; otherwise the v1 hierarchies mounted there, plus, on a hybrid
/// host, the v2 hierarchy (at /sys/fs/cgroup/unified), which the container joins too.
enum CgroupHost {
    case v2(mount: String)
    case v1(hierarchies: [CgroupV1.Hierarchy], unified: String?)
    case none

    static func detect() -> CgroupHost {
        if cb_fs_magic("/sys/fs/cgroup") == 0x6367_7270 { return .v2(mount: "/sys/fs/cgroup") } // CGROUP2_SUPER_MAGIC
        let mountinfo = FS.readString("/proc/self/mountinfo") ?? ""
        let hs = CgroupV1.hierarchies(mountinfo: mountinfo)
        let unified = cb_fs_magic("/sys/fs/cgroup/unified") == 0x6367_7270 ? "/sys/fs/cgroup/unified"
                                                                          : Cgroup.mountPoint(mountinfo: mountinfo)
        if !hs.isEmpty { return .v1(hierarchies: hs, unified: unified) }
        if let u = unified { return .v2(mount: u) }
        return .none
    }
}

/// A container's cgroups after create, whichever hierarchies hold them: `v2` is its
/// cgroup2 directory (pure v2, or a hybrid host's unified hierarchy), `v1` its directory
/// in each v1 hierarchy, keyed by the hierarchy's subsystems ("cpu,cpuacct"). Freezing,
/// listing, signalling and removal go through here, so the commands need not know which
/// kind of host they run on.
struct ContainerCgroups {
    var v2: String?
    var v1: [String: String]
    /// Under the systemd driver: the unit whose cgroup `v2` is (systemd made it, and
    /// stopping the unit removes it).
    var systemdUnit: String?
    /// The unit is the user's systemd's (rootless), not the system's.
    var systemdUser = false

    init(v2: String?, v1: [String: String]?, systemdUnit: String? = nil, systemdUser: Bool = false) {
        self.v2 = v2; self.v1 = v1 ?? [:]; self.systemdUnit = systemdUnit; self.systemdUser = systemdUser
    }
    init(_ st: StoredState) {
        self.init(v2: st.cgroup, v1: st.cgroupV1, systemdUnit: st.systemdUnit, systemdUser: st.systemdUser)
    }

    var isEmpty: Bool { v2 == nil && v1.isEmpty }

    /// Every directory of the container's (v2 and each v1 hierarchy).
    var leaves: [String] { (v2.map { [$0] } ?? []) + v1.values.sorted() }

    /// A path the kernel cannot open (a component past NAME_MAX, the path with its files
    /// past PATH_MAX) could never be managed: refused before anything is made.
    func checkOpenable() throws(BerthError) {
        for d in leaves {
            if d.utf8.count + "/cgroup.subtree_control".utf8.count >= Int(PATH_MAX) {
                throw BerthError("config.json: linux.cgroupsPath: \(d.utf8.count) bytes as \(d.prefix(40))...: past PATH_MAX (\(PATH_MAX)) with its files")
            }
            if let long = d.split(separator: "/").first(where: { $0.utf8.count > Int(NAME_MAX) }) {
                throw BerthError("config.json: linux.cgroupsPath: component \"\(long.prefix(40))...\" is \(long.utf8.count) bytes, past NAME_MAX (\(NAME_MAX))")
            }
        }
    }

    /// `cgroupCreated` as state.json keeps it: what Berth made is, in each hierarchy, a
    /// chain from one directory down to the container's, so the top of each chain is
    /// enough (a deep cgroupsPath made thousands; listing them all made state.json larger
    /// than Berth reads back). Entries on no chain are kept as they are.
    func compact(_ made: [String]) -> [String] {
        var tops = Set<String>()
        for leaf in leaves {
            var best: String?
            for m in made where Self.isSelfOrBelow(leaf, m) && m.utf8.count < (best?.utf8.count ?? Int.max) { best = m }
            if let best { tops.insert(best) }
        }
        var seen = Set<String>()
        return made.filter { m in
            (tops.contains(m) || !leaves.contains { Self.isSelfOrBelow($0, m) }) && seen.insert(m).inserted
        }
    }

    /// The stored form back to every directory, parents first (records that list every
    /// directory, as older builds wrote them, come back unchanged).
    func expand(_ stored: [String]) -> [String] {
        var out: [String] = []
        var seen = Set<String>()
        for top in stored {
            var chain = [top]
            if let leaf = leaves.first(where: { $0 != top && Self.isSelfOrBelow($0, top) }) {
                var d = leaf
                chain = []
                while d != top {
                    chain.append(d)
                    d = String(d[..<d.lastIndex(of: "/")!])
                }
                chain.append(top)
                chain.reverse()
            }
            for d in chain where seen.insert(d).inserted { out.append(d) }
        }
        return out
    }

    /// `d` is `top` or a directory below it (byte-wise: no allocation, as the lists can
    /// be long).
    static func isSelfOrBelow(_ d: String, _ top: String) -> Bool {
        let a = d.utf8, b = top.utf8
        guard a.count >= b.count, a.starts(with: b) else { return false }
        return a.count == b.count || a[a.index(a.startIndex, offsetBy: b.count)] == UInt8(ascii: "/")
    }
    /// On v1 the freezer hierarchy decides "paused" (as with runc); else cgroup.freeze.
    var freezer: String? { CgroupV1.dir(v1, "freezer") }
    /// Where the container's processes are listed on v1: devices (as runc), else any.
    var v1Primary: String? {
        CgroupV1.dir(v1, "devices") ?? CgroupV1.dir(v1, "freezer") ?? CgroupV1.dir(v1, "pids") ?? v1.values.sorted().first
    }

    func exists() -> Bool {
        if let d = v1Primary { return FS.isDirectory(d) }
        return v2.map(FS.isDirectory) ?? false
    }

    func frozen() -> Bool {
        if let f = freezer { return CgroupV1.isFrozen(f) }
        guard let d = v2 else { return false }
        return FS.readString(d + "/cgroup.freeze")?.first == "1"
    }

    func setFrozen(_ frozen: Bool) throws(BerthError) {
        if let f = freezer {
            if frozen { try CgroupV1.freeze(f) } else { try CgroupV1.thaw(f) }
            return
        }
        guard let cg = v2, FS.exists(cg + "/cgroup.freeze") else {
            throw BerthError("cannot \(frozen ? "pause" : "resume"): the container has no cgroup freezer")
        }
        try Cgroup.setFrozen(cg, frozen)
    }

    /// Every process of the container, sub-cgroups included (runc's GetAllPids).
    func pids() -> [Int32] {
        guard let d = v1Primary ?? v2 else { return [] }
        var out: [Int32] = []
        Cgroup.collectPids(d, into: &out, depth: 0)
        return out
    }

    /// Signals every process. SIGKILL goes through a v2 cgroup.kill where there is one
    /// (atomic, and it reaches processes forked meanwhile). On v1 the cgroup is frozen
    /// while its list is read and signalled, then thawed, as runc does: no process can
    /// fork past the signal, and a frozen (paused) container's processes can act on it.
    @discardableResult
    func signalAll(_ sig: Int32) -> Bool {
        if sig == SIGKILL, let d = v2, Cgroup.kill(d) {
            if let f = freezer { try? CgroupV1.thaw(f) }
            return true
        }
        guard v1Primary != nil else { return v2.map { Cgroup.signalAll($0, signal: sig) } ?? false }
        let f = freezer
        if let f { try? CgroupV1.freeze(f) }
        var any = false
        for p in pids() where kill(p, sig) == 0 { any = true }
        if let f { try? CgroupV1.thaw(f) }
        return any
    }

    /// Removes the directories Berth made (`made`, parents first), the container's own
    /// ones after their sub-cgroups; processes still inside are killed first, unless
    /// `killRemaining` is false (a container with its own pid namespace: whatever outlives
    /// its init there is another container's that shares the cgroup, and stays, as runc
    /// leaves it).
    func destroy(made: [String], killRemaining: Bool = true) {
        if let unit = systemdUnit {
            // A frozen v1 freezer (Berth's, systemd leaves that hierarchy alone) would keep
            // the processes from dying while systemd stops the unit.
            if let f = freezer, FS.isDirectory(f) { try? CgroupV1.thaw(f) }
            // Stopping the unit kills what is left and removes its cgroups, delegated
            // sub-cgroups included; Berth removes the rest: the v1 hierarchies systemd
            // does not manage, and everything where systemd cannot be reached.
            do {
                let c = try Systemd.connect(user: systemdUser)
                try Systemd.stop(c, unit: unit)
            } catch { warn("\(error.message)") }
            for d in v1.values.sorted() where FS.isDirectory(d) { Cgroup.destroy(d, made: [d]) }
            if let d = v2 { Cgroup.destroy(d, made: [d]) }
            CgroupV1.destroy(made)
            return
        }
        // Only a freezer Berth made: a pre-existing frozen cgroup that failed a create
        // ("unexpectedly frozen") stays as its owner left it.
        if let f = freezer, made.contains(f), FS.isDirectory(f) { try? CgroupV1.thaw(f) }
        for d in v1.values.sorted() where made.contains(d) {
            Cgroup.destroy(d, made: [d], killRemaining: killRemaining)
        }
        if let d = v2 {
            Cgroup.destroy(d, made: made.filter { Self.isSelfOrBelow(d, $0) }, killRemaining: killRemaining)
        }
        CgroupV1.destroy(made)
    }

    /// OOM kills so far (memory.events on v2, memory.oom_control on v1).
    func oomKills() -> UInt64 {
        if let m = CgroupV1.dir(v1, "memory") { return Stats.keyValues(m + "/memory.oom_control")["oom_kill"] ?? 0 }
        guard let d = v2 else { return 0 }
        return Stats.keyValues(d + "/memory.events")["oom_kill"] ?? 0
    }

    func stats() -> JSON {
        guard !v1.isEmpty else { return v2.map(Stats.collect) ?? .object([]) }
        guard case .object(var fields) = CgroupV1.stats(v1) else { return .object([]) }
        // hugetlb limits of a hybrid host without a v1 hugetlb hierarchy live in v2.
        if CgroupV1.dir(v1, "hugetlb") == nil, let d = v2, case .object(let more) = Stats.collect(d),
           let huge = more.first(where: { $0.0 == "hugetlb" }) {
            fields.append(huge)
        }
        return .object(fields)
    }
}
