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
    public init(root: String) { store = StateStore(root: root) }

    // MARK: create

    /// What `create` leaves for `run`: the container, its init and the handshake to finish.
    public struct Created {
        public var record: ContainerRecord
        var launched: Launcher.Launched
    }

    /// Everything but the user's program: namespaces, mounts, cgroup; init waits before
    /// execve. On any failure nothing is left behind: no state directory, cgroup or process.
    public func create(id: String, _ o: CreateOptions) throws(BerthError) -> Created {
        try StateStore.validate(id: id)
        let cwd = FS.currentDirectory()
        // Resolved before anything else: the caller's relative paths mean its cwd.
        let bundle = Paths.absolute(o.bundle, base: cwd)
        let pidFile = o.pidFile.map { Paths.absolute($0, base: cwd) }
        if o.preserveFds < 0 { throw BerthError("--preserve-fds: must not be negative") }
        if FS.exists(store.dir(id)) { throw BerthError("container with given ID already exists") }
        guard FS.isDirectory(bundle) else { throw BerthError("bundle \(bundle): not a directory or does not exist") }
        let configPath = bundle + "/config.json"
        let bytes: [UInt8]
        do { bytes = try FS.readFile(configPath) } catch {
            throw BerthError("config.json: cannot read \(configPath): \(errnoWords(errno))")
        }
        let spec: Spec
        var plan: ContainerPlan
        let rootfs: String
        var cgroupWrites: [CgroupWrite] = []
        var deviceProgram: [UInt8]?
        do throws(SpecError) {
            spec = try Spec.load(bytes)
            rootfs = Paths.absolute(spec.root!.path, base: bundle)
            if !FS.isDirectory(rootfs) {
                throw SpecError("root.path", "\(rootfs): no such directory")
            }
            plan = try ContainerPlan.build(spec: spec, bundle: bundle, rootfs: rootfs, noPivot: o.noPivot,
                                           noNewKeyring: o.noNewKeyring, preserveFds: o.preserveFds)
            let res = spec.linux?.resources ?? Resources()
            cgroupWrites = try CgroupResources.writes(res)
            // linux.devices nodes are usable inside, as runc allows them.
            let nodes = plan.devices.filter { $0.index >= 0 }.map { d in
                DeviceFilter.Rule(allow: true, type: d.mode & UInt32(S_IFMT) == UInt32(S_IFBLK) ? 1 : 2,
                                  major: d.major, minor: d.minor, access: DeviceFilter.rwm)
            }
            let eff = try DeviceFilter.effective(res.devices ?? [], extra: nodes)
            if !(eff.defaultAllow && eff.rules.isEmpty) {
                deviceProgram = DeviceFilter.program(defaultAllow: eff.defaultAllow, rules: eff.rules)
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

        debug("create \(id): bundle \(bundle), rootfs \(rootfs), \(plan.mounts.count) mounts, \(plan.devices.count) devices, new namespaces \(plan.newNamespaces.map(\.rawValue).sorted().joined(separator: ",")), joined \(plan.joins.map(\.kind.rawValue).joined(separator: ","))")
        let dir = try store.claim(id)
        var cgroupDir: String?
        var cgroupMade: [String] = []
        var launched: Launcher.Launched?
        func cleanup() {
            if let l = launched {
                Glibc.kill(l.initPid, SIGKILL)
                close(l.sync)
                reap(l.initPid)
            }
            if let cg = cgroupDir { Cgroup.destroy(cg, made: cgroupMade) }
            store.remove(dir)
        }
        do throws(BerthError) {
            var cgroupPlanned: [String] = []
            let cgroupMount = Cgroup.mountPoint()
            if let mount = cgroupMount {
                let cg = try Cgroup.path(for: spec.linux?.cgroupsPath, id: id, mount: mount)
                cgroupDir = cg
                cgroupPlanned = Cgroup.missing(cg, mount: mount)
                // Berth's default parent is shared by its containers: each delete tries to
                // remove it, and the last one succeeds.
                if (spec.linux?.cgroupsPath ?? "").isEmpty && !cgroupPlanned.contains(mount + "/berth") {
                    cgroupPlanned.insert(mount + "/berth", at: 0)
                }
            } else if let p = spec.linux?.cgroupsPath, !p.isEmpty {
                throw BerthError("config.json: linux.cgroupsPath: no cgroup2 hierarchy is mounted on this host")
            } else if !cgroupWrites.isEmpty || deviceProgram != nil {
                throw BerthError("config.json: linux.resources: no cgroup2 hierarchy is mounted on this host")
            }
            // Recorded before anything is made on the host, so a creator killed half-way
            // leaves a record that `delete` can clean up.
            var state = StoredState(
                ociVersion: ociSpecVersion, id: id, pid: 0, startTime: 0,
                bundle: bundle, rootfs: rootfs, created: WallClock.rfc3339(nanos: true),
                annotations: spec.annotations, owner: "", cgroup: cgroupDir, cgroupCreated: cgroupPlanned,
                creatorPid: getpid(), creatorStartTime: ProcStat.read(pid: getpid())?.startTime,
                hooks: HookKind.allCases.contains { !hooks[$0].isEmpty } ? hooks : nil,
                ownPidNamespace: plan.ownPidNamespace)
            try store.save(ContainerRecord(dir: dir, state: state))
            if let cg = cgroupDir, let mount = cgroupMount {
                cgroupMade = try Cgroup.create(cg, mount: mount)
                // Limits and the device filter are in place before the clone: no code of
                // the container ever runs without them.
                try Cgroup.apply(cgroupWrites, to: cg, mount: mount)
                if let prog = deviceProgram { try DeviceFilter.attach(prog, cgroup: cg) }
            }
            debug("cgroup \(cgroupDir ?? "none") (created: \(cgroupMade.joined(separator: " ")))")
            let creating = state
            // runtime-spec lifecycle steps 5-7: prestart and createRuntime in the runtime's
            // namespaces, createContainer in the container's, before the root switch.
            let runCreateHooks = { (pid: Int32) throws(BerthError) -> Void in
                let input = HookRunner.state(creating, status: .creating, pid: pid)
                try HookRunner.run(.prestart, hooks[.prestart], state: input)
                try HookRunner.run(.createRuntime, hooks[.createRuntime], state: input)
                try HookRunner.run(.createContainer, hooks[.createContainer], state: input, inContainerOf: pid)
            }
            var launcher = Launcher(plan: plan, stateDir: dir, cgroupDir: cgroupDir)
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
            state.cgroupCreated = cgroupPlanned.filter { !cgroupMade.contains($0) } + cgroupMade
            state.creatorPid = nil
            state.creatorStartTime = nil
            let rec = ContainerRecord(dir: dir, state: state)
            try store.save(rec)
            if let pidFile { try Runtime.writePidFile(pidFile, l.initPid) }
            let notify = plan.seccomp?.listenerPath == nil ? nil
                : SeccompProgram.processState(metadata: plan.seccomp?.listenerMetadata, state: state)
            try Launcher.commit(l, notifyState: notify)
            return Created(record: rec, launched: l)
        } catch {
            cleanup()
            throw error
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
        // A failing startContainer or poststart hook stops the container and ends its
        // lifecycle (runtime-spec: continue at delete).
        do {
            try HookRunner.run(.startContainer, hooks[.startContainer],
                               state: HookRunner.state(rec.state, status: .created, pid: rec.state.pid),
                               inContainerOf: rec.state.pid)
        } catch {
            _ = try? delete(id: rec.state.id, force: true)
            throw error
        }
        let fd = open(rec.fifoPath, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            if errno == ENXIO || errno == ENOENT { throw BerthError("cannot start a container that has stopped") }
            throw .sys("open \(rec.fifoPath)")
        }
        var c: UInt8 = 0
        let n = retrying { write(fd, &c, 1) }
        let e = errno
        close(fd)
        if n != 1 { throw .sys("release container init", e) }
        unlink(rec.fifoPath)
        debug("started \(rec.state.id): init \(rec.state.pid) released")
        do {
            try HookRunner.run(.poststart, hooks[.poststart],
                               state: HookRunner.state(rec.state, status: .running, pid: rec.state.pid))
        } catch {
            _ = try? delete(id: rec.state.id, force: true)
            throw error
        }
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

    public func list() -> [(ContainerRecord, Status)] {
        store.ids().compactMap { id in
            guard let r = try? store.load(id) else { return nil }
            return (r, r.status)
        }
    }

    // MARK: kill

    public func kill(id: String, signal sig: Int32, all: Bool) throws(BerthError) {
        let rec = try store.load(id)
        let st = rec.status
        if !st.canKill { throw BerthError("container not running") }
        if all, let cg = rec.state.cgroup {
            if !Cgroup.signalAll(cg, signal: sig) { throw BerthError("no such process") }
            return
        }
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

    public func delete(id: String, force: Bool) throws(BerthError) {
        let rec: ContainerRecord
        do { rec = try store.load(id) } catch {
            // A create killed half-way can leave a directory without state.json (or, with
            // --force, one whose record cannot be read).
            let d = store.dir(id)
            if (try? StateStore.validate(id: id)) != nil, FS.isDirectory(d),
               !FS.exists(d + "/state.json") || force {
                FS.removeTree(d)
                return
            }
            // As runc: --force of a container that is already gone succeeds (callers clean
            // up after a failed create this way).
            if force, (try? StateStore.validate(id: id)) != nil, !FS.exists(d) { return }
            throw error
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
            if let cg = rec.state.cgroup { _ = Cgroup.signalAll(cg, signal: SIGKILL) }
            try? signalInit(rec, SIGKILL)
            waitInitGone(rec)
        }
        if let cg = rec.state.cgroup {
            if st != .stopped || !rec.state.ownPidNamespace { _ = Cgroup.signalAll(cg, signal: SIGKILL) }
            Cgroup.destroy(cg, made: rec.state.cgroupCreated ?? [])
        }
        store.remove(rec.dir)
        debug("deleted \(id) (was \(st.rawValue))")
        // poststop: after the container is gone; a failure is only a warning.
        if let hooks = rec.state.hooks {
            do {
                try HookRunner.run(.poststop, hooks[.poststop],
                                   state: HookRunner.state(rec.state, status: .stopped, pid: rec.state.pid))
            } catch { warn(error.message) }
        }
    }
}
