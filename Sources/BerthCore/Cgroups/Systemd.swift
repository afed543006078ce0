import BerthSpec
import Glibc

/// The systemd cgroup driver (`--systemd-cgroup`), as runc's on a pure cgroup v2 host:
/// the container's init goes into a transient scope that systemd creates through its
/// D-Bus API, with the limits as unit properties; what systemd cannot express is then
/// written to the scope's cgroup files, and the device filter is attached there, before
/// init runs any of the container's code.
enum Systemd {
    static let service = "org.freedesktop.systemd1"
    static let object = "/org/freedesktop/systemd1"
    static let manager = "org.freedesktop.systemd1.Manager"

    /// sd_booted(3)'s test, as runc's.
    static var running: Bool { FS.isDirectory("/run/systemd/system") }

    struct Unit: Equatable {
        /// "prefix-name.scope", or a slice's own name.
        var name: String
        /// The parent slice: Slice= of a scope, Wants= of a slice.
        var slice: String
        /// The unit's cgroup directory.
        var dir: String
        /// Its path inside a hierarchy ("/system.slice/x.scope"): the same in every one.
        var path: String
        var isSlice: Bool { name.hasSuffix(".slice") }
    }

    /// `linux.cgroupsPath` as runc reads it under the systemd driver: "slice:prefix:name"
    /// (an empty slice is `defaultSlice`: system.slice, user.slice for the user's systemd),
    /// or empty for that slice and "berth-<id>.scope".
    static func unit(cgroupsPath: String?, id: String, mount: String, defaultSlice: String = "system.slice") throws(BerthError) -> Unit {
        var slice = "", prefix = "berth", name = id
        if let p = cgroupsPath, !p.isEmpty {
            let parts = p.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3 else {
                throw BerthError("config.json: linux.cgroupsPath: expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got \"\(p)\" instead")
            }
            (slice, prefix, name) = (parts[0], parts[1], parts[2])
        }
        if slice.isEmpty { slice = defaultSlice }
        let unitName = name.hasSuffix(".slice") ? name : prefix + "-" + name + ".scope"
        // The unit's name becomes a directory under the hierarchy: no "/" may take it
        // elsewhere (systemd refuses such names too, but only after Berth used the path).
        if unitName.contains("/") || unitName.contains("\0") {
            throw BerthError("config.json: linux.cgroupsPath: invalid unit name \"\(unitName)\"")
        }
        let parent = try expandSlice(slice)
        let path = (parent == "/" ? "" : parent) + "/" + unitName
        return Unit(name: unitName, slice: slice, dir: mount + path, path: path)
    }

    /// systemd's slice nesting: "a-b-c.slice" lives in /a.slice/a-b.slice/a-b-c.slice.
    static func expandSlice(_ slice: String) throws(BerthError) -> String {
        let bad = BerthError("config.json: linux.cgroupsPath: invalid slice name: \(slice)")
        guard slice.hasSuffix(".slice"), slice.count > 6, !slice.contains("/") else { throw bad }
        let base = String(slice.dropLast(6))
        if base == "-" { return "/" }
        var path = "", prefix = ""
        for c in base.split(separator: "-", omittingEmptySubsequences: false) {
            if c.isEmpty { throw bad }
            path += "/" + prefix + c + ".slice"
            prefix += c + "-"
        }
        return path
    }

    // MARK: properties

    typealias Property = (String, DBusValue)

    static func prop(_ name: String, _ v: DBusValue) -> DBusValue { .structure([.string(name), .variant(v)]) }

