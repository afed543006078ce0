import BerthSpec
import CBerth
import Glibc

struct PlannedDevice: Equatable {
    var dest: String        // relative to rootfs: "dev/null"
    var hostPath: String    // the same node on the host, for bind mode
    var mode: UInt32
    var major: UInt32
    var minor: UInt32
    var uid: UInt32
    var gid: UInt32
    var bind: Bool
    var index: Int          // config linux.devices index, or -1 for a default device
}

struct PlannedJoin: Equatable {
    var kind: NamespaceKind
    var path: String
    var index: Int
}

/// Everything the child needs, decided in Swift before the clone. `CPlan` turns it into
/// the flat C structs.
struct ContainerPlan {
    var rootfs: String
    var readonly = false
    var noPivot = false
    var setupRootfs = true
    /// No mount namespace at all (create only): init is chrootd into the rootfs, as runc.
    var chrootRootfs = false
    var rootFinalPropagation: UInt = 0
    var mounts: [PlannedMount] = []
    var devices: [PlannedDevice] = []
    var symlinks: [(target: String, dest: String, replace: Bool)] = []
    var hostname: String?
    var domainname: String?
    var newNamespaces: Set<NamespaceKind> = []
    var joins: [PlannedJoin] = []
    var uidMappings: [IDMapping] = []
    var gidMappings: [IDMapping] = []
    var timeOffsets: String?
    var cwd = "/"
    var uid: UInt32 = 0
    var gid: UInt32 = 0
    var groups: [UInt32] = []
    var umask: Int32 = 0o022
    var args: [String] = []
    var env: [String] = []
    var newKeyring = true
    /// The session keyring init creates and every `exec` joins, as runc names it
    /// ("_ses.<id>"); nil: an anonymous one.
    var keyringName: String?
    /// Added to that keyring's permissions so an `exec` can find it: search for the
    /// keyring's user, or for "other" inside a user namespace (runc's bits).
    var keyringSearchPerm: UInt32 = 0
    var preserveFds = 0

    var sysctls: [(path: String, value: String, key: String)] = []
    var readonlyPaths: [String] = []
    var maskedPaths: [String] = []

    // process profile
    var caps = CapabilitySets()
    var warnings: [String] = []
    /// In a user namespace its root may not reach a bind source (a 0700 host directory):
    /// the parent opens them inside init's mount namespace and passes the fds, as runc does.
    var bindSourcesFromParent: Bool { setupRootfs && inUserNamespace && mounts.contains { $0.bind != 0 } }
    /// hooks.startContainer: init runs them after `start`, before execve.
    var startHooks: [Hook] = []
    var noNewPrivileges = false
    var attrWrites: [ProcAttrWrite] = []
    /// linux.mountLabel for the tmpfs over masked directories (SELinux), nil for none.
    var maskLabel: String?
    var rlimits: [(resource: Int32, soft: UInt64, hard: UInt64, index: Int)] = []
    var oomScoreAdj: Int?
    var personality: UInt?
    var ioPriority: Int32?
    var scheduler: Scheduler?
    var cpusInitial: [Int]?
    var cpusFinal: [Int]?
    var seccomp: SeccompProgram?
    /// init reports BERTH_MSG_HOOKS before the root switch and waits for the parent.
    var pauseForHooks = false
    var terminal = false
    var consoleSize: (rows: UInt16, cols: UInt16)?

    /// A first child is needed to join namespaces by path or to set time offsets before
    /// init exists; otherwise one clone3 creates init in all its new namespaces.
    var stageMode: Bool { !joins.isEmpty || newNamespaces.contains(.time) }
    var inUserNamespace: Bool { newNamespaces.contains(.user) || joins.contains { $0.kind == .user } }
    var ownPidNamespace: Bool { newNamespaces.contains(.pid) }

