import BerthSpec
import Glibc

extension Runtime {
    /// Freezes (or thaws) every process of the container through cgroup.freeze, then waits
    /// until cgroup.events reports the new state.
    public func pause(id: String) throws(BerthError) {
        let rec = try store.load(id)
        let st = rec.status
        guard st == .running || st == .created else {
            throw BerthError(st == .paused ? "container already paused" : "container not running")
        }
        try setFrozen(rec, true)
    }

    public func resume(id: String) throws(BerthError) {
        let rec = try store.load(id)
        guard rec.status == .paused else { throw BerthError("container not paused") }
        try setFrozen(rec, false)
    }

    func setFrozen(_ rec: ContainerRecord, _ frozen: Bool) throws(BerthError) {
        let cgs = ContainerCgroups(rec.state)
        if cgs.isEmpty { throw BerthError("cannot \(frozen ? "pause" : "resume"): the container has no cgroup") }
        try cgs.setFrozen(frozen)
    }

    /// Host pids of the container's processes, its sub-cgroups included.
    public func pids(id: String) throws(BerthError) -> [Int32] {
        let rec = try store.load(id)
        // As runc: a stopped container has what is left in its cgroup (usually nothing).
        let cgs = ContainerCgroups(rec.state)
        if !cgs.isEmpty { return cgs.pids() }
        return rec.status == .stopped ? [] : [rec.state.pid]
    }