    /// The unit properties for `r`, with runc's conversions. `version` is systemd's
    /// (asked only when a property needs a recent one).
    static func properties(_ r: Resources, version: () -> Int) throws(BerthError) -> [Property] {
        var out: [Property] = []
        let limit = r.memory?.limit ?? 0
        if limit != 0 { out.append(("MemoryMax", .uint64(limit == -1 ? .max : UInt64(limit)))) }
        if let res = r.memory?.reservation, res != 0 { out.append(("MemoryLow", .uint64(res == -1 ? .max : UInt64(res)))) }
        let swap = r.memory?.swap ?? 0
        if swap == -1 || (swap == 0 && limit == -1) {
            out.append(("MemorySwapMax", .uint64(.max)))
        } else if swap != 0 && limit > 0 && swap >= limit {
            out.append(("MemorySwapMax", .uint64(UInt64(swap - limit))))
        }
        if let s = r.cpu?.shares, s != 0 { out.append(("CPUWeight", .uint64(CgroupResources.cpuWeight(shares: s)))) }
        cpuQuota(&out, quota: r.cpu?.quota ?? 0, period: r.cpu?.period ?? 0, version: version)
        if let p = r.pids, p > 0 || p == -1 { out.append(("TasksMax", .uint64(p == -1 ? .max : UInt64(p)))) }
        if let w = r.blockIO?.weight, w >= 10 && w <= 1000 {
            out.append(("IOWeight", .uint64(CgroupResources.ioWeight(w))))
        }
        try cpuset(&out, r, version: version)
        for (k, v) in (r.unified ?? [:]).sorted(by: { $0.key < $1.key }) {
            let v = Systemd.trim(v)
            let num: (String) -> DBusValue? = { s in s == "max" ? .uint64(.max) : UInt64(s).map { .uint64($0) } }
            switch k {
            case "memory.high", "memory.low", "memory.min", "memory.max", "memory.swap.max":
                let names = ["memory.high": "MemoryHigh", "memory.low": "MemoryLow", "memory.min": "MemoryMin",
                             "memory.max": "MemoryMax", "memory.swap.max": "MemorySwapMax"]
                guard let n = num(v) else { throw BerthError("config.json: linux.resources.unified.\(k): invalid value \"\(v)\"") }
                out.append((names[k]!, n))
            case "cpuset.cpus", "cpuset.mems":
                let key = k == "cpuset.cpus" ? "AllowedCPUs" : "AllowedMemoryNodes"
                guard let bits = cpuBits(v) else {
                    throw BerthError("config.json: linux.resources.unified.\(k): invalid value \"\(v)\"")
                }
                if version() >= 244 { out.append((key, .array("y", bits.map { .byte($0) }))) }
            case "pids.max":
                guard let n = num(v) else { throw BerthError("config.json: linux.resources.unified.\(k): invalid value \"\(v)\"") }
                out.append(("TasksMax", n))
            case "cpu.weight":
                guard let n = UInt64(v) else { throw BerthError("config.json: linux.resources.unified.\(k): invalid value \"\(v)\"") }
                out.append(("CPUWeight", .uint64(n)))
            case "cpu.max":
                let f = v.split(separator: " ").map(String.init)
                guard f.count == 1 || f.count == 2, f[0] == "max" || Int64(f[0]) != nil,
                      f.count == 1 || UInt64(f[1]) != nil else {
                    throw BerthError("config.json: linux.resources.unified.\(k): invalid value \"\(v)\"")
                }
                cpuQuota(&out, quota: Int64(f[0]) ?? 0, period: f.count == 2 ? UInt64(f[1])! : 100_000, version: version)
            default:
                break  // written to the file only, as runc does
            }
        }
        return out
    }

    /// The unit's properties on a cgroup v1 or hybrid host, runc's legacy set: the device
    /// rules (below), MemoryLimit, CPUShares, the quota, BlockIOWeight, TasksMax and the
    /// cpuset. `devices` is the devices controller's target: the config's rules on create,
    /// the new ones or what devices.list holds now on update.
    static func v1Properties(_ r: Resources, devices: DeviceEmulator?, version: () -> Int) throws(BerthError) -> [Property] {
        if let u = r.unified, !u.isEmpty {
            throw BerthError("config.json: linux.resources.unified: invalid configuration: cannot use unified on cgroup v1")
        }
        var out: [Property] = []
        if let d = devices { out += deviceProperties(d, version: version()) }
        if let m = r.memory?.limit, m != 0 { out.append(("MemoryLimit", .uint64(m == -1 ? .max : UInt64(m)))) }
        if let s = r.cpu?.shares, s != 0 { out.append(("CPUShares", .uint64(s))) }
        cpuQuota(&out, quota: r.cpu?.quota ?? 0, period: r.cpu?.period ?? 0, version: version)
        if let w = r.blockIO?.weight, w != 0 { out.append(("BlockIOWeight", .uint64(UInt64(w)))) }
        if let p = r.pids, p > 0 || p == -1 { out.append(("TasksMax", .uint64(p == -1 ? .max : UInt64(p)))) }
        try cpuset(&out, r, version: version)
        return out
    }

