import BerthSpec
import CBerth
import Glibc

/// linux.resources.devices as a BPF_PROG_TYPE_CGROUP_DEVICE program. cgroup v2 has no
/// devices controller: the kernel runs this program on every open and mknod of a device
/// node by a process of the cgroup.
enum DeviceFilter {
    struct Rule: Equatable {
        var allow: Bool
        var type: UInt32?      // BPF_DEVCG_DEV_BLOCK 1, _CHAR 2; nil = any
        var major: UInt32?     // nil = any
        var minor: UInt32?
        var access: UInt32     // BPF_DEVCG_ACC_MKNOD 1, _READ 2, _WRITE 4
        /// An access letter other than r, w, m: an error only if the rule reaches the
        /// program (see effective), as with runc.
        var badAccess: SpecError? = nil
    }

    static let rwm: UInt32 = 7

    /// The devices every container may use, appended after the config's rules as runc
    /// does (specconv.AllowedDevices): mknod of any node, the standard nodes, the
    /// terminals and tun. Not the host's console (5:1): a container's /dev/console is its
    /// own pty.
    static let defaults: [Rule] = [
        Rule(allow: true, type: 2, major: nil, minor: nil, access: 1),
        Rule(allow: true, type: 1, major: nil, minor: nil, access: 1),
        Rule(allow: true, type: 2, major: 1, minor: 3, access: rwm),   // null
        Rule(allow: true, type: 2, major: 1, minor: 5, access: rwm),   // zero
        Rule(allow: true, type: 2, major: 1, minor: 7, access: rwm),   // full
        Rule(allow: true, type: 2, major: 1, minor: 8, access: rwm),   // random
        Rule(allow: true, type: 2, major: 1, minor: 9, access: rwm),   // urandom
        Rule(allow: true, type: 2, major: 5, minor: 0, access: rwm),   // tty
        Rule(allow: true, type: 2, major: 5, minor: 2, access: rwm),   // ptmx
        Rule(allow: true, type: 2, major: 136, minor: nil, access: rwm), // pts/*
        Rule(allow: true, type: 2, major: 10, minor: 200, access: rwm), // net/tun
    ]

    static func rule(_ d: DeviceRule, index i: Int) throws(SpecError) -> Rule {
        let path = "linux.resources.devices[\(i)]"
        var type: UInt32?
        switch d.type ?? "a" {
        case "a": type = nil
        case "c": type = 2
        case "b": type = 1
        case let t: throw SpecError("\(path).type", "unknown device type \"\(t)\" (a, c or b)")
        }
        var access: UInt32 = 0
        var bad: SpecError?
        for ch in d.access ?? "rwm" {
            switch ch {
            case "r": access |= 2
            case "w": access |= 4
            case "m": access |= 1
            default: if bad == nil { bad = SpecError("\(path).access", "unknown access \"\(ch)\" (r, w, m)") }
            }
        }
        func number(_ v: Int64?, _ name: String) throws(SpecError) -> UInt32? {
            guard let v, v != -1 else { return nil }
            guard v >= 0 && v <= 0xfff_ffff else { throw SpecError("\(path).\(name)", "out of range") }
            return UInt32(v)
        }
        return Rule(allow: d.allow, type: type, major: try number(d.major, "major"), minor: try number(d.minor, "minor"),
                    access: access, badAccess: bad)
    }

    /// The effective rule set, evaluated like runc's emulator: a rule for all devices
    /// resets the default and forgets earlier rules; otherwise later rules
    /// override earlier ones. Starts from "deny everything", as runc's emulator does: a
    /// config without device rules gets runc's default list, not every host device (with
    /// CAP_MKNOD, "allow all" would let the container open the host's disks).
    static func effective(_ config: [DeviceRule], extra: [Rule]) throws(SpecError) -> (defaultAllow: Bool, rules: [Rule]) {
        var defaultAllow = false
        var rules: [Rule] = []
        for (i, d) in config.enumerated() {
            let r = try rule(d, index: i)
            // Type "a" (or none) is every device: in runc's emulator it resets the mode,
            // whatever numbers and access it names.
            if r.type == nil {
                defaultAllow = r.allow
                rules.removeAll()
            } else {
                rules.append(r)
            }
        }
        rules += defaults + extra
        // Under "allow all", allow rules change nothing; only denials matter.
        if defaultAllow { rules.removeAll { $0.allow } }
        // An unknown access letter (Docker and runc's tests write "rwa") fails only where
        // runc's emulator would put the rule into the program: an allow rule, or a denial
        // under "allow all". A denial under "deny all" only takes its known letters away.
        for r in rules where r.badAccess != nil && (r.allow || defaultAllow) { throw r.badAccess! }
        return (defaultAllow, rules)
    }

