import BerthSpec

/// The cgroup v1 devices controller's rule list, modelled the way runc's emulator models
/// it, so that Berth writes only the transition from what `devices.list` shows to what the
/// config asks for. Writing "deny all" first and then the allow rules (the naive way)
/// opens a window in which the container's own open("/dev/null") fails: runc's "update
/// devices [minimal transition rules]" test catches exactly that.
///
/// The controller is either a deny list (default allow, rules deny) or an allow list
/// (default deny, rules allow); a rule for every device with every access switches the
/// mode and forgets the rules.
struct DeviceEmulator: Equatable {
    /// A device pattern: 'b' or 'c', and major/minor with -1 for "any" ("*").
    struct Key: Hashable {
        var type: UInt8
        var major: Int64
        var minor: Int64
    }

    /// Access bits, in the order the kernel prints them.
    static let read: UInt8 = 1, write: UInt8 = 2, mknod: UInt8 = 4, all: UInt8 = 7

    var defaultAllow = false
    var rules: [Key: UInt8] = [:]

    /// One line for devices.allow (allow) or devices.deny.
    struct Line: Equatable {
        var allow: Bool
        var text: String
    }

    enum Failure: Error { case message(String) }

    static func permString(_ p: UInt8) -> String {
        (p & read != 0 ? "r" : "") + (p & write != 0 ? "w" : "") + (p & mknod != 0 ? "m" : "")
    }

    static func text(_ k: Key?, _ perms: UInt8) -> String {
        guard let k else { return "a *:* rwm" }
        func n(_ v: Int64) -> String { v < 0 ? "*" : String(v) }
        return "\(Character(UnicodeScalar(k.type))) \(n(k.major)):\(n(k.minor)) \(permString(perms))"
    }

    /// The whole state as lines, for state.json: the mode ("allow" or "deny" by default),
    /// then each exception as a devices.list line. Unlike devices.list, this keeps a deny
    /// list's exceptions.
    var stateLines: [String] {
        [defaultAllow ? "allow" : "deny"] + DeviceEmulator.ordered(rules).map { DeviceEmulator.text($0.0, $0.1) }
    }

    static func fromStateLines(_ lines: [String]) -> DeviceEmulator? {
        guard let mode = lines.first, mode == "allow" || mode == "deny" else { return nil }
        var e = DeviceEmulator(defaultAllow: mode == "allow", rules: [:])
        for line in lines.dropFirst() {
            guard let (key, perms) = try? parseLine(Substring(line)), let key else { return nil }
            e.rules[key] = perms
        }
        return e
    }

    /// One devices.list line: its pattern (nil for "a") and access.
    static func parseLine(_ line: Substring) throws(Failure) -> (Key?, UInt8) {
        let f = line.split(whereSeparator: { $0 == " " || $0 == ":" })
        guard f.count == 4, let t = f[0].utf8.first else { throw .message("malformed devices.list rule \"\(line)\"") }
        if t == UInt8(ascii: "a") { return (nil, all) }
        guard t == UInt8(ascii: "b") || t == UInt8(ascii: "c") else { throw .message("devices.list: unknown device type in \"\(line)\"") }
        func num(_ s: Substring) -> Int64? { s == "*" ? -1 : UInt32(s).map(Int64.init) }
        guard let major = num(f[1]), let minor = num(f[2]) else { throw .message("devices.list: bad device number in \"\(line)\"") }
        var p: UInt8 = 0
        for c in f[3] {
            switch c {
            case "r": p |= read
            case "w": p |= write
            case "m": p |= mknod
            default: throw .message("devices.list: unknown access in \"\(line)\"")
            }
        }
        return (Key(type: t, major: major, minor: minor), p)
    }

    /// The state `devices.list` describes: "a *:* rwm" alone means allow everything;
    /// anything else is an allow list.
    static func fromList(_ list: String) throws(Failure) -> DeviceEmulator {
        var e = DeviceEmulator()
        for line in list.split(separator: "\n") where !line.isEmpty {
            let (key, perms) = try parseLine(line)
            try e.apply(allow: true, key: key, perms: perms)
        }
        return e
    }

    /// One rule, in order: `key` nil is every device (type "a"), which resets the mode.
    /// `unknownAccess` names access letters other than r, w and m: an error only where the
    /// rule would be written (an exception added to the list), as with runc, where the
    /// kernel refuses them; taking access away ignores them.
    mutating func apply(allow: Bool, key: Key?, perms: UInt8, unknownAccess: String? = nil) throws(Failure) {
        guard let key else {
            self = DeviceEmulator(defaultAllow: allow, rules: [:])
            return
        }
        // Allow under "deny all" (or deny under "allow all") adds an exception; the
        // opposite removes access from the exceptions.
        if allow != defaultAllow {
            if let bad = unknownAccess { throw .message("unknown device access \"\(bad)\" (r, w, m)") }
            if perms != 0 { rules[key, default: 0] |= perms }
        } else {
            try remove(key, perms)
        }
    }

