import BerthSpec
import CBerth
import Glibc

public struct CreateOptions {
    public var bundle: String = "."
    public var pidFile: String?
    public var consoleSocket: String?
    public var noPivot = false
    public var noNewKeyring = false
    public var preserveFds = 0
    /// Set by foreground `run`: the caller's terminal could serve the container.
    public var foreground = false
    public init() {}
}

/// The lifecycle operations, each one call of the CLI.
public struct Runtime {
    public var store: StateStore
    /// `--systemd-cgroup`: cgroups through systemd's transient units (Systemd.swift).
    public var systemdCgroup: Bool
    /// Rootless.cgroups: a cgroup Berth cannot make is done without (limits refused).
    public var rootlessCgroups = false
    public init(root: String, systemdCgroup: Bool = false) {
        store = StateStore(root: root)
        self.systemdCgroup = systemdCgroup
    }

    // MARK: create

    /// What `create` leaves for `run`: the container, its init and the handshake to finish.
    public struct Created {
        public var record: ContainerRecord
        var launched: Launcher.Launched
    }

    /// Everything but the user's program: namespaces, mounts, cgroup; init waits before
    /// execve. On any failure nothing is left behind: no state directory, cgroup or process.
    public func create(id: String, _ o: CreateOptions) throws(BerthError) -> Created {
        // init runs Berth's code until `start`, and any container may join its pid
        // namespace meanwhile (linux.namespaces[].path = /proc/PID/ns/pid, as pods do),
        // even one of its own: so always from a binary nobody can write (CVE-2019-5736).
        // First, before anything is read or made: the re-executed process does it all.
        try BinaryProtection.ensure(for: "create")
        try StateStore.validate(id: id)
        let cwd = FS.currentDirectory()
        // Resolved before anything else: the caller's relative paths mean its cwd.
        let bundle = Paths.absolute(o.bundle, base: cwd)
        let pidFile = o.pidFile.map { Paths.absolute($0, base: cwd) }
        try Runtime.checkPreserveFds(o.preserveFds)
        if FS.exists(store.dir(id)) { throw BerthError("container with given ID already exists") }
        guard FS.isDirectory(bundle) else { throw BerthError("bundle \(bundle): not a directory or does not exist") }
        let configPath = bundle + "/config.json"
        let bytes: [UInt8]
        do { bytes = try FS.readFile(configPath) } catch {
            // errno is stale here: the error itself says what went wrong (missing, too large...).
            throw BerthError("config.json: cannot read \(error.message)")
        }
        let spec: Spec
        var plan: ContainerPlan
        let rootfs: String
        var cgroupWrites: [CgroupWrite] = []
        var deviceProgram: [UInt8]?
        let cgroupHost = CgroupHost.detect()
        do throws(SpecError) {
            spec = try Spec.load(bytes)
            rootfs = Paths.absolute(spec.root!.path, base: bundle)
            var rst = stat(), hst = stat()
            if stat(rootfs, &rst) != 0 || (rst.st_mode & S_IFMT) != S_IFDIR {
                throw SpecError("root.path", "\(rootfs): no such directory")
            }
            // The host's own root (a rootfs linked to "/", say) can never be pivoted into:
            // say so now instead of failing late with pivot_root's EBUSY.
            // (Without a mount namespace the root is not switched at all, as with runc.)
            let switchesRoot = spec.linux?.namespaces?.contains { $0.type == "mount" } ?? false
            if switchesRoot && stat("/", &hst) == 0 && rst.st_dev == hst.st_dev && rst.st_ino == hst.st_ino {
                throw SpecError("root.path", "\(rootfs) is the host's root directory \"/\"; a container needs a root filesystem of its own")
            }
            plan = try ContainerPlan.build(spec: spec, bundle: bundle, rootfs: rootfs, noPivot: o.noPivot,
                                           noNewKeyring: o.noNewKeyring, preserveFds: o.preserveFds)
            plan.keyringName = ContainerPlan.sessionKeyring(id)
            plan.keyringSearchPerm = plan.inUserNamespace ? 0x8 : 0x8_0000
            let res = spec.linux?.resources ?? Resources()
            // As runc: linux.devices only makes nodes; what may be opened is what
            // linux.resources.devices allows, plus runc's default devices.
            if case .v1 = cgroupHost {
                _ = try DeviceEmulator.target(res.devices ?? [])  // config errors before anything is made
            } else {
                var resourceWarnings: [String] = []
                cgroupWrites = try CgroupResources.writes(res, warnings: &resourceWarnings)
                for w in resourceWarnings { warn(w) }
                let eff = try DeviceFilter.effective(res.devices ?? [], extra: [])
                if !(eff.defaultAllow && eff.rules.isEmpty) {
                    deviceProgram = DeviceFilter.program(defaultAllow: eff.defaultAllow, rules: eff.rules)
                }
            }
        } catch { throw BerthError(error.description) }
        for w in plan.warnings { warn(w) }
        plan.addSocketActivation()
        // runc's two sanity checks, in its words: callers match them.
        if plan.terminal && o.consoleSocket == nil && !o.foreground {
            throw BerthError("cannot allocate tty if runc will detach without setting console socket")
        }
        if !plan.terminal && o.consoleSocket != nil {
            throw BerthError("cannot use console socket if runc will not detach or allocate tty")
        }
        let consoleSocket = o.consoleSocket.map { Paths.absolute($0, base: cwd) }
        let hooks = spec.hooks ?? Hooks()
        let createHooks: [HookKind] = [.prestart, .createRuntime, .createContainer]
        let hasCreateHooks = createHooks.contains { !hooks[$0].isEmpty }
        plan.pauseForHooks = hasCreateHooks && plan.setupRootfs
        // startContainer hooks run from init after `start`, under the container's
        // credentials and seccomp filter (as runc runs them).
        plan.startHooks = hooks[.startContainer]

        debug("create \(id): bundle \(bundle), rootfs \(rootfs), \(plan.mounts.count) mounts, \(plan.devices.count) devices, new namespaces \(plan.newNamespaces.map(\.rawValue).sorted().joined(separator: ",")), joined \(plan.joins.map(\.kind.rawValue).joined(separator: ","))")
        let dir = try store.claim(id)
        var cgroupDir: String?
        var v1Dirs: [String: String] = [:]
        var cgroupMade: [String] = []
        var launched: Launcher.Launched?
        var unit: Systemd.Unit?
        var unitStarted = false
        func cleanup() {
            if let l = launched {
                Glibc.kill(l.initPid, SIGKILL)
                close(l.sync)
                reap(l.initPid)
            }
            ContainerCgroups(v2: cgroupDir, v1: v1Dirs, systemdUnit: unitStarted ? unit?.name : nil,
                             systemdUser: rootlessCgroups).destroy(made: cgroupMade)
            store.remove(dir)
        }
        do throws(BerthError) {
            var cgroupPlanned: [String] = []
            var cgroupMount: String?
            var hierarchies: [CgroupV1.Hierarchy] = []
            let defaultPath = (spec.linux?.cgroupsPath ?? "").isEmpty
            // /proc/self/cgroup, read at most once per create, and only where it matters.
            var selfCgroupText: String?
            func selfCgroup() -> String {
                if let t = selfCgroupText { return t }
                selfCgroupText = FS.readString("/proc/self/cgroup") ?? ""
                return selfCgroupText!
            }
            switch cgroupHost {
            case .v2(let m): cgroupMount = m
            case .v1(let hs, let unified) where systemdCgroup:
                // The unit's directories are named once systemd is asked (below).
                hierarchies = hs
                cgroupMount = unified
            case .v1(let hs, let unified):
                hierarchies = hs
                cgroupMount = unified
                v1Dirs = try CgroupV1.dirs(for: spec.linux?.cgroupsPath, id: id, hierarchies: hs,
                                           own: CgroupV1.ownCgroups(selfCgroup()),
                                           rootless: rootlessCgroups)
                for h in hs {
                    guard let d = v1Dirs[h.key] else { continue }
                    // Berth's default parent is shared by its containers: each delete tries
                    // to remove it, and the last one succeeds.
                    if defaultPath && !rootlessCgroups { cgroupPlanned.append(h.mountpoint + "/berth") }
                    cgroupPlanned += Cgroup.missing(d, mount: h.mountpoint).filter { !cgroupPlanned.contains($0) }
                }
            case .none:
                if let p = spec.linux?.cgroupsPath, !p.isEmpty {
                    throw BerthError("config.json: linux.cgroupsPath: no cgroup hierarchy is mounted on this host")
                } else if !cgroupWrites.isEmpty || deviceProgram != nil {
                    throw BerthError("config.json: linux.resources: no cgroup hierarchy is mounted on this host")
                }
            }
            var systemd: DBusConnection?
            var unitProperties: [Systemd.Property] = []
            var systemdDevices: [String]?
            if systemdCgroup {
                // runc's order: systemd first, then what kind of host.
                if !Systemd.running { throw BerthError("systemd not running on this host, cannot use systemd cgroups manager") }
                let u: Systemd.Unit
                let c: DBusConnection
                switch cgroupHost {
                case .v2(let mount) where rootlessCgroups:
                    // runc's rootless driver: the user's own systemd, its units below its
                    // manager's cgroup, user.slice by default. Device rules need privileges
                    // no user has: not enforced, as runc's rootless ones.
                    c = try Systemd.connect(user: true)
                    u = try Systemd.unit(cgroupsPath: spec.linux?.cgroupsPath, id: id,
                                         mount: mount + Systemd.managerCgroup(c), defaultSlice: "user.slice")
                    unitProperties = try Systemd.properties(spec.linux?.resources ?? Resources(), on: c)
                    cgroupDir = u.dir
                    deviceProgram = nil
                case .v2(let mount):
                    u = try Systemd.unit(cgroupsPath: spec.linux?.cgroupsPath, id: id, mount: mount)
                    c = try Systemd.connect()
                    unitProperties = try Systemd.properties(spec.linux?.resources ?? Resources(), on: c)
                    cgroupDir = u.dir
                case .v1 where rootlessCgroups:
                    throw BerthError("cannot use rootless systemd cgroups manager on cgroup v1")
                case .v1(let hs, let unified):
                    // runc's legacy driver: the unit's path below every v1 hierarchy's mount
                    // point (systemd makes it in those it manages, Berth in the others), and
                    // in the unified hierarchy of a hybrid host, where systemd tracks it.
                    u = try Systemd.unit(cgroupsPath: spec.linux?.cgroupsPath, id: id, mount: unified ?? "")
                    for h in hs { v1Dirs[h.key] = h.mountpoint + u.path }
                    cgroupDir = unified.map { $0 + u.path }
                    c = try Systemd.connect()
                    var res = spec.linux?.resources ?? Resources()
                    res.devices = res.devices ?? []  // runc's defaults apply even without rules
                    let target: DeviceEmulator
                    do { target = try DeviceEmulator.target(res.devices!) } catch { throw BerthError("config.json: " + error.description) }
                    unitProperties = try Systemd.v1Properties(res, devices: target, version: Systemd.versionOnce(c))
                    systemdDevices = target.stateLines
                case .none:
                    throw BerthError("--systemd-cgroup: no cgroup hierarchy is mounted on this host")
                }
                unitProperties += try Systemd.annotationProperties(spec.annotations ?? [:])
                unit = u
                systemd = c
            }
            if let mount = cgroupMount, unit == nil {
                // Berth's own cgroup matters only for a relative path or runc's rootless
                // default: /proc/self/cgroup is not read on every create.
                let given = spec.linux?.cgroupsPath ?? ""
                let own = rootlessCgroups || (!given.isEmpty && !given.hasPrefix("/"))
                    ? Cgroup.ownPath(selfCgroup()) : nil
                let cg = try Cgroup.path(for: spec.linux?.cgroupsPath, id: id, mount: mount, own: own, rootless: rootlessCgroups)
                cgroupDir = cg
                if defaultPath && !rootlessCgroups { cgroupPlanned.append(mount + "/berth") }
                cgroupPlanned += Cgroup.missing(cg, mount: mount).filter { !cgroupPlanned.contains($0) }
            }
            if rootlessCgroups && unit == nil && (cgroupDir != nil || !v1Dirs.isEmpty) {
                // runc's rootless rules, per hierarchy as its fs drivers: a cgroup the user
                // may not make or join (a tree root owns, nothing delegated) is done
                // without, unless the config names the path (then it is an error); a limit
                // that needs a hierarchy done without is refused by name; device rules are
                // ignored (they cannot be enforced without privileges). name=systemd and
                // a hybrid host's unified hierarchy are joined where possible, as runc's
                // named hierarchies, never an error.
                var refused: String?
                for h in hierarchies {
                    guard let d = v1Dirs[h.key], !Cgroup.usableWithoutPrivileges(d, mount: h.mountpoint, moveFrom: nil) else { continue }
                    v1Dirs[h.key] = nil
                    if !h.key.hasPrefix("name=") { refused = refused ?? d }
                }
                if let cg = cgroupDir, let m = cgroupMount {
                    let own = Cgroup.ownPath(selfCgroup())
                    if !Cgroup.usableWithoutPrivileges(cg, mount: m, moveFrom: own.map { Paths.clean(m + $0) }) {
                        cgroupDir = nil
                        if hierarchies.isEmpty { refused = cg }
                    }
                }
                if let r = refused, !defaultPath {
                    throw BerthError("unable to apply cgroup configuration: mkdir \(r): permission denied")
                }
                let kept = hierarchies.filter { v1Dirs[$0.key] != nil }.map(\.mountpoint) + (cgroupDir != nil ? [cgroupMount ?? ""] : [])
                cgroupPlanned = cgroupPlanned.filter { p in kept.contains { p.hasPrefix($0 + "/") } }
                if cgroupDir == nil && v1Dirs.isEmpty {
                    debug("rootless: no cgroup (uid \(geteuid()) may not make or join one)")
                }
                if hierarchies.isEmpty && cgroupDir == nil {
                    var ignored: [String] = []
                    var wanted = spec.linux?.resources ?? Resources()
                    wanted.devices = nil
                    let writes = (try? CgroupResources.writes(wanted, warnings: &ignored)) ?? [CgroupWrite(controller: nil, file: "", value: "", path: "")]
                    if let w = writes.first {
                        throw BerthError("cannot set \(w.controller ?? "cgroup") limit: container could not join or create cgroup")
                    }
                }
                deviceProgram = nil
            }
            let existing = ContainerCgroups(v2: cgroupDir, v1: v1Dirs)
            try existing.checkOpenable()
            if !existing.isEmpty {
                // As runc 1.1: joining a cgroup that already has processes works, with a
                // warning in runc's words (the containers then share limits, freezing, kill).
                let n = existing.pids().count
                if n > 0 {
                    warn("container's cgroup is not empty: \(n) process(es) found")
                    // Shared with another container: whichever is deleted last removes it
                    // once it is empty (runc removes a container's cgroup whoever made it).
                    cgroupPlanned += existing.leaves.filter { !cgroupPlanned.contains($0) }
                }
                // A frozen cgroup would freeze init half-way; runc refuses it in these words.
                if existing.frozen() { throw BerthError("container's cgroup unexpectedly frozen") }
            }
            // Recorded before anything is made on the host, so a creator killed half-way
            // leaves a record that `delete` can clean up.
            var state = StoredState(
                ociVersion: ociSpecVersion, id: id, pid: 0, startTime: 0,
                bundle: bundle, rootfs: rootfs, created: WallClock.rfc3339(nanos: true),
                annotations: spec.annotations, owner: "", cgroup: cgroupDir,
                cgroupV1: v1Dirs.isEmpty ? nil : v1Dirs, systemdUnit: unit?.name, cgroupCreated: existing.compact(cgroupPlanned),
                creatorPid: getpid(), creatorStartTime: ProcStat.read(pid: getpid())?.startTime,
                hooks: HookKind.allCases.contains { !hooks[$0].isEmpty } ? hooks : nil,
                ownPidNamespace: plan.ownPidNamespace)
            state.systemdDevices = systemdDevices
            state.systemdUser = unit != nil && rootlessCgroups
            state.noNewKeyring = !plan.newKeyring
            try store.save(ContainerRecord(dir: dir, state: state))
            if !v1Dirs.isEmpty && unit == nil { cgroupMade = try CgroupV1.create(v1Dirs, hierarchies: hierarchies) }
            if let cg = cgroupDir, let mount = cgroupMount, unit == nil {
                cgroupMade += try Cgroup.create(cg, mount: mount)
                if v1Dirs.isEmpty { Cgroup.delegateControllers(to: cg, mount: mount) }
            }
            // Limits and the device rules are in place before the clone: no code of the
            // container ever runs without them.
            if (!v1Dirs.isEmpty || (rootlessCgroups && !hierarchies.isEmpty)) && unit == nil {
                var res = spec.linux?.resources ?? Resources()
                res.devices = res.devices ?? []  // runc's defaults apply even without rules
                if rootlessCgroups { res.devices = nil }
                var warnings: [String] = []
                try CgroupV1.apply(res, dirs: v1Dirs, hybridV2: cgroupDir.flatMap { d in cgroupMount.map { (dir: d, mount: $0) } },
                                   rootless: rootlessCgroups, warnings: &warnings)
                for w in warnings { warn(w) }
            } else if let cg = cgroupDir, let mount = cgroupMount, unit == nil {
                try Cgroup.apply(cgroupWrites, to: cg, mount: mount)
                if let prog = deviceProgram { try DeviceFilter.attach(prog, cgroup: cg) }
            }
            debug("cgroup \(cgroupDir ?? "none")\(v1Dirs.isEmpty ? "" : " and \(v1Dirs.count) v1 hierarchies") (created: \(cgroupMade.joined(separator: " ")))")
            // Rootless without a cgroup of its own, the container sees the cgroups it was
            // started in.
            var mountDirs = v1Dirs
            if rootlessCgroups && !hierarchies.isEmpty && mountDirs.count < hierarchies.count {
                let own = CgroupV1.ownCgroups(selfCgroup())
                for h in hierarchies where mountDirs[h.key] == nil { mountDirs[h.key] = CgroupV1.ownDir(h, own: own) }
            }
            if !mountDirs.isEmpty {
                // "cgroup" mounts become the v1 hierarchies, as runc lays them out.
                var expanded: [PlannedMount] = []
                for m in plan.mounts {
                    guard m.cgroupType else { expanded.append(m); continue }
                    let e = CgroupV1.expand(m, dirs: mountDirs, hierarchies: hierarchies, cgroupns: plan.newNamespaces.contains(.cgroup))
                    expanded += e.mounts
                    plan.symlinks += e.links
                }
                plan.mounts = expanded
            }
            // cgroup2 mounts fall back to a bind of the container's cgroup (with a cgroup
            // namespace) or of the hierarchy, where a user namespace forbids a new mount.
            if let mount = cgroupMount, cgroupDir != nil || rootlessCgroups {
                let fallback = plan.newNamespaces.contains(.cgroup) ? (cgroupDir ?? mount) : mount
                for i in plan.mounts.indices where plan.mounts[i].fstype == "cgroup2" { plan.mounts[i].cgroupFallback = fallback }
            }
            let creating = state
            // runtime-spec lifecycle steps 5-7: prestart and createRuntime in the runtime's
            // namespaces, createContainer in the container's, before the root switch. Their
            // state says "created": the spec's "creating" is step 2 alone, and these come
            // after it (runc says "creating"; crun and runtime-tools follow the spec).
            let runCreateHooks = { (pid: Int32) throws(BerthError) -> Void in
                let input = HookRunner.state(creating, status: .created, pid: pid)
                try HookRunner.run(.prestart, hooks[.prestart], state: input)
                try HookRunner.run(.createRuntime, hooks[.createRuntime], state: input)
                try HookRunner.run(.createContainer, hooks[.createContainer], state: input, inContainerOf: pid,
                                   cwd: plan.pauseForHooks ? plan.rootfs : nil)
            }
            // Under systemd the cgroup exists only once the unit does, and the unit needs
            // a process: init is born in Berth's cgroup and moved by systemd before it
            // runs anything of the container's; limits and the device filter follow, as
            // with cgroupfs before the clone.
            var launcher = Launcher(plan: plan, stateDir: dir, cgroupDir: unit == nil ? cgroupDir : nil)
            launcher.v1Dirs = unit != nil ? [] : v1Dirs.keys.sorted().map { v1Dirs[$0]! }
            if let u = unit, let c = systemd, !v1Dirs.isEmpty {
                let props = unitProperties
                var res = spec.linux?.resources ?? Resources()
                res.devices = res.devices ?? []
                let hybrid = cgroupDir.flatMap { d in cgroupMount.map { (dir: d, mount: $0) } }
                launcher.beforeGo = { (pid: Int32) throws(BerthError) -> Void in
                    try Systemd.start(c, unit: u, description: "berth container \(id)", pid: pid, resources: props, legacy: true)
                    unitStarted = true
                    // runc's joinCgroups: the hierarchies systemd left alone get the
                    // directory from Berth, and init joins every one but systemd's own.
                    let join = v1Dirs.filter { $0.key != "name=systemd" }
                    cgroupMade = try CgroupV1.create(join, hierarchies: hierarchies)
                    for k in join.keys.sorted() { try Cgroup.place(pid: pid, in: join[k]!) }
                    debug("systemd unit \(u.name) started, cgroups \(join.keys.sorted().map { join[$0]! }.joined(separator: " "))")
                    var warnings: [String] = []
                    try CgroupV1.apply(res, dirs: join, hybridV2: hybrid, warnings: &warnings)
                    for w in warnings { warn(w) }
                }
            } else if let u = unit, let c = systemd, case .v2(let mount) = cgroupHost {
                let props = unitProperties
                let owner = Cgroup.delegateOwner(spec, plan: plan)
                launcher.beforeGo = { (pid: Int32) throws(BerthError) -> Void in
                    try Systemd.start(c, unit: u, description: "berth container \(id)", pid: pid, resources: props)
                    unitStarted = true
                    guard FS.isDirectory(u.dir) else { throw BerthError("systemd unit \(u.name): no cgroup at \(u.dir)") }
                    debug("systemd unit \(u.name) started, cgroup \(u.dir)")
                    if let uid = owner { try Cgroup.delegate(u.dir, to: uid) }
                    Cgroup.delegateControllers(to: u.dir, mount: mount)
                    try Cgroup.apply(cgroupWrites, to: u.dir, mount: mount)
                    if let prog = deviceProgram { try DeviceFilter.attach(prog, cgroup: u.dir) }
                }
            }
            launcher.consoleSocket = consoleSocket
            // A foreground terminal without a socket: Berth relays it (see run).
            launcher.relayTerminal = plan.terminal && o.consoleSocket == nil
            if plan.pauseForHooks { launcher.onHooks = runCreateHooks }
            let l = try launcher.launch()
            // A joined mount namespace has no root switch to pause before.
            if hasCreateHooks && !plan.pauseForHooks {
                launched = l
                try runCreateHooks(l.initPid)
            }
            launched = l
            debug("init \(l.initPid) is waiting before execve (\(plan.stageMode ? "stage mode" : "one clone3"))")
            guard let info = ProcStat.read(pid: l.initPid) else { throw BerthError("container init exited unexpectedly") }
            state.pid = l.initPid
            state.startTime = info.startTime
            state.cgroupCreated = existing.compact(cgroupPlanned.filter { !cgroupMade.contains($0) } + cgroupMade)
            state.creatorPid = nil
            state.creatorStartTime = nil
            let rec = ContainerRecord(dir: dir, state: state)
            try store.save(rec)
            RecoveryRecord.write(state, dir: dir)
            if let pidFile { try Runtime.writePidFile(pidFile, l.initPid) }
            try Launcher.commit(l, notifyState: plan.seccompNotifyState(state),
                                hookState: plan.startHooks.isEmpty ? nil
                                    : HookRunner.state(state, status: .created, pid: l.initPid))
            debug("init: closing the pipe to signal completion (init \(l.initPid) waits on exec.fifo)")
            return Created(record: rec, launched: l)
        } catch {
            cleanup()
            throw error
        }
    }