    /// eBPF instructions (8 bytes each, little-endian). The last matching rule decides, so
    /// the rules are checked from the end.
    static func program(defaultAllow: Bool, rules: [Rule]) -> [UInt8] {
        var insns: [(code: UInt8, dst: UInt8, src: UInt8, off: Int16, imm: Int32)] = []
        func emit(_ code: UInt8, _ dst: UInt8, _ src: UInt8, _ off: Int16, _ imm: Int32) { insns.append((code, dst, src, off, imm)) }
        let ldxw: UInt8 = 0x61, mov64x: UInt8 = 0xbf, mov64k: UInt8 = 0xb7, and64k: UInt8 = 0x57,
            rsh64k: UInt8 = 0x77, jnek: UInt8 = 0x55, jeqk: UInt8 = 0x15, exit: UInt8 = 0x95
        // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
        emit(ldxw, 2, 1, 0, 0)          // r2 = access_type
        emit(mov64x, 3, 2, 0, 0)
        emit(and64k, 3, 0, 0, 0xffff)   // r3 = device type
        emit(mov64x, 4, 2, 0, 0)
        emit(rsh64k, 4, 0, 0, 16)       // r4 = requested access
        emit(ldxw, 5, 1, 4, 0)          // r5 = major
        emit(ldxw, 6, 1, 8, 0)          // r6 = minor
        for r in rules.reversed() {
            var block: [(UInt8, UInt8, UInt8, Int16, Int32)] = []
            var jumps: [Int] = []
            if let t = r.type { jumps.append(block.count); block.append((jnek, 3, 0, 0, Int32(t))) }
            if let m = r.major { jumps.append(block.count); block.append((jnek, 5, 0, 0, Int32(bitPattern: m))) }
            if let m = r.minor { jumps.append(block.count); block.append((jnek, 6, 0, 0, Int32(bitPattern: m))) }
            block.append((mov64x, 7, 4, 0, 0))
            if r.allow {
                // Applies only if every requested access is allowed by it.
                block.append((and64k, 7, 0, 0, Int32(~r.access & 0xffff)))
                jumps.append(block.count); block.append((jnek, 7, 0, 0, 0))
            } else {
                // Applies if any requested access is denied by it.
                block.append((and64k, 7, 0, 0, Int32(r.access)))
                jumps.append(block.count); block.append((jeqk, 7, 0, 0, 0))
            }
            block.append((mov64k, 0, 0, 0, r.allow ? 1 : 0))
            block.append((exit, 0, 0, 0, 0))
            for j in jumps { block[j].3 = Int16(block.count - j - 1) }
            for b in block { insns.append((b.0, b.1, b.2, b.3, b.4)) }
        }
        emit(mov64k, 0, 0, 0, defaultAllow ? 1 : 0)
        emit(exit, 0, 0, 0, 0)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(insns.count * 8)
        for i in insns {
            bytes.append(i.code)
            bytes.append((i.src << 4) | (i.dst & 0xf))
            let off = UInt16(bitPattern: i.off), imm = UInt32(bitPattern: i.imm)
            bytes += [UInt8(off & 0xff), UInt8(off >> 8), UInt8(imm & 0xff), UInt8((imm >> 8) & 0xff),
                      UInt8((imm >> 16) & 0xff), UInt8(imm >> 24)]
        }
        return bytes
    }

    /// Loads the program and makes it the cgroup's only device program (an older one, from
    /// create or an earlier update, is detached after the new one is in place).
    static func attach(_ prog: [UInt8], cgroup dir: String) throws(BerthError) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw .sys("open cgroup \(dir)") }
        defer { close(fd) }
        var log = [CChar](repeating: 0, count: 4096)
        let r = prog.withUnsafeBytes { b in cb_bpf_device_program(fd, b.baseAddress, Int32(prog.count / 8), &log, log.count) }
        if r < 0 {
            let msg = String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw BerthError("linux.resources.devices: load the device filter into \(dir): \(errnoWords(-r))\(msg.isEmpty ? "" : " (\(msg))")")
        }
    }
}