    /// `update`: new limits applied live. On v2 the device filter is replaced whole; on v1
    /// the devices controller moves to the new rules by the fewest writes.
    public func update(id: String, resources r: Resources) throws(BerthError) {
        let rec = try store.load(id)
        guard rec.status != .stopped else { throw BerthError("container not running") }
        let cgs = ContainerCgroups(rec.state)
        if !cgs.v1.isEmpty {
            if let unit = cgs.systemdUnit { try updateUnitV1(rec, unit, cgs, r) }
            var warnings: [String] = []
            let hybrid = cgs.v2.flatMap { d in Cgroup.mountPoint().map { (dir: d, mount: $0) } }
            do { try CgroupV1.apply(r, dirs: cgs.v1, hybridV2: hybrid, rootless: rootlessCgroups, warnings: &warnings) } catch {
                throw BerthError(error.message.replacingPrefix("config.json: ", with: ""))
            }
            for w in warnings { warn(w) }
            return
        }
        guard let cg = cgs.v2, let mount = Cgroup.mountPoint() else {
            throw BerthError("the container has no cgroup to update")
        }
        var r = r
        var cpuMax: [Substring] = []
        if var cpu = r.cpu, (cpu.quota ?? 0) != 0 || (cpu.period ?? 0) != 0 {
            cpuMax = (FS.readString(cg + "/cpu.max") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
            // Under systemd the unit's properties and the files both need the quota and
            // the period: a quota or a period alone keeps the other one's current value
            // (systemd would reset the period of an unlimited quota to its default).
            if cgs.systemdUnit != nil {
                if (cpu.quota ?? 0) == 0, let q = cpuMax.first { cpu.quota = q == "max" ? -1 : Int64(q) }
                if (cpu.period ?? 0) == 0, cpuMax.count > 1 { cpu.period = UInt64(cpuMax[1]) }
                r.cpu = cpu
            }
        }
        let writes: [CgroupWrite]
        var program: [UInt8]?
        do throws(SpecError) {
            var warnings: [String] = []
            writes = try CgroupResources.writes(r, currentQuota: cpuMax.first.map(String.init), warnings: &warnings)
            for w in warnings { warn(w) }
            if let d = r.devices {
                let eff = try DeviceFilter.effective(d, extra: [])
                program = DeviceFilter.program(defaultAllow: eff.defaultAllow, rules: eff.rules)
            }
        } catch { throw BerthError(error.description.replacingPrefix("config.json: ", with: "")) }
        if let unit = cgs.systemdUnit {
            // The unit's properties first (systemd rewrites the files from them whenever it
            // re-applies the unit), then the files, as runc does.
            let c = try Systemd.connect(user: cgs.systemdUser)
            try Systemd.setProperties(c, unit: unit, try Systemd.properties(r, on: c))
        }
        do { try Cgroup.apply(writes, to: cg, mount: mount) } catch {
            throw BerthError(error.message.replacingPrefix("config.json: ", with: ""))
        }
        // Rootless, device rules are not enforced (as runc's): attaching needs privileges.
        if let p = program, !rootlessCgroups { try DeviceFilter.attach(p, cgroup: cg) }
    }
}

extension Runtime {
    /// The unit's properties under the systemd driver on a v1 host, before the files (as
    /// runc). systemd rewrites the devices cgroup on any change, denying everything first,
    /// then allowing what DeviceAllow lists; a deny list's exceptions it cannot hold at
    /// all. So the container is frozen meanwhile (unless it is paused already), and
    /// Berth puts the rules in force back before it thaws: none of its processes sees a
    /// device it may use refused, or one it may not use allowed.
    func updateUnitV1(_ rec: ContainerRecord, _ unit: String, _ cgs: ContainerCgroups, _ r: Resources) throws(BerthError) {
        var devices = rec.state.systemdDevices.flatMap(DeviceEmulator.fromStateLines)
        if let d = r.devices {
            do { devices = try DeviceEmulator.target(d) } catch { throw BerthError(error.description) }
        }
        let c = try Systemd.connect()
        let props: [Systemd.Property]
        do { props = try Systemd.v1Properties(r, devices: devices, version: Systemd.versionOnce(c)) } catch {
            throw BerthError(error.message.replacingPrefix("config.json: ", with: ""))
        }
        let f = cgs.freezer.flatMap { FS.isDirectory($0) ? $0 : nil }
        let thaw = f.map { !CgroupV1.isFrozen($0) } ?? false
        if let f, thaw { try CgroupV1.freeze(f) }
        defer { if let f, thaw { try? CgroupV1.thaw(f) } }
        try Systemd.setProperties(c, unit: unit, props)
        if let d = devices, let dir = CgroupV1.dir(cgs.v1, "devices") {
            try CgroupV1.applyDevices(d, dir: dir)
        }
        if r.devices != nil, let d = devices {
            var st = rec.state
            st.systemdDevices = d.stateLines
            try store.save(ContainerRecord(dir: rec.dir, state: st))
        }
    }
}

extension String {
    func replacingPrefix(_ p: String, with r: String) -> String { hasPrefix(p) ? r + dropFirst(p.count) : self }
}

/// `events`: runc's stats document, read from the cgroup v2 files that exist.
enum Stats {
    static func keyValues(_ path: String) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in (FS.readString(path) ?? "").split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2, let v = UInt64(f[1]) { out[String(f[0])] = v }
        }
        return out
    }

    static func number(_ path: String) -> UInt64? {
        guard let s = FS.readString(path) else { return nil }
        let t = s.split(separator: "\n").first.map(String.init) ?? ""
        return t == "max" ? UInt64.max : UInt64(t)
    }

    static func collect(_ cg: String) -> JSON {
        var data: [(String, JSON)] = []
        let cpu = keyValues(cg + "/cpu.stat")
        if !cpu.isEmpty {
            data.append(("cpu", .object([
                ("usage", .object([
                    ("total", .int(Int64((cpu["usage_usec"] ?? 0) * 1000))),
                    ("kernel", .int(Int64((cpu["system_usec"] ?? 0) * 1000))),
                    ("user", .int(Int64((cpu["user_usec"] ?? 0) * 1000))),
                ])),
                ("throttling", .object([
                    ("periods", .int(Int64(cpu["nr_periods"] ?? 0))),
                    ("throttled_periods", .int(Int64(cpu["nr_throttled"] ?? 0))),
                    ("throttled_time", .int(Int64((cpu["throttled_usec"] ?? 0) * 1000))),
                ])),
            ])))
        }
        if let cur = number(cg + "/memory.current") {
            let stat = keyValues(cg + "/memory.stat")
            let events = keyValues(cg + "/memory.events")
            func limit(_ v: UInt64?) -> JSON { .int(v.map { $0 == UInt64.max ? 0 : Int64($0) } ?? 0) }
            data.append(("memory", .object([
                ("cache", .int(Int64(stat["file"] ?? 0))),
                ("usage", .object([("usage", .int(Int64(cur))), ("max", .int(Int64(number(cg + "/memory.peak") ?? 0))),
                                   ("limit", limit(number(cg + "/memory.max"))), ("failcnt", .int(Int64(events["max"] ?? 0)))])),
                ("swap_usage", .object([("usage", .int(Int64(number(cg + "/memory.swap.current") ?? 0))),
                                        ("limit", limit(number(cg + "/memory.swap.max")))])),
                ("raw", .object(stat.keys.sorted().map { ($0, .int(Int64(stat[$0]!))) })),
            ])))
        }
        if let cur = number(cg + "/pids.current") {
            let max = number(cg + "/pids.max")
            data.append(("pids", .object([("current", .int(Int64(cur))), ("limit", .int(max == UInt64.max ? 0 : Int64(max ?? 0)))])))
        }
        if let io = FS.readString(cg + "/io.stat"), !io.isEmpty {
            var bytes: [JSON] = [], ios: [JSON] = []
            for line in io.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard let dev = f.first else { continue }
                let mm = dev.split(separator: ":")
                guard mm.count == 2, let major = Int64(mm[0]), let minor = Int64(mm[1]) else { continue }
                for kv in f.dropFirst() {
                    let p = kv.split(separator: "=")
                    guard p.count == 2, let v = Int64(p[1]) else { continue }
                    let op: String
                    switch p[0] { case "rbytes", "rios": op = "Read"; case "wbytes", "wios": op = "Write"; default: continue }
                    let entry: JSON = .object([("major", .int(major)), ("minor", .int(minor)), ("op", .string(op)), ("value", .int(v))])
                    if p[0].hasSuffix("bytes") { bytes.append(entry) } else { ios.append(entry) }
                }
            }
            data.append(("blkio", .object([("ioServiceBytesRecursive", .array(bytes)), ("ioServicedRecursive", .array(ios))])))
        }
        var huge: [(String, JSON)] = []
        for name in FS.listDirectory(cg) where name.hasPrefix("hugetlb.") && name.hasSuffix(".current") && !name.contains(".rsvd.") {
            let size = String(name.dropFirst(8).dropLast(8))
            let events = keyValues(cg + "/hugetlb.\(size).events")
            huge.append((size, .object([("usage", .int(Int64(number(cg + "/" + name) ?? 0))),
                                        ("max", .int(Int64(number(cg + "/hugetlb.\(size).max").map { $0 == UInt64.max ? 0 : $0 } ?? 0))),
                                        ("failcnt", .int(Int64(events["max"] ?? 0)))])))
        }
        if !huge.isEmpty { data.append(("hugetlb", .object(huge))) }
        return .object(data)
    }
}