    /// --preserve-fds N passes fds 3..3+N-1, which must all fit under the open-file limit (a huge N
    /// used to overflow the plan's int).
    static func checkPreserveFds(_ n: Int) throws(BerthError) {
        if n < 0 { throw BerthError("--preserve-fds: must not be negative") }
        var rl = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &rl)
        let limit = rl.rlim_cur == rlim_t.max ? UInt64(Int32.max) : UInt64(rl.rlim_cur)
        if UInt64(n) + 3 > limit {
            throw BerthError("--preserve-fds: \(n) fds from fd 3 on exceed the open-file limit (\(limit))")
        }
    }

    /// Digits only, no newline (containerd parses it with strconv.Atoi), written to a
    /// temporary file in the same directory and renamed.
    static func writePidFile(_ path: String, _ pid: Int32) throws(BerthError) {
        do { try FS.writeAtomically(path, Array(String(pid).utf8)) } catch {
            throw BerthError("--pid-file: \(error.message)")
        }
    }

    // MARK: start

    public func start(id: String) throws(BerthError) {
        let lock = store.lock(id)
        defer { if lock >= 0 { close(lock) } }
        let rec = try store.load(id)
        try start(rec)
    }

    func start(_ rec: ContainerRecord) throws(BerthError) {
        switch rec.status {
        case .created: break
        case .stopped: throw BerthError("cannot start a container that has stopped")
        default: throw BerthError("cannot start an already running container")
        }
        let hooks = rec.state.hooks ?? Hooks()
        // startContainer hooks run in init, between the release and execve; release() reports
        // their failure. A failing startContainer hook stops the container and ends its
        // lifecycle (runtime-spec: continue at delete).
        if let hookFailure = try release(rec) {
            _ = try? deleteLocked(id: rec.state.id, force: true)
            throw BerthError(hookFailure)
        }
        debug("started \(rec.state.id): init \(rec.state.pid) released")
        HookRunner.runWarning(.poststart, hooks[.poststart],
                              state: HookRunner.state(rec.state, status: .running, pid: rec.state.pid))
    }

    /// Writes the start byte to the exec fifo and returns once init has taken it and gone
    /// on to execve; fails if init died first (a racing `delete`, a kill), so `start` never
    /// reports a program as started that was not released to run. Returns
    /// why a startContainer hook failed, if one did (init then reports it through the fifo).
    private func release(_ rec: ContainerRecord) throws(BerthError) -> String? {
        let stopped = BerthError("cannot start a container that has stopped")
        // Our own reader first: the writer below then opens even if init is gone, and the
        // reader sees POLLHUP once the last writer closes. That is init's fd, which is
        // close-on-exec: it closes exactly at execve, or at death.
        let rfd = open(rec.fifoPath, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if rfd < 0 {
            if errno == ENOENT { throw stopped }
            throw .sys("open \(rec.fifoPath)")
        }
        defer { close(rfd) }
        let wfd = open(rec.fifoPath, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        if wfd < 0 { throw .sys("open \(rec.fifoPath)") }
        var c: UInt8 = 0
        let n = retrying { write(wfd, &c, 1) }
        let e = errno
        close(wfd)
        if n != 1 { throw .sys("release container init", e) }
        unlink(rec.fifoPath)
        if cb_poll_hangup(rfd, -1) < 0 { throw .sys("wait for container init to execute the program") }
        // The byte still there: init died before it read it. 'E' and a line instead: init
        // read it, and a startContainer hook failed.
        var buf = [UInt8](repeating: 0, count: 8192)
        let got = buf.withUnsafeMutableBytes { b in retrying { read(rfd, b.baseAddress, b.count) } }
        if got >= 1 {
            if buf[0] == UInt8(ascii: "E") { return String(decoding: buf[1..<got], as: UTF8.self) }
            throw stopped
        }
        // Killed after reading but before execve: it still has the name only Berth gives.
        if let info = ProcStat.read(pid: rec.state.pid), info.startTime == rec.state.startTime,
           info.comm == BERTH_INIT_COMM {
            throw stopped
        }
        return nil
    }

    // MARK: run

    /// `run`: create, start, and unless detached wait for init, forwarding signals, then
    /// delete (unless keep). Returns the exit status to use.
    public func run(id: String, _ o: CreateOptions, detach: Bool, keep: Bool, subreaper: Bool) throws(BerthError) -> Int32 {
        if !detach && subreaper { _ = cb_prctl_set_child_subreaper() }
        var o = o
        o.foreground = !detach
        let c = try create(id: id, o)
        if detach {
            do { try start(c.record) } catch {
                _ = try? delete(id: id, force: true)
                throw error
            }
            return 0
        }
        // Signals are taken synchronously from here on (no handlers: single-threaded,
        // nothing async), and forwarded to init.
        _ = cb_block_all_signals()
        do { try start(c.record) } catch {
            _ = try? delete(id: id, force: true)
            _ = cb_unblock_all_signals()
            throw error
        }
        let status: Int32
        if let m = c.launched.master {
            status = cb_relay(m, c.launched.initPid)
            close(m)
        } else {
            status = Runtime.waitForwardingSignals(c.launched.initPid)
        }
        if !keep { _ = try? delete(id: id, force: true) }
        _ = cb_unblock_all_signals()
        return Runtime.exitCode(status)
    }

    /// Waits (signals already blocked) for `pid`, forwarding every signal Berth receives
    /// to it and reaping orphans that a subreaper gets. Returns the wait status.
    static func waitForwardingSignals(_ pid: Int32) -> Int32 {
        var status: Int32 = 0
        waiting: while true {
            var from: Int32 = 0
            let sig = cb_sigwait_any(&from)
            if sig < 0 { break }
            if sig == SIGCHLD {
                while true {
                    var st: Int32 = 0
                    let p = waitpid(-1, &st, WNOHANG)
                    if p <= 0 { break }
                    if p == pid { status = st; break waiting }
                }
                continue
            }
            _ = Glibc.kill(pid, sig)
        }
        while waitpid(-1, nil, WNOHANG) > 0 {}
        return status
    }

    /// A wait status as an exit code: the process's own, or 128+signal.
    static func exitCode(_ status: Int32) -> Int32 {
        if cb_wait_status_exited(status) != 0 { return cb_wait_exit_status(status) }
        if cb_wait_signaled(status) != 0 { return 128 + cb_wait_term_signal(status) }
        return 1
    }

    // MARK: state, list

    public func state(id: String) throws(BerthError) -> String {
        let rec = try store.load(id)
        return rec.ociState(status: rec.status).render(indent: "  ")
    }

    /// Containers whose record cannot be read are left out with a warning, as runc does,
    /// so that no caller ever sees a status it does not know.
    public func list() -> [(ContainerRecord, Status)] {
        var names: [UInt32: String] = [:]
        return store.ids().compactMap { id in
            do throws(BerthError) {
                var r = try store.load(id)
                // As runc's list: the owner is whoever owns the state directory, by name
                // from the host's /etc/passwd, else "#uid".
                var st = stat()
                if stat(r.dir, &st) == 0 {
                    if names[st.st_uid] == nil { names[st.st_uid] = Rootless.userName(st.st_uid) ?? "#\(st.st_uid)" }
                    r.state.owner = names[st.st_uid]!
                }
                return (r, r.status)
            } catch {
                if store.isForeign(id) {
                    warn("\(error.message); not listed")
                } else {
                    warn("\(error.message): container \(id) is not listed; `berth delete --force \(id)` removes it")
                }
                return nil
            }
        }
    }

    // MARK: kill

    public func kill(id: String, signal sig: Int32, all: Bool) throws(BerthError) {
        let rec = try store.load(id)
        let st = rec.status
        let cgs = ContainerCgroups(rec.state)
        if all, !cgs.isEmpty, st != .creating {
            // As runc: --all signals whatever is left in the cgroup, also after init has
            // exited (containerd does this on every pod stop when processes outlive init);
            // a stopped container whose cgroup is gone has nothing left to signal.
            if st == .stopped && !cgs.exists() { return }
            cgs.signalAll(sig)
            return
        }
        // Nor has one without a cgroup (rootless): runc's --all then succeeds too.
        if all && st == .stopped { return }
        if !st.canKill { throw BerthError("container not running") }
        try signalInit(rec, sig)
    }

    /// Signals init through a pidfd, after checking the pid still names the same process
    /// (its start time), so a recycled pid is never hit.
    func signalInit(_ rec: ContainerRecord, _ sig: Int32) throws(BerthError) {
        let pfd = cb_pidfd_open(rec.state.pid)
        if pfd < 0 {
            if -pfd == ESRCH { throw BerthError("no such process") }
            // Kernels without pidfd: fall back to kill(2) after the same check.
            guard ProcStat.read(pid: rec.state.pid)?.startTime == rec.state.startTime else {
                throw BerthError("no such process")
            }
            if Glibc.kill(rec.state.pid, sig) != 0 { throw .sys("kill") }
            return
        }
        defer { close(pfd) }
        guard ProcStat.read(pid: rec.state.pid)?.startTime == rec.state.startTime else {
            throw BerthError("no such process")
        }
        let r = cb_pidfd_send_signal(pfd, sig)
        if r < 0 { throw r == -ESRCH ? BerthError("no such process") : .sys("kill", -r) }
    }

    /// Waits until init has exited (a zombie counts), up to `ms`.
    func waitInitGone(_ rec: ContainerRecord, ms: Int32 = 10_000) {
        let pfd = cb_pidfd_open(rec.state.pid)
        if pfd >= 0 {
            _ = cb_poll_readable(pfd, ms)
            close(pfd)
            return
        }
        var left = ms
        while left > 0 && rec.status != .stopped { usleep(10_000); left -= 10 }
    }

    // MARK: delete

    /// The last resort for an unreadable record: a container created without cgroupsPath
    /// lives in `<cgroup2>/berth/<id>`. When that cgroup exists its processes are killed
    /// and it is removed with the state directory; otherwise (false) nothing is touched.
    private func deleteByDefaultCgroup(id: String, dir: String) throws(BerthError) -> Bool {
        var v2: String?
        var v1: [String: String] = [:]
        var made: [String] = []
        switch CgroupHost.detect() {
        case .none: return false
        case .v2(let mount):
            v2 = try Cgroup.path(for: nil, id: id, mount: mount)
            made = [mount + "/berth", v2!]
        case .v1(let hs, let unified):
            v1 = try CgroupV1.dirs(for: nil, id: id, hierarchies: hs, own: [])
            made = hs.flatMap { h in v1[h.key].map { [h.mountpoint + "/berth", $0] } ?? [] }
            if let u = unified { v2 = try Cgroup.path(for: nil, id: id, mount: u); made += [u + "/berth", v2!] }
        }
        let cgs = ContainerCgroups(v2: v2, v1: v1)
        guard cgs.exists() else { return false }
        let shown = cgs.v1Primary ?? v2 ?? ""
        warn("\(dir)/state.json is unreadable: deleting container \(id) by its default cgroup \(shown)")
        cgs.signalAll(SIGKILL)
        cgs.destroy(made: made)
        if cgs.exists() { throw BerthError("cannot remove cgroup \(shown) of container \(id): it still has processes") }
        store.remove(dir)
        return true
    }

    public func delete(id: String, force: Bool) throws(BerthError) {
        let lock = store.lock(id)
        defer { if lock >= 0 { close(lock) } }
        try deleteLocked(id: id, force: force)
    }

    /// delete, for a caller that holds the container's lock (start ending a container
    /// whose hook failed) or needs none (run, whose container nobody else knows yet).
    func deleteLocked(id: String, force: Bool) throws(BerthError) {
        let rec: ContainerRecord
        do { rec = try store.load(id) } catch {
            guard (try? StateStore.validate(id: id)) != nil else { throw error }
            let d = store.dir(id)
            // As runc: --force of a container that is already gone succeeds (callers clean
            // up after a failed create this way).
            if !FS.exists(d) {
                if force { return }
                throw error
            }
            if store.isForeign(id) { throw error }  // never touch another runtime's
            // A create killed before its first record leaves an empty directory: nothing of
            // it was made on the host.
            if !FS.exists(d + "/state.json") && !RecoveryRecord.present(dir: d) && FS.isDirectory(d) {
                FS.removeTree(d)
                return
            }
            // An unreadable record must not hide a live container: delete from
            // the recovery record, or refuse and delete nothing.
            guard let salvaged = RecoveryRecord.read(dir: d, id: id) else {
                if force, try deleteByDefaultCgroup(id: id, dir: d) { return }
                throw BerthError("\(error.message); berth cannot tell which processes and cgroup belong to container \(id), so nothing was deleted")
            }
            warn("\(error.message): deleting container \(id) from its recovery record")
            rec = ContainerRecord(dir: d, state: salvaged)
        }
        let st = rec.status
        switch st {
        case .stopped: break
        case .created:
            // runc deletes a created container without --force: its program never ran.
            try? signalInit(rec, SIGKILL)
            waitInitGone(rec)
        case .running, .paused, .creating:
            guard force else { throw BerthError("cannot delete container \(id) that is not stopped: \(st.rawValue)") }
            // As runc: with a pid namespace of its own, init's death takes every process
            // of the container with it, so only init is signalled; the cgroup may hold
            // another container's processes (two configs with one cgroupsPath), which
            // stay. Without one, everything in the cgroup is the container's.
            let cgs = ContainerCgroups(rec.state)
            if rec.state.ownPidNamespace { try? signalInit(rec, SIGKILL) } else { cgs.signalAll(SIGKILL) }
            // A v1 freezer holds even SIGKILL back until it thaws.
            if st == .paused { try? cgs.setFrozen(false) }
            waitInitGone(rec)
        }
        let cgs = ContainerCgroups(rec.state)
        if !cgs.isEmpty {
            if !rec.state.ownPidNamespace { cgs.signalAll(SIGKILL) }
            cgs.destroy(made: cgs.expand(rec.state.cgroupCreated ?? []), killRemaining: !rec.state.ownPidNamespace)
        }
        store.remove(rec.dir)
        debug("deleted \(id) (was \(st.rawValue))")
        // poststop: after the container is gone; a failure is only a warning.
        if let hooks = rec.state.hooks {
            HookRunner.runWarning(.poststop, hooks[.poststop],
                                  state: HookRunner.state(rec.state, status: .stopped, pid: rec.state.pid))
        }
    }
}
