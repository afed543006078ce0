import BerthSpec
import CBerth
import Glibc

/// Spawns init from a plan and runs the parent's side of the handshake: cgroup placement,
/// id maps, and the child's reports until init waits before execve.
struct Launcher {
    var plan: ContainerPlan
    var stateDir: String
    var cgroupDir: String?
    /// Rootless exec: a cgroup the caller may not move the process into is skipped (runc
    /// ignores that error when rootless).
    var cgroupOptional = false
    /// cgroup v1 directories the child joins (one per hierarchy) before it goes on.
    var v1Dirs: [String] = []
    /// Runs with the child's pid before it is let go (the systemd driver puts it into
    /// its unit there, and writes the limits and the device filter).
    var beforeGo: ((Int32) throws(BerthError) -> Void)?
    /// Runs the prestart, createRuntime and createContainer hooks for init's pid while
    /// init waits before its root switch.
    var onHooks: ((Int32) throws(BerthError) -> Void)?
    /// `exec` has no exec fifo: its process goes on as soon as the parent commits.
    var withFifo = true
    /// process.terminal: where the pty master goes (a --console-socket path).
    var consoleSocket: String?
    /// process.terminal without a socket (foreground run/exec): Berth receives the master
    /// itself, in `Launched.master`, to relay between its terminal and the container's.
    var relayTerminal = false

    struct Launched {
        var initPid: Int32
        var sync: Int32       // parent's end; `commit` finishes the handshake
        var master: Int32?    // with relayTerminal: the pty master
    }

    /// CHILD_MAX_CGROUP_TASKS in shim.c.
    static let maxSelfJoined = 32

    /// runc's words for a process that cannot join a cgroup (callers and runc's tests
    /// match "adding pid ... cgroup.procs: no such file"), naming the file the kernel
    /// refused: cgroup.procs where the directory is missing, else `tasks`.
    static func joinError(_ dir: String, _ err: Int32) -> BerthError {
        let file = err == ENOENT && !FS.isDirectory(dir) ? "cgroup.procs" : "tasks"
        return BerthError("error adding pid of the new process to cgroups: \(dir)/\(file): \(errnoWords(err))")
    }

    /// Moves fd above the range the container receives, close-on-exec.
    private func lift(_ fd: Int32) throws(BerthError) -> Int32 {
        let floor = Int32(3 + plan.preserveFds)
        if fd >= floor { return fd }
        let n = fcntl(fd, F_DUPFD_CLOEXEC, floor)
        if n < 0 { throw .sys("dup fd") }
        close(fd)
        return n
    }

