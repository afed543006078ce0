import BerthSpec
import CBerth
import Glibc

/// Runs OCI hooks: each gets the container's state on stdin, its own args and env, and
/// its timeout. Hooks of the container namespace (createContainer, startContainer) join
/// init's namespaces first.
enum HookRunner {
    /// The state a hook reads on stdin.
    static func state(_ st: StoredState, status: Status, pid: Int32) -> [UInt8] {
        var f: [(String, JSON)] = [
            ("ociVersion", .string(ociSpecVersion)), ("id", .string(st.id)), ("status", .string(status.rawValue)),
            ("pid", .int(Int64(pid))), ("bundle", .string(st.bundle)),
        ]
        if let a = st.annotations, !a.isEmpty { f.append(("annotations", .object(a.keys.sorted().map { ($0, .string(a[$0]!)) }))) }
        return Array(JSON.object(f).render(indent: nil).utf8)
    }

    /// The namespaces of `pid` that are not ours, as /proc paths, the user namespace first
    /// (joining it gives the rights to join the others). `exec` and the container-namespace
    /// hooks join these.
    static func namespacesToJoin(of pid: Int32) -> [(path: String, kind: NamespaceKind)] {
        let files: [(String, NamespaceKind)] = [("user", .user), ("mnt", .mount), ("pid", .pid), ("net", .network),
                                                ("ipc", .ipc), ("uts", .uts), ("cgroup", .cgroup), ("time", .time)]
        return files.compactMap { name, kind in
            let path = "/proc/\(pid)/ns/\(name)"
            guard let theirs = readLink(path), theirs != readLink("/proc/self/ns/\(name)") else { return nil }
            return (path, kind)
        }
    }

    /// fds of init's namespaces that differ from ours, with their CLONE_NEW* types.
    static func containerNamespaces(of pid: Int32) -> [(fd: Int32, type: Int32)] {
        namespacesToJoin(of: pid).compactMap { path, kind in
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            return fd >= 0 ? (fd, ContainerPlan.cloneFlag(kind)) : nil
        }
    }

    static func readLink(_ path: String) -> String? {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { readlink(path, $0, b.count) }
        }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    /// Runs the hooks of `kind` in order; the first failure is thrown, naming the hook.
    /// `cwd`: where the hooks start (createContainer: the container's root, before the
    /// switch); by default Berth's own working directory, as runc's hooks inherit runc's.
    static func run(_ kind: HookKind, _ hooks: [Hook], state: [UInt8], inContainerOf pid: Int32? = nil,
                    cwd: String? = nil) throws(BerthError) {
        guard !hooks.isEmpty else { return }
        let ns = pid.map { containerNamespaces(of: $0) } ?? []
        defer { for n in ns { close(n.fd) } }
        for i in hooks.indices { try runOne(kind, i, hooks[i], state: state, namespaces: ns, cwd: cwd) }
    }

    /// poststart and poststop: runtime-spec says a failure is logged as a warning and the
    /// remaining hooks and the lifecycle go on. runc stops at a failing one (and fails
    /// `start`); Berth follows the spec, as crun does.
    static func runWarning(_ kind: HookKind, _ hooks: [Hook], state: [UInt8]) {
        for i in hooks.indices {
            do { try runOne(kind, i, hooks[i], state: state, namespaces: [], cwd: nil) } catch { warn(error.message) }
        }
    }

    private static func runOne(_ kind: HookKind, _ i: Int, _ h: Hook, state: [UInt8],
                               namespaces ns: [(fd: Int32, type: Int32)], cwd: String?) throws(BerthError) {
        debug("running \(kind.rawValue) hook \(i): \(h.path)")
        var output = [CChar](repeating: 0, count: 4096)
        var outLen = 0
        let status: Int32 = withCStrings(h.args ?? [h.path]) { argv in
            func run(_ envp: UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
                let fds = ns.map(\.fd), types = ns.map(\.type)
                return state.withUnsafeBytes { input in
                    cb_run_hook(h.path, argv, envp, fds, types, Int32(ns.count), input.baseAddress, input.count,
                                &output, output.count, &outLen, Int32((h.timeout ?? 0) * 1000), cwd)
                }
            }
            // A hook without `env` inherits Berth's environment, as runc's inherit runc's
            // (crun does the same); `env: []` is an empty one.
            guard let env = h.env else { return run(UnsafePointer(environ)) }
            return withCStrings(env) { run($0) }
        }
        let where_ = "\(kind.rawValue) hook \(i) (\(h.path))"
        let text = String(decoding: output[0..<outLen].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .split(whereSeparator: { $0 == "\n" }).joined(separator: " | ")
        let said = text.isEmpty ? "" : ": output: \(text)"
        if status == -ETIMEDOUT { throw BerthError("\(where_): timed out after \(h.timeout ?? 0)s\(said)") }
        if status < 0 { throw BerthError("\(where_): \(errnoWords(-status))") }
        if cb_wait_status_exited(status) != 0 {
            let code = cb_wait_exit_status(status)
            if code != 0 { throw BerthError("\(where_): exit status \(code)\(said)") }
        } else if cb_wait_signaled(status) != 0 {
            throw BerthError("\(where_): killed by signal \(cb_wait_term_signal(status))\(said)")
        }
    }
}

/// Calls body with a NULL-terminated C array of the strings, valid during the call.
public func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    ptrs.append(nil)
    defer { for p in ptrs { free(p) } }
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}

extension Hooks {
    var json: JSON {
        .object(HookKind.allCases.compactMap { k in
            let list = self[k]
            if list.isEmpty { return nil }
            return (k.rawValue, .array(list.map { h in
                var f: [(String, JSON)] = [("path", .string(h.path))]
                if let a = h.args { f.append(("args", .array(a.map { .string($0) }))) }
                if let e = h.env { f.append(("env", .array(e.map { .string($0) }))) }
                if let t = h.timeout { f.append(("timeout", .int(Int64(t)))) }
                return .object(f)
            }))
        })
    }
}