    /// AllowedCPUs/AllowedMemoryNodes (systemd 244 and later; older ones get the files only).
    static func cpuset(_ out: inout [Property], _ r: Resources, version: () -> Int) throws(BerthError) {
        for (key, list) in [("AllowedCPUs", r.cpu?.cpus), ("AllowedMemoryNodes", r.cpu?.mems)] {
            guard let list, !list.isEmpty else { continue }
            guard let bits = cpuBits(list) else {
                throw BerthError("config.json: linux.resources.cpu.\(key == "AllowedCPUs" ? "cpus" : "mems"): invalid list \"\(list)\"")
            }
            if version() >= 244 { out.append((key, .array("y", bits.map { .byte($0) }))) }
        }
    }

    /// The device rules as systemd's DevicePolicy and DeviceAllow. On cgroup v1 systemd
    /// rewrites the unit's devices.allow/deny from these whenever it applies the unit
    /// again (a daemon-reload, any SetUnitProperties): without them it would write
    /// "a *:* rwm" there, and every device on the host would be open to the container.
    /// systemd keeps only allow lists, so: allow-all maps to "auto" with no rules; any
    /// other deny list to "strict" with none (Berth's own writes then put the exceptions
    /// back, as runc's do, with a warning); an allow list to its rules, where systemd can
    /// name them: /dev/char/M:m, a /proc/devices group for M:*, char-* for *:*. A *:m rule
    /// has no systemd form: it is left to the cgroup files, with a warning.
    static func deviceProperties(_ e: DeviceEmulator, version: Int,
                                 procDevices: String? = FS.readString("/proc/devices")) -> [Property] {
        let empty: DBusValue = .array("(ss)", [])
        if e.defaultAllow {
            if e.rules.isEmpty { return [("DevicePolicy", .string("auto")), ("DeviceAllow", empty)] }
            warn("systemd doesn't support blacklist device rules -- applying temporary deny-all rule")
            return [("DevicePolicy", .string("strict")), ("DeviceAllow", empty)]
        }
        var entries: [DBusValue] = []
        for (k, perms) in DeviceEmulator.ordered(e.rules) {
            let kind = k.type == UInt8(ascii: "b") ? "block" : "char"
            let path: String
            if k.major < 0 {
                guard k.minor < 0 else {
                    warn("systemd doesn't support '*:n' device rules -- temporarily ignoring rule: \(DeviceEmulator.text(k, perms))")
                    continue
                }
                path = kind + "-*"
            } else if k.minor < 0 {
                guard let g = deviceGroup(block: k.type == UInt8(ascii: "b"), major: k.major, procDevices: procDevices ?? "") else {
                    warn("could not find device group for '\(kind)/\(k.major)' in /proc/devices -- temporarily ignoring rule: \(DeviceEmulator.text(k, perms))")
                    continue
                }
                path = kind + "-" + g
            } else {
                path = "/dev/\(kind)/\(k.major):\(k.minor)"
                // Before 240 systemd stat()ed the path and dropped rules for absent nodes.
                if version < 240 && !FS.exists(path) { continue }
            }
            entries.append(.structure([.string(path), .string(DeviceEmulator.permString(perms))]))
        }
        return [("DevicePolicy", .string("strict")), ("DeviceAllow", empty), ("DeviceAllow", .array("(ss)", entries))]
    }

    /// The name /proc/devices gives a major number under "Character devices:" or "Block
    /// devices:" (the first, where several share it).
    static func deviceGroup(block: Bool, major: Int64, procDevices: String) -> String? {
        var inBlock = false
        for line in procDevices.split(separator: "\n") {
            let t = trim(String(line))
            if t == "Block devices:" { inBlock = true; continue }
            if t == "Character devices:" { inBlock = false; continue }
            guard inBlock == block else { continue }
            let f = t.split(separator: " ", maxSplits: 1)
            if f.count == 2, Int64(f[0]) == major { return String(f[1]) }
        }
        return nil
    }

    /// runc's CPUQuotaPerSecUSec: quota per second of CPU, rounded up to whole 10 ms
    /// (systemd keeps a percentage), infinity without a quota.
    static func cpuQuota(_ out: inout [Property], quota: Int64, period: UInt64, version: () -> Int) {
        if period != 0 && version() >= 242 { out.append(("CPUQuotaPeriodUSec", .uint64(period))) }
        guard quota != 0 || period != 0 else { return }
        var perSec = UInt64.max
        if quota > 0 {
            perSec = UInt64(quota) * 1_000_000 / (period == 0 ? 100_000 : period)
            if perSec % 10_000 != 0 { perSec = (perSec / 10_000 + 1) * 10_000 }
        }
        out.append(("CPUQuotaPerSecUSec", .uint64(perSec)))
    }