    func launch() throws(BerthError) -> Launched {
        var owned: [Int32] = []
        defer { for fd in owned { close(fd) } }

        var pair: [Int32] = [-1, -1]
        let r = pair.withUnsafeMutableBufferPointer { cb_socketpair_seqpacket($0.baseAddress) }
        if r < 0 { throw .sys("socketpair", -r) }
        // Berth's end of the handshake: closed on every way out but the last, which hands
        // it to the caller in `Launched`.
        let parentSync = FileDescriptor(try lift(pair[0]))
        let parentEnd = parentSync.raw
        let childEnd = try lift(pair[1])
        owned.append(childEnd)

        // The exec fifo: init holds it read-write and blocks reading it; `start` writes one
        // byte. Opened here so init never needs a path into the state directory.
        var fd: Int32 = -1
        var fifoFd: Int32 = -1
        if withFifo {
            let fifo = stateDir + "/exec.fifo"
            if mkfifo(fifo, 0o600) != 0 { throw .sys("mkfifo \(fifo)") }
            fd = open(fifo, O_RDWR | O_CLOEXEC)
            if fd < 0 { throw .sys("open \(fifo)") }
            fifoFd = try lift(fd)
            owned.append(fifoFd)
        }

        var cgroupFd: Int32 = -1
        if let cg = cgroupDir {
            fd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 { throw .sys("open cgroup \(cg)") }
            cgroupFd = try lift(fd)
            owned.append(cgroupFd)
        }
        var joinFds: [Int32] = []
        for j in plan.joins {
            fd = open(j.path, O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                let e = errno
                throw BerthError(SpecError("linux.namespaces[\(j.index)].path", "\(j.path): \(errnoWords(e))").description)
            }
            let l = try lift(fd)
            owned.append(l)
            joinFds.append(l)
        }

        // cgroup v1: the child joins each hierarchy itself through these (see
        // join_cgroups_v1 in shim.c); hierarchies past the shim's limit are placed below.
        var tasksFds: [Int32] = []
        for d in v1Dirs.prefix(Launcher.maxSelfJoined) {
            fd = open(d + "/tasks", O_WRONLY | O_CLOEXEC)
            if fd < 0 {
                let e = errno
                throw Launcher.joinError(d, e)
            }
            let l = try lift(fd)
            owned.append(l)
            tasksFds.append(l)
        }

        // The seccomp agent's socket is connected now, while its host path is reachable;
        // init sends the listener fd through it when the filter is loaded.
        var listenerFd: Int32 = -1
        if let path = plan.seccomp?.listenerPath {
            do { fd = try connectUnix(path) } catch {
                // runc's words ("failed to connect with seccomp agent"): callers match them.
                throw BerthError("config.json: linux.seccomp.listenerPath: failed to connect with seccomp agent: \(error.message)")
            }
            listenerFd = try lift(fd)
            owned.append(listenerFd)
        }
        // The console socket likewise: connected now, the master is sent from inside.
        var consoleFd: Int32 = -1
        var relayEnd: Int32 = -1
        if relayTerminal {
            var pair: [Int32] = [-1, -1]
            let r = pair.withUnsafeMutableBufferPointer { cb_socketpair_seqpacket($0.baseAddress) }
            if r < 0 { throw .sys("socketpair", -r) }
            relayEnd = pair[0]
            consoleFd = try lift(pair[1])
            owned.append(consoleFd)
        } else if let path = consoleSocket {
            do { fd = try connectUnix(path) } catch {
                throw BerthError("--console-socket: \(error.message)")
            }
            consoleFd = try lift(fd)
            owned.append(consoleFd)
        }

        let cplan = CPlan(plan, syncFd: childEnd, parentSyncFd: parentEnd, fifoFd: fifoFd,
                          cgroupFd: cgroupFd, joinFds: joinFds, tasksFds: tasksFds,
                          listenerFd: listenerFd, consoleFd: consoleFd)
        cplan.raw.cgroup_optional = cgroupOptional ? 1 : 0
        var inCgroup: Int32 = 0
        // The --debug step names are runc's ("nsexec container setup", "child process in
        // init()", ...): tools and runc's own suite look for them in a runtime's debug log.
        debug("nsexec container setup: spawning \(withFifo ? "init" : "the exec'd process") (\(plan.stageMode ? "a first child joins namespaces, then forks" : "one clone3"))")
        let child = withExtendedLifetime(cplan) { cb_spawn(&cplan.raw, &inCgroup) }
        if child < 0 {
            // clone3 into a cgroup that takes no process (cgroup v2's "no internal
            // processes": its controllers are enabled for sub-cgroups): runc's words, which
            // its callers and tests match.
            if let cg = cgroupDir, cgroupFd >= 0, -child == EBUSY {
                throw BerthError("error adding pid of the new process to cgroups: \(cg)/cgroup.procs: \(errnoWords(EBUSY))")
            }
            throw .sys("clone", -child)
        }

        var initPid: Int32 = plan.stageMode ? 0 : child
        func abort(_ err: BerthError) -> BerthError {
            kill(child, SIGKILL)
            if initPid > 0 { kill(initPid, SIGKILL) }
            reap(child)
            if initPid > 0 && initPid != child { reap(initPid) }
            if relayEnd >= 0 { close(relayEnd) }
            return err
        }

        do throws(BerthError) {
            if let cg = cgroupDir, inCgroup == 0 {
                do throws(BerthError) { try Cgroup.place(pid: child, in: cg) } catch {
                    if !cgroupOptional { throw error }
                    debug("rootless: the process stays out of \(cg): \(error.message)")
                }
            }
            // The child waits for the parent's go: it runs no code of the container before
            // it sits in every hierarchy. It joins the v1 ones itself, before anything
            // else (and before a systemd unit may move it: the unit's placement wins).
            if !tasksFds.isEmpty {
                guard let rep = readReport(parentEnd) else { throw Launcher.childDied }
                if rep.stage != BERTH_MSG_CGROUPS_JOINED.rawValue {
                    if rep.stage == BERTH_STAGE_CGROUP_JOIN.rawValue, v1Dirs.indices.contains(Int(rep.index)) {
                        throw Launcher.joinError(v1Dirs[Int(rep.index)], rep.err)
                    }
                    throw BerthError("unable to start container process: " + describe(rep))
                }
            }
            for d in v1Dirs.dropFirst(Launcher.maxSelfJoined) { try Cgroup.place(pid: child, in: d) }
            try beforeGo?(child)
            if !plan.stageMode && plan.newNamespaces.contains(.user) { try writeMaps(child) }
            // Inherited by init when it is forked from the first child.
            if let adj = plan.oomScoreAdj { try writeOomScoreAdj(child, adj) }
        } catch { throw abort(error) }
        if !sendGo(parentEnd) { throw abort(Launcher.childDied) }

        var ready = false
        while !ready || initPid == 0 {
            guard let rep = readReport(parentEnd) else {
                if plan.stageMode && initPid == 0 { reap(child) }
                throw abort(Launcher.childDied)
            }
            switch rep.stage {
            case BERTH_MSG_READY.rawValue:
                ready = true
                debug("child process in init(): set up, waiting before execve")
            case BERTH_MSG_NEED_MAPS.rawValue:
                do { try writeMaps(child) } catch { throw abort(error) }
                if !sendGo(parentEnd) { throw abort(Launcher.childDied) }
            case BERTH_MSG_INIT_PID.rawValue:
                initPid = rep.value
                reap(child)
            case BERTH_MSG_HOOKS.rawValue, BERTH_MSG_MOUNT_FDS.rawValue:
                // In stage mode the first child may not have named init yet.
                while initPid == 0 {
                    guard let more = readReport(parentEnd), more.stage == BERTH_MSG_INIT_PID.rawValue else {
                        throw abort(Launcher.childDied)
                    }
                    initPid = more.value
                    reap(child)
                }
                if rep.stage == BERTH_MSG_MOUNT_FDS.rawValue {
                    if !sendBindSources(parentEnd, initPid) { throw abort(Launcher.childDied) }
                    continue
                }
                do { try onHooks?(initPid) } catch { throw abort(error) }
                if !sendGo(parentEnd) { throw abort(Launcher.childDied) }
            default:
                let err = BerthError("unable to start container process: " + describe(rep))
                if plan.stageMode && initPid == 0 {
                    // init may have failed before stage 1 told us its pid: wait for it.
                    if cb_poll_readable(parentEnd, 1000) == 1, let more = readReport(parentEnd),
                       more.stage == BERTH_MSG_INIT_PID.rawValue {
                        initPid = more.value
                    }
                }
                throw abort(err)
            }
        }
        // The child sent the pty master before it reported ready.
        var master: Int32?
        if relayEnd >= 0 {
            let m = cb_recv_fd(relayEnd)
            close(relayEnd)
            relayEnd = -1
            if m < 0 { throw abort(.sys("receive the container's pty", -m)) }
            // As runc: output arrives untranslated ("\n", not "\r\n"), before the program
            // can print anything, so it reads the same through Berth as without a terminal.
            _ = cb_clear_onlcr(m)
            master = m
        }
        return Launched(initPid: initPid, sync: parentSync.release(), master: master)
    }

    /// One message per bind mount, in order: its source opened (O_PATH) as host root through
    /// /proc/<init>/root, so the fd names the source in init's mount namespace (mount(2)
    /// refuses a bind source from another one); a message without an fd where that fails,
    /// and init then tries the path itself (and reports its own error).
    private func sendBindSources(_ sock: Int32, _ initPid: Int32) -> Bool {
        for m in plan.mounts where m.bind != 0 {
            // Resolved on the host first, as any bind source is: an absolute symlink met
            // below /proc/<init>/root would restart from Berth's own root, in the host's
            // mount namespace, and mount(2) refuses a source from there (EINVAL).
            var source = m.source ?? ""
            if let r = realpath(source, nil) {
                source = String(cString: r)
                free(r)
            }
            let fd = open("/proc/\(initPid)/root" + source, CB_O_PATH | O_CLOEXEC)
            let r = cb_send_fd(sock, fd)
            if fd >= 0 { close(fd) }
            if r != 0 { return false }
        }
        return true
    }

    /// Releases init from its parent-death signal once the container is recorded, and
    /// waits for its acknowledgement (after which `create` may exit).
    /// `notifyState` (for a seccomp agent) and `hookState` (for startContainer hooks) go to
    /// init first, one message each, in that order.
    static func commit(_ l: Launched, notifyState: [UInt8]? = nil, hookState: [UInt8]? = nil) throws(BerthError) {
        defer { close(l.sync) }
        for case let st? in [notifyState, hookState] {
            let n = st.withUnsafeBytes { b in retrying { write(l.sync, b.baseAddress, b.count) } }
            if n != st.count { throw BerthError("container init exited unexpectedly") }
        }
        guard sendGo(l.sync), let rep = readReport(l.sync), rep.stage == BERTH_MSG_ACK.rawValue else {
            throw BerthError("container init exited unexpectedly")
        }
    }

    private func writeOomScoreAdj(_ pid: Int32, _ adj: Int) throws(BerthError) {
        let path = "/proc/\(pid)/oom_score_adj"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw .sys("open \(path)") }
        let ok = FS.writeAll(fd, Array(String(adj).utf8))
        let e = errno
        close(fd)
        if !ok { throw .sys("set process.oomScoreAdj \(adj)", e) }
    }

