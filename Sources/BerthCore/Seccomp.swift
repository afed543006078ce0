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
        return SeccompProgram(bpf: enosysStub(sc) + Array(UnsafeBufferPointer(start: out, count: len)), flags: flags,
                              listenerPath: sc.usesNotify ? sc.listenerPath : nil,
                              listenerMetadata: sc.listenerMetadata)
    }

    /// A prefix to the filter that answers ENOSYS for syscall numbers above the largest one
    /// the profile names, per architecture, as runc does. A profile written before a
    /// syscall existed would otherwise give it the default action (usually EPERM), and
    /// programs that probe for a new syscall (clone3, openat2, faccessat2...) and fall back
    /// on ENOSYS only would break. Not added when the default action lets syscalls through
    /// (ALLOW, LOG, TRACE), or when the default errno is ENOSYS already.
    static func enosysStub(_ sc: Seccomp) -> [UInt8] {
        if sc.defaultErrnoRet == UInt32(ENOSYS) { return [] }
        if ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"].contains(sc.defaultAction) { return [] }
        let auditX86_64: UInt32 = 0xc000_003e, scmpX32: UInt32 = 0x4000_003e, x32Bit: UInt32 = 0x4000_0000
        // The profile's architectures, and the native one always (a profile that lists
        // none still filters native syscalls).
        var tokens: [UInt32] = []
        for a in (sc.architectures ?? []).map({ String($0.dropFirst("SCMP_ARCH_".count)).lowercased() }) + ["native"] {
            let t = a == "native" ? cb_seccomp_arch_native() : cb_seccomp_arch_token(a)
            if t != 0 && !tokens.contains(t) { tokens.append(t) }
        }
        let names = (sc.syscalls ?? []).flatMap(\.names)
        // (audit arch, x32 mode or not, largest number); x86-64 and x32 share an audit arch
        // and differ by bit 30 of the number.
        var limits: [(audit: UInt32, x32: Bool, largest: UInt32)] = []
        for t in tokens {
            let largest = names.reduce(Int32(0)) { max($0, cb_seccomp_syscall_arch(t, $1)) }
            if largest > 0 { limits.append((t == scmpX32 ? auditX86_64 : t, t == scmpX32, UInt32(largest))) }
        }
        if limits.isEmpty { return [] }
        var a = BPFAssembler()
        let enosys = a.newLabel(), filter = a.newLabel()
        var audits: [UInt32] = []
        for l in limits where !audits.contains(l.audit) { audits.append(l.audit) }
        let checks = audits.map { _ in a.newLabel() }
        a.load(offset: 4)  // seccomp_data.arch
        for (audit, check) in zip(audits, checks) { a.jump(.jeq, audit, ifTrue: check) }
        a.jump(to: filter)
        for (audit, check) in zip(audits, checks) {
            a.place(check)
            a.load(offset: 0)  // seccomp_data.nr
            let modes = limits.filter { $0.audit == audit }
            if audit == auditX86_64 {
                // Numbers with bit 30 are x32 calls; each mode is held to its own largest
                // number, and a mode the profile does not list goes to the filter as is.
                let x32 = modes.first { $0.x32 }, native = modes.first { !$0.x32 }
                let x32Part = a.newLabel()
                a.jump(.jset, x32Bit, ifTrue: x32 == nil ? filter : x32Part, ifFalse: native == nil ? filter : nil)
                if let native {
                    a.jump(.jgt, native.largest, ifTrue: enosys)
                    a.jump(to: filter)
                }
                a.place(x32Part)
                if let x32 {
                    a.jump(.jgt, x32.largest, ifTrue: enosys)
                    a.jump(to: filter)
                }
            } else {
                a.jump(.jgt, modes[0].largest, ifTrue: enosys)
                a.jump(to: filter)
            }
        }
        a.place(enosys)
        a.ret(0x0005_0000 | UInt32(ENOSYS))  // SECCOMP_RET_ERRNO | ENOSYS
        a.place(filter)
        return a.assemble()
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

/// Classic BPF with labels, for the small programs Berth writes itself. Jumps go forward
/// only, and stay under 256 instructions (conditional jumps have 8-bit offsets).
struct BPFAssembler {
    enum Cond: UInt16 { case jeq = 0x10, jgt = 0x20, jset = 0x40 }
    private var insns: [(code: UInt16, jt: Int?, jf: Int?, k: UInt32, ja: Int?)] = []
    private var places: [Int: Int] = [:]
    private var labels = 0

    mutating func newLabel() -> Int { labels += 1; return labels }
    mutating func place(_ label: Int) { places[label] = insns.count }
    /// A = 32-bit word at `offset` of seccomp_data.
    mutating func load(offset: UInt32) { insns.append((0x20, nil, nil, offset, nil)) }  // BPF_LD|BPF_W|BPF_ABS
    /// if (A cond k) goto ifTrue else goto ifFalse (nil: the next instruction).
    mutating func jump(_ c: Cond, _ k: UInt32, ifTrue: Int?, ifFalse: Int? = nil) {
        insns.append((0x05 | c.rawValue, ifTrue, ifFalse, k, nil))  // BPF_JMP|cond|BPF_K
    }
    mutating func jump(to label: Int) { insns.append((0x05, nil, nil, 0, label)) }  // BPF_JMP|BPF_JA
    mutating func ret(_ k: UInt32) { insns.append((0x06, nil, nil, k, nil)) }  // BPF_RET|BPF_K

    /// struct sock_filter[] in the machine's byte order: u16 code, u8 jt, u8 jf, u32 k.
    func assemble() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(insns.count * 8)
        for (i, ins) in insns.enumerated() {
            func offset(_ label: Int?) -> Int {
                guard let label else { return 0 }
                let d = places[label]! - i - 1
                precondition(d >= 0, "BPF jumps go forward")
                return d
            }
            let jt = offset(ins.jt), jf = offset(ins.jf)
            precondition(jt < 256 && jf < 256, "BPF conditional jump too long")
            let k = ins.ja.map { UInt32(offset($0)) } ?? ins.k
            withUnsafeBytes(of: ins.code) { out += $0 }
            out.append(UInt8(jt))
            out.append(UInt8(jf))
            withUnsafeBytes(of: k) { out += $0 }
        }
        return out
    }
}