    /// "0-2,7" as systemd's CPU bitmask bytes (bit n of byte n/8 for CPU n).
    static func cpuBits(_ list: String) -> [UInt8]? {
        guard let cpus = parseCPUList(list) else { return nil }
        var bytes: [UInt8] = []
        for c in cpus {
            while bytes.count <= c / 8 { bytes.append(0) }
            bytes[c / 8] |= 1 << UInt8(c % 8)
        }
        return bytes
    }

    /// `org.systemd.property.NAME` annotations, as runc passes them on. Values are GVariant
    /// text; Berth reads its common forms: booleans, 'strings', integers (optionally typed
    /// as "uint64 N" and the like; untyped ones are int32, as in GVariant), and arrays of
    /// strings. A NAME ending in a lowercase letter + "Sec" becomes "...USec" (x 1000000).
    static func annotationProperties(_ annotations: [String: String]) throws(BerthError) -> [Property] {
        var out: [Property] = []
        let prefix = "org.systemd.property."
        for (k, text) in annotations.sorted(by: { $0.key < $1.key }) where k.hasPrefix(prefix) {
            var name = String(k.dropFirst(prefix.count))
            guard name.count >= 3, name.utf8.allSatisfy({ ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7a }) else {
                throw BerthError("annotation \(k) name incorrect: must be at least 3 latin letters")
            }
            guard var value = parseVariantText(text) else {
                throw BerthError("annotation \(k)=\(text) value parse error: berth reads booleans, 'strings', integers and arrays of strings")
            }
            if name.hasSuffix("Sec"), let c = name.dropLast(3).last, c.isLowercase {
                // Seconds to microseconds in 64 bits. runc's conversion wraps silently (and
                // makes something arbitrary of inf); a value that does not fit, a negative
                // one or a NaN is an error here, never a trap.
                func micro(_ s: UInt64) -> UInt64? {
                    let (r, overflow) = s.multipliedReportingOverflow(by: 1_000_000)
                    return overflow ? nil : r
                }
                let us: UInt64?
                switch value {
                case .int32(let x): us = x >= 0 ? micro(UInt64(x)) : nil
                case .uint32(let x): us = micro(UInt64(x))
                case .int64(let x): us = x >= 0 ? micro(UInt64(x)) : nil
                case .uint64(let x): us = micro(x)
                case .double(let x):
                    let m = x * 1_000_000
                    us = m >= 0 && m < 18_446_744_073_709_551_616.0 ? UInt64(m) : nil
                default: throw BerthError("annotation \(k)=\(text) value parse error: not a number")
                }
                guard let us else {
                    throw BerthError("annotation \(k)=\(text) value out of range: seconds from 0 to \(UInt64.max / 1_000_000)")
                }
                name = String(name.dropLast(3)) + "USec"
                value = .uint64(us)
            }
            out.append((name, value))
        }
        return out
    }

    /// The kernel, and runc, take values with spaces and newlines around them.
    static func trim(_ s: String) -> String {
        var t = Substring(s)
        while let c = t.first, c == " " || c == "\n" || c == "\t" { t.removeFirst() }
        while let c = t.last, c == " " || c == "\n" || c == "\t" { t.removeLast() }
        return String(t)
    }

    static func parseVariantText(_ s: String) -> DBusValue? {
        let t = trim(s)
        if t == "true" { return .bool(true) }
        if t == "false" { return .bool(false) }
        if let q = t.first, (q == "'" || q == "\""), t.count >= 2, t.last == q {
            return .string(String(t.dropFirst().dropLast()))
        }
        if t.hasPrefix("[") && t.hasSuffix("]") {
            let inner = trim(String(t.dropFirst().dropLast()))
            if inner.isEmpty { return .array("s", []) }
            var items: [DBusValue] = []
            for part in inner.split(separator: ",") {
                guard case .string(let x)? = parseVariantText(String(part)) else { return nil }
                items.append(.string(x))
            }
            return .array("s", items)
        }
        let words = t.split(separator: " ").map(String.init)
        if words.count == 2 {
            switch words[0] {
            case "uint64", "t": return UInt64(words[1]).map { .uint64($0) }
            case "int64", "x": return Int64(words[1]).map { .int64($0) }
            case "uint32", "u": return UInt32(words[1]).map { .uint32($0) }
            case "int32", "i": return Int32(words[1]).map { .int32($0) }
            case "double", "d": return Double(words[1]).map { .double($0) }
            default: return nil
            }
        }
        if let i = Int32(t) { return .int32(i) }
        if let d = Double(t) { return .double(d) }
        return nil
    }