    /// The container's session keyring, by runc's name: init creates it, each `exec`
    /// joins it (a process keeping its caller's keyring would possess the host's keys).
    static func sessionKeyring(_ id: String) -> String { "_ses." + id }
    var pathEnv: String? {
        env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) }
    }

    static func cloneFlag(_ k: NamespaceKind) -> Int32 {
        switch k {
        case .pid: return CB_CLONE_NEWPID
        case .network: return CB_CLONE_NEWNET
        case .mount: return CB_CLONE_NEWNS
        case .ipc: return CB_CLONE_NEWIPC
        case .uts: return CB_CLONE_NEWUTS
        case .user: return CB_CLONE_NEWUSER
        case .cgroup: return CB_CLONE_NEWCGROUP
        case .time: return CB_CLONE_NEWTIME
        }
    }

    /// The default device nodes every container gets (runc's set), unless /dev is bound
    /// from the host.
    static let defaultDevices: [(path: String, major: UInt32, minor: UInt32)] = [
        ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
        ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
    ]

    /// Builds the plan from a validated spec. Errors name the config path.
    static func build(spec: Spec, bundle: String, rootfs: String, noPivot: Bool, noNewKeyring: Bool,
                      preserveFds: Int) throws(SpecError) -> ContainerPlan {
        var p = ContainerPlan(rootfs: rootfs)
        let linux = spec.linux ?? Linux()
        let process = spec.process!
        p.readonly = spec.root?.readonly ?? false
        p.noPivot = noPivot
        p.newKeyring = !noNewKeyring
        p.preserveFds = preserveFds

        for (i, ns) in (linux.namespaces ?? []).enumerated() {
            let kind = NamespaceKind(rawValue: ns.type)!
            if let path = ns.path, !path.isEmpty {
                p.joins.append(PlannedJoin(kind: kind, path: path, index: i))
            } else {
                p.newNamespaces.insert(kind)
            }
        }
        // As runc: the root, mounts and devices are set up in the container's mount
        // namespace, new or joined (in a joined one root.path is that namespace's path, and
        // pivot_root moves whoever shares it). Without a mount namespace the process is
        // chrooted into root.path, as runc does. runc also makes the mounts then, in the
        // host's own mount namespace (turning the host's "/" into a recursive slave and
        // leaving the mounts behind): unsafe for the host, so refused by name, as runc
        // refuses masked and read-only paths there.
        p.setupRootfs = p.newNamespaces.contains(.mount) || p.joins.contains { $0.kind == .mount }
        p.chrootRootfs = !p.setupRootfs
        if !p.setupRootfs {
            let why = "without a mount namespace (linux.namespaces has no \"mount\") they would be made in the host's mount namespace, which berth does not change"
            if !(spec.mounts ?? []).isEmpty { throw SpecError("mounts", why) }
            if !(linux.devices ?? []).isEmpty { throw SpecError("linux.devices", why) }
            if !(linux.maskedPaths ?? []).isEmpty || !(linux.readonlyPaths ?? []).isEmpty {
                throw SpecError("linux", "unable to restrict sys entries without a private MNT namespace")  // runc's words
            }
        }
        p.uidMappings = linux.uidMappings ?? []
        p.gidMappings = linux.gidMappings ?? []
        if let t = linux.timeOffsets, !t.isEmpty {
            p.timeOffsets = t.keys.sorted().map { k in "\(k) \(t[k]!.secs ?? 0) \(t[k]!.nanosecs ?? 0)\n" }.joined()
        }

        switch linux.rootfsPropagation ?? "" {
        case "shared", "rshared": p.rootFinalPropagation = CB_MS_SHARED | CB_MS_REC
        case "private", "rprivate": p.rootFinalPropagation = CB_MS_PRIVATE | CB_MS_REC
        case "unbindable", "runbindable": p.rootFinalPropagation = CB_MS_UNBINDABLE | CB_MS_REC
        default: p.rootFinalPropagation = 0 // slave: the state every setup starts from
        }

        let fs = MountTable.kernelFilesystems()
        for (i, m) in (spec.mounts ?? []).enumerated() {
            p.mounts.append(try MountTable.plan(m, index: i, bundle: bundle, filesystems: fs))
        }

        // /dev: default nodes and links unless the host's /dev is bound in.
        let devBound = p.mounts.contains { $0.dest == "dev" && $0.bind != 0 }
        if p.setupRootfs && !devBound {
            // In a user namespace (the container's own, or Berth's: rootless Podman runs
            // it in one) mknod of a device is refused: devices are bound from the host.
            let userns = p.inUserNamespace || Rootless.inUserNamespace
            var seen = Set<String>()
            let ownPtmx = p.mounts.contains(where: { $0.dest == "dev/pts" && $0.fstype == "devpts" })
            for (i, d) in (linux.devices ?? []).enumerated() {
                // With the container's own devpts, /dev/ptmx is its pts/ptmx (below), as
                // runc makes it whatever the config lists: a host node bound in a user
                // namespace would be owned by nobody and serve the host's devpts.
                if ownPtmx && Paths.clean(d.path) == "/dev/ptmx" { continue }
                let type: UInt32
                switch d.type {
                case "b": type = UInt32(S_IFBLK)
                case "p": type = UInt32(S_IFIFO)
                default: type = UInt32(S_IFCHR)
                }
                let rel = String(Paths.clean(d.path).dropFirst())
                if userns && d.type != "p" && !FS.exists(d.path) {
                    throw SpecError("linux.devices[\(i)].path", "\(d.path): inside a user namespace devices are bound from the host, and the host has no such node")
                }
                seen.insert(rel)
                p.devices.append(PlannedDevice(
                    dest: rel, hostPath: d.path, mode: type | ((d.fileMode ?? 0o666) & 0o7777),
                    major: UInt32(d.major ?? 0), minor: UInt32(d.minor ?? 0),
                    uid: d.uid ?? 0, gid: d.gid ?? 0, bind: userns && d.type != "p", index: i))
            }
            for d in defaultDevices where !seen.contains(String(d.path.dropFirst())) {
                p.devices.append(PlannedDevice(
                    dest: String(d.path.dropFirst()), hostPath: d.path, mode: UInt32(S_IFCHR) | 0o666,
                    major: d.major, minor: d.minor, uid: 0, gid: 0, bind: userns, index: -1))
            }
            p.symlinks = [
                ("/proc/self/fd", "dev/fd", false), ("/proc/self/fd/0", "dev/stdin", false),
                ("/proc/self/fd/1", "dev/stdout", false), ("/proc/self/fd/2", "dev/stderr", false),
            ]
            if ownPtmx {
                // The container's own devpts instance serves /dev/ptmx.
                p.symlinks.append(("pts/ptmx", "dev/ptmx", true))
            }
        }

        p.sysctls = (linux.sysctl ?? [:]).sorted { $0.key < $1.key }.map { (sysctlPath($0.key)!, $0.value, $0.key) }
        p.readonlyPaths = (linux.readonlyPaths ?? []).map { String(Paths.clean($0).dropFirst()) }
        p.maskedPaths = (linux.maskedPaths ?? []).map { String(Paths.clean($0).dropFirst()) }
        p.maskLabel = try SecurityModules.labelMounts(&p.mounts, maskedPaths: p.maskedPaths, mountLabel: linux.mountLabel)

        if let h = spec.hostname, !h.isEmpty { p.hostname = h }
        if let d = spec.domainname, !d.isEmpty { p.domainname = d }

        try p.setProcess(process, linux: linux)
        return p
    }

    /// systemd socket activation: when LISTEN_FDS is set for Berth itself (LISTEN_PID is
    /// our pid), those fds (from 3 up) pass to the container before the --preserve-fds
    /// ones, and the container is told they are its own (LISTEN_PID=1), as runc does.
    mutating func addSocketActivation() {
        guard let n = getenv("LISTEN_FDS").flatMap({ Int(String(cString: $0)) }), n > 0,
              let p = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), p == getpid() else { return }
        preserveFds += n
        env.removeAll { $0.hasPrefix("LISTEN_FDS=") || $0.hasPrefix("LISTEN_PID=") }
        env += ["LISTEN_FDS=\(n)", "LISTEN_PID=1"]
    }

    /// The process part of the plan: what `create` and `exec` share (user, cwd, env,
    /// capabilities, limits, scheduling, seccomp).
    mutating func setProcess(_ process: Process, linux: Linux) throws(SpecError) {
        cwd = process.cwd
        uid = process.user.uid
        gid = process.user.gid
        groups = process.user.additionalGids ?? []
        // An unprivileged user's namespace has setgroups denied: refused in runc's words
        // rather than dropped, so nobody believes a group is in force that is not.
        if Rootless.euid && !groups.isEmpty {
            throw SpecError("process.user.additionalGids", "cannot set any additional groups in a rootless container")
        }
        if let u = process.user.umask { umask = Int32(u) }
        args = process.args ?? []
        env = process.env ?? []
        // Absent capabilities mean none: the safe reading.
        caps = CapabilitySets()
        if let c = process.capabilities { caps = CapabilitySets(c, warnings: &warnings) }
        noNewPrivileges = process.noNewPrivileges ?? false
        attrWrites = try SecurityModules.writes(for: process, newKeyring: newKeyring)
        rlimits = (process.rlimits ?? []).enumerated().map { i, l in (rlimitNumbers[l.type]!, l.soft, l.hard, i) }
        oomScoreAdj = process.oomScoreAdj
        if let pers = linux.personality { personality = pers.domain == "LINUX32" ? 0x0008 : 0 }
        if let io = process.ioPriority { ioPriority = ioPriorityClasses[io.ioClass]! << 13 | io.priority }
        scheduler = process.scheduler
        cpusInitial = process.execCPUAffinity?.initial.flatMap(parseCPUList)
        cpusFinal = process.execCPUAffinity?.final.flatMap(parseCPUList)
        if let sc = linux.seccomp { seccomp = try SeccompProgram.compile(sc) }
        terminal = process.terminal ?? false
        consoleSize = process.consoleSize.map { ($0.height, $0.width) }

    }
}

