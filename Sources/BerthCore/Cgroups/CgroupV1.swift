import BerthSpec
import CBerth
import Glibc

/// cgroup v1, on legacy and hybrid hosts: one directory per mounted hierarchy, found,
/// named and written the way runc's fs manager does (libcontainer/cgroups/fs).
enum CgroupV1 {
    /// The subsystems runc's v1 manager handles, in the order it creates and writes them.
    /// "name=systemd" and "misc" are only joined.
    static let known = ["cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb", "net_cls",
                        "net_prio", "perf_event", "freezer", "rdma", "name=systemd", "misc"]

    /// A mounted v1 hierarchy: where it is mounted, which part of it the mount shows
    /// (mountinfo's root field; "/" on a host), and its subsystems, such as ["cpu",
    /// "cpuacct"] for a co-mounted pair or ["name=systemd"].
    struct Hierarchy: Equatable {
        var mountpoint: String
        var root: String
        var subsystems: [String]
        /// The name state.json and exec --cgroup use: the subsystems joined with ",".
        var key: String { subsystems.joined(separator: ",") }
    }

    /// The v1 hierarchies in mountinfo with a subsystem runc knows, one mount each (the
    /// first; a hierarchy bound elsewhere too is the same hierarchy).
    static func hierarchies(mountinfo: String) -> [Hierarchy] {
        var out: [Hierarchy] = []
        for line in mountinfo.split(separator: "\n") {
            guard let dash = line.firstRange(of: " - ") else { continue }
            let post = line[dash.upperBound...].split(separator: " ")
            guard post.count >= 3, post[0] == "cgroup" else { continue }
            let pre = line[..<dash.lowerBound].split(separator: " ")
            guard pre.count > 4 else { continue }
            let subs = post[2].split(separator: ",").map(String.init).filter { known.contains($0) }
            guard !subs.isEmpty, !out.contains(where: { $0.subsystems == subs }) else { continue }
            out.append(Hierarchy(mountpoint: Cgroup.unescapeMountinfo(String(pre[4])),
                                 root: Cgroup.unescapeMountinfo(String(pre[3])), subsystems: subs))
        }
        return out
    }

    static func hierarchies() -> [Hierarchy] {
        hierarchies(mountinfo: FS.readString("/proc/self/mountinfo") ?? "")
    }

