import BerthSpec
import CBerth
import Glibc

/// cgroup v2 directories: the hierarchy's mount point, paths, creation, limits,
/// placement, freezing and kill.
struct Cgroup {
    /// Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on a pure v2 host,
    /// /sys/fs/cgroup/unified on a hybrid one. The two usual places are checked with
    /// statfs (the filesystem must really be cgroup2); mountinfo is read only when
    /// neither is.
    static func mountPoint() -> String? {
        for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            if cb_fs_magic(candidate) == 0x6367_7270 { return candidate } // CGROUP2_SUPER_MAGIC
        }
        return mountPoint(mountinfo: FS.readString("/proc/self/mountinfo"))
    }

    static func mountPoint(mountinfo: String?) -> String? {
        guard let mountinfo else { return nil }
        for line in mountinfo.split(separator: "\n") {
            // ... mountpoint ... - fstype source options
            guard let dash = line.firstRange(of: " - ") else { continue }
            let post = line[dash.upperBound...].split(separator: " ")
            guard post.first == "cgroup2" else { continue }
            let pre = line[..<dash.lowerBound].split(separator: " ")
            if pre.count > 4 { return unescapeMountinfo(String(pre[4])) }
        }
        return nil
    }

    static func unescapeMountinfo(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == 0x5c, i + 3 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else { out.append(b[i]); i += 1 }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// runc's reading of linux.cgroupsPath for cgroupfs: absolute or relative, both under the
    /// cgroup2 root; empty means a default derived from the id.
    /// `own` is this process's cgroup ("0::" path): as with runc, a relative cgroupsPath
    /// lives next to it (below its parent; ".." cannot climb out). Rootless, an empty
    /// cgroupsPath means runc's default, the container's id next to it too: a user's
    /// delegated subtree (systemd's user@UID.service) then holds the container, where
    /// Berth's own default, /berth/<id>, is root's.
    static func path(for cgroupsPath: String?, id: String, mount: String, own: String? = nil,
                     rootless: Bool = false) throws(BerthError) -> String {
        let rel = (cgroupsPath ?? "").isEmpty ? (rootless ? id : "/berth/\(id)") : cgroupsPath!
        if rel.contains(":") {
            throw BerthError("config.json: linux.cgroupsPath: \"\(rel)\" looks like a systemd slice:prefix:name; berth manages cgroupfs paths only")
        }
        var cleaned = Paths.clean("/" + rel)
        if !rel.hasPrefix("/"), let own {
            let mine = Paths.clean("/" + own)
            let parent = mine == "/" ? "" : String(mine[..<(mine.lastIndex(of: "/") ?? mine.startIndex)])
            cleaned = parent + cleaned
        }
        if cleaned == "/" { throw BerthError("config.json: linux.cgroupsPath: must not be the cgroup root") }
        return mount + cleaned
    }

    /// The directories `create` would make, deepest last.
    static func missing(_ dir: String, mount: String) -> [String] {
        var out: [String] = []
        var cur = mount
        for comp in dir.dropFirst(mount.count).split(separator: "/") {
            cur += "/" + comp
            if !FS.isDirectory(cur) { out.append(cur) }
        }
        return out
    }

    /// The cgroup v2 path in /proc/PID/cgroup text (the "0::" line).
    static func ownPath(_ text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("0::") { return String(line.dropFirst(3)) }
        return nil
    }

    /// Whether this process may make `dir` (or join it, where it exists) without
    /// privileges: the deepest existing level writable, the directory's cgroup.procs
    /// writable, and, on cgroup v2, `moveFrom` (this process's own cgroup) and `dir`
    /// under a common ancestor whose cgroup.procs it may write (the kernel's rule for a
    /// migration by an unprivileged process).
    static func usableWithoutPrivileges(_ dir: String, mount: String, moveFrom: String?) -> Bool {
        var deepest = dir
        while !FS.isDirectory(deepest) && deepest.count > mount.count {
            deepest = String(deepest[..<(deepest.lastIndex(of: "/") ?? deepest.startIndex)])
        }
        if access(deepest, W_OK | X_OK) != 0 { return false }
        if FS.isDirectory(dir) && access(dir + "/cgroup.procs", W_OK) != 0 { return false }
        guard let from = moveFrom else { return true }
        var common = from
        while !(dir == common || dir.hasPrefix(common + "/")) && common.count > mount.count {
            common = String(common[..<(common.lastIndex(of: "/") ?? common.startIndex)])
        }
        return access(common + "/cgroup.procs", W_OK) == 0
    }

    /// The host uid the container's cgroup is handed to, as runc's systemd v2 driver does:
    /// only with a cgroup namespace of its own and a read-write cgroup mount on
    /// /sys/fs/cgroup, to the host uid of the process's user (its root, usually, mapped
    /// out of a user namespace). The namespace confines what the owner reaches to the container's own subtree;
    /// without one (or with a read-only mount) nothing is handed over.
    static func delegateOwner(_ spec: Spec, plan: ContainerPlan) -> uid_t? {
        guard plan.newNamespaces.contains(.cgroup) else { return nil }
        let rw = (spec.mounts ?? []).contains { (m: Mount) -> Bool in
            guard m.source == "cgroup", Paths.clean(m.destination) == "/sys/fs/cgroup" else { return false }
            let last: String? = (m.options ?? []).last { $0 == "ro" || $0 == "rw" }
            return last != "ro"
        }
        guard rw else { return nil }
        let uid: UInt32 = spec.process?.user.uid ?? 0
        // Without a user namespace the process's uid is the host's.
        guard plan.inUserNamespace else { return uid }
        for m in spec.linux?.uidMappings ?? [] where uid >= m.containerID && UInt64(uid) < UInt64(m.containerID) + UInt64(m.size) {
            return m.hostID + (uid - m.containerID)
        }
        return nil
    }

    /// Hands `dir` to `uid`: the directory and the files the kernel lists for delegation
    /// (/sys/kernel/cgroup/delegate; cgroups(7)'s three before 4.15). Files a kernel lacks
    /// are skipped.
    static func delegate(_ dir: String, to uid: uid_t) throws(BerthError) {
        if chown(dir, uid, gid_t.max) != 0 { throw .sys("chown \(dir)") }
        let listed = (FS.readString("/sys/kernel/cgroup/delegate") ?? "").split(separator: "\n").map(String.init)
        for f in listed.isEmpty ? ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] : listed {
            if chown(dir + "/" + f, uid, gid_t.max) != 0 && errno != ENOENT { throw .sys("chown \(dir)/\(f)") }
        }
    }

    /// Creates the directory and missing parents below `mount`. Returns the directories
    /// Berth made, deepest last, so delete removes exactly those.
    static func create(_ dir: String, mount: String) throws(BerthError) -> [String] {
        // An existing cgroup is joined, even with processes in it, as runc 1.1 does (create
        // warns about those).
        if FS.isDirectory(dir) { return [] }
        var made: [String] = []
        var cur = mount
        for comp in dir.dropFirst(mount.count).split(separator: "/") {
            cur += "/" + comp
            if mkdir(cur, 0o755) == 0 { made.append(cur) }
            else if errno != EEXIST {
                let e = errno
                for d in made.reversed() { rmdir(d) }
                throw .sys("create cgroup \(cur)", e)
            }
        }
        return made
    }

    /// As runc on a pure cgroup v2 host: every controller the root has is enabled in each
    /// ancestor's cgroup.subtree_control, so the container's cgroup offers them all (inside
    /// it, cgroup.controllers lists them; a sub-cgroup made there can use them). Best
    /// effort, as with runc: a controller an ancestor cannot enable (processes in it, a
    /// threaded subtree) is left out, and a limit that needs it fails later, by name. Not
    /// on a hybrid host, whose v2 hierarchy Berth only borrows.
    static func delegateControllers(to dir: String, mount: String) {
        guard mount == "/sys/fs/cgroup" else { return }
        let all = words(FS.readString(mount + "/cgroup.controllers"))
        if all.isEmpty { return }
        _ = enable(all, above: dir, mount: mount, oneByOne: true)
    }

    private static func words(_ s: String?) -> [String] {
        (s ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    }

    /// Enables `controllers` in cgroup.subtree_control of `mount` and of every ancestor of
    /// `dir` below it (not `dir` itself). Returns the first failure (errno and the file);
    /// with `oneByOne`, a refused batch is retried controller by controller, and failures
    /// are left for the caller to ignore.
    private static func enable(_ controllers: [String], above dir: String, mount: String,
                               oneByOne: Bool) -> (errno: Int32, file: String, missing: [String])? {
        var cur = mount
        for comp in dir.dropFirst(mount.count).split(separator: "/") {
            let enabled = Set(words(FS.readString(cur + "/cgroup.subtree_control")))
            let missing = controllers.filter { !enabled.contains($0) }
            if !missing.isEmpty {
                let file = cur + "/cgroup.subtree_control"
                let fd = open(file, O_WRONLY | O_CLOEXEC)
                var ok = fd >= 0 && FS.writeAll(fd, Array(missing.map { "+" + $0 }.joined(separator: " ").utf8))
                let e = errno
                if !ok && oneByOne && fd >= 0 {
                    for c in missing { _ = FS.writeAll(fd, Array(("+" + c).utf8)) }
                    ok = true
                }
                if fd >= 0 { close(fd) }
                if !ok { return (e, file, missing) }
            }
            cur += "/" + comp
        }
        return nil
    }

    /// Writes `linux.resources` into the cgroup. Controllers are checked against the
    /// hierarchy's root first (a missing one is an error naming the field), then enabled in
    /// each ancestor's cgroup.subtree_control down to the container's parent.
    static func apply(_ writes: [CgroupWrite], to dir: String, mount: String) throws(BerthError) {
        guard !writes.isEmpty else { return }
        let available = Set(words(FS.readString(mount + "/cgroup.controllers")))
        var needed: [String] = []
        for w in writes {
            guard let c = w.controller else { continue }
            if !available.contains(c) {
                throw BerthError("config.json: linux.resources.\(w.path): the cgroup v2 \(c) controller is not available on this host (\(mount)/cgroup.controllers: \(available.sorted().joined(separator: " ")))")
            }
            if !needed.contains(c) { needed.append(c) }
        }
        if let f = enable(needed, above: dir, mount: mount, oneByOne: false) {
            throw .sys("enable \(f.missing.joined(separator: ", ")) in \(f.file)", f.errno)
        }
        for w in writes {
            let path = dir + "/" + w.file
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            if fd < 0 {
                let e = errno
                if e == ENOENT && w.optional { continue }
                // The system's words ("no such file or directory" for a file the kernel
                // lacks), as runc's and crun's errors carry them: tools match them.
                throw .sys("config.json: linux.resources.\(w.path): open \(path)", e)
            }
            let ok = FS.writeAll(fd, Array(w.value.utf8))
            let e = errno
            close(fd)
            if !ok { throw BerthError("config.json: linux.resources.\(w.path): write \"\(w.value)\" to \(w.file): \(errnoWords(e))") }
        }
    }

    /// Moves `pid` into the cgroup (v1 or v2), in runc's words on failure (callers and its
    /// tests match "adding pid").
    static func place(pid: Int32, in dir: String) throws(BerthError) {
        let fd = open(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw .sys("unable to join cgroups: adding pid \(pid) to cgroups: open \(dir)/cgroup.procs") }
        defer { close(fd) }
        if !FS.writeAll(fd, Array(String(pid).utf8)) {
            throw .sys("unable to join cgroups: adding pid \(pid) to cgroups: write \(dir)/cgroup.procs")
        }
    }

    static func pids(_ dir: String) -> [Int32] {
        (FS.readString(dir + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    /// The processes of `dir` and of every cgroup below it.
    static func collectPids(_ dir: String, into out: inout [Int32], depth: Int) {
        out += pids(dir)
        guard depth < 64 else { return }
        for name in FS.listDirectory(dir) where FS.isDirectory(dir + "/" + name) {
            collectPids(dir + "/" + name, into: &out, depth: depth + 1)
        }
    }

    /// SIGKILL for the whole subtree through cgroup.kill (cgroup v2, kernel 5.14+): atomic,
    /// and it reaches processes forked meanwhile. False where there is no such file.
    static func kill(_ dir: String) -> Bool {
        let fd = open(dir + "/cgroup.kill", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        let ok = FS.writeAll(fd, [0x31])
        close(fd)
        return ok
    }

    /// Signals every process in the cgroup and below it.
    static func signalAll(_ dir: String, signal sig: Int32) -> Bool {
        if sig == SIGKILL && kill(dir) { return true }
        var all: [Int32] = []
        collectPids(dir, into: &all, depth: 0)
        var any = false
        for p in all where Glibc.kill(p, sig) == 0 { any = true }
        return any
    }

    /// Freezes (or thaws) through cgroup.freeze, then waits until cgroup.events reports
    /// the new state.
    static func setFrozen(_ cg: String, _ frozen: Bool) throws(BerthError) {
        let fd = open(cg + "/cgroup.freeze", O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw .sys("open \(cg)/cgroup.freeze") }
        let ok = FS.writeAll(fd, [frozen ? 0x31 : 0x30])
        let e = errno
        close(fd)
        if !ok { throw .sys("write \(cg)/cgroup.freeze", e) }
        let want = frozen ? "frozen 1" : "frozen 0"
        for _ in 0..<1000 {
            if (FS.readString(cg + "/cgroup.events") ?? "").split(separator: "\n").contains(where: { $0 == want }) { return }
            usleep(1000)
        }
        if frozen {
            // Never leave a half-frozen container behind.
            let fd = open(cg + "/cgroup.freeze", O_WRONLY | O_CLOEXEC)
            if fd >= 0 { _ = FS.writeAll(fd, [0x30]); close(fd) }
        }
        throw BerthError("the cgroup did not become \(frozen ? "frozen" : "thawed") within a second")
    }

    /// Removes every cgroup below `dir` (not `dir`), deepest first; their processes are
    /// killed by the caller's cgroup.kill, which reaches the whole subtree.
    static func removeChildren(_ dir: String, depth: Int = 0) {
        guard depth < 64 else { return }
        for name in FS.listDirectory(dir) where FS.isDirectory(dir + "/" + name) {
            removeChildren(dir + "/" + name, depth: depth + 1)
            for _ in 0..<100 {
                if rmdir(dir + "/" + name) == 0 || errno != EBUSY { break }
                usleep(10_000)
            }
        }
    }

    /// Removes the directory once it is empty; kills what is left first (with
    /// `killRemaining`). Waits up to ~2 s for exiting processes to leave.
    static func destroy(_ dir: String, made: [String], killRemaining: Bool = true) {
        if FS.isDirectory(dir) && made.contains(dir) {
            for attempt in 0..<200 {
                if rmdir(dir) == 0 || errno == ENOENT { break }
                if errno != EBUSY && errno != ENOTEMPTY { break }
                if !killRemaining && !pids(dir).isEmpty && attempt >= 20 {
                    warn("cgroup \(dir) still holds processes that are not the container's; left in place")
                    break
                }
                if killRemaining && attempt % 20 == 0 { _ = signalAll(dir, signal: SIGKILL) }
                // Sub-cgroups the container made (v2 delegation) also make rmdir EBUSY:
                // gone first, deepest first, as runc removes them.
                removeChildren(dir)
                usleep(10_000)
            }
        }
        // Parents Berth made (e.g. the default /berth) go too once nothing else uses them.
        for d in made.reversed() where d != dir { rmdir(d) }
    }
}