extension Runtime {
    public func stats(id: String) throws(BerthError) -> String {
        let rec = try store.load(id)
        guard rec.status != .stopped else { throw BerthError("container not running") }
        let cgs = ContainerCgroups(rec.state)
        if cgs.isEmpty { throw BerthError("the container has no cgroup") }
        return JSON.object([("type", .string("stats")), ("id", .string(id)), ("data", cgs.stats())]).render(indent: nil)
    }

    /// `events`: a stats line every interval and an "oom" line whenever the OOM kill count
    /// grows, until the container stops. An OOM kill that ends the container is still
    /// reported: the count is read once more after the stop.
    public func events(id: String, intervalMs: Int, emit: (String) -> Void) throws(BerthError) {
        let rec = try store.load(id)
        let cgs = ContainerCgroups(rec.state)
        if cgs.isEmpty { throw BerthError("the container has no cgroup") }
        var lastOOM = cgs.oomKills()
        var sinceStats = intervalMs
        let tick = min(intervalMs, 100)
        func checkOOM() {
            let oom = cgs.oomKills()
            if oom > lastOOM {
                emit(JSON.object([("type", .string("oom")), ("id", .string(id))]).render(indent: nil))
                lastOOM = oom
            }
        }
        while rec.status != .stopped {
            if sinceStats >= intervalMs {
                emit(JSON.object([("type", .string("stats")), ("id", .string(id)), ("data", cgs.stats())]).render(indent: nil))
                sinceStats = 0
            }
            checkOOM()
            usleep(UInt32(tick) * 1000)
            sinceStats += tick
        }
        checkOOM()
    }
}