    // MARK: the bus

    /// systemd's own socket for root (peer to peer: no bus daemon in the way, and it works
    /// before dbus is up, as systemctl uses it), else the system bus.
    static func connect(user: Bool = false) throws(BerthError) -> DBusConnection {
        guard running else {
            throw BerthError("systemd not running on this host, cannot use systemd cgroups manager")
        }
        if user { return try connectUser() }
        var first: BerthError?
        if geteuid() == 0 && FS.exists("/run/systemd/private") {
            do { return try DBusConnection.open("/run/systemd/private", bus: false) } catch { first = error }
        }
        var busPath = "/run/dbus/system_bus_socket"
        if let env = getenv("DBUS_SYSTEM_BUS_ADDRESS").map({ String(cString: $0) }), env.hasPrefix("unix:path=") {
            busPath = String(env.dropFirst(10).prefix { $0 != "," })
        }
        do {
            return try subscribed(DBusConnection.open(busPath, bus: true))
        } catch {
            throw BerthError("failed to connect to systemd over D-Bus: \(first.map { $0.message + "; " } ?? "")\(error.message)")
        }
    }

    /// On a bus, JobRemoved reaches only those who ask for it: the bus routes signals to
    /// matching clients, and systemd emits them on the bus at all only while some client
    /// is subscribed (its private socket gets them always).
    static func subscribed(_ c: DBusConnection) throws(BerthError) -> DBusConnection {
        try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                   member: "AddMatch", body: [.string("type='signal',sender='\(service)',path='\(object)',interface='\(manager)',member='JobRemoved'")])
        try c.call(destination: service, path: object, interface: manager, member: "Subscribe")
        return c
    }

    /// Rootless: the user's own systemd, on the user's session bus (DBUS_SESSION_BUS_ADDRESS,
    /// else $XDG_RUNTIME_DIR/bus, as runc finds it).
    static func connectUser() throws(BerthError) -> DBusConnection {
        var path: String?
        if let a = getenv("DBUS_SESSION_BUS_ADDRESS").map({ String(cString: $0) }), a.hasPrefix("unix:path=") {
            path = String(a.dropFirst(10).prefix { $0 != "," })
        } else if let x = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !x.isEmpty, FS.exists(x + "/bus") {
            path = x + "/bus"
        }
        guard let path else {
            throw BerthError("rootless --systemd-cgroup: no user D-Bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus): install dbus-user-session and run `systemctl --user start dbus`")
        }
        do {
            return try subscribed(DBusConnection.open(path, bus: true))
        } catch {
            throw BerthError("failed to connect to the user's systemd over D-Bus: \(error.message)")
        }
    }

    /// The user manager's own cgroup ("/user.slice/user-1000.slice/user@1000.service"):
    /// its units' paths start there.
    static func managerCgroup(_ c: DBusConnection) throws(BerthError) -> String {
        let r = try c.call(destination: service, path: object, interface: "org.freedesktop.DBus.Properties",
                           member: "Get", body: [.string(manager), .string("ControlGroup")])
        guard let cg = r.body.first?.stringValue, cg.hasPrefix("/") else {
            throw BerthError("the user's systemd gave no ControlGroup")
        }
        return cg
    }

    /// `properties` with systemd's version asked over `c`, once and only if needed.
    static func properties(_ r: Resources, on c: DBusConnection) throws(BerthError) -> [Property] {
        try properties(r, version: versionOnce(c))
    }

    /// systemd's version, asked over `c` the first time it is needed.
    static func versionOnce(_ c: DBusConnection) -> () -> Int {
        var v: Int?
        return {
            if v == nil { v = version(c) }
            return v!
        }
    }

    static func version(_ c: DBusConnection) -> Int {
        guard let r = try? c.call(destination: service, path: object, interface: "org.freedesktop.DBus.Properties",
                                  member: "Get", body: [.string(manager), .string("Version")]),
              let s = r.body.first?.stringValue else { return 0 }
        // "252.30-1~deb12u2", "v245.4-1.fc32": the first number.
        return Int(String(s.drop { !$0.isNumber }.prefix { $0.isNumber })) ?? 0
    }

    /// Runs a job (StartTransientUnit, StopUnit...) and waits for its JobRemoved: its
    /// result ("done", "failed", ...). The signal may come before the call's reply.
    private static func job(_ c: DBusConnection, _ member: String, _ body: [DBusValue], unit: String) throws(BerthError) -> (reply: DBusMessage, result: String?) {
        let r = try c.call(destination: service, path: object, interface: manager, member: member, body: body, allowError: true)
        guard r.type == DBusMessage.methodReturn else { return (r, nil) }
        guard case .objectPath(let jobPath)? = r.body.first else { throw BerthError("systemd: \(member) for \(unit) gave no job") }
        let done = try c.waitSignal("systemd to finish the job for \(unit)") { m in
            m.member == "JobRemoved" && m.body.count == 4 && m.body[1] == .objectPath(jobPath)
        }
        return (r, done.body[3].stringValue)
    }

    static func resetFailed(_ c: DBusConnection, _ unit: String) {
        _ = try? c.call(destination: service, path: object, interface: manager, member: "ResetFailedUnit",
                        body: [.string(unit)], allowError: true)
    }

    /// Starts the transient unit with `pid` in it, as runc: a unit of that name left
    /// failed is reset and the start tried once more.
    static func start(_ c: DBusConnection, unit: Unit, description: String, pid: Int32,
                      resources: [Property], legacy: Bool = false) throws(BerthError) {
        var props: [Property] = [("Description", .string(description))]
        if unit.isSlice {
            props.append(("Wants", .array("s", [.string(unit.slice)])))
        } else {
            props.append(("Slice", .string(unit.slice)))
            props.append(("Delegate", .bool(true)))
        }
        props.append(("PIDs", .array("u", [.uint32(UInt32(pid))])))
        // Accounting always on: the same files exist as with cgroupfs (v1 names blkio's).
        for a in ["MemoryAccounting", "CPUAccounting", legacy ? "BlockIOAccounting" : "IOAccounting", "TasksAccounting"] {
            props.append((a, .bool(true)))
        }
        props.append(("DefaultDependencies", .bool(false)))
        props += resources
        let body: [DBusValue] = [.string(unit.name), .string("replace"), .array("(sv)", props.map { prop($0.0, $0.1) }),
                                 .array("(sa(sv))", [])]
        for attempt in 0..<2 {
            let (reply, result) = try job(c, "StartTransientUnit", body, unit: unit.name)
            if reply.type == DBusMessage.error {
                if reply.errorName == "org.freedesktop.systemd1.UnitExists" && attempt == 0 {
                    resetFailed(c, unit.name)
                    continue
                }
                throw BerthError("unable to start unit \"\(unit.name)\": \(DBusConnection.errorText(reply))")
            }
            if result != "done" {
                resetFailed(c, unit.name)
                throw BerthError("error creating systemd unit `\(unit.name)`: got `\(result ?? "nothing")`")
            }
            return
        }
    }

    /// Stops the unit and waits; a unit already gone is fine. A failed unit is reset so
    /// systemd forgets it.
    static func stop(_ c: DBusConnection, unit: String) throws(BerthError) {
        let (reply, result) = try job(c, "StopUnit", [.string(unit), .string("replace")], unit: unit)
        if reply.type == DBusMessage.error && reply.errorName != "org.freedesktop.systemd1.NoSuchUnit" {
            throw BerthError("unable to stop unit \"\(unit)\": \(DBusConnection.errorText(reply))")
        }
        if let result, result != "done" { warn("error removing unit `\(unit)`: got `\(result)`. Continuing...") }
        resetFailed(c, unit)
    }

    static func setProperties(_ c: DBusConnection, unit: String, _ props: [Property]) throws(BerthError) {
        guard !props.isEmpty else { return }
        do {
            try c.call(destination: service, path: object, interface: manager, member: "SetUnitProperties",
                       body: [.string(unit), .bool(true), .array("(sv)", props.map { prop($0.0, $0.1) })])
        } catch { throw BerthError("unable to set unit properties: \(error.message)") }
    }
}
