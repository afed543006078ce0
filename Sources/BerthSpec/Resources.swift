// linux.resources (config-linux.md, "Control groups"), as Berth applies them to cgroup v2.

public struct DeviceRule: Sendable, Equatable {
    public var allow: Bool
    public var type: String?     // "a", "c", "b"; nil = all
    public var major: Int64?     // nil or -1 = any
    public var minor: Int64?
    public var access: String?   // subset of "rwm"; nil = all
    public init(allow: Bool, type: String? = nil, major: Int64? = nil, minor: Int64? = nil, access: String? = nil) {
        self.allow = allow; self.type = type; self.major = major; self.minor = minor; self.access = access
    }
}

public struct MemoryResources: Sendable {
    public init() {}
    public var limit: Int64?
    public var reservation: Int64?
    public var swap: Int64?
    public var kernel: Int64?
    public var kernelTCP: Int64?
    public var swappiness: UInt64?
    public var disableOOMKiller: Bool?
    public var useHierarchy: Bool?
    public var checkBeforeUpdate: Bool?
}

public struct CPUResources: Sendable {
    public init() {}
    public var shares: UInt64?
    public var quota: Int64?
    public var burst: UInt64?
    public var period: UInt64?
    public var realtimeRuntime: Int64?
    public var realtimePeriod: UInt64?
    public var cpus: String?
    public var mems: String?
    public var idle: Int64?
}

public struct DeviceNumbers: Sendable { public var major: Int64; public var minor: Int64 }

public struct WeightDevice: Sendable {
    public var device: DeviceNumbers
    public var weight: UInt16?
    public var leafWeight: UInt16?
}

public struct ThrottleDevice: Sendable {
    public var device: DeviceNumbers
    public var rate: UInt64
}

public struct BlockIOResources: Sendable {
    public init() {}
    public var weight: UInt16?
    public var leafWeight: UInt16?
    public var weightDevice: [WeightDevice]?
    public var throttleReadBpsDevice: [ThrottleDevice]?
    public var throttleWriteBpsDevice: [ThrottleDevice]?
    public var throttleReadIOPSDevice: [ThrottleDevice]?
    public var throttleWriteIOPSDevice: [ThrottleDevice]?
}

public struct HugepageLimit: Sendable { public var pageSize: String; public var limit: UInt64 }

public struct RdmaLimit: Sendable { public var hcaHandles: UInt32?; public var hcaObjects: UInt32? }

/// linux.resources.network: cgroup v1's net_cls and net_prio controllers.
public struct NetworkResources: Sendable {
    public var classID: UInt32?
    public var priorities: [(name: String, priority: UInt32)] = []
    /// Nothing asked for: no class id (or 0, Go's zero value) and no priorities.
    public var isEmpty: Bool { (classID ?? 0) == 0 && priorities.isEmpty }
}

public struct Resources: Sendable {
    public var devices: [DeviceRule]?
    public var memory: MemoryResources?
    public var cpu: CPUResources?
    public var pids: Int64?          // pids.limit
    public var blockIO: BlockIOResources?
    public var hugepageLimits: [HugepageLimit]?
    public var network: NetworkResources?
    public var rdma: [String: RdmaLimit]?
    public var unified: [String: String]?
    public init() {}
}

extension Resources {
    public init(_ r: JSONReader) throws(SpecError) {
        devices = try r.optObjects("devices") { (o: JSONReader) throws(SpecError) in
            let allow = try o.optBool("allow") ?? false  // Go's zero value, as runc reads it
            return DeviceRule(allow: allow, type: try o.optString("type"), major: try o.optInteger("major", Int64.self),
                              minor: try o.optInteger("minor", Int64.self), access: try o.optString("access"))
        }
        memory = try r.optObject("memory").map { (o: JSONReader) throws(SpecError) in
            var m = MemoryResources()
            m.limit = try o.optInteger("limit", Int64.self)
            m.reservation = try o.optInteger("reservation", Int64.self)
            m.swap = try o.optInteger("swap", Int64.self)
            m.kernel = try o.optInteger("kernel", Int64.self)
            m.kernelTCP = try o.optInteger("kernelTCP", Int64.self)
            m.swappiness = try o.optInteger("swappiness", UInt64.self)
            m.disableOOMKiller = try o.optBool("disableOOMKiller")
            m.useHierarchy = try o.optBool("useHierarchy")
            m.checkBeforeUpdate = try o.optBool("checkBeforeUpdate")
            return m
        }
        cpu = try r.optObject("cpu").map { (o: JSONReader) throws(SpecError) in
            var c = CPUResources()
            c.shares = try o.optInteger("shares", UInt64.self)
            c.quota = try o.optInteger("quota", Int64.self)
            c.burst = try o.optInteger("burst", UInt64.self)
            c.period = try o.optInteger("period", UInt64.self)
            c.realtimeRuntime = try o.optInteger("realtimeRuntime", Int64.self)
            c.realtimePeriod = try o.optInteger("realtimePeriod", UInt64.self)
            c.cpus = try o.optString("cpus")
            c.mems = try o.optString("mems")
            c.idle = try o.optInteger("idle", Int64.self)
            return c
        }
        if let p = try r.optObject("pids") {
            pids = try p.optInteger("limit", Int64.self)
        }
        blockIO = try r.optObject("blockIO").map { (o: JSONReader) throws(SpecError) in
            func dev(_ d: JSONReader) throws(SpecError) -> DeviceNumbers {
                DeviceNumbers(major: try d.integer("major", Int64.self), minor: try d.integer("minor", Int64.self))
            }
            func throttles(_ key: String) throws(SpecError) -> [ThrottleDevice]? {
                try o.optObjects(key) { (d: JSONReader) throws(SpecError) in
                    ThrottleDevice(device: try dev(d), rate: try d.integer("rate", UInt64.self))
                }
            }
            var b = BlockIOResources()
            b.weight = try o.optInteger("weight", UInt16.self)
            b.leafWeight = try o.optInteger("leafWeight", UInt16.self)
            b.weightDevice = try o.optObjects("weightDevice") { (d: JSONReader) throws(SpecError) in
                WeightDevice(device: try dev(d), weight: try d.optInteger("weight", UInt16.self),
                             leafWeight: try d.optInteger("leafWeight", UInt16.self))
            }
            b.throttleReadBpsDevice = try throttles("throttleReadBpsDevice")
            b.throttleWriteBpsDevice = try throttles("throttleWriteBpsDevice")
            b.throttleReadIOPSDevice = try throttles("throttleReadIOPSDevice")
            b.throttleWriteIOPSDevice = try throttles("throttleWriteIOPSDevice")
            return b
        }
        hugepageLimits = try r.optObjects("hugepageLimits") { (o: JSONReader) throws(SpecError) in
            HugepageLimit(pageSize: try o.string("pageSize"), limit: try o.integer("limit", UInt64.self))
        }
        network = try r.optObject("network").map { (o: JSONReader) throws(SpecError) in
            var n = NetworkResources()
            n.classID = try o.optInteger("classID", UInt32.self)
            n.priorities = try o.optObjects("priorities") { (p: JSONReader) throws(SpecError) in
                (name: try p.string("name"), priority: try p.integer("priority", UInt32.self))
            } ?? []
            return n
        }
        rdma = try r.optObjectMap("rdma") { (o: JSONReader) throws(SpecError) in
            RdmaLimit(hcaHandles: try o.optInteger("hcaHandles", UInt32.self), hcaObjects: try o.optInteger("hcaObjects", UInt32.self))
        }
        unified = try r.optStringMap("unified")
    }
}