/// The five capability sets as bit masks. Names libcap does not know, or that the running
/// kernel does not support, are dropped with a warning, as runc does.
struct CapabilitySets: Equatable {
    var bounding: UInt64 = 0
    var effective: UInt64 = 0
    var permitted: UInt64 = 0
    var inheritable: UInt64 = 0
    var ambient: UInt64 = 0

    init() {}

    init(_ c: Capabilities, warnings: inout [String]) {
        let last = Int(cb_cap_last())
        var unknown: [String] = []
        func mask(_ names: [String]?) -> UInt64 {
            var m: UInt64 = 0
            for n in names ?? [] {
                let v = Int(cb_cap_from_name(n))
                // libcap also accepts lower-case and numeric names; the spec uses CAP_*.
                if v < 0 || v > last || !n.hasPrefix("CAP_") {
                    if !unknown.contains(n) { unknown.append(n) }
                    continue
                }
                m |= 1 << UInt64(v)
            }
            return m
        }
        bounding = mask(c.bounding)
        effective = mask(c.effective)
        permitted = mask(c.permitted)
        inheritable = mask(c.inheritable)
        ambient = mask(c.ambient)
        // The kernel raises an ambient capability only when it is permitted and inheritable.
        // runc (through gocapability) ignores the ones it cannot raise, and callers rely on
        // it: `runc spec` itself lists ambient capabilities without inheritable ones, and so
        // do buildah's RUN configs. Skipped here the same way, silently.
        ambient &= permitted & inheritable
        if !unknown.isEmpty {
            warnings.append("ignoring unknown or unavailable capabilities: \(unknown.joined(separator: ", "))")
        }
    }
}

