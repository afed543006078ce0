import BerthSpec
import Glibc

/// One write into the container's cgroup: which controller it needs (nil for core files),
/// the interface file, the value, and the config path it comes from (for errors).
struct CgroupWrite: Equatable {
    var controller: String?
    var file: String
    var value: String
    var path: String
    /// Skipped where the kernel lacks the file (hugetlb.*.rsvd.max before 5.7).
    var optional = false
}

/// linux.resources -> cgroup v2 interface files, with the conversions runc uses. Fields
/// that only exist on cgroup v1 are refused by name.
///
/// Zero means "unset" for every limit, as in runc: Docker sends `blockIO.weight: 0` in
/// every create, and `update` documents with zeros for each field it is not changing
/// (memory, reservation, kernel, cpu shares/quota/period, blockIO weight). Nothing is
/// written for them, and `max 0` never reaches cpu.max.
enum CgroupResources {
    /// cpu.shares (2..262144) -> cpu.weight (1..10000), runc's linear mapping.
    static func cpuWeight(shares: UInt64) -> UInt64 {
        let s = min(max(shares, 2), 262_144)
        return 1 + ((s - 2) * 9999) / 262_142
    }

    /// blkio weight (10..1000) -> io.weight (1..10000), runc's mapping.
    static func ioWeight(_ w: UInt16) -> UInt64 { 1 + (UInt64(w) - 10) * 9999 / 990 }

