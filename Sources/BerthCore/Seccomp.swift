import BerthSpec
import CBerth
import Glibc

/// A seccomp profile compiled to a BPF program by libseccomp, in the parent. The child
/// only hands the bytes to seccomp(2).
struct SeccompProgram {
    var bpf: [UInt8]
    var flags: UInt32
    var listenerPath: String?
    var listenerMetadata: String?

    /// Compiles `linux.seccomp`. Syscall names libseccomp does not know are skipped with a
    /// debug line, as runc does; rules whose action is the default one are left out
    /// (they would change nothing, and libseccomp refuses them).
    static func compile(_ sc: Seccomp) throws(SpecError) -> SeccompProgram {
        func action(_ name: String, _ errnoRet: UInt32?) -> UInt32 {
            let base = seccompActions[name]!
            switch name {
            case "SCMP_ACT_ERRNO": return base | ((errnoRet ?? sc.defaultErrnoRet ?? UInt32(EPERM)) & 0xffff)
            case "SCMP_ACT_TRACE": return base | ((errnoRet ?? sc.defaultErrnoRet ?? UInt32(EPERM)) & 0xffff)
            default: return base
            }
        }
        let defaultAction = action(sc.defaultAction, sc.defaultErrnoRet)
        guard let ctx = cb_seccomp_new(defaultAction) else {
            throw SpecError("linux.seccomp", "libseccomp could not create a filter")
        }
        defer { cb_seccomp_free(ctx) }
        for (i, arch) in (sc.architectures ?? []).enumerated() {
            let name = String(arch.dropFirst("SCMP_ARCH_".count)).lowercased()
            let r = cb_seccomp_add_arch(ctx, name)
            if r < 0 { throw SpecError("linux.seccomp.architectures[\(i)]", "\(arch): \(errnoWords(-r))") }
        }
        var skipped: [String] = []
        for (i, rule) in (sc.syscalls ?? []).enumerated() {
            let act = action(rule.action, rule.errnoRet)
            if act == defaultAction { continue }
            let args = (rule.args ?? []).map { cb_seccomp_arg(index: $0.index, op: seccompOperators[$0.op]!, value: $0.value, value_two: $0.valueTwo ?? 0) }
            // libseccomp refuses two comparisons of one argument in a rule; like runc, such
            // a rule becomes one rule per comparison (any of them matches).
            let indices = args.map(\.index)
            let groups: [[cb_seccomp_arg]] = Set(indices).count == indices.count ? [args] : args.map { [$0] }
            for name in rule.names {
                let nr = cb_seccomp_syscall(name)
                if nr < 0 { skipped.append(name); continue }
                for g in groups {
                    let r = g.withUnsafeBufferPointer { cb_seccomp_add_rule(ctx, act, nr, Int32(g.count), $0.baseAddress) }
                    // EEXIST: the very same rule is already in the filter (Podman's default
                    // profile repeats some); it adds nothing.
                    if r == -EEXIST { debug("seccomp: syscalls[\(i)]: duplicate rule for \(name) skipped"); continue }
                    if r < 0 { throw SpecError("linux.seccomp.syscalls[\(i)]", "rule for \(name): \(errnoWords(-r))") }
                }
            }
        }
        if !skipped.isEmpty { debug("seccomp: unknown syscalls skipped: \(skipped.joined(separator: ", "))") }
        var out: UnsafeMutablePointer<UInt8>?
        var len = 0
        let r = cb_seccomp_export(ctx, &out, &len)
        guard r == 0, let out else { throw SpecError("linux.seccomp", "export the filter: \(errnoWords(-r))") }
        defer { free(out) }
        let flags = (sc.flags ?? []).reduce(UInt32(0)) { $0 | seccompFlags[$1]! }
        return SeccompProgram(bpf: Array(UnsafeBufferPointer(start: out, count: len)), flags: flags,
                              listenerPath: sc.usesNotify ? sc.listenerPath : nil,
                              listenerMetadata: sc.listenerMetadata)
    }

    /// The spec's container process state, sent to the seccomp agent with the listener fd.
    static func processState(metadata: String?, state: StoredState) -> [UInt8] {
        var st: [(String, JSON)] = [
            ("ociVersion", .string(ociSpecVersion)), ("id", .string(state.id)), ("status", .string("creating")),
            ("pid", .int(Int64(state.pid))), ("bundle", .string(state.bundle)),
        ]
        if let a = state.annotations, !a.isEmpty {
            st.append(("annotations", .object(a.keys.sorted().map { ($0, .string(a[$0]!)) })))
        }
        let doc: JSON = .object([
            ("ociVersion", .string(ociSpecVersion)), ("fds", .array([.string("seccompFd")])),
            ("pid", .int(Int64(state.pid))), ("metadata", .string(metadata ?? "")), ("state", .object(st)),
        ])
        return Array(doc.render(indent: nil).utf8)
    }
}