extension ContainerPlan {
    /// With a NOTIFY rule: the container process state that init sends to the seccomp agent
    /// with the listener fd (create and exec alike); nil otherwise.
    func seccompNotifyState(_ state: StoredState) -> [UInt8]? {
        guard let sc = seccomp, sc.listenerPath != nil else { return nil }
        return SeccompProgram.processState(metadata: sc.listenerMetadata, state: state)
    }
}

extension CapabilitySets {
    /// "CAP_SYS_ADMIN, CAP_SYS_RESOURCE" for a mask.
    static func names(_ mask: UInt64) -> String {
        var out: [String] = []
        var buf = [CChar](repeating: 0, count: 64)
        for c in 0..<64 where mask & (1 << UInt64(c)) != 0 {
            out.append(cb_cap_name(Int32(c), &buf, buf.count) == 0 ? String(cString: buf) : "capability \(c)")
        }
        return out.joined(separator: ", ")
    }
}

extension Capabilities {
    /// This process's permitted and bounding sets, from /proc/self/status.
    static func ofThisProcess() -> (permitted: UInt64, bounding: UInt64)? {
        guard let s = FS.readString("/proc/self/status") else { return nil }
        var prm: UInt64?, bnd: UInt64?
        for line in s.split(separator: "\n") {
            if line.hasPrefix("CapPrm:") { prm = UInt64(line.dropFirst(7).trimmingPrefix("\t"), radix: 16) }
            if line.hasPrefix("CapBnd:") { bnd = UInt64(line.dropFirst(7).trimmingPrefix("\t"), radix: 16) }
        }
        guard let p = prm, let b = bnd else { return nil }
        return (p, b)
    }
}