    private func writeMaps(_ pid: Int32) throws(BerthError) {
        func render(_ maps: [IDMapping]) -> [UInt8] {
            Array(maps.map { "\($0.containerID) \($0.hostID) \($0.size)\n" }.joined().utf8)
        }
        // An unprivileged user may map only its own ids, and its own gid only once
        // setgroups is denied in the namespace (user_namespaces(7): otherwise a member
        // could drop a group that denies it access). Anything more goes through the
        // setuid newuidmap/newgidmap, which check /etc/subuid and /etc/subgid. As runc.
        var tools: [String: String] = [:]
        if Rootless.euid {
            func onlyOwn(_ m: [IDMapping], _ id: UInt32) -> Bool {
                m.count == 1 && m[0].containerID == 0 && m[0].hostID == id && m[0].size == 1
            }
            if onlyOwn(plan.gidMappings, getegid()) {
                let path = "/proc/\(pid)/setgroups"
                let fd = open(path, O_WRONLY | O_CLOEXEC)
                if fd < 0 { throw .sys("open \(path)") }
                let ok = FS.writeAll(fd, Array("deny".utf8))
                let e = errno
                close(fd)
                if !ok { throw .sys("write deny to \(path)", e) }
            } else if let t = Rootless.tool("newgidmap") {
                tools["gid_map"] = t
            }
            if !onlyOwn(plan.uidMappings, geteuid()), let t = Rootless.tool("newuidmap") { tools["uid_map"] = t }
        }
        for (file, maps) in [("uid_map", plan.uidMappings), ("gid_map", plan.gidMappings)] {
            if let tool = tools[file] {
                try Rootless.runMapTool(tool, pid: pid, maps, field: file == "uid_map" ? "uidMappings" : "gidMappings")
                continue
            }
            let path = "/proc/\(pid)/\(file)"
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            if fd < 0 { throw .sys("open \(path)") }
            let ok = FS.writeAll(fd, render(maps))
            let e = errno
            close(fd)
            if !ok { throw .sys("write linux.\(file == "uid_map" ? "uidMappings" : "gidMappings") to \(path)", e) }
        }
    }

