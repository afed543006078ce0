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
        guard let cg = rec.state.cgroup, FS.exists(cg + "/cgroup.freeze") else {
            throw BerthError("cannot \(frozen ? "pause" : "resume"): the container has no cgroup v2 freezer")
        }
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

    /// Host pids of the container's processes.
    public func pids(id: String) throws(BerthError) -> [Int32] {
        let rec = try store.load(id)
        // As runc: a stopped container has what is left in its cgroup (usually nothing).
        if let cg = rec.state.cgroup { return Cgroup.pids(cg) }
        return rec.status == .stopped ? [] : [rec.state.pid]
    }

    /// `update`: new limits applied live. The device filter is replaced whole.
    public func update(id: String, resources r: Resources) throws(BerthError) {
        let rec = try store.load(id)
        guard rec.status != .stopped else { throw BerthError("container not running") }
        guard let cg = rec.state.cgroup, let mount = Cgroup.mountPoint() else {
            throw BerthError("the container has no cgroup to update")
        }
        let writes: [CgroupWrite]
        var program: [UInt8]?
        do throws(SpecError) {
            var warnings: [String] = []
            let quota = FS.readString(cg + "/cpu.max")?.split(separator: " ").first.map(String.init)
            writes = try CgroupResources.writes(r, currentQuota: quota, warnings: &warnings)
            for w in warnings { warn(w) }
            if let d = r.devices {
                let eff = try DeviceFilter.effective(d, extra: [])
                program = DeviceFilter.program(defaultAllow: eff.defaultAllow, rules: eff.rules)
            }
        } catch { throw BerthError(error.description.replacingPrefix("config.json: ", with: "")) }
        do { try Cgroup.apply(writes, to: cg, mount: mount) } catch {
            throw BerthError(error.message.replacingPrefix("config.json: ", with: ""))
        }
        if let p = program { try DeviceFilter.attach(p, cgroup: cg) }
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
                ("oom_kill", .int(Int64(events["oom_kill"] ?? 0))),
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
        for name in FS.listDirectory(cg) where name.hasPrefix("hugetlb.") && name.hasSuffix(".current") {
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
        guard let cg = rec.state.cgroup else { throw BerthError("the container has no cgroup") }
        return JSON.object([("type", .string("stats")), ("id", .string(id)), ("data", Stats.collect(cg))]).render(indent: nil)
    }

    /// `events`: a stats line every interval and an "oom" line whenever memory.events
    /// counts a new OOM kill, until the container stops.
    public func events(id: String, intervalMs: Int, emit: (String) -> Void) throws(BerthError) {
        let rec = try store.load(id)
        guard let cg = rec.state.cgroup else { throw BerthError("the container has no cgroup") }
        var lastOOM = Stats.keyValues(cg + "/memory.events")["oom_kill"] ?? 0
        var sinceStats = intervalMs
        let tick = min(intervalMs, 100)
        while rec.status != .stopped {
            if sinceStats >= intervalMs {
                emit(JSON.object([("type", .string("stats")), ("id", .string(id)), ("data", Stats.collect(cg))]).render(indent: nil))
                sinceStats = 0
            }
            let oom = Stats.keyValues(cg + "/memory.events")["oom_kill"] ?? 0
            if oom > lastOOM {
                emit(JSON.object([("type", .string("oom")), ("id", .string(id))]).render(indent: nil))
                lastOOM = oom
            }
            usleep(UInt32(tick) * 1000)
            sinceStats += tick
        }
    }
}