/// The C view of a plan. Owns every C string and array until it is deinitialised; the
/// child works on its own copy of this memory after the clone.
final class CPlan {
    private var allocations: [UnsafeMutableRawPointer] = []
    var raw = berth_plan()

    deinit { for a in allocations { free(a) } }

    private func str(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        allocations.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }
    private func str(_ s: String?) -> UnsafePointer<CChar>? { s.map { (v: String) -> UnsafePointer<CChar> in str(v) } }

    private func array<T>(_ items: [T]) -> UnsafePointer<T>? {
        if items.isEmpty { return nil }
        let p = UnsafeMutablePointer<T>.allocate(capacity: items.count)
        p.initialize(from: items, count: items.count)
        allocations.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    private func argv(_ items: [String], spare: Int = 0) -> UnsafePointer<UnsafeMutablePointer<CChar>?> {
        var ptrs: [UnsafeMutablePointer<CChar>?] = items.map { UnsafeMutablePointer(mutating: str($0)) }
        ptrs.append(contentsOf: [UnsafeMutablePointer<CChar>?](repeating: nil, count: spare + 1))
        return array(ptrs)!
    }

    init(_ p: ContainerPlan, syncFd: Int32, parentSyncFd: Int32, fifoFd: Int32, cgroupFd: Int32,
         joinFds: [Int32], tasksFds: [Int32] = [], listenerFd: Int32, consoleFd: Int32) {
        var fast: Int32 = 0
        var unshareFlags: Int32 = 0
        for k in p.newNamespaces {
            let f = ContainerPlan.cloneFlag(k)
            unshareFlags |= f
            if k != .cgroup && k != .time { fast |= f }
        }
        raw.stage_mode = p.stageMode ? 1 : 0
        raw.fast_clone_flags = p.stageMode ? 0 : fast
        raw.unshare_flags = p.stageMode ? unshareFlags : 0
        raw.new_userns = p.newNamespaces.contains(.user) ? 1 : 0
        raw.in_userns = p.inUserNamespace ? 1 : 0
        raw.new_cgroupns = p.newNamespaces.contains(.cgroup) ? 1 : 0
        let joins = zip(p.joins, joinFds).map { j, fd in
            berth_join(nstype: ContainerPlan.cloneFlag(j.kind), fd: fd, index: Int32(j.index))
        }
        raw.joins = array(joins)
        raw.njoins = Int32(joins.count)
        raw.timens_offsets = str(p.timeOffsets)
        raw.cgroup_fd = cgroupFd
        raw.cgroup_tasks_fds = array(tasksFds)
        raw.ncgroup_tasks = Int32(tasksFds.count)
        raw.sync_fd = syncFd
        raw.parent_sync_fd = parentSyncFd
        raw.fifo_fd = fifoFd

        raw.setup_rootfs = p.setupRootfs ? 1 : 0
        raw.chroot_rootfs = p.chrootRootfs ? 1 : 0
        raw.rootfs = str(p.rootfs)
        // rshared: "/" shared from the start, so binds of shared host mounts keep their peer
        // group (the C side makes the rootfs's own mount private first); else rslave.
        raw.root_propagation = p.rootFinalPropagation == CB_MS_SHARED | CB_MS_REC ? CB_MS_SHARED | CB_MS_REC
                                                                               : CB_MS_SLAVE | CB_MS_REC
        raw.root_final_propagation = p.rootFinalPropagation
        raw.rootfs_readonly = p.readonly ? 1 : 0
        raw.no_pivot = p.noPivot ? 1 : 0
        let mounts = p.mounts.map { m in
            var c = berth_mount()
            c.source = str(m.source)
            c.dest = str(m.dest)
            c.fstype = str(m.fstype)
            c.data = str(m.data)
            c.flags = m.flags
            c.remount_flags = m.remountFlags
            let pr = m.propagation + [UInt](repeating: 0, count: 4 - m.propagation.count)
            c.propagation = (pr[0], pr[1], pr[2], pr[3])
            c.attr_set = m.attrSet
            c.attr_clr = m.attrClr
            c.bind = Int32(m.bind)
            c.dest_is_file = m.destIsFile ? 1 : 0
            c.is_proc = m.isProc ? 1 : 0
            c.ordinary_dir = m.ordinaryDir ? 1 : 0
            c.cgroup2_fallback = str(m.cgroupFallback)
            c.copyup = m.copyUp ? 1 : 0
            c.readonly_late = m.readonlyLate ? 1 : 0
            c.file_label = str(m.fileLabel)
            c.index = Int32(m.index)
            return c
        }
        raw.mounts = array(mounts)
        raw.nmounts = Int32(mounts.count)
        let devices = p.devices.enumerated().map { i, d in
            berth_device(dest: str(d.dest), host_path: str(d.hostPath), mode: d.mode,
                         dev: cb_makedev(d.major, d.minor), uid: d.uid, gid: d.gid,
                         bind: d.bind ? 1 : 0, index: Int32(i))
        }
        raw.devices = array(devices)
        raw.ndevices = Int32(devices.count)
        let links = p.symlinks.map { (l: (target: String, dest: String, replace: Bool)) -> berth_symlink in
            let t: UnsafePointer<CChar> = str(l.target)
            let d: UnsafePointer<CChar> = str(l.dest)
            return berth_symlink(target: t, dest: d, replace: l.replace ? 1 : 0)
        }
        raw.symlinks = array(links)
        raw.nsymlinks = Int32(links.count)
        let sysctls = p.sysctls.enumerated().map { i, k in
            berth_sysctl(key_path: str(k.path), value: str(k.value), index: Int32(i))
        }
        raw.sysctls = array(sysctls)
        raw.nsysctls = Int32(sysctls.count)
        let ro = p.readonlyPaths.enumerated().map { i, path in berth_path(path: str(path), index: Int32(i)) }
        raw.readonly_paths = array(ro)
        raw.nreadonly_paths = Int32(ro.count)
        let masked = p.maskedPaths.enumerated().map { i, path in berth_path(path: str(path), index: Int32(i)) }
        raw.masked_paths = array(masked)
        raw.nmasked_paths = Int32(masked.count)
        raw.hostname = str(p.hostname)
        raw.domainname = str(p.domainname)

        raw.cwd = str(p.cwd)
        raw.uid = p.uid
        raw.gid = p.gid
        raw.groups = array(p.groups)
        raw.ngroups = Int32(p.groups.count)
        // In a user namespace whose setgroups is denied the call would fail; Berth writes
        // the maps as a privileged parent, so setgroups stays allowed and is always made
        // (dropping the host's supplementary groups).
        // An unprivileged user's namespace has setgroups denied (or ids the user does not
        // own): runc makes no setgroups call then, and neither does Berth.
        raw.set_groups = Rootless.euid ? 0 : 1
        raw.userns_setgroups = p.inUserNamespace || Rootless.inUserNamespace ? 1 : 0
        raw.maps_by_owner = Rootless.euid && p.newNamespaces.contains(.user) ? 1 : 0
        raw.umask = p.umask
        raw.new_keyring = p.newKeyring ? 1 : 0
        raw.keyring_name = str(p.keyringName)
        raw.keyring_search_perm = p.keyringSearchPerm
        let attrs = p.attrWrites.map { w in
            berth_attr_write(file: str(w.file), fallback: str(w.fallback), value: str(w.value),
                             before_keyring: w.beforeKeyring ? 1 : 0, missing_ok: w.missingOK ? 1 : 0)
        }
        raw.mask_label = str(p.maskLabel)
        raw.attr_writes = array(attrs)
        raw.nattr_writes = Int32(attrs.count)
        raw.arg0 = str(p.args[0])
        raw.path_env = str(p.pathEnv)
        raw.argv = argv(p.args)
        // HOME is added by the child, from the container's /etc/passwd, when the config has
        // none (as runc does): the array keeps a spare slot for it.
        raw.envp = argv(p.env, spare: 1)
        raw.nenv = Int32(p.env.count)
        raw.set_home = p.env.contains { $0.hasPrefix("HOME=") } ? 0 : 1
        raw.preserve_fds = Int32(p.preserveFds)

        raw.cap_last = cb_cap_last()
        raw.cap_bounding = p.caps.bounding
        raw.cap_effective = p.caps.effective
        raw.cap_permitted = p.caps.permitted
        raw.cap_inheritable = p.caps.inheritable
        raw.cap_ambient = p.caps.ambient
        raw.no_new_privs = p.noNewPrivileges ? 1 : 0
        let limits = p.rlimits.map { berth_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard, index: Int32($0.index)) }
        raw.rlimits = array(limits)
        raw.nrlimits = Int32(limits.count)
        if let pers = p.personality { raw.set_personality = 1; raw.personality = pers }
        if let io = p.ioPriority { raw.set_ioprio = 1; raw.ioprio = io }
        if let s = p.scheduler {
            raw.set_scheduler = 1
            raw.sched_policy = schedulerPolicies[s.policy]!
            raw.sched_flags = (s.flags ?? []).reduce(0) { $0 | schedulerFlags[$1]! }
            raw.sched_nice = s.nice ?? 0
            raw.sched_priority = UInt32(bitPattern: s.priority ?? 0)
            raw.sched_runtime = s.runtime ?? 0
            raw.sched_deadline = s.deadline ?? 0
            raw.sched_period = s.period ?? 0
        }
        func cpuMask(_ cpus: [Int]) -> (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                                         UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) {
            var words = [UInt64](repeating: 0, count: 16)
            for c in cpus { words[c / 64] |= 1 << UInt64(c % 64) }
            return (words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7],
                    words[8], words[9], words[10], words[11], words[12], words[13], words[14], words[15])
        }
        if let c = p.cpusInitial { raw.set_cpus_initial = 1; raw.cpus_initial = cpuMask(c) }
        if let c = p.cpusFinal { raw.set_cpus_final = 1; raw.cpus_final = cpuMask(c) }
        raw.seccomp_listener_sock = listenerFd
        // A hook without `env` inherits the environment of the process running it, as
        // runc's (its init's is the container process's by then).
        let hooks = p.startHooks.map { h in
            berth_hook(path: str(h.path), argv: argv(h.args ?? [h.path]), envp: argv(h.env ?? p.env),
                       timeout_ms: Int32(clamping: (h.timeout ?? 0) * 1000))
        }
        raw.start_hooks = array(hooks)
        raw.nstart_hooks = Int32(hooks.count)
        raw.pause_for_hooks = p.pauseForHooks ? 1 : 0
        raw.bind_fds_from_parent = p.bindSourcesFromParent ? 1 : 0
        raw.console_sock = consoleFd
        if let cs = p.consoleSize { raw.console_rows = cs.rows; raw.console_cols = cs.cols }
        if let sc = p.seccomp {
            raw.seccomp_filter = UnsafeRawPointer(array(sc.bpf)!)
            raw.seccomp_len = UInt16(sc.bpf.count / 8)
            raw.seccomp_flags = sc.flags
            raw.seccomp_needs_admin = p.noNewPrivileges ? 0 : 1
        }
    }
}