    private static let childDied = BerthError("container init exited unexpectedly before it was set up")

    static func sendGo(_ fd: Int32) -> Bool {
        var c: UInt8 = 0x67
        return retrying { write(fd, &c, 1) } == 1
    }

    static func readReport(_ fd: Int32) -> berth_report? {
        var rep = berth_report()
        let n = retrying { read(fd, &rep, MemoryLayout<berth_report>.size) }
        return n == MemoryLayout<berth_report>.size ? rep : nil
    }
    private func sendGo(_ fd: Int32) -> Bool { Launcher.sendGo(fd) }
    private func readReport(_ fd: Int32) -> berth_report? { Launcher.readReport(fd) }

    /// Why capset(2) said EPERM, with the capabilities named: Berth can only
    /// grant what it holds itself, inheritable ones must stay within the bounding set, and
    /// effective ones must be permitted.
    func capsetReason() -> String {
        let c = plan.caps
        let seccompAdmin: UInt64 = plan.seccomp != nil && !plan.noNewPrivileges ? 1 << 21 : 0
        if !plan.inUserNamespace, let own = Capabilities.ofThisProcess() {
            let lacking = (c.permitted | c.effective | seccompAdmin) & ~own.permitted
            if lacking != 0 { return ": berth itself does not hold \(CapabilitySets.names(lacking)), so it cannot grant it to the container" }
        }
        if c.inheritable & ~c.bounding != 0 {
            return ": inheritable \(CapabilitySets.names(c.inheritable & ~c.bounding)) not in the bounding set"
        }
        if c.effective & ~c.permitted != 0 {
            return ": effective \(CapabilitySets.names(c.effective & ~c.permitted)) not in the permitted set"
        }
        return ""
    }

