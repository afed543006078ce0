import BerthSpec
import CBerth
import Glibc

/// Running without real root, decided as runc decides. Two questions: is the
/// effective uid unprivileged (`euid`: the user namespace's maps need setgroups denied or
/// newuidmap, and no setgroups in init), and may Berth own no cgroup (`cgroups`: also true
/// for root inside a user namespace someone else made, as rootless Podman runs its
/// runtime).
public enum Rootless {
    public static var euid: Bool { geteuid() != 0 }

    /// This process is in a user namespace other than the initial one: its uid_map is not
    /// the identity map over every id (runc's userns.RunningInUserNS). Read once.
    public static let inUserNamespace: Bool = {
        guard let text = FS.readString("/proc/self/uid_map") else { return false }
        let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        return !(f.count == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
    }()

    /// `--rootless true|false|auto` (runc's flag; Go's boolean spellings, empty is auto):
    /// auto means an unprivileged euid, or root in a user namespace unless the systemd
    /// driver talks to a systemd that root owns (root's bus is reachable there).
    public static func cgroups(flag: String?, systemdCgroup: Bool) throws(BerthError) -> Bool {
        switch flag ?? "auto" {
        case "", "auto": break
        case "1", "t", "T", "true", "TRUE", "True": return true
        case "0", "f", "F", "false", "FALSE", "False": return false
        case let v: throw BerthError("invalid value \"\(v)\" for flag --rootless: want true, false or auto")
        }
        if euid { return true }
        if !inUserNamespace { return false }
        if systemdCgroup { return !FS.exists("/run/systemd/private") || access("/run/systemd/private", W_OK) != 0 }
        return true
    }

    /// The state root when --root is not given: $XDG_RUNTIME_DIR/berth for an unprivileged
    /// user, and for root in a user namespace whose USER is not "root" (runc's rule), else
    /// /run/berth.
    public static func defaultRoot() -> String {
        guard let xdg = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !xdg.isEmpty else { return "/run/berth" }
        if !euid {
            guard inUserNamespace else { return "/run/berth" }
            if let u = getenv("USER").map({ String(cString: $0) }), u == "root" { return "/run/berth" }
        }
        return xdg + "/berth"
    }

    /// As runc: the directory in $XDG_RUNTIME_DIR is made at once, owner-only and sticky
    /// (the XDG spec's mark for files its cleaner must keep).
    public static func prepareRoot(_ root: String) throws(BerthError) {
        do { try FS.mkdirAll(root, mode: 0o700) } catch {
            throw BerthError("the path in $XDG_RUNTIME_DIR must be writable by the user: \(error.message)")
        }
        if chmod(root, 0o1700) != 0 {
            throw .sys("the path in $XDG_RUNTIME_DIR must be writable by the user: chmod \(root)")
        }
    }

    /// `uid` as the parent user namespace sees it (/proc/self/uid_map), itself outside one.
    static func outsideUid(_ uid: UInt32) -> UInt32 {
        for line in (FS.readString("/proc/self/uid_map") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ").compactMap { UInt64($0) }
            guard f.count == 3 else { continue }
            if UInt64(uid) >= f[0] && UInt64(uid) < f[0] + f[2] { return UInt32(truncatingIfNeeded: f[1] + UInt64(uid) - f[0]) }
        }
        return uid
    }

    /// A program in $PATH (newuidmap, newgidmap), as runc looks them up.
    static func tool(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let p = dir + "/" + name
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    /// `newuidmap PID C H S [C H S...]` (or newgidmap); its complaint becomes the error.
    static func runMapTool(_ tool: String, pid: Int32, _ maps: [IDMapping], field: String) throws(BerthError) {
        var args = [tool, String(pid)]
        for m in maps { args += [String(m.containerID), String(m.hostID), String(m.size)] }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw .sys("pipe") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, tool, &actions, nil, &cargs, environ)
        close(fds[1])
        var output: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while rc == 0 {
            let n = read(fds[0], &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if output.count < 4096 { output += buf[0..<n] }
        }
        close(fds[0])
        if rc != 0 { throw .sys("linux.\(field): run \(tool)", rc) }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        if !(cb_wait_status_exited(status) != 0 && cb_wait_exit_status(status) == 0) {
            let said = String(decoding: output, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "failed"
            throw BerthError("linux.\(field): \(args.joined(separator: " ")): \(said)")
        }
    }

    /// The name /etc/passwd gives `uid` (no NSS in a static binary, as runc's own parser).
    static func userName(_ uid: UInt32) -> String? {
        for line in (FS.readString("/etc/passwd") ?? "").split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count > 2, UInt32(f[2]) == uid { return String(f[0]) }
        }
        return nil
    }
}
