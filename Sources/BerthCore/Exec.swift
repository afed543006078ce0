import BerthSpec
import CBerth
import Glibc

public struct ExecOptions {
    public var processFile: String?
    public var args: [String] = []
    public var tty = false
    public var consoleSocket: String?
    public var cwd: String?
    public var env: [String] = []
    public var user: String?
    public var additionalGids: [String] = []
    public var caps: [String] = []
    public var noNewPrivs = false
    public var detach = false
    public var pidFile: String?
    public var preserveFds = 0
    /// --cgroup, repeatable: SUB for every hierarchy, or CTRL[,CTRL]:SUB (runc's forms).
    public var cgroups: [String] = []
    public var ignorePaused = false
    public var apparmor: String?
    public var processLabel: String?
    public init() {}
}

extension Runtime {
    /// runc's --cgroup forms: one SUB for every hierarchy (alone), or any number of
    /// CTRL[,CTRL]:SUB. Keyed by controller, "" for all.
    static func subCgroups(_ args: [String]) throws(BerthError) -> [String: String] {
        var out: [String: String] = [:]
        for a in args {
            let parts = a.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            if parts.count > 2 { throw BerthError("invalid --cgroup argument: \(a)") }
            if parts.count == 1 {
                if args.count != 1 { throw BerthError("invalid --cgroup argument: \(a) (missing <controller>: prefix)") }
                out[""] = a
            } else {
                for c in parts[0].split(separator: ",", omittingEmptySubsequences: false) { out[String(c)] = String(parts[1]) }
            }
        }
        return out
    }

    /// `exec`: a new process in a running container. It joins every namespace of init
    /// (the user namespace first), is born in the container's cgroup, and gets the process
    /// profile of the config (capabilities, rlimits, seccomp...) with the flags on top.
    /// Any failure before the program runs exits 255, as runc's callers expect.
    public func exec(id: String, _ o: ExecOptions) throws(BerthError) -> Int32 {
        do { return try execInner(id: id, o) } catch {
            throw BerthError(error.message, exitCode: error.exitCode == 1 ? 255 : error.exitCode)
        }
    }