    /// Taking access away from an exception. The kernel cannot take it from part of a
    /// wildcard exception (c 1:3 out of c *:*), so that is refused, in runc's words.
    private mutating func remove(_ key: Key, _ perms: UInt8) throws(Failure) {
        for partial in [Key(type: key.type, major: -1, minor: key.minor), Key(type: key.type, major: key.major, minor: -1),
                        Key(type: key.type, major: -1, minor: -1)] where partial != key {
            if let p = rules[partial], p & perms != 0 {
                throw .message("requested rule [\(DeviceEmulator.text(key, perms))] not supported by devices cgroupv1 (cannot punch hole in existing wildcard rule [\(DeviceEmulator.text(partial, p))])")
            }
        }
        let left = (rules[key] ?? 0) & ~perms
        rules[key] = left == 0 ? nil : left
    }

    /// Exceptions in runc's order: by major, minor, then type.
    static func ordered(_ r: [Key: UInt8]) -> [(Key, UInt8)] {
        r.map { ($0.key, $0.value) }.sorted { a, b in
            (a.0.major, a.0.minor, a.0.type) < (b.0.major, b.0.minor, b.0.type)
        }
    }

    /// The fewest writes that turn this state into `target`: a mode switch (which clears
    /// every exception) only when the mode differs, or when this is a deny list (its
    /// exceptions cannot be read back reliably, as runc reasons); then the access each
    /// exception loses, then the access each one gains.
    func transition(to target: DeviceEmulator) -> [Line] {
        var out: [Line] = []
        var old = rules
        if defaultAllow || defaultAllow != target.defaultAllow {
            out.append(Line(allow: target.defaultAllow, text: DeviceEmulator.text(nil, DeviceEmulator.all)))
            old = [:]
        }
        for (k, p) in DeviceEmulator.ordered(old) {
            let dropped = p & ~(target.rules[k] ?? 0)
            if dropped != 0 { out.append(Line(allow: target.defaultAllow, text: DeviceEmulator.text(k, dropped))) }
        }
        for (k, p) in DeviceEmulator.ordered(target.rules) {
            let gained = p & ~(old[k] ?? 0)
            if gained != 0 { out.append(Line(allow: !target.defaultAllow, text: DeviceEmulator.text(k, gained))) }
        }
        return out
    }

    /// runc's default device rules (specconv.AllowedDevices), applied after the config's:
    /// the same list as DeviceFilter.defaults.
    static let defaultRules: [(type: UInt8, major: Int64, minor: Int64, perms: UInt8)] = [
        (UInt8(ascii: "c"), -1, -1, mknod), (UInt8(ascii: "b"), -1, -1, mknod),
        (UInt8(ascii: "c"), 1, 3, all), (UInt8(ascii: "c"), 1, 8, all), (UInt8(ascii: "c"), 1, 7, all),
        (UInt8(ascii: "c"), 5, 0, all), (UInt8(ascii: "c"), 1, 5, all), (UInt8(ascii: "c"), 1, 9, all),
        (UInt8(ascii: "c"), 136, -1, all), (UInt8(ascii: "c"), 5, 2, all), (UInt8(ascii: "c"), 10, 200, all),
    ]

    /// What linux.resources.devices asks for, followed by runc's defaults, starting from
    /// an allow list (a new cgroup inherits its parent's rules; runc builds its target
    /// from nothing, so the config decides everything).
    static func target(_ config: [DeviceRule]) throws(SpecError) -> DeviceEmulator {
        var e = DeviceEmulator()
        for (i, d) in config.enumerated() {
            let path = "linux.resources.devices[\(i)]"
            var key: Key?
            switch d.type ?? "a" {
            case "a": key = nil
            case "b", "c": key = Key(type: d.type!.utf8.first!, major: d.major ?? -1, minor: d.minor ?? -1)
            case let t: throw SpecError("\(path).type", "unknown device type \"\(t)\" (a, c or b)")
            }
            var perms: UInt8 = 0
            var bad = ""
            for c in d.access ?? "rwm" {
                switch c {
                case "r": perms |= read
                case "w": perms |= write
                case "m": perms |= mknod
                default: bad.append(c)
                }
            }
            do { try e.apply(allow: d.allow, key: key, perms: perms, unknownAccess: bad.isEmpty ? nil : bad) } catch {
                guard case .message(let m) = error else { continue }
                throw SpecError(path, m)
            }
        }
        for r in defaultRules {
            do { try e.apply(allow: true, key: Key(type: r.type, major: r.major, minor: r.minor), perms: r.perms) } catch {
                guard case .message(let m) = error else { continue }
                throw SpecError("linux.resources.devices", m)
            }
        }
        return e
    }
}