    /// `currentQuota`: for `update`, the quota now in cpu.max, kept when only the period
    /// changes (runc merges an update into the container's limits the same way).
    static func writes(_ r: Resources, currentQuota: String? = nil, warnings: inout [String]) throws(SpecError) -> [CgroupWrite] {
        var out: [CgroupWrite] = []
        func add(_ c: String?, _ f: String, _ v: String, _ p: String) { out.append(CgroupWrite(controller: c, file: f, value: v, path: p)) }
        func v1Only(_ p: String) -> SpecError { SpecError("linux.resources.\(p)", "only exists on cgroup v1; berth manages cgroup v2") }

        if let m = r.memory {
            let p = "memory"
            let l = m.limit ?? 0
            if l < -1 { throw SpecError("linux.resources.memory.limit", "must be positive or -1 (unlimited), got \(l)") }
            if l != 0 { add(p, "memory.max", l == -1 ? "max" : String(l), "memory.limit") }
            if let res = m.reservation, res != 0 { add(p, "memory.low", res == -1 ? "max" : String(res), "memory.reservation") }
            // OCI's swap is memory+swap; cgroup v2's memory.swap.max is swap alone. runc's
            // rules: 0 is unset (but with an unlimited memory, swap is unlimited too).
            let swap = m.swap ?? 0
            if swap == -1 || (swap == 0 && l == -1) {
                add(p, "memory.swap.max", "max", "memory.swap")
            } else if swap != 0 {
                guard l > 0 else {
                    throw SpecError("linux.resources.memory.swap", "a swap limit (memory+swap) needs a memory.limit")
                }
                if swap < l { throw SpecError("linux.resources.memory.swap", "must be at least memory.limit (it counts memory+swap)") }
                add(p, "memory.swap.max", String(swap - l), "memory.swap")
            }
            // runc 1.1 warns and ignores kernel memory limits (the kernel dropped them).
            if (m.kernel ?? 0) != 0 || (m.kernelTCP ?? 0) != 0 {
                warnings.append("linux.resources.memory.kernel, kernelTCP: kernel memory settings are ignored (cgroup v2 has no such limit)")
            }
            if m.swappiness != nil { throw v1Only("memory.swappiness") }
            if m.disableOOMKiller == true { throw v1Only("memory.disableOOMKiller") }
            if m.useHierarchy == false { throw v1Only("memory.useHierarchy") }
        }
        if let c = r.cpu {
            if let s = c.shares, s != 0 { add("cpu", "cpu.weight", String(cpuWeight(shares: s)), "cpu.shares") }
            let quota = c.quota ?? 0, period = c.period ?? 0
            if quota != 0 || period != 0 {
                let q = quota > 0 ? String(quota) : quota < 0 ? "max" : (currentQuota ?? "max")
                // A quota alone is written alone: the kernel keeps the period cpu.max has
                // (the default 100000 in a new cgroup), as runc keeps an updated
                // container's period. "q 100000" would reset a period set earlier.
                add("cpu", "cpu.max", period != 0 ? "\(q) \(period)" : q, quota != 0 ? "cpu.quota" : "cpu.period")
            }
            if let b = c.burst { add("cpu", "cpu.max.burst", String(b), "cpu.burst") }
            if let i = c.idle { add("cpu", "cpu.idle", String(i), "cpu.idle") }
            if (c.realtimeRuntime ?? 0) != 0 { throw v1Only("cpu.realtimeRuntime") }
            if (c.realtimePeriod ?? 0) != 0 { throw v1Only("cpu.realtimePeriod") }
            if let cpus = c.cpus, !cpus.isEmpty {
                if parseCPUList(cpus) == nil { throw SpecError("linux.resources.cpu.cpus", "invalid CPU list \"\(cpus)\"") }
                add("cpuset", "cpuset.cpus", cpus, "cpu.cpus")
            }
            if let mems = c.mems, !mems.isEmpty {
                if parseCPUList(mems) == nil { throw SpecError("linux.resources.cpu.mems", "invalid node list \"\(mems)\"") }
                add("cpuset", "cpuset.mems", mems, "cpu.mems")
            }
        }
        if let l = r.pids, l != 0 {
            add("pids", "pids.max", l > 0 ? String(l) : "max", "pids.limit")
        }
        if let b = r.blockIO {
            if let w = b.weight, w != 0 {
                if w < 10 || w > 1000 { throw SpecError("linux.resources.blockIO.weight", "must be between 10 and 1000") }
                add("io", "io.weight", "default \(ioWeight(w))", "blockIO.weight")
            }
            if (b.leafWeight ?? 0) != 0 { throw v1Only("blockIO.leafWeight") }
            for (i, d) in (b.weightDevice ?? []).enumerated() {
                if d.leafWeight != nil { throw v1Only("blockIO.weightDevice[\(i)].leafWeight") }
                if let w = d.weight, w != 0 {
                    if w < 10 || w > 1000 { throw SpecError("linux.resources.blockIO.weightDevice[\(i)].weight", "must be between 10 and 1000") }
                    add("io", "io.weight", "\(d.device.major):\(d.device.minor) \(ioWeight(w))", "blockIO.weightDevice[\(i)]")
                }
            }
            for (key, list, name) in [("rbps", b.throttleReadBpsDevice, "throttleReadBpsDevice"),
                                      ("wbps", b.throttleWriteBpsDevice, "throttleWriteBpsDevice"),
                                      ("riops", b.throttleReadIOPSDevice, "throttleReadIOPSDevice"),
                                      ("wiops", b.throttleWriteIOPSDevice, "throttleWriteIOPSDevice")] {
                for (i, d) in (list ?? []).enumerated() {
                    add("io", "io.max", "\(d.device.major):\(d.device.minor) \(key)=\(d.rate == 0 ? "max" : String(d.rate))",
                        "blockIO.\(name)[\(i)]")
                }
            }
        }
        for (i, h) in (r.hugepageLimits ?? []).enumerated() {
            guard isPageSize(h.pageSize) else {
                throw SpecError("linux.resources.hugepageLimits[\(i)].pageSize", "invalid page size \"\(h.pageSize)\" (e.g. 2MB)")
            }
            add("hugetlb", "hugetlb.\(h.pageSize).max", String(h.limit), "hugepageLimits[\(i)]")
            // As runc: the reservation limit follows, where the kernel has it.
            out.append(CgroupWrite(controller: "hugetlb", file: "hugetlb.\(h.pageSize).rsvd.max", value: String(h.limit),
                                   path: "hugepageLimits[\(i)]", optional: true))
        }
        if let n = r.network, !n.isEmpty { throw v1Only("network") }
        for (dev, l) in (r.rdma ?? [:]).sorted(by: { $0.key < $1.key }) {
            var parts = [dev]
            if let h = l.hcaHandles { parts.append("hca_handle=\(h)") }
            if let o = l.hcaObjects { parts.append("hca_object=\(o)") }
            if parts.count > 1 { add("rdma", "rdma.max", parts.joined(separator: " "), "rdma.\(dev)") }
        }
        for (key, value) in (r.unified ?? [:]).sorted(by: { $0.key < $1.key }) {
            // Only plain interface file names: no path tricks, and not the files through
            // which processes or controllers are managed.
            guard !key.isEmpty, !key.contains("/"), key != ".", key != "..", key.contains("."),
                  !["cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.kill", "cgroup.type"].contains(key) else {
                throw SpecError("linux.resources.unified.\(key)", "not a cgroup interface file Berth may write")
            }
            let ctrl = String(key.split(separator: ".")[0])
            add(ctrl == "cgroup" ? nil : ctrl, key, value, "unified.\(key)")
        }
        return out
    }

    /// "2MB", "1GB", "64KB" without regular expressions (FoundationEssentials has none).
    static func isPageSize(_ s: String) -> Bool {
        guard s.hasSuffix("B"), s.count >= 3 else { return false }
        let unit = s.dropLast().last!
        let digits = s.dropLast(2)
        return "KMG".contains(unit) && !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }
}