    private func execInner(id: String, _ o: ExecOptions) throws(BerthError) -> Int32 {
        // The process forked into the container runs Berth's code in its pid namespace.
        try BinaryProtection.ensure(for: "exec")
        let rec = try store.load(id)
        switch rec.status {
        case .running: break
        case .created:
            // runc execs into a created container too, but there init still runs Berth's
            // binary, and the new process would share its pid namespace: allowed only when
            // that binary is a read-only view (CVE-2019-5736; a create into a joined pid
            // namespace makes it so), refused otherwise.
            guard cb_exe_is_protected("/proc/\(rec.state.pid)/exe") == 1 else {
                throw BerthError("cannot exec in a created container: its init still runs the berth binary, which the new process could reach (CVE-2019-5736); start it first")
            }
        case .paused: if !o.ignorePaused { throw BerthError("cannot exec in a paused container (use --ignore-paused)") }
        default: throw BerthError("cannot exec in a stopped container")
        }
        if o.tty && o.consoleSocket == nil && o.detach {
            throw BerthError("cannot allocate tty if runc will detach without setting console socket")
        }
        if !o.tty && o.consoleSocket != nil && o.processFile == nil {
            throw BerthError("cannot use console socket if runc will not detach or allocate tty")
        }
        try Runtime.checkPreserveFds(o.preserveFds)
        let cwdNow = FS.currentDirectory()
        let pidFile = o.pidFile.map { Paths.absolute($0, base: cwdNow) }

        // The container's config, for the process profile (as runc keeps it in its state).
        let configPath = rec.state.bundle + "/config.json"
        let spec: Spec
        do { spec = try Spec.load(try FS.readFile(configPath)) } catch let e as SpecError {
            throw BerthError(e.description)
        } catch {
            throw BerthError("\(configPath): \(error)")
        }
        var process: Process
        if let file = o.processFile {
            let path = Paths.absolute(file, base: cwdNow)
            do {
                process = try Process(JSONReader(JSONValue.parse(try FS.readFile(path)), file: "--process \(file)"))
            } catch let e as SpecError { throw BerthError(e.description) } catch let e as JSONSyntaxError {
                throw BerthError("--process \(file): invalid JSON: \(e)")
            } catch { throw BerthError("--process \(file): \(error)") }
            if o.tty { process.terminal = true }
        } else {
            process = spec.process!
            process.args = o.args
            process.terminal = o.tty
            if let c = o.cwd { process.cwd = c }
            if let u = o.user {
                let parts = u.split(separator: ":", omittingEmptySubsequences: false)
                guard parts.count <= 2, let uid = UInt32(parts[0]), parts.count == 1 || UInt32(parts[1]) != nil else {
                    throw BerthError("--user \(u): berth takes numeric uid[:gid]")
                }
                process.user.uid = uid
                process.user.gid = parts.count == 2 ? UInt32(parts[1])! : 0
                process.user.additionalGids = nil
            }
            if !o.additionalGids.isEmpty {
                var gids: [UInt32] = []
                for g in o.additionalGids {
                    guard let v = UInt32(g) else { throw BerthError("--additional-gids \(g): not a number") }
                    gids.append(v)
                }
                process.user.additionalGids = gids
            }
            var env = process.env ?? []
            for e in o.env {
                guard let eq = e.firstIndex(of: "="), eq != e.startIndex else { throw BerthError("--env \(e): must be KEY=value") }
                let key = e[..<eq]
                env.removeAll { $0.hasPrefix(key + "=") }
                env.append(e)
            }
            process.env = env
            if !o.caps.isEmpty {
                var c = process.capabilities ?? Capabilities()
                c.bounding = (c.bounding ?? []) + o.caps
                c.effective = (c.effective ?? []) + o.caps
                c.permitted = (c.permitted ?? []) + o.caps
                process.capabilities = c
            }
            if o.noNewPrivs { process.noNewPrivileges = true }
        }
        if (process.args ?? []).isEmpty { throw BerthError("exec: no command given") }
        if process.terminal == true && o.consoleSocket == nil && o.detach {
            throw BerthError("cannot allocate tty if runc will detach without setting console socket")
        }
        if process.terminal != true && o.consoleSocket != nil {
            throw BerthError("cannot use console socket if runc will not detach or allocate tty")
        }
        if !process.cwd.hasPrefix("/") { throw BerthError("--cwd \(process.cwd): must be an absolute path") }

        var plan = ContainerPlan(rootfs: rec.state.rootfs)
        plan.setupRootfs = false
        // As runc: the container's session keyring, unless it was created without one.
        plan.newKeyring = !rec.state.noNewKeyring
        plan.keyringName = ContainerPlan.sessionKeyring(id)
        plan.preserveFds = o.preserveFds
        do {
            try plan.setProcess(process, linux: spec.linux ?? Linux())
            // As runc: the container's AppArmor profile and SELinux label unless this
            // process names its own, and --apparmor / --process-label over both.
            func given(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }
            if let a = given(o.apparmor) {
                plan.attrWrites = try SecurityModules.apparmor(a, file: "--apparmor", field: "")
            } else {
                plan.attrWrites = try SecurityModules.apparmor(given(process.apparmorProfile) ?? spec.process?.apparmorProfile)
            }
            if let l = given(o.processLabel) {
                plan.attrWrites += try SecurityModules.selinux(l, newKeyring: plan.newKeyring, file: "--process-label", field: "")
            } else {
                plan.attrWrites += try SecurityModules.selinux(given(process.selinuxLabel) ?? spec.process?.selinuxLabel,
                                                               newKeyring: plan.newKeyring)
            }
        } catch { throw BerthError(error.description) }
        for w in plan.warnings { warn(w) }
        plan.addSocketActivation()
        // init's namespaces that are not ours, by path; the user namespace is joined first.
        for (i, ns) in HookRunner.namespacesToJoin(of: rec.state.pid).enumerated() {
            plan.joins.append(PlannedJoin(kind: ns.kind, path: ns.path, index: i))
        }
        if plan.joins.isEmpty {
            // Never run an exec'd process in the host's namespaces by accident.
            throw BerthError("cannot find the namespaces of the container's init")
        }
        var cgroupDir = rec.state.cgroup
        var v1Dirs = rec.state.cgroupV1 ?? [:]
        let subs = try Runtime.subCgroups(o.cgroups)
        func below(_ base: String, _ sub: String) throws(BerthError) -> String {
            // runc's check: a sub-cgroup, never a way up ("..").
            let dir = Paths.clean(base + "/" + sub)
            guard dir == base || dir.hasPrefix(base + "/") else { throw BerthError("--cgroup: \(sub) is not a sub cgroup path") }
            return dir
        }
        if !v1Dirs.isEmpty {
            if let all = subs[""] {
                for (k, d) in v1Dirs { v1Dirs[k] = try below(d, all) }
                if let base = cgroupDir { cgroupDir = try below(base, all) }
            } else {
                for (ctrl, sub) in subs.sorted(by: { $0.key < $1.key }) {
                    guard let key = v1Dirs.keys.first(where: { $0.split(separator: ",").contains { $0 == ctrl } }) else {
                        throw BerthError("--cgroup: unknown controller \(ctrl) in SubCgroupPaths")
                    }
                    v1Dirs[key] = try below(rec.state.cgroupV1![key]!, sub)
                }
            }
        } else if let base = cgroupDir, let sub = subs[""] ?? subs.values.first {
            // cgroup v2 has one hierarchy: a controller prefix names the same directory.
            let dir = try below(base, sub)
            // Checked before the process exists; the words are runc's, whose callers and
            // tests match "adding pid ... cgroup.procs: no such file".
            guard FS.isDirectory(dir) else {
                throw BerthError("--cgroup \(sub): error adding pid of the new process to cgroups: \(dir)/cgroup.procs: no such file or directory")
            }
            cgroupDir = dir
        } else if let base = cgroupDir,
                  !(FS.readString(base + "/cgroup.subtree_control") ?? "").allSatisfy({ $0 == " " || $0 == "\n" }),
                  let mount = Cgroup.mountPoint() {
            // The container enabled controllers for its own sub-cgroups (cgroup v2's "no
            // internal processes": its root cgroup takes no process now). As runc: join
            // init's cgroup instead, where init has moved itself.
            for line in (FS.readString("/proc/\(rec.state.pid)/cgroup") ?? "").split(separator: "\n")
            where line.hasPrefix("0::") {
                let dir = Paths.clean(mount + String(line.dropFirst(3)))
                if (dir == base || dir.hasPrefix(base + "/")) && FS.isDirectory(dir) { cgroupDir = dir }
            }
        }
        var placeAfter = v1Dirs.keys.sorted().map { v1Dirs[$0]! }
        if !placeAfter.isEmpty, let d = cgroupDir, !FS.isDirectory(d) {
            // A hybrid host's v2 sub-cgroup that does not exist: joined like the v1 ones,
            // so the failure reads as runc's ("adding pid ... no such file").
            placeAfter.append(d)
            cgroupDir = nil
        }

        var launcher = Launcher(plan: plan, stateDir: rec.dir, cgroupDir: cgroupDir)
        launcher.cgroupOptional = rootlessCgroups
        launcher.v1Dirs = placeAfter
        launcher.withFifo = false
        launcher.consoleSocket = o.consoleSocket.map { Paths.absolute($0, base: cwdNow) }
        launcher.relayTerminal = process.terminal == true && o.consoleSocket == nil
        if !o.detach { _ = cb_block_all_signals() }
        let l: Launcher.Launched
        do throws(BerthError) {
            l = try launcher.launch()
            if let pidFile { try Runtime.writePidFile(pidFile, l.initPid) }
            // With a NOTIFY rule the process waits for the container state it sends to the
            // seccomp agent with the listener, as at create.
            try Launcher.commit(l, notifyState: plan.seccompNotifyState(rec.state))
        } catch {
            _ = cb_unblock_all_signals()
            throw error
        }
        debug("setns_init: about to exec: process \(l.initPid) in \(id)")
        if o.detach { return 0 }
        let master = l.master ?? -1
        let status = master >= 0 ? cb_relay(master, l.initPid) : Runtime.waitForwardingSignals(l.initPid)
        if master >= 0 { close(master) }
        _ = cb_unblock_all_signals()
        return Runtime.exitCode(status)
    }
}