    /// This process's own cgroup in each v1 hierarchy, from /proc/self/cgroup
    /// ("4:memory:/a/b", "3:cpu,cpuacct:/", "9:name=systemd:/"), keyed by its subsystems.
    static func ownCgroups(_ text: String) -> [(subsystems: Set<String>, path: String)] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3, !f[1].isEmpty else { return nil }
            return (Set(f[1].split(separator: ",").map(String.init)), String(f[2]))
        }
    }

    /// The container's directory in each hierarchy, for linux.cgroupsPath as runc reads it
    /// on v1: an absolute path starts at each hierarchy's root, a relative one below this
    /// process's own cgroup there; empty means Berth's default, /berth/<id>. ".." never
    /// climbs out (the path is cleaned as if absolute first, as runc does).
    static func dirs(for cgroupsPath: String?, id: String, hierarchies: [Hierarchy],
                     own: [(subsystems: Set<String>, path: String)], rootless: Bool = false) throws(BerthError) -> [String: String] {
        let given = cgroupsPath ?? ""
        // Rootless, runc's default is relative: the container's cgroup below Berth's own in
        // each hierarchy (where a delegated cgroup lets the user make one).
        let path = given.isEmpty ? (rootless ? id : "/berth/\(id)") : given
        if path.contains(":") {
            throw BerthError("config.json: linux.cgroupsPath: \"\(path)\" looks like a systemd slice:prefix:name; berth manages cgroupfs paths only")
        }
        let inner = Paths.clean("/" + path)
        if inner == "/" { throw BerthError("config.json: linux.cgroupsPath: must not be the cgroup root") }
        var out: [String: String] = [:]
        for h in hierarchies {
            out[h.key] = (path.hasPrefix("/") ? h.mountpoint : ownDir(h, own: own)) + inner
        }
        return out
    }

    /// This process's own directory in the hierarchy, seen from its mount: a nested
    /// runtime sees host paths in /proc/self/cgroup, below the mount's root.
    static func ownDir(_ h: Hierarchy, own: [(subsystems: Set<String>, path: String)]) -> String {
        let mine = own.first { $0.subsystems == Set(h.subsystems) }?.path ?? "/"
        var rel = Paths.clean(mine)
        if h.root != "/" && (rel == h.root || rel.hasPrefix(h.root + "/")) { rel = String(rel.dropFirst(h.root.count)) }
        return Paths.clean(h.mountpoint + "/" + rel)
    }

    /// The directory of `subsystem` among a container's directories.
    static func dir(_ dirs: [String: String], _ subsystem: String) -> String? {
        for (key, d) in dirs where key.split(separator: ",").contains(where: { $0 == subsystem }) { return d }
        return nil
    }

    /// The hierarchy's mount point for a container directory (its longest prefix).
    static func mountpoint(of dir: String, in hierarchies: [Hierarchy]) -> String? {
        hierarchies.map(\.mountpoint).filter { dir.hasPrefix($0 + "/") }.max { $0.count < $1.count }
    }

    /// Creates every directory with its missing parents, and gives each new or empty
    /// cpuset level its parent's cpus and mems (a v1 cpuset without them takes no
    /// process). Returns the directories it made, parents first; on failure it removes
    /// them again.
    static func create(_ dirs: [String: String], hierarchies: [Hierarchy]) throws(BerthError) -> [String] {
        var made: [String] = []
        for h in hierarchies {
            guard let dir = dirs[h.key] else { continue }
            let isCpuset = h.subsystems.contains("cpuset")
            var cur = h.mountpoint
            for comp in dir.dropFirst(h.mountpoint.count).split(separator: "/") {
                let parent = cur
                cur += "/" + comp
                if mkdir(cur, 0o755) == 0 { made.append(cur) } else if errno != EEXIST {
                    let e = errno
                    destroy(made)
                    throw .sys("create cgroup \(cur)", e)
                }
                if isCpuset {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        let mine = FS.readString(cur + "/" + file) ?? ""
                        guard mine.allSatisfy({ $0 == "\n" }) else { continue }
                        let theirs = FS.readString(parent + "/" + file) ?? ""
                        if let e = write(cur + "/" + file, theirs.filter { $0 != "\n" }) {
                            destroy(made)
                            throw .sys("copy \(file) from \(parent) into \(cur)", e)
                        }
                    }
                }
            }
        }
        return made
    }

    /// Removes directories Berth made, deepest first (a directory that still has
    /// processes or children stays).
    static func destroy(_ made: [String]) {
        for d in made.reversed() { rmdir(d) }
    }

    /// Writes `value` into an existing cgroup file; nil or the errno.
    @discardableResult
    static func write(_ path: String, _ value: String) -> Int32? {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { return errno }
        defer { close(fd) }
        return FS.writeAll(fd, Array(value.utf8)) ? nil : errno
    }

    static func number(_ path: String) -> Int64? {
        guard let s = FS.readString(path) else { return nil }
        return Int64(s.split(separator: "\n").first ?? "")
    }

    // MARK: limits

    /// Writes linux.resources into the container's v1 directories, as runc's fs manager
    /// does: subsystem by subsystem in its order, zero meaning "unset" for every value
    /// (../shared/contract.md), and the orderings the kernel insists on (memory+swap
    /// before memory when it grows, quota before period when the period shrinks). A field
    /// whose subsystem is not mounted is an error naming both. `hybridV2` is the
    /// container's cgroup in a hybrid host's v2 hierarchy: hugetlb and rdma limits go
    /// there when that hierarchy has the controller and v1 does not.
    static func apply(_ r: Resources, dirs: [String: String], hybridV2: (dir: String, mount: String)?,
                      rootless: Bool = false, warnings: inout [String]) throws(BerthError) {
        func fail(_ field: String, _ why: String) -> BerthError { BerthError("config.json: linux.resources.\(field): \(why)") }
        func need(_ subsystem: String, _ field: String) throws(BerthError) -> String {
            if let d = dir(dirs, subsystem) { return d }
            // Rootless, a hierarchy is missing because the user could not make or join the
            // cgroup there: runc's words.
            if rootless { throw BerthError("cannot set \(subsystem) limit: container could not join or create cgroup") }
            throw fail(field, "the cgroup v1 \(subsystem) hierarchy is not mounted on this host")
        }
        func put(_ d: String, _ file: String, _ value: String, _ field: String) throws(BerthError) {
            if let e = write(d + "/" + file, value) {
                throw fail(field, "write \"\(value)\" to \(d)/\(file): \(errnoWords(e))")
            }
        }
        if let u = r.unified, !u.isEmpty {
            // runc's words (cgroups.ErrV1NoUnified): callers and its tests match them.
            throw BerthError("config.json: linux.resources.unified: invalid configuration: cannot use unified on cgroup v1")
        }

        if let c = r.cpu {
            if let cpus = c.cpus, !cpus.isEmpty { try put(try need("cpuset", "cpu.cpus"), "cpuset.cpus", cpus, "cpu.cpus") }
            if let mems = c.mems, !mems.isEmpty { try put(try need("cpuset", "cpu.mems"), "cpuset.mems", mems, "cpu.mems") }
        }
        // Rootless, device rules are not enforced (attaching needs privileges), as runc's.
        if let devs = r.devices, !rootless {
            // Only what the config asks for reaches the kernel: the rest of the rule list
            // is runc's defaults, which need no devices hierarchy to be right.
            let target: DeviceEmulator
            do { target = try DeviceEmulator.target(devs) } catch { throw BerthError("config.json: " + error.description) }
            try applyDevices(target, dir: try need("devices", "devices"))
        }
        if let m = r.memory {
            let field = m.limit != nil ? "memory.limit" : "memory"
            let needed = (m.limit ?? 0) != 0 || (m.swap ?? 0) != 0 || (m.reservation ?? 0) != 0 ||
                m.disableOOMKiller == true || m.swappiness != nil
            if needed { try applyMemory(m, dir: try need("memory", field)) }
            if (m.kernel ?? 0) != 0 || (m.kernelTCP ?? 0) != 0 {
                warnings.append("linux.resources.memory.kernel, kernelTCP: kernel memory settings are ignored, as runc 1.1 does")
            }
        }
        if let c = r.cpu {
            let needed = (c.shares ?? 0) != 0 || (c.quota ?? 0) != 0 || (c.period ?? 0) != 0 || (c.realtimeRuntime ?? 0) != 0 ||
                (c.realtimePeriod ?? 0) != 0 || (c.burst ?? 0) != 0 || c.idle != nil
            if needed { try applyCPU(c, dir: try need("cpu", "cpu")) }
        }
        if let l = r.pids, l != 0 {
            try put(try need("pids", "pids.limit"), "pids.max", l > 0 ? String(l) : "max", "pids.limit")
        }
        if let b = r.blockIO { try applyBlockIO(b, need: need, put: put) }
        var v2Writes: [CgroupWrite] = []
        for (i, h) in (r.hugepageLimits ?? []).enumerated() {
            let field = "hugepageLimits[\(i)]"
            guard let d = dir(dirs, "hugetlb") else {
                if hybridV2 != nil { v2Writes.append(CgroupWrite(controller: "hugetlb", file: "hugetlb.\(h.pageSize).max", value: String(h.limit), path: field)); continue }
                throw fail(field, "the cgroup v1 hugetlb hierarchy is not mounted on this host")
            }
            try put(d, "hugetlb.\(h.pageSize).limit_in_bytes", String(h.limit), field)
            // The reservation limit follows, where the kernel has it (5.7+), as with runc.
            if let e = write(d + "/hugetlb.\(h.pageSize).rsvd.limit_in_bytes", String(h.limit)), e != ENOENT {
                throw fail(field, "write to hugetlb.\(h.pageSize).rsvd.limit_in_bytes: \(errnoWords(e))")
            }
        }
        if let n = r.network, !n.isEmpty {
            if let id = n.classID, id != 0 { try put(try need("net_cls", "network.classID"), "net_cls.classid", String(id), "network.classID") }
            for (i, p) in n.priorities.enumerated() {
                try put(try need("net_prio", "network.priorities[\(i)]"), "net_prio.ifpriomap", "\(p.name) \(p.priority)", "network.priorities[\(i)]")
            }
        }
        for (dev, l) in (r.rdma ?? [:]).sorted(by: { $0.key < $1.key }) {
            var parts = [dev]
            if let h = l.hcaHandles { parts.append("hca_handle=\(h)") }
            if let o = l.hcaObjects { parts.append("hca_object=\(o)") }
            guard parts.count > 1 else { continue }
            guard let d = dir(dirs, "rdma") else {
                if hybridV2 != nil { v2Writes.append(CgroupWrite(controller: "rdma", file: "rdma.max", value: parts.joined(separator: " "), path: "rdma.\(dev)")); continue }
                throw fail("rdma.\(dev)", "the cgroup v1 rdma hierarchy is not mounted on this host")
            }
            try put(d, "rdma.max", parts.joined(separator: " "), "rdma.\(dev)")
        }
        if !v2Writes.isEmpty, let v2 = hybridV2 { try Cgroup.apply(v2Writes, to: v2.dir, mount: v2.mount) }
    }

    /// runc's setMemoryAndSwap: memory.memsw.limit_in_bytes (memory+swap) may never be
    /// below memory.limit_in_bytes, so when both change and the pair grows (or swap turns
    /// unlimited) swap goes first. An unlimited memory without a swap value makes swap
    /// unlimited too.
    private static func applyMemory(_ m: MemoryResources, dir d: String) throws(BerthError) {
        func fail(_ field: String, _ why: String) -> BerthError { BerthError("config.json: linux.resources.memory.\(field): \(why)") }
        let limit = m.limit ?? 0
        var swap = m.swap ?? 0
        let memsw = d + "/memory.memsw.limit_in_bytes"
        if limit == -1 && swap == 0 && FS.exists(memsw) { swap = -1 }
        if swap != 0 && !FS.exists(memsw) {
            throw fail("swap", "this kernel has no swap accounting (memory.memsw.limit_in_bytes is missing; boot with swapaccount=1)")
        }
        func setMemory() throws(BerthError) {
            guard limit != 0, let e = write(d + "/memory.limit_in_bytes", String(limit)) else { return }
            if e == EBUSY {
                // runc's words: the new limit is below what the container uses now.
                throw fail("limit", "unable to set memory limit to \(limit) (current usage: \(number(d + "/memory.usage_in_bytes") ?? 0), peak usage: \(number(d + "/memory.max_usage_in_bytes") ?? 0))")
            }
            throw fail("limit", "write \(limit) to memory.limit_in_bytes: \(errnoWords(e))")
        }
        func setSwap() throws(BerthError) {
            guard swap != 0, let e = write(memsw, String(swap)) else { return }
            throw fail("swap", "write \(swap) to memory.memsw.limit_in_bytes: \(errnoWords(e))")
        }
        let current = number(d + "/memory.limit_in_bytes") ?? Int64.max
        if limit != 0 && swap != 0 && (swap == -1 || current < swap) {
            try setSwap()
            try setMemory()
        } else {
            try setMemory()
            try setSwap()
        }
        if let r = m.reservation, r != 0, let e = write(d + "/memory.soft_limit_in_bytes", String(r)) {
            throw fail("reservation", "write \(r) to memory.soft_limit_in_bytes: \(errnoWords(e))")
        }
        if m.disableOOMKiller == true, let e = write(d + "/memory.oom_control", "1") {
            throw fail("disableOOMKiller", "write 1 to memory.oom_control: \(errnoWords(e))")
        }
        if let s = m.swappiness, Int64(bitPattern: s) != -1 {
            guard s <= 100 else { throw fail("swappiness", "invalid memory swappiness value: \(s) (valid range is 0-100)") }
            if let e = write(d + "/memory.swappiness", String(s)) {
                throw fail("swappiness", "write \(s) to memory.swappiness: \(errnoWords(e))")
            }
        }
    }

    /// runc's CpuGroup: shares read back (the kernel clamps them; runc reports the bound),
    /// then period and quota (a period the kernel refuses against the old quota is
    /// retried after the quota), burst and idle, then the realtime pair the same way.
    private static func applyCPU(_ c: CPUResources, dir d: String) throws(BerthError) {
        func fail(_ field: String, _ why: String) -> BerthError { BerthError("config.json: linux.resources.cpu.\(field): \(why)") }
        func put(_ file: String, _ value: String, _ field: String) throws(BerthError) {
            if let e = write(d + "/" + file, value) { throw fail(field, "write \(value) to \(file): \(errnoWords(e))") }
        }
        if let s = c.shares, s != 0 {
            try put("cpu.shares", String(s), "shares")
            if let read = number(d + "/cpu.shares") {
                if UInt64(s) > UInt64(max(read, 0)) { throw fail("shares", "the maximum allowed cpu-shares is \(read)") }
                if UInt64(s) < UInt64(max(read, 0)) { throw fail("shares", "the minimum allowed cpu-shares is \(read)") }
            }
        }
        func pair(_ periodFile: String, _ period: UInt64, _ periodField: String,
                  _ quotaFile: String, _ quota: Int64, _ quotaField: String) throws(BerthError) {
            var retryPeriod = false
            if period != 0, let e = write(d + "/" + periodFile, String(period)) {
                guard e == EINVAL && quota != 0 else { throw fail(periodField, "write \(period) to \(periodFile): \(errnoWords(e))") }
                retryPeriod = true
            }
            if quota != 0 {
                try put(quotaFile, String(quota), quotaField)
                if retryPeriod { try put(periodFile, String(period), periodField) }
            }
        }
        try pair("cpu.cfs_period_us", c.period ?? 0, "period", "cpu.cfs_quota_us", c.quota ?? 0, "quota")
        if let b = c.burst, b != 0 { try put("cpu.cfs_burst_us", String(b), "burst") }
        if let i = c.idle { try put("cpu.idle", String(i), "idle") }
        try pair("cpu.rt_period_us", c.realtimePeriod ?? 0, "realtimePeriod", "cpu.rt_runtime_us", c.realtimeRuntime ?? 0, "realtimeRuntime")
    }

    /// runc's BlkioGroup: CFQ's weight files where they exist, BFQ's otherwise.
    private static func applyBlockIO(_ b: BlockIOResources, need: (String, String) throws(BerthError) -> String,
                                     put: (String, String, String, String) throws(BerthError) -> Void) throws(BerthError) {
        let throttles: [(String, [ThrottleDevice]?, String)] = [
            ("blkio.throttle.read_bps_device", b.throttleReadBpsDevice, "throttleReadBpsDevice"),
            ("blkio.throttle.write_bps_device", b.throttleWriteBpsDevice, "throttleWriteBpsDevice"),
            ("blkio.throttle.read_iops_device", b.throttleReadIOPSDevice, "throttleReadIOPSDevice"),
            ("blkio.throttle.write_iops_device", b.throttleWriteIOPSDevice, "throttleWriteIOPSDevice"),
        ]
        let weights = (b.weightDevice ?? []).contains { ($0.weight ?? 0) != 0 || ($0.leafWeight ?? 0) != 0 }
        let needed = (b.weight ?? 0) != 0 || (b.leafWeight ?? 0) != 0 || weights || throttles.contains { !($0.1 ?? []).isEmpty }
        guard needed else { return }
        let d = try need("blkio", "blockIO")
        let cfq = FS.exists(d + "/blkio.weight")
        let weightFile = cfq ? "blkio.weight" : "blkio.bfq.weight"
        let weightDeviceFile = cfq ? "blkio.weight_device" : "blkio.bfq.weight_device"
        if let w = b.weight, w != 0 { try put(d, weightFile, String(w), "blockIO.weight") }
        if let w = b.leafWeight, w != 0 { try put(d, "blkio.leaf_weight", String(w), "blockIO.leafWeight") }
        for (i, wd) in (b.weightDevice ?? []).enumerated() {
            let dev = "\(wd.device.major):\(wd.device.minor)"
            if let w = wd.weight, w != 0 { try put(d, weightDeviceFile, "\(dev) \(w)", "blockIO.weightDevice[\(i)].weight") }
            if let w = wd.leafWeight, w != 0 { try put(d, "blkio.leaf_weight_device", "\(dev) \(w)", "blockIO.weightDevice[\(i)].leafWeight") }
        }
        for (file, list, name) in throttles {
            for (i, t) in (list ?? []).enumerated() {
                try put(d, file, "\(t.device.major):\(t.device.minor) \(t.rate)", "blockIO.\(name)[\(i)]")
            }
        }
    }

    /// The devices controller moves from its current rules to `target` by the fewest
    /// writes (see DeviceEmulator), then is read back: an allow list must match exactly,
    /// a deny list at least in mode, or the container would run with other rules than
    /// asked for.
    static func applyDevices(_ target: DeviceEmulator, dir d: String) throws(BerthError) {
        let field = "config.json: linux.resources.devices"
        func current() throws(BerthError) -> DeviceEmulator {
            guard let list = FS.readString(d + "/devices.list") else { throw .sys("\(field): read \(d)/devices.list") }
            do { return try DeviceEmulator.fromList(list) } catch {
                guard case .message(let m) = error else { throw BerthError(field) }
                throw BerthError("\(field): \(m)")
            }
        }
        for line in try current().transition(to: target) {
            let file = line.allow ? "devices.allow" : "devices.deny"
            if let e = write(d + "/" + file, line.text) { throw BerthError("\(field): write \"\(line.text)\" to \(d)/\(file): \(errnoWords(e))") }
        }
        let after = try current()
        if target.defaultAllow ? !after.defaultAllow : after != target {
            throw BerthError("\(field): the devices cgroup \(d) did not take the requested rules")
        }
    }

    // MARK: freezer

    /// FROZEN itself (not only through an ancestor), as runc reads it.
    static func isFrozen(_ dir: String) -> Bool {
        guard let st = FS.readString(dir + "/freezer.state"), st.hasPrefix("FROZEN") else { return false }
        return FS.readString(dir + "/freezer.self_freezing").map { $0.hasPrefix("1") } ?? true
    }

    /// Freezes the cgroup and waits for FROZEN. A v1 freeze can stall in FREEZING while
    /// processes keep forking; as runc does, it is rewritten, with an occasional thaw and
    /// pause, before giving up, and a failed freeze is always thawed back.
    static func freeze(_ dir: String) throws(BerthError) {
        let file = dir + "/freezer.state"
        for i in 0..<1000 {
            if i % 50 == 49 { write(file, "THAWED"); usleep(10_000) }
            if let e = write(file, "FROZEN") { write(file, "THAWED"); throw .sys("write FROZEN to \(file)", e) }
            if i % 25 == 24 { usleep(10) }
            let st = (FS.readString(file) ?? "").filter { $0 != "\n" }
            if st == "FROZEN" { return }
            if st != "FREEZING" { write(file, "THAWED"); throw BerthError("unexpected state \(st) while freezing \(dir)") }
        }
        write(file, "THAWED")
        throw BerthError("unable to freeze \(dir)")
    }

    static func thaw(_ dir: String) throws(BerthError) {
        let file = dir + "/freezer.state"
        if let e = write(file, "THAWED") { throw .sys("write THAWED to \(file)", e) }
        for _ in 0..<1000 {
            if (FS.readString(file) ?? "").hasPrefix("THAWED") { return }
            usleep(1000)
        }
        throw BerthError("the cgroup \(dir) did not thaw within a second")
    }

    // MARK: stats

    /// runc's stats document from the v1 files (the same shape as on v2).
    static func stats(_ dirs: [String: String]) -> JSON {
        var data: [(String, JSON)] = []
        func n(_ path: String) -> Int64 { number(path) ?? 0 }
        if let d = dir(dirs, "cpuacct") {
            let stat = Stats.keyValues(d + "/cpuacct.stat")
            let tick = Int64(1_000_000_000 / max(sysconf(Int32(_SC_CLK_TCK)), 1))
            let percpu = (FS.readString(d + "/cpuacct.usage_percpu") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
                .compactMap { Int64($0) }.map { JSON.int($0) }
            var cpu: [(String, JSON)] = [("usage", .object([
                ("total", .int(n(d + "/cpuacct.usage"))), ("percpu", .array(percpu)),
                ("kernel", .int(Int64(stat["system"] ?? 0) * tick)), ("user", .int(Int64(stat["user"] ?? 0) * tick)),
            ]))]
            if let c = dir(dirs, "cpu") {
                let t = Stats.keyValues(c + "/cpu.stat")
                cpu.append(("throttling", .object([("periods", .int(Int64(t["nr_periods"] ?? 0))),
                                                    ("throttled_periods", .int(Int64(t["nr_throttled"] ?? 0))),
                                                    ("throttled_time", .int(Int64(t["throttled_time"] ?? 0)))])))
            }
            data.append(("cpu", .object(cpu)))
        }
        if let d = dir(dirs, "memory") {
            let stat = Stats.keyValues(d + "/memory.stat")
            func usage(_ prefix: String) -> JSON {
                let limit = n(d + "/\(prefix)limit_in_bytes")
                return .object([("usage", .int(n(d + "/\(prefix)usage_in_bytes"))), ("max", .int(n(d + "/\(prefix)max_usage_in_bytes"))),
                                ("failcnt", .int(n(d + "/\(prefix)failcnt"))), ("limit", .int(limit))])
            }
            data.append(("memory", .object([
                ("cache", .int(Int64(stat["cache"] ?? 0))), ("usage", usage("memory.")), ("swap_usage", usage("memory.memsw.")),
                ("kernel_usage", usage("memory.kmem.")), ("kernel_tcp_usage", usage("memory.kmem.tcp.")),
                ("use_hierarchy", .bool(n(d + "/memory.use_hierarchy") == 1)),
                ("raw", .object(stat.keys.sorted().map { ($0, .int(Int64(stat[$0]!))) })),
            ])))
        }
        if let d = dir(dirs, "pids") {
            let max = FS.readString(d + "/pids.max")?.hasPrefix("max") == true ? 0 : n(d + "/pids.max")
            data.append(("pids", .object([("current", .int(n(d + "/pids.current"))), ("limit", .int(max))])))
        }
        if let d = dir(dirs, "blkio") {
            func entries(_ file: String) -> JSON {
                var out: [JSON] = []
                for line in (FS.readString(d + "/" + file) ?? "").split(separator: "\n") {
                    let f = line.split(separator: " ")
                    guard f.count == 3, let v = Int64(f[2]) else { continue }
                    let mm = f[0].split(separator: ":")
                    guard mm.count == 2, let major = Int64(mm[0]), let minor = Int64(mm[1]) else { continue }
                    out.append(.object([("major", .int(major)), ("minor", .int(minor)), ("op", .string(String(f[1]))), ("value", .int(v))]))
                }
                return .array(out)
            }
            data.append(("blkio", .object([("ioServiceBytesRecursive", entries("blkio.throttle.io_service_bytes_recursive")),
                                           ("ioServicedRecursive", entries("blkio.throttle.io_serviced_recursive"))])))
        }
        if let d = dir(dirs, "hugetlb") {
            var huge: [(String, JSON)] = []
            for name in FS.listDirectory(d) where name.hasPrefix("hugetlb.") && name.hasSuffix(".limit_in_bytes") && !name.contains(".rsvd.") {
                let size = String(name.dropFirst(8).dropLast(15))
                huge.append((size, .object([("usage", .int(n(d + "/hugetlb.\(size).usage_in_bytes"))),
                                            ("max", .int(n(d + "/hugetlb.\(size).max_usage_in_bytes"))),
                                            ("failcnt", .int(n(d + "/hugetlb.\(size).failcnt")))])))
            }
            if !huge.isEmpty { data.append(("hugetlb", .object(huge))) }
        }
        return .object(data)
    }

    // MARK: the "cgroup" mount

    /// runc's layout for a "cgroup" mount on a v1 host: a tmpfs (mode 755), and in it one
    /// entry per hierarchy, named as its mount point is (cpu, memory, systemd...). Without
    /// a cgroup namespace each entry is a bind of the container's own directory there,
    /// never the host's whole hierarchy, with the mount's flags (ro...); with one, a new
    /// cgroup mount of that hierarchy, which the namespace roots at the container's
    /// cgroup. Each subsystem of a co-mounted hierarchy ("cpu,cpuacct") gets a link to
    /// its entry. The links are made inside the root by the child, never followed.
    static func expand(_ m: PlannedMount, dirs: [String: String], hierarchies: [Hierarchy],
                       cgroupns: Bool) -> (mounts: [PlannedMount], links: [(target: String, dest: String, replace: Bool)]) {
        let base = CB_MS_NOSUID | CB_MS_NODEV | CB_MS_NOEXEC
        var tmpfs = PlannedMount(source: "tmpfs", dest: m.dest, fstype: "tmpfs", data: "mode=755", flags: base, index: m.index)
        tmpfs.propagation = m.propagation
        var mounts = [tmpfs]
        var links: [(target: String, dest: String, replace: Bool)] = []
        for h in hierarchies {
            guard let dir = dirs[h.key] else { continue }
            let name = String(h.mountpoint.split(separator: "/").last ?? Substring(h.key))
            var e = PlannedMount(dest: m.dest + "/" + name, index: m.index)
            e.propagation = m.propagation
            if cgroupns {
                let named = h.subsystems.first?.hasPrefix("name=") == true
                e.fstype = "cgroup"
                e.source = named ? String(h.subsystems[0].dropFirst(5)) : "cgroup"
                e.data = h.key
                e.flags = base | (m.flags & CB_MS_RDONLY)
            } else {
                e.source = dir
                e.bind = 2
                e.flags = CB_MS_BIND | CB_MS_REC
                e.remountFlags = m.flags & ~(CB_MS_BIND | CB_MS_REC | CB_MS_REMOUNT)
            }
            mounts.append(e)
            if h.subsystems.count > 1 && name.contains(",") {
                for s in h.subsystems where s != name { links.append((name, m.dest + "/" + s, false)) }
            }
        }
        return (mounts, links)
    }
}