    /// A child failure record in words: the step, the object, the errno.
    func describe(_ r: berth_report) -> String {
        let why = errnoWords(r.err)
        let i = Int(r.index)
        func mount(_ i: Int) -> String {
            guard let m = plan.mounts.first(where: { $0.index == i }) else { return "mounts[\(i)]" }
            let what = m.bind != 0 ? (m.source ?? "") : (m.fstype ?? "")
            return "\(what) on /\(m.dest) (mounts[\(i)])"
        }
        switch berth_stage(rawValue: UInt32(bitPattern: r.stage)) {
        case BERTH_STAGE_SETNS:
            let j = plan.joins.first { $0.index == i }
            return "join \(j?.kind.rawValue ?? "") namespace \(j?.path ?? "") (linux.namespaces[\(i)]): \(why)"
        case BERTH_STAGE_UNSHARE: return "create namespaces: \(why)"
        case BERTH_STAGE_TIMENS: return "set linux.timeOffsets: \(why)"
        case BERTH_STAGE_FORK_INIT: return "fork init: \(why)"
        case BERTH_STAGE_SETID_ROOT: return "become root in the user namespace (is uid/gid 0 mapped?): \(why)"
        case BERTH_STAGE_CGROUPNS: return "create cgroup namespace: \(why)"
        case BERTH_STAGE_HOSTNAME: return "set hostname \"\(plan.hostname ?? "")\": \(why)"
        case BERTH_STAGE_DOMAINNAME: return "set domainname \"\(plan.domainname ?? "")\": \(why)"
        case BERTH_STAGE_LOOPBACK: return "bring up lo in the new network namespace: \(why)"
        case BERTH_STAGE_CGROUP_JOIN: return "join cgroup hierarchy \(i + 1): \(why)"
        case BERTH_STAGE_MOUNT_LABEL: return "set the SELinux label of \(mount(i)) (linux.mountLabel): \(why)"
        case BERTH_STAGE_PRIVATE_PROC: return "open a procfs the container cannot cover, for its security attributes: \(why)"
        case BERTH_STAGE_PROC_ATTR:
            guard plan.attrWrites.indices.contains(i / 2) else { return "write /proc/self/attr: \(why)" }
            let w = plan.attrWrites[i / 2]
            let file = i % 2 == 1 ? (w.fallback ?? w.file) : w.file
            let hint = r.err == ENOENT && i % 2 == 0 ? w.hint.map { " (\($0))" } ?? "" : ""
            return "\(w.what): write /proc/self/attr/\(file): \(why)\(hint)"
        case BERTH_STAGE_ROOT_PROPAGATION: return "make / slave in the container's mount namespace: \(why)"
        case BERTH_STAGE_ROOTFS_BIND: return "bind rootfs \(plan.rootfs) onto itself: \(why)"
        case BERTH_STAGE_ROOTFS_OPEN: return "open rootfs \(plan.rootfs): \(why)"
        case BERTH_STAGE_MOUNT_DEST: return "create mount destination for \(mount(i)) inside the rootfs: \(why)"
        case BERTH_STAGE_MOUNT: return "mount \(mount(i)): \(why)"
        case BERTH_STAGE_MOUNT_REMOUNT: return "remount \(mount(i)) with its flags: \(why)"
        case BERTH_STAGE_MOUNT_PROPAGATION: return "set propagation of \(mount(i)): \(why)"
        case BERTH_STAGE_MOUNT_SETATTR: return "set recursive attributes of \(mount(i)): \(why)"
        case BERTH_STAGE_MOUNT_COPYUP: return "tmpcopyup: copy what \(mount(i)) covers into it: \(why)"
        case BERTH_STAGE_MOUNT_READONLY: return "remount \(mount(i)) read-only: \(why)"
        case BERTH_STAGE_MOUNT_NOT_DIR:
            // runc's words: callers and test suites match them.
            let fs = plan.mounts.first { $0.index == i }?.fstype ?? "proc"
            return "filesystem \"\(fs)\" must be mounted on ordinary directory (\(mount(i)) is a symlink or not a directory)"
        case BERTH_STAGE_PROC_CHECK: return "\(mount(i)): the mount is not procfs: \(why)"
        case BERTH_STAGE_DEVICE:
            let d = i >= 0 && i < plan.devices.count ? plan.devices[i] : nil
            let ref = d.map { $0.index >= 0 ? " (linux.devices[\($0.index)])" : "" } ?? ""
            return "create device /\(d?.dest ?? "?")\(ref): \(why)"
        case BERTH_STAGE_SYMLINK:
            let s = i >= 0 && i < plan.symlinks.count ? plan.symlinks[i] : nil
            return "create symlink /\(s?.dest ?? "?") -> \(s?.target ?? "?"): \(why)"
        case BERTH_STAGE_PIVOT:
            let how = !plan.setupRootfs ? "chroot" : plan.noPivot ? "move mount and chroot" : "pivot_root"
            return "\(how) into \(plan.rootfs): \(why)"
        case BERTH_STAGE_ROOT_READONLY: return "remount root read-only (root.readonly): \(why)"
        case BERTH_STAGE_ROOT_SHARED: return "set root propagation (linux.rootfsPropagation): \(why)"
        case BERTH_STAGE_CHDIR: return "chdir to process.cwd \(plan.cwd): \(why)"
        case BERTH_STAGE_CWD_OUTSIDE: return "process.cwd \(plan.cwd) is outside the container: \(why)"
        case BERTH_STAGE_SETGROUPS: return "setgroups (process.user.additionalGids): \(why)"
        case BERTH_STAGE_SETGID: return "setgid \(plan.gid) (process.user.gid): \(why)"
        case BERTH_STAGE_SETUID: return "setuid \(plan.uid) (process.user.uid): \(why)"
        case BERTH_STAGE_KEYRING:
            let name = plan.keyringName.map { " \"\($0)\"" } ?? ""
            return i == 1 ? "make the session keyring\(name) searchable: \(why)" : "join the session keyring\(name): \(why)"
        case BERTH_STAGE_LOOKUP:
            // runc's words for a missing program (callers match them); a name of kilobytes
            // is cut short, and other failures name the field.
            let full = plan.args[0]
            let a = full.utf8.count > 200 ? "\(full.prefix(60))... (\(full.utf8.count) bytes)" : full
            if r.err == ENOENT && !full.contains("/") {
                return "exec: \"\(a)\": executable file not found in $PATH"
            }
            if r.err == ENOENT { return "exec: \"\(a)\": stat \(a): no such file or directory" }
            return "exec: \"\(a)\" (process.args[0]): \(why)"
        case BERTH_STAGE_PRESERVE_FDS: return "pass fd \(i) (--preserve-fds): \(why)"
        case BERTH_STAGE_CLOSE_FDS: return "close fds: \(why)"
        case BERTH_STAGE_CAPS_BOUNDING: return "drop capability \(i) from the bounding set: \(why)"
        case BERTH_STAGE_KEEPCAPS: return "keep capabilities across the user switch: \(why)"
        case BERTH_STAGE_CAPSET: return "set process.capabilities: \(why)" + (r.err == EPERM ? capsetReason() : "")
        case BERTH_STAGE_CAPS_AMBIENT: return "raise ambient capability \(i) (it must be permitted and inheritable too): \(why)"
        case BERTH_STAGE_RLIMIT:
            let type = plan.rlimits.first { $0.index == i }.flatMap { l in rlimitNumbers.first { $0.value == l.resource }?.key }
            return "set process.rlimits[\(i)] (\(type ?? "unknown")): \(why)"
        case BERTH_STAGE_NO_NEW_PRIVS: return "set process.noNewPrivileges: \(why)"
        case BERTH_STAGE_PERSONALITY: return "set linux.personality: \(why)"
        case BERTH_STAGE_IOPRIO: return "set process.ioPriority: \(why)"
        case BERTH_STAGE_SCHEDULER: return "set process.scheduler: \(why)"
        case BERTH_STAGE_CPU_AFFINITY: return "set process.execCPUAffinity.\(i == 0 ? "initial" : "final"): \(why)"
        case BERTH_STAGE_SYSCTL:
            let k = i >= 0 && i < plan.sysctls.count ? plan.sysctls[i].key : "?"
            return "set linux.sysctl \(k): \(why)"
        case BERTH_STAGE_PROC_SYS: return "linux.sysctl: the container's /proc/sys is missing or not procfs: \(why)"
        case BERTH_STAGE_DEV_NULL: return "linux.maskedPaths: the container's /dev/null is not the real null device: \(why)"
        case BERTH_STAGE_MASK: return "mask linux.maskedPaths[\(i)] /\(i >= 0 && i < plan.maskedPaths.count ? plan.maskedPaths[i] : "?"): \(why)"
        case BERTH_STAGE_READONLY_PATH: return "make linux.readonlyPaths[\(i)] /\(i >= 0 && i < plan.readonlyPaths.count ? plan.readonlyPaths[i] : "?") read-only: \(why)"
        case BERTH_STAGE_CONSOLE:
            let step = ["open the container's /dev/pts/ptmx (is devpts mounted on /dev/pts?)",
                        "check /dev/pts/ptmx: it is not the real pty multiplexer",
                        "set up the pty", "bind the pty over /dev/console", "send the pty master to the console socket",
                        "make the pty the process's terminal"]
            return "process.terminal: \(i >= 0 && i < step.count ? step[i] : "console"): \(why)"
        case BERTH_STAGE_SYNC: return "sync with parent: \(why)"
        default: return "step \(r.stage): \(why)"
        }
    }
}

/// A connected unix stream socket (close-on-exec) to `path`.
func connectUnix(_ path: String) throws(BerthError) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { throw .sys("socket") }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
        close(fd)
        throw BerthError("\(path): socket path too long")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { b in for (i, c) in bytes.enumerated() { b[i] = c } }
    let r = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    if r != 0 {
        let e = errno
        close(fd)
        throw BerthError("connect \(path): \(errnoWords(e))")
    }
    return fd
}

/// Waits for a child of ours to end; returns its wait status or nil.
@discardableResult
func reap(_ pid: Int32) -> Int32? {
    var st: Int32 = 0
    let r = retrying { waitpid(pid, &st, 0) }
    return r == pid ? st : nil
}
